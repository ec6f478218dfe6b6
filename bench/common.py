"""Shared helpers for benchmarks: databases, percentiles, the results table."""

from __future__ import annotations

import os
import platform
import statistics
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

RESULTS = Path(__file__).parent / "RESULTS.md"
PG_ADMIN_URL = os.environ.get(
    "FLAGSHARE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@contextmanager
def database(kind: str, tmp: Path):
    if kind == "sqlite":
        yield f"sqlite:///{tmp / f'bench-{uuid.uuid4().hex[:8]}.db'}"
        return
    name = f"flagshare_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = :n").bindparams(n=name))
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def write_section(title: str, lines: list[str]) -> None:
    """Replace (or add) one benchmark's section in RESULTS.md, keeping the others."""
    header = (f"# flagshare benchmarks\n\nEach figure sits beside a baseline measured in the same "
              f"run on the same machine; ratios are what to compare across machines.\n")
    text = RESULTS.read_text() if RESULTS.exists() else header
    marker = f"\n## {title}\n"
    body = (f"{marker}\n_{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
            f"{platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}_\n\n"
            + "\n".join(lines) + "\n")
    if marker in text:
        start = text.index(marker)
        nxt = text.find("\n## ", start + len(marker))
        text = text[:start] + body + (text[nxt:] if nxt != -1 else "")
    else:
        text = text.rstrip("\n") + "\n" + body
    RESULTS.write_text(text)
