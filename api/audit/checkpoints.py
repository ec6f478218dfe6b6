"""Signed checkpoints: the service signs the chain head so an auditor can hold it to that head.

A checkpoint is an RS256 JWS (signed with the service key, `kid` in the JWKS) over
`{"iss", "seq", "hash", "at"}`. Anyone who kept one can later show, offline with the public
JWKS, that the log still passes through (seq, hash): nothing up to seq was rewritten and the
tail was not cut off. They are written by the delivery worker when due, on demand
(`POST /v1/audit/checkpoints`) and with every export.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlmodel import Session, select

from api.audit.models import AuditCheckpoint, AuditEvent
from api.audit.service import format_time, lock_chain
from api.auth import jwt
from api.auth.keys import KeyRing
from api.db import utcnow

# Sign at least every this many events, and at most this long after the last event.
EVERY_EVENTS = 1000
EVERY = timedelta(minutes=5)
# How often the worker even looks (a pass runs every fraction of a second).
CHECK_SECONDS = 15.0


def latest_checkpoint(session: Session, upto_seq: int | None = None) -> AuditCheckpoint | None:
    q = select(AuditCheckpoint)
    if upto_seq is not None:
        q = q.where(AuditCheckpoint.seq <= upto_seq)
    return session.exec(q.order_by(AuditCheckpoint.seq.desc()).limit(1)).first()


def head(session: Session) -> tuple[int, str] | None:
    row = session.exec(select(AuditEvent.seq, AuditEvent.hash)
                       .order_by(AuditEvent.seq.desc()).limit(1)).first()
    return (row[0], row[1]) if row else None


def checkpoint_due(session: Session, now: datetime) -> bool:
    """Due after EVERY_EVENTS new events, or once EVERY has passed with any new event."""
    current = head(session)
    if current is None:
        return False
    latest = latest_checkpoint(session)
    if latest is None:
        return True
    new_events = current[0] - latest.seq
    return new_events >= EVERY_EVENTS or (new_events > 0 and now - latest.at >= EVERY)


def write_checkpoint(session: Session, keyring: KeyRing) -> AuditCheckpoint | None:
    """Sign the current head (the caller commits); the existing one if the head is signed
    already; None for an empty log. Holds the chain lock, so the head cannot move meanwhile
    and concurrent callers do not sign the same head twice. The keyring must hold its signing
    key already: loading it takes a second connection, which on SQLite would wait for this one."""
    lock_chain(session)
    current = head(session)
    if current is None:
        return None
    latest = latest_checkpoint(session)
    if latest is not None and latest.seq == current[0]:
        return latest
    seq, chain_hash = current
    at = utcnow()
    token = keyring.sign({"iss": keyring.settings.issuer, "seq": seq, "hash": chain_hash,
                          "at": format_time(at)})
    kid, _ = jwt.read_statement(token)
    checkpoint = AuditCheckpoint(seq=seq, hash=chain_hash, at=at, signature=token, kid=kid)
    session.add(checkpoint)
    session.flush()
    return checkpoint


def checkpoint_out(cp: AuditCheckpoint) -> dict:
    """The public form: what `GET .../latest` returns and an export's last line carries."""
    return {"seq": cp.seq, "hash": cp.hash, "at": format_time(cp.at), "kid": cp.kid,
            "signature": cp.signature}


class Checkpointer:
    """Called on every delivery worker pass; looks every CHECK_SECONDS and signs when due."""

    def __init__(self, session_factory: Callable[[], Session], keyring: KeyRing,
                 check_seconds: float = CHECK_SECONDS):
        self.session_factory = session_factory
        self.keyring = keyring
        self.check_seconds = check_seconds
        self._next_check = float("-inf")
        self._key_loaded = False

    def run_once(self) -> AuditCheckpoint | None:
        if time.monotonic() < self._next_check:
            return None
        self._next_check = time.monotonic() + self.check_seconds
        if not self._key_loaded:  # before any transaction: see write_checkpoint
            self.keyring.ensure_signing_key()
            self._key_loaded = True
        self.keyring.reload_if_stale()  # after a rotation elsewhere, sign with the new key
        with self.session_factory() as session:
            if not checkpoint_due(session, utcnow()):
                return None
            checkpoint = write_checkpoint(session, self.keyring)
            session.commit()
            return checkpoint
