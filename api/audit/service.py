"""Appending to the sharing log, in the same transaction as the action it records.

Each event's `hash` is SHA-256 over its canonical form including `prev_hash`, so any edit,
deletion or reordering breaks the chain. Appends are serialised: an advisory lock on
PostgreSQL, BEGIN IMMEDIATE on SQLite (see api.db).

Canonical form (what `canonical` produces; an offline verifier must reproduce it exactly):
- a JSON object with exactly the keys in HASHED_FIELDS (every event field except `hash`),
  absent values as `null`, keys sorted, separators `,` and `:` with no whitespace;
- strings as UTF-8, not escaped as \\uXXXX (json.dumps ensure_ascii=False); `seq` a JSON integer;
- `at` as `format_time`: UTC, six fractional digits, trailing `Z`
  (`2026-11-24T10:12:05.118204Z`), which is also how every API and export shows it;
- `hash` = lowercase hex SHA-256 of those bytes; the first event's `prev_hash` is 64 zeros.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, select

from api.audit.models import AuditEvent
from api.db import utcnow

GENESIS_HASH = "0" * 64
_CHAIN_LOCK_ID = 0x666C6167  # "flag"
HASHED_FIELDS = (
    "seq", "at", "actor", "actor_agency", "action", "child_id", "flag_id", "recipient",
    "purpose", "reason", "lawful_basis", "policy_rule", "policy_version", "outcome", "prev_hash",
)


def format_time(value: datetime) -> str:
    """Fixed form for hashing and export: UTC, microseconds, trailing Z."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(event: dict[str, Any]) -> bytes:
    """Sorted keys, no whitespace, UTF-8, times via `format_time`, nulls kept."""
    body = {k: event.get(k) for k in HASHED_FIELDS}
    if isinstance(body["at"], datetime):
        body["at"] = format_time(body["at"])
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(event: dict[str, Any]) -> str:
    """Lowercase hex SHA-256 of the canonical form."""
    return hashlib.sha256(canonical(event)).hexdigest()


# session.info key: this transaction holds the chain lock; its value is the (seq, hash) of the
# last event the transaction appended, or None before its first append. Dropped at commit and
# at any rollback (a rolled-back savepoint may have taken appends, and the lock, with it).
_CHAIN = "audit_chain_head"


@event.listens_for(OrmSession, "after_commit")
@event.listens_for(OrmSession, "after_soft_rollback")
def _forget_chain(session: OrmSession, *_args) -> None:
    session.info.pop(_CHAIN, None)


_HEAD = select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)


def lock_chain(session: Session) -> None:
    """Serialise writers until commit: keeps the chain linear and outbox `seq` in commit order.

    PostgreSQL: a transaction-scoped advisory lock, taken once per transaction.
    SQLite: every transaction already begins IMMEDIATE, holding the write lock.
    """
    if _CHAIN in session.info:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.exec(text("SELECT pg_advisory_xact_lock(:k)").bindparams(k=_CHAIN_LOCK_ID))
    session.info[_CHAIN] = None


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    outcome: str,
    actor_agency: str | None = None,
    child_id: str | None = None,
    flag_id: str | None = None,
    recipient: str | None = None,
    purpose: str | None = None,
    reason: str | None = None,
    lawful_basis: str | None = None,
    policy_rule: str | None = None,
    policy_version: str | None = None,
) -> AuditEvent:
    """Add one chained event to the session's transaction (the caller commits).

    The head is read once per transaction, under the lock; later appends in the same
    transaction chain onto the previous one without a query, and are inserted together at
    the next flush."""
    lock_chain(session)
    if session.info[_CHAIN] is None:
        head = session.exec(_HEAD).first()
        session.info[_CHAIN] = tuple(head) if head else (0, GENESIS_HASH)
    head_seq, head_hash = session.info[_CHAIN]
    fields = dict(
        seq=head_seq + 1,
        at=utcnow(),
        actor=actor,
        actor_agency=actor_agency,
        action=action,
        child_id=child_id,
        flag_id=flag_id,
        recipient=recipient,
        purpose=purpose,
        reason=reason[:2000] if reason else reason,
        lawful_basis=lawful_basis,
        policy_rule=policy_rule,
        policy_version=policy_version,
        outcome=outcome,
        prev_hash=head_hash,
    )
    appended = AuditEvent(**fields, hash=event_hash(fields))
    session.add(appended)
    session.info[_CHAIN] = (appended.seq, appended.hash)
    return appended
