"""Shared helpers for benchmarks: databases, percentiles, the results table."""

from __future__ import annotations

import os
import platform
import statistics
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpx
import sqlalchemy as sa

from tests.factories import flag_body, relationship_body
from tests.processes import Server
from tests.receiver import Receiver

RESULTS_ENV = "FLAGSHARE_BENCH_RESULTS"  # another results file (the smoke test's), if set
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


def results_path() -> Path:
    """bench/RESULTS.md unless FLAGSHARE_BENCH_RESULTS names another file (inherited by the
    benchmark subprocesses of `python -m bench`)."""
    return Path(os.environ.get(RESULTS_ENV) or Path(__file__).parent / "RESULTS.md")


def write_section(title: str, lines: list[str]) -> None:
    """Replace (or add) one benchmark's section in RESULTS.md, keeping the others."""
    header = ("# flagshare benchmarks\n\nEach figure sits beside a baseline measured in the same "
              "run on the same machine; ratios are what to compare across machines.\n")
    results = results_path()
    text = results.read_text() if results.exists() else header
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
    results.write_text(text)


def nhs_numbers() -> Iterator[str]:
    """Valid NHS numbers of the 999 test range, in order (Modulus 11 check digit)."""
    for serial in range(1, 1_000_000):
        digits = f"999{serial:06d}"
        check = 11 - sum(int(d) * (10 - i) for i, d in enumerate(digits)) % 11
        if check != 10:  # 10 means no valid check digit
            yield digits + str(check % 11)


def proc_status_mb(pid: int, field: str) -> float:
    """A memory field of /proc/PID/status (VmRSS now, VmHWM the peak) in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith(field + ":"))) / 1024


# A police force in one area publishing domestic abuse incidents, which the policy gives to
# five agencies of that area: two by area, three through their relationship with the child.
AREA = "E08000025"
PUBLISHER = "B-POLICE"
RECIPIENTS = [("B-CSC", "childrens_social_care", None), ("B-MASH", "mash", None),
              ("B-SCHOOL", "education", "school"), ("B-GP", "gp", "registered_gp"),
              ("B-HV", "health_visiting", "health_visitor")]
CHILD_BIRTH_DATE = "2024-01-01"


@dataclass
class SharingWorld:
    """Agencies set up on a running server: the publisher's auth header, the children (NHS
    numbers) every recipient is entitled to hear about, and each recipient's webhook receiver
    (none unless asked for; their items then wait in the feed)."""

    publisher: dict[str, str]
    children: list[str]
    related: list[list[str]]  # per child: its mother, her partner, a sibling
    receivers: dict[str, Receiver]

    def flag_body(self, child: int) -> dict:
        """A domestic abuse incident about one child, naming three related people."""
        mother, partner, sibling = self.related[child]
        return flag_body(
            subject={"nhs_number": self.children[child], "birth_date": CHILD_BIRTH_DATE},
            related_people=[
                {"role": "parent", "nhs_number": mother,
                 "given_name": "Sarah", "family_name": "Hartley", "relationship": "mother"},
                {"role": "alleged_perpetrator", "nhs_number": partner,
                 "given_name": "Dean", "family_name": "Cole",
                 "relationship": "mother's partner"},
                {"role": "sibling", "nhs_number": sibling,
                 "given_name": "Ruby", "family_name": "Hartley", "birth_date": "2019-05-02"},
            ])


def ok(response: httpx.Response) -> httpx.Response:
    """The response, or an error that shows what the service said."""
    if response.is_error:
        raise RuntimeError(f"{response.request.method} {response.request.url.path}: "
                           f"{response.status_code} {response.text}")
    return response


def sharing_world(stack: ExitStack, server: Server, http: httpx.Client, children: int,
                  webhooks: bool) -> SharingWorld:
    server.add_agency(PUBLISHER, "police", AREA)
    receivers = {}
    numbers = nhs_numbers()
    nhs = [next(numbers) for _ in range(children)]
    related = [[next(numbers) for _ in range(3)] for _ in range(children)]
    for agency_id, agency_kind, relationship in RECIPIENTS:
        server.add_agency(agency_id, agency_kind, AREA)
        token = server.token(http, agency_id)
        if webhooks:
            receivers[agency_id] = stack.enter_context(Receiver())
            ok(http.post("/v1/subscriptions", headers=token, json={
                "delivery": {"mode": "webhook", "url": receivers[agency_id].url}}))
        if relationship:
            for child in nhs:
                ok(http.post("/v1/relationships", headers=token, json=relationship_body(
                    relationship, child, CHILD_BIRTH_DATE)))
    return SharingWorld(server.token(http, PUBLISHER), nhs, related, receivers)
