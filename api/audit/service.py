"""Appending to the sharing log, in the same transaction as the action it records.

Each event's `hash` is SHA-256 over its canonical form including `prev_hash`, so any edit,
deletion or reordering breaks the chain. Appends are serialised: an advisory lock on
PostgreSQL, BEGIN IMMEDIATE on SQLite (see api.db). A transaction queues its events and its
outbox rows and appends them at commit, so on PostgreSQL the lock is held for the appends and
the commit only, and concurrent requests do the rest of their work side by side.

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
from functools import lru_cache
from itertools import groupby
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Insert, Table, event, text
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, SQLModel, select

from api.audit.models import AuditEvent
from api.db import plain_rows, utcnow

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


# session.info keys. _CHAIN: this transaction holds the chain lock; its value is the (seq, hash)
# of the last event it appended, or None before its first. _PENDING: what the transaction
# queued for the log and the outbox, in order, appended at commit. _MARKS: how much was queued
# when each savepoint began, so that rolling one back drops what was queued inside it.
_CHAIN = "audit_chain_head"
_PENDING = "audit_pending"
_MARKS = "audit_pending_marks"


@event.listens_for(OrmSession, "after_transaction_create")
def _mark_savepoint(session: OrmSession, transaction) -> None:
    if transaction.nested:
        session.info.setdefault(_MARKS, {})[transaction] = len(session.info.get(_PENDING, ()))


@event.listens_for(OrmSession, "after_soft_rollback")
def _forget_rolled_back(session: OrmSession, previous_transaction) -> None:
    """A rolled-back savepoint takes what was queued inside it, and may have taken appends
    (and, on PostgreSQL, the lock) with it: the head is read again."""
    session.info.pop(_CHAIN, None)
    mark = session.info.get(_MARKS, {}).pop(previous_transaction, None)
    if mark is not None:
        del session.info.get(_PENDING, [])[mark:]


@event.listens_for(OrmSession, "after_transaction_end")
def _forget_ended(session: OrmSession, transaction) -> None:
    """The transaction itself ended, committed or rolled back (not a savepoint: SQLAlchemy
    reports a savepoint's release as a commit too, and what was queued must outlive it)."""
    if transaction.parent is None:
        for key in (_CHAIN, _PENDING, _MARKS):
            session.info.pop(key, None)


@event.listens_for(OrmSession, "before_commit")
def _append_at_commit(session: OrmSession) -> None:
    if not session.in_nested_transaction():  # a savepoint's release is not the commit
        _append(session)


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
) -> None:
    """Queue one event for the log, in the same transaction as the action it records.

    It is chained and inserted when the transaction commits (or at `append_pending`), so the
    chain lock is held only for the appends and the commit, not for the whole request."""
    session.info.setdefault(_PENDING, []).append(dict(
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
    ))


def _inserted(row: SQLModel) -> dict[str, Any]:
    """The row's column values, without a primary key the database is to assign."""
    return {column.key: getattr(row, column.key) for column in row.__table__.columns
            if not (column.primary_key and getattr(row, column.key) is None)}


def append_at_commit(session: Session, row: SQLModel) -> None:
    """Insert `row` (an outbox delivery) with the log's appends, under the chain lock: its
    autoincrement `seq` then follows commit order, which feed readers page by."""
    session.info.setdefault(_PENDING, []).append(row)


def append_pending(session: Session) -> AuditEvent | None:
    """Append what the transaction queued, now, rather than at commit. Returns the last event
    appended (what a caller that must know its own event's `seq` before commit asks for), not
    attached to the session."""
    last = _append(session)
    return AuditEvent(**last) if last else None


def _append(session: Session) -> dict[str, Any] | None:
    """Take the lock, read the head once, chain each queued event onto the one before it, and
    insert them and the queued outbox rows. Returns the last event's fields."""
    pending = session.info.pop(_PENDING, None)
    marks = session.info.get(_MARKS, {})
    for savepoint in marks:  # nothing is queued now, inside any open savepoint
        marks[savepoint] = 0
    if not pending:
        return None
    lock_chain(session)
    if session.info[_CHAIN] is None:
        head = plain_rows(session, _HEAD, {}).first()
        session.info[_CHAIN] = tuple(head) if head else (0, GENESIS_HASH)
    events, rows = [], []
    for item in pending:
        if not isinstance(item, dict):
            rows.append(item)
            continue
        head_seq, head_hash = session.info[_CHAIN]
        fields = {"seq": head_seq + 1, **item, "prev_hash": head_hash}
        fields["hash"] = event_hash(fields)
        events.append(fields)
        session.info[_CHAIN] = (fields["seq"], fields["hash"])
    # Inserted in bulk on the session's connection rather than through the ORM: they are only
    # ever inserted, and its bookkeeping (the unit of work, or its bulk INSERT path) cost more
    # than the inserts. Every event carries every field, so they share one statement.
    session.flush()  # what they refer to (flags, disclosures) first
    connection = session.connection()
    if events:
        connection.execute(_insert(AuditEvent.__table__), events)
    for table, same in groupby(rows, key=lambda row: row.__table__):
        connection.execute(_insert(table), [_inserted(row) for row in same])
    return events[-1] if events else None


@lru_cache
def _insert(table: Table) -> Insert:
    """The table's INSERT, built once: built anew, its cache key is worked out on every run."""
    return table.insert()
