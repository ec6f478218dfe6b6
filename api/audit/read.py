"""Reading the sharing log: filters, keyset batches, CSV and JSON lines, in bounded memory.

Long reads (CSV, export, verify) go in batches of BATCH rows by `seq`, each batch in its own
short transaction: on SQLite every transaction holds the write lock, so one long read would
stall every writer. Events are append-only, so batches read up to a head fixed at the start
see exactly the log as it stood then.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, or_
from sqlmodel import Session, select

from api.audit import service as audit
from api.audit.checkpoints import head
from api.audit.models import AuditCheckpoint, AuditEvent
from api.audit.service import format_time
from api.audit.verify import (
    Checkpoint, Report, check_signature, checkpoint_line, export_line, verify_events,
)
from api.auth.principal import Principal

BATCH = 2000
COLUMNS = tuple(AuditEvent.__table__.columns)
FIELDS = tuple(c.name for c in COLUMNS)
CSV_BOM = "\ufeff"  # Excel needs it to read UTF-8
_FORMULA_START = ("=", "+", "-", "@")  # after any leading whitespace
_CONTROL_START = ("\t", "\r", "\n")  # a cell starting with these is prefixed whatever follows


@dataclass(frozen=True)
class EventFilter:
    child_id: str | None = None
    agency: str | None = None  # acting agency or recipient
    action: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive

    def clauses(self) -> list[ColumnElement[bool]]:
        out = []
        if self.child_id is not None:
            out.append(AuditEvent.child_id == self.child_id)
        if self.agency is not None:
            out.append(or_(AuditEvent.actor_agency == self.agency,
                           AuditEvent.recipient == self.agency))
        if self.action is not None:
            out.append(AuditEvent.action == self.action)
        if self.since is not None:
            out.append(AuditEvent.at >= self.since)
        if self.until is not None:
            out.append(AuditEvent.at < self.until)
        return out

    def describe(self) -> str:
        """For the audit event recording the read itself."""
        parts = [f"{k}={v.isoformat() if isinstance(v, datetime) else v}"
                 for k, v in vars(self).items() if v is not None]
        return "filters: " + (", ".join(parts) if parts else "none")


def event_dict(row) -> dict:
    """An event as the API and exports show it: every field, `at` in the hashed form."""
    data = {name: row._mapping[name] for name in FIELDS}
    data["at"] = format_time(data["at"])
    return data


def page(session: Session, filters: EventFilter, after: int | None, limit: int) -> list[dict]:
    """limit+1 events after a seq, oldest first (the extra one says there is a next page)."""
    q = select(*COLUMNS).where(*filters.clauses())
    if after is not None:
        q = q.where(AuditEvent.seq > after)
    return [event_dict(r) for r in session.exec(q.order_by(AuditEvent.seq).limit(limit + 1))]


def stream(session_factory: Callable[[], Session], upto: int,
           filters: EventFilter = EventFilter()) -> Iterator[dict]:
    """Every matching event with seq <= upto, oldest first, BATCH at a time."""
    after = 0
    with session_factory() as session:
        while after < upto:
            rows = session.exec(select(*COLUMNS)
                                .where(*filters.clauses(), AuditEvent.seq > after,
                                       AuditEvent.seq <= upto)
                                .order_by(AuditEvent.seq).limit(BATCH)).all()
            session.rollback()  # end the read transaction between batches (SQLite lock)
            if not rows:
                return
            yield from (event_dict(r) for r in rows)
            after = rows[-1].seq


def verify_log(session_factory: Callable[[], Session], keys: dict[str, dict]) -> Report:
    """The log as it stands, held to every stored checkpoint; the latest checkpoint's signature
    is checked with the service's own keys (all of them would cost an RSA check each)."""
    with session_factory() as session:
        upto = (head(session) or (0, None))[0]
        rows = session.exec(select(AuditCheckpoint).where(AuditCheckpoint.seq <= upto)
                            .order_by(AuditCheckpoint.seq)).all()
    stored = [Checkpoint(seq=r.seq, hash=r.hash, at=format_time(r.at), kid=r.kid,
                         signature=r.signature) for r in rows]
    report = verify_events(stream(session_factory, upto), stored)
    if report.latest_checkpoint is not None:
        report.signatures_checked = 1
        if problem := check_signature(report.latest_checkpoint, keys):
            report.add(None, problem)
    return report


def _needs_quote(text: str) -> bool:
    """Whether a spreadsheet could take the cell as a formula (OWASP's CSV injection list: a
    leading = + - @, tab, CR or LF; spreadsheets skip leading whitespace, so also = + - @
    after it), or the cell already starts with ' in front of such text (so the prefix can be
    undone exactly: drop the ' of any cell whose rest this says yes to)."""
    text = text.lstrip("'")
    return text.startswith(_CONTROL_START) or text.lstrip().startswith(_FORMULA_START)


def _cell(value) -> str:
    """Text a spreadsheet shows as text: free-text reasons and usernames (even one tried in a
    failed sign-in) reach this file, so a cell that could run as a formula gets a leading '."""
    text = "" if value is None else str(value)
    return "'" + text if _needs_quote(text) else text


def csv_chunks(events: Iterator[dict]) -> Iterator[bytes]:
    """UTF-8 with BOM, a header row, one row per event; one chunk per batch of rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write(CSV_BOM)
    writer.writerow(FIELDS)
    for n, event in enumerate(events, 1):
        writer.writerow([_cell(event[f]) for f in FIELDS])
        if n % BATCH == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def jsonl_chunks(events: Iterator[dict], checkpoint: dict) -> Iterator[bytes]:
    """One event per line, then the checkpoint covering the last one."""
    lines = []
    for event in events:
        lines.append(export_line(event))
        if len(lines) == BATCH:
            yield "".join(lines).encode()
            lines = []
    yield "".join([*lines, checkpoint_line(checkpoint)]).encode()


def record_read(session: Session, principal: Principal, what: str,
                filters: EventFilter) -> AuditEvent:
    """Reading the log is itself logged: who looked at what (the caller commits)."""
    audit.record(session, actor=principal.actor, actor_agency=principal.agency_id,
                 action="audit.read", outcome=what, child_id=filters.child_id,
                 reason=filters.describe())
    return audit.append_pending(session)  # the CSV runs up to and including this read
