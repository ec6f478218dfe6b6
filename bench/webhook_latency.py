"""Publish → webhook received latency at a steady rate (default 100 flags/s), open loop.

A paced sender publishes whatever the answers do; each flag goes to 5 recipients, each
subscribed with a webhook to its own receiver on loopback. The latency of a delivery runs from
the moment its flag was due to be sent to the moment the receiver had it. SQLite: the worker
embedded in `serve`; PostgreSQL: one separate `flagshare worker`. If the service cannot keep up,
the achieved rate is what is reported.

    python -m bench.webhook_latency [--rate 100 5] [--seconds 30] [--db sqlite postgresql]

Several rates: each after the other on a fresh database. A rate the service sustains shows the
pipeline's own latency; a rate beyond it shows the queue building up.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

from bench.common import RECIPIENTS, database, pct, sharing_world, write_section
from bench.loadgen import open_loop, request_bytes
from tests.processes import running_server, stop

CHILDREN = 20
DRAIN_SECONDS = 120  # after sending stops, how long deliveries may still arrive


def run(kind: str, rate: float, seconds: float, tmp: Path) -> dict:
    with ExitStack() as stack:
        url = stack.enter_context(database(kind, tmp))
        embedded = "true" if kind == "sqlite" else "false"
        server = stack.enter_context(running_server(url, tmp,
                                                    FLAGSHARE_EMBEDDED_WORKER=embedded))
        http = stack.enter_context(httpx.Client(base_url=server.url, timeout=60))
        world = sharing_world(stack, server, http, CHILDREN, webhooks=True)
        worker = None if kind == "sqlite" else server.start_worker("bench-worker")
        try:
            requests = [request_bytes("POST", "/v1/flags", world.publisher,
                                      world.flag_body(child)) for child in range(CHILDREN)]
            sent, elapsed = open_loop(server.port, requests, rate, seconds)
            published = {json.loads(s.body)["id"]: s.due for s in sent if s.status == 201}
            expected = len(published) * len(RECIPIENTS)
            received = lambda: sum(len(rx.requests) for rx in world.receivers.values())  # noqa: E731
            deadline = time.monotonic() + DRAIN_SECONDS
            while received() < expected and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            if worker:
                stop(worker)
    arrivals = [r for rx in world.receivers.values() for r in rx.requests]
    latencies = [r.at - published[r.event["data"]["flag"]["id"]] for r in arrivals
                 if r.event["data"]["flag"]["id"] in published]
    return {"kind": kind, "rate": rate, "sent": len(sent), "published": len(published),
            "achieved": len(published) / elapsed, "expected": expected,
            "received": len(latencies), "latencies": latencies,
            "request": [s.done - s.due for s in sent if s.status == 201],
            "errors": len(sent) - len(published)}


def section(results: list[dict], seconds: float) -> list[str]:
    ms = lambda v: f"{v * 1000:,.0f} ms"  # noqa: E731
    lines = [
        f"Open loop for {seconds:g} s: a paced sender publishes domestic abuse incidents (3 "
        f"related people, {CHILDREN} children in turn) at a steady rate over up to 32 loopback "
        f"connections; each flag goes to {len(RECIPIENTS)} recipients, each subscribed with a "
        "webhook to its own receiver on loopback. Latency: from when the flag was due to be "
        "sent to when the receiver had the delivery. SQLite: the worker embedded in `serve`; "
        "PostgreSQL: one separate `flagshare worker`. No baseline: the figure is a latency at "
        "a given rate; the achieved rate is what the service sustained.",
        "",
        "| db | target rate | achieved | errors | publish request p50 / p99 "
        "| deliveries received | publish→received p50 / p99 / max |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lat = r["latencies"]
        lines.append(
            f"| {r['kind']} | {r['rate']:g} flags/s | {r['achieved']:,.1f} flags/s "
            f"| {r['errors']} | {ms(pct(r['request'], 50))} / {ms(pct(r['request'], 99))} "
            f"| {r['received']:,} of {r['expected']:,} | {ms(pct(lat, 50))} / "
            f"{ms(pct(lat, 99))} / {ms(max(lat, default=float('nan')))} |")
    return lines


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, nargs="+", default=[100])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--db", nargs="+", default=["sqlite", "postgresql"])
    args = parser.parse_args(argv)
    results = []
    for kind in args.db:
        for rate in args.rate:
            with tempfile.TemporaryDirectory() as tmp:
                results.append(run(kind, rate, args.seconds, Path(tmp)))
    lines = section(results, args.seconds)
    write_section("Publish → webhook received at a steady rate (issue 10)", lines)
    print("\n".join(lines))
    return results


if __name__ == "__main__":
    main()
