"""SQLite, the embedded default: writers of one process queue for the write lock instead of
polling for it, and the queue never keeps the lock once a transaction has ended.

These run on a SQLite file of their own whichever database the suite runs on: they are about
the embedded default's engine, not about the schema.
"""

from __future__ import annotations

import sqlite3
import threading

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

import api.db
from api.db import make_engine


@pytest.fixture
def engine(tmp_path, monkeypatch):
    """An engine whose connections never wait inside SQLite: any wait is the queue's."""
    monkeypatch.setattr(api.db, "SQLITE_BUSY_SECONDS", 5)
    eng = make_engine(f"sqlite:///{tmp_path / 'writers.db'}")

    @event.listens_for(eng, "connect")
    def _no_busy_wait(dbapi_conn, _record):
        dbapi_conn.execute("PRAGMA busy_timeout=0")

    with eng.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    yield eng
    eng.dispose()


def in_thread(work) -> tuple[threading.Thread, list]:
    outcome: list = []

    def run():
        try:
            outcome.append(work())
        except Exception as exc:  # the test reads it
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def write(engine, n: int) -> list[int]:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
        return conn.execute(text("SELECT n FROM t")).scalars().all()


def test_a_second_writer_waits_for_the_first_to_commit(engine):
    holding, release = threading.Event(), threading.Event()

    def first():
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
            holding.set()
            release.wait(10)
        return "committed"

    def second():
        with engine.begin() as conn:
            seen = conn.execute(text("SELECT count(*) FROM t")).scalar_one()
            conn.execute(text("INSERT INTO t VALUES (2)"))
        return seen

    one, first_outcome = in_thread(first)
    assert holding.wait(10)
    two, second_outcome = in_thread(second)
    two.join(0.3)
    assert two.is_alive()  # queued behind the first, not refused by SQLite
    release.set()
    one.join(10)
    two.join(10)
    assert first_outcome == ["committed"]
    assert second_outcome == [1]  # began only after the first had committed


@pytest.mark.parametrize("end", ["rollback", "close", "failed statement"])
def test_the_queue_is_free_again_however_a_transaction_ends(engine, end):
    conn = engine.connect()
    conn.begin()
    if end == "rollback":
        conn.rollback()
        conn.close()
    elif end == "close":
        conn.close()  # back to the pool, rolled back on return
    else:
        with pytest.raises(OperationalError):
            conn.execute(text("INSERT INTO no_such_table VALUES (1)"))
        conn.close()
    thread, outcome = in_thread(lambda: write(engine, 2))
    thread.join(10)
    assert outcome == [[2]]


def test_a_begin_refused_by_another_process_leaves_the_queue_free(engine, tmp_path):
    outsider = sqlite3.connect(tmp_path / "writers.db", isolation_level=None)
    outsider.execute("BEGIN IMMEDIATE")  # as another process on the same file would
    with pytest.raises(OperationalError, match="locked"):
        with engine.begin():
            pass
    outsider.rollback()
    outsider.close()
    assert write(engine, 3) == [3]  # would wait out the queue's timeout if it were still held
