"""Engine and session: SQLite embedded by default, PostgreSQL when scaled out."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, TypeVar

import anyio
from fastapi import Request
from sqlalchemy import Column, DateTime, Engine, Executable, Result, TypeDecorator, event
from sqlalchemy.exc import OperationalError
from sqlmodel import Field, Session, create_engine

from api.settings import get_settings


SQLITE_BUSY_SECONDS = 30  # how long a writer waits for another before giving up


def make_engine(url: str) -> Engine:
    # hide_parameters: a database error's text (logged) never carries the values of a query,
    # which may be a child's details or a flag's content. pool_pre_ping (a round trip at each
    # checkout) finds connections a restarted PostgreSQL dropped; a SQLite file has no server
    # to lose, so its connections are not pinged.
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_SECONDS,
                               "factory": _queued_writer_connection()},
            hide_parameters=True,
        )
        _serialise_sqlite_writes(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10,
                         hide_parameters=True)


def _queued_writer_connection() -> type[sqlite3.Connection]:
    """A connection class whose transactions queue on one lock shared by the engine's
    connections, taken before BEGIN IMMEDIATE and released at commit or rollback.

    SQLite's own wait for its write lock polls with sleeps of up to 100 ms, so under load the
    lock sat free while every waiter slept; threads of one process now take it in turn as soon
    as it is free. Other processes on the same file still wait through SQLite's busy timeout.
    """
    write_lock = threading.Lock()  # a Lock, not an RLock: a session may commit on another thread

    class QueuedWriterConnection(sqlite3.Connection):
        holding = False

        def wait_for_turn(self) -> None:
            if not write_lock.acquire(timeout=SQLITE_BUSY_SECONDS):
                raise OperationalError("BEGIN IMMEDIATE", None,
                                       sqlite3.OperationalError("database is locked"))
            self.holding = True

        def end_turn(self) -> None:
            if self.holding:
                self.holding = False
                write_lock.release()

        # However the transaction ends, the next writer's turn comes.
        commit = _then_end_turn(sqlite3.Connection.commit)
        rollback = _then_end_turn(sqlite3.Connection.rollback)
        close = _then_end_turn(sqlite3.Connection.close)

    return QueuedWriterConnection


def _then_end_turn(end_transaction):
    def ended(self) -> None:
        try:
            end_transaction(self)
        finally:
            self.end_turn()
    return ended


def _serialise_sqlite_writes(engine: Engine) -> None:
    """SQLite: WAL, foreign keys, and BEGIN IMMEDIATE so read-then-write never deadlocks.

    pysqlite's own transaction handling is turned off so that every transaction takes the
    write lock up front; this is what keeps the audit hash chain linear on SQLite.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        queued = conn.connection.dbapi_connection
        queued.wait_for_turn()
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            queued.end_turn()
            raise


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings().database_url)


async def get_session(request: Request) -> AsyncIterator[Session]:
    """FastAPI dependency: one session per request; writers commit explicitly.

    Opening a session does no I/O, so it happens on the event loop instead of costing a hand-off
    to the thread pool. So does closing one whose work was committed (it holds no connection).
    Closing one still in a transaction gives the connection back (a rollback), so it runs in a
    thread, shielded from cancellation and outside the pool's limit, as FastAPI closes a `def`
    dependency: it must never wait behind requests that are waiting for a connection.
    """
    session = request.app.state.session_factory()
    try:
        yield session
    finally:
        if not session.in_transaction():
            session.close()
        else:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(session.close, limiter=anyio.CapacityLimiter(1))


T = TypeVar("T")


def get_locked(session: Session, model: type[T], key: Any) -> T | None:
    """The row by primary key, locked until commit and read afresh even if the session holds
    it: of two requests changing it at once, the second waits, then sees what the first did.
    FOR NO KEY UPDATE on PostgreSQL, so rows referring to it can still be written; SQLite
    serialises writers already."""
    return session.get(model, key, with_for_update={"key_share": True}, populate_existing=True)


def plain_rows(session: Session, statement: Executable, params: dict[str, Any]) -> Result:
    """Run a column-only SELECT (built once, with bind parameters) on the session's connection.

    The ORM's execution layer costs more than such a read: about 30 µs a statement on SQLite on
    the benchmark machine, paid some twenty times on every view of a child. The rows are the
    same; pending changes are flushed first, as the ORM's autoflush would.
    """
    session.flush()
    return session.connection().execute(statement, params)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on both SQLite (which stores none) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime stored")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def timestamp_column(nullable: bool = False, index: bool = False) -> Any:
    return Field(
        default_factory=utcnow if not nullable else None,
        sa_column=Column(UTCDateTime(), nullable=nullable, index=index),
    )


def new_id() -> str:
    return str(uuid.uuid4())
