"""Publish throughput and latency: `POST /v1/flags` on a real `flagshare serve` beside the bare
INSERT endpoint (bench/bare_app.py) on the same database, both driven by the same closed-loop
load generator over the same number of loopback connections, in the same run. Also the serve
process's peak RSS under that load, and a primary-key SELECT baseline (used by the child view
target).

    python -m bench.publish [--seconds 20] [--connections 8] [--db sqlite postgresql]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import sqlalchemy as sa

from api.db import make_engine
from bench.bare_app import TABLE
from bench.common import database, pct, proc_status_mb, sharing_world, write_section
from bench.loadgen import Outcome, closed_loop, request_bytes
from tests.processes import free_port, running_server, running_topology

CHILDREN = 20  # flags go round-robin to these children, each known to all five recipients


@contextmanager
def running_bare_app(database_url: str, tmp: Path):
    port = free_port()
    with open(tmp / "bare.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bench.bare_app", "--database-url",
                                 database_url, "--port", str(port)], stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"bare app did not start: {(tmp / 'bare.log').read_text()}")
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@contextmanager
def profiled(pid: int, seconds: float, out: Path | None):
    """py-spy samples process `pid` for `seconds` into `out` (collapsed stacks, for speedscope
    or flamegraph.pl), when `out` is given."""
    if out is None:
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
                            str(pid), "--duration", str(int(seconds)), "--rate", "100",
                            "--format", "raw", "--output", str(out), "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.wait(timeout=seconds + 30)


ROUNDS = 3  # service and baseline take turns, so a noisy neighbour weighs on both alike


def run(kind: str, seconds: float, connections: int, tmp: Path,
        profile: Path | None = None) -> dict:
    """Service and bare INSERT loads on one database of `kind`, in alternating rounds of
    `seconds / ROUNDS`, then the PK SELECT load; with `profile`, py-spy samples the serve
    process throughout the rounds."""
    with database(kind, tmp) as url, ExitStack() as stack:
        server = stack.enter_context(running_server(url, tmp, FLAGSHARE_EMBEDDED_WORKER="false"))
        http = stack.enter_context(httpx.Client(base_url=server.url, timeout=60))
        world = sharing_world(stack, server, http, CHILDREN, webhooks=False)
        bare_port = stack.enter_context(running_bare_app(url, tmp))
        bodies = [world.flag_body(child) for child in range(CHILDREN)]
        publishes = [request_bytes("POST", "/v1/flags", world.publisher, body)
                     for body in bodies]
        inserts = [request_bytes("POST", "/insert", {}, body) for body in bodies]
        pid = server.process.pid
        rss_before = proc_status_mb(pid, "VmRSS")
        service, bare = [], []
        with profiled(pid, 2 * (seconds + ROUNDS), profile):
            for _ in range(ROUNDS):
                service.append(closed_loop(server.port, publishes, connections,
                                           seconds / ROUNDS))
                bare.append(closed_loop(bare_port, inserts, connections, seconds / ROUNDS))
        rss_peak = proc_status_mb(pid, "VmHWM")
        engine = make_engine(url)
        with engine.connect() as conn:
            ids = conn.execute(sa.select(TABLE.c.id).limit(1000)).scalars().all()
        engine.dispose()
        selects = [request_bytes("GET", f"/rows/{row_id}", {}, None) for row_id in ids]
        pk = succeeded(closed_loop(bare_port, selects, connections, seconds / ROUNDS))
    return {"kind": kind, "service": succeeded(Outcome.merged(service)),
            "bare": succeeded(Outcome.merged(bare)), "pk": pk,
            "rss_before": rss_before, "rss_peak": rss_peak}


SCALE_OUT_APIS = 2


def scale_out(seconds: float, connections: int, tmp: Path) -> Outcome:
    """PostgreSQL only (SQLite serialises every writer): the same publishes spread over
    SCALE_OUT_APIS `flagshare serve` processes on one database, `connections` split between
    them, all driven at once. What concurrent requests in different processes can do side by
    side, and what the audit chain lock makes them do one after another."""
    with database("postgresql", tmp) as url, ExitStack() as stack:
        topology = stack.enter_context(running_topology(url, tmp, apis=SCALE_OUT_APIS,
                                                        workers=0))
        first = topology.servers[0]
        http = stack.enter_context(httpx.Client(base_url=first.url, timeout=60))
        world = sharing_world(stack, first, http, CHILDREN, webhooks=False)
        publishes = [request_bytes("POST", "/v1/flags", world.publisher,
                                   world.flag_body(child)) for child in range(CHILDREN)]
        outcomes: list[Outcome] = []
        loads = [threading.Thread(target=lambda port=server.port: outcomes.append(closed_loop(
            port, publishes, connections // SCALE_OUT_APIS, seconds)))
            for server in topology.servers]
        for load in loads:
            load.start()
        for load in loads:
            load.join()
    return succeeded(Outcome.merged(outcomes, side_by_side=True))


def succeeded(outcome: Outcome) -> Outcome:
    """The outcome of a load with no error responses; a benchmark of failures means nothing."""
    if outcome.errors:
        raise RuntimeError(f"error responses (status: count): {outcome.errors}")
    return outcome


def ms(outcome: Outcome) -> str:
    return (f"{pct(outcome.latencies, 50) * 1000:,.1f} / "
            f"{pct(outcome.latencies, 99) * 1000:,.1f} ms")


def section(results: list[dict], seconds: float, connections: int,
            scaled: Outcome | None = None) -> list[str]:
    lines = [
        f"Closed loop, {connections} keep-alive loopback connections, {seconds:g} s each for "
        f"service and baseline, in {ROUNDS} alternating rounds (each after 1 s of warm-up), "
        "one process each (the load generator, `bench/loadgen.py`, is a few lines "
        "of asyncio writing pre-built requests). Service: `POST /v1/flags` on `flagshare serve` "
        "(embedded worker off), a domestic abuse incident naming 3 related people (mother, her "
        f"partner as alleged perpetrator, a sibling), {CHILDREN} children in turn, each "
        "entitling 5 recipients (children's social care and MASH by area, school, GP and "
        "health visitor by relationship): token check, policy, identity, flag and version, 5 "
        "disclosures and outbox rows, audit appends, one commit. Baseline: `bench/bare_app.py`, "
        "one FastAPI endpoint doing one INSERT of the same JSON body (same uvicorn settings, "
        "same `make_engine`, same driver), then a primary-key SELECT endpoint, on the same "
        "database in the same run.",
        "",
        "| db | publish | publish p50 / p99 | bare INSERT | INSERT p50 / p99 | ratio "
        "| PK SELECT p50 / p99 "
        "| serve RSS before / peak |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        service, bare = r["service"], r["bare"]
        lines.append(
            f"| {r['kind']} | {service.rate:,.0f} flags/s | {ms(service)} "
            f"| {bare.rate:,.0f} inserts/s | {ms(bare)} | {service.rate / bare.rate:.1%} "
            f"| {ms(r['pk'])} | {r['rss_before']:,.0f} / {r['rss_peak']:,.0f} MB |")
    single = next((r["service"] for r in results if r["kind"] == "postgresql"), None)
    if scaled is not None and single is not None:
        lines += [
            "",
            f"Scale-out, PostgreSQL: the same publishes over {SCALE_OUT_APIS} `flagshare serve` "
            f"processes on one database ({connections} connections split between them, "
            f"{seconds / ROUNDS:g} s), beside the one process above.",
            "",
            "| db | API processes | publish | publish p50 / p99 | vs one process |",
            "|---|---|---|---|---|",
            f"| postgresql | {SCALE_OUT_APIS} | {scaled.rate:,.0f} flags/s | {ms(scaled)} "
            f"| {scaled.rate / single.rate:.2f}× |",
        ]
    return lines


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--db", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="write py-spy samples of the serve process, DIR/publish-<db>.txt")
    args = parser.parse_args(argv)
    results = []
    scaled = None
    for kind in args.db:
        out = args.profile / f"publish-{kind}.txt" if args.profile else None
        with tempfile.TemporaryDirectory() as tmp:
            results.append(run(kind, args.seconds, args.connections, Path(tmp), out))
    if "postgresql" in args.db:
        with tempfile.TemporaryDirectory() as tmp:
            scaled = scale_out(args.seconds / ROUNDS, args.connections, Path(tmp))
    lines = section(results, args.seconds, args.connections, scaled)
    write_section("Publish throughput (issue 10)", lines)
    print("\n".join(lines))
    return results


if __name__ == "__main__":
    main()
