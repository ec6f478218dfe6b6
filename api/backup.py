"""A consistent, checked copy of the embedded SQLite database, taken while the service runs.

Copying the file with `cp` is not a backup: in WAL mode recent commits sit in the `-wal` file
beside it, and a copy taken mid-write can be torn. SQLite's online backup copies one
consistent snapshot while writers go on. The copy is then checked before it is kept: SQLite's
integrity check, and the audit log's hash chain held to its signed checkpoints, so a backup is
known to be whole, and its log intact, on the day it is taken rather than the day it is needed.
PostgreSQL deployments back up with PostgreSQL's own tools.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlmodel import Session, create_engine, select

from api.audit.read import verify_log
from api.audit.verify import Report
from api.auth.models import SigningKey


class BackupError(Exception):
    """The backup could not be taken, or its copy is not whole; nothing is left at the target."""


@dataclass
class Backup:
    path: Path
    size: int
    log: Report  # the copy's audit log, verified


def sqlite_path(database_url: str) -> Path:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        raise BackupError(
            "`flagshare db backup` copies the embedded SQLite database; back up PostgreSQL with "
            "its own tools (pg_dump, or continuous archiving of the write-ahead log)")
    if not url.database or url.database == ":memory:":
        raise BackupError("FLAGSHARE_DATABASE_URL names no database file")
    return Path(url.database)


def take(database_url: str, target: Path) -> Backup:
    """Copy the database to `target` (which must not exist) and verify the copy.

    The copy is written beside the target and renamed into place only once SQLite finds it
    whole, so a failed backup never leaves a file that looks like one. A copy whose audit log
    does not verify is kept, as a faithful copy of what the database holds, and the report says
    what is wrong with the log: the caller must not call it a good backup.
    """
    source = sqlite_path(database_url)
    if not source.is_file():
        raise BackupError(f"no database file at {source}")
    if target.exists():
        raise BackupError(f"{target} already exists; choose a new name")
    partial = target.with_name(target.name + ".partial")
    try:
        _copy(source, partial)
        log = _verify(partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)
    return Backup(target, target.stat().st_size, log)


def _copy(source: Path, partial: Path) -> None:
    src = sqlite3.connect(source)
    dst = sqlite3.connect(partial)
    try:
        src.backup(dst)  # one snapshot; the service's writers are not held up
        # One self-contained file: a restored copy needs no -wal beside it.
        dst.execute("PRAGMA journal_mode=DELETE")
        problems = [row[0] for row in dst.execute("PRAGMA integrity_check")]
    except sqlite3.Error as exc:
        raise BackupError(f"the copy failed: {exc}") from exc
    finally:
        dst.close()
        src.close()
    if problems != ["ok"]:
        raise BackupError("the copy is not whole: " + "; ".join(problems[:5]))


def _verify(partial: Path) -> Report:
    """The copy's own audit log, held to its checkpoints and signed with its own keys."""
    engine = create_engine(f"sqlite:///{partial}")
    try:
        def session_factory() -> Session:
            return Session(engine, expire_on_commit=False)

        with session_factory() as session:
            keys = {k.kid: k.public_jwk for k in session.exec(select(SigningKey)).all()}
        return verify_log(session_factory, keys)
    finally:
        engine.dispose()
