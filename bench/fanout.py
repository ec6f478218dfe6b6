"""Fan-out: publish flags that go to 5 webhook subscribers; deliveries/s and latency.

Baseline, same run: the same receivers fed directly by one bare httpx client posting the same
signed bodies (the ceiling for one sending process, with no database in between).

    python -m bench.fanout [--flags 200] [--db sqlite postgresql]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
from standardwebhooks.webhooks import Webhook

from bench.common import RECIPIENTS, database, median, pct, sharing_world, write_section
from tests.processes import running_server, stop, wait_until
from tests.receiver import Receiver


def run(kind: str, flags: int, tmp: Path) -> list[str]:
    with ExitStack() as stack:
        url = stack.enter_context(database(kind, tmp))
        env = {"FLAGSHARE_EMBEDDED_WORKER": "true" if kind == "sqlite" else "false"}
        server = stack.enter_context(running_server(url, tmp, **env))
        worker = None if kind == "sqlite" else server.start_worker("bench-worker")
        http = stack.enter_context(httpx.Client(base_url=server.url, timeout=60))
        world = sharing_world(stack, server, http, children=1, webhooks=True)
        receivers = world.receivers
        body = world.flag_body(0)
        published_at, publish_latency = {}, []
        start = time.monotonic()
        for _ in range(flags):
            t0 = time.monotonic()
            r = http.post("/v1/flags", json=body, headers=world.publisher)
            publish_latency.append(time.monotonic() - t0)
            r.raise_for_status()
            published_at[r.json()["id"]] = t0
        expected = flags * len(RECIPIENTS)
        total = lambda: sum(len(rx.requests) for rx in receivers.values())  # noqa: E731
        wait_until(lambda: total() >= expected, 600, "all deliveries")
        elapsed = max(r.at for rx in receivers.values() for r in rx.requests) - start
        latencies = [r.at - published_at[json.loads(r.body)["data"]["flag"]["id"]]
                     for rx in receivers.values() for r in rx.requests]
        if worker:
            stop(worker)
        sample = receivers["B-CSC"].requests[0].body.decode()
        baseline = bare_send_rate(list(receivers.values()), sample, expected)
    rate = expected / elapsed
    return [
        f"| {kind} | {flags} flags × {len(RECIPIENTS)} subscribers | {rate:,.0f} deliveries/s "
        f"| {baseline:,.0f} deliveries/s | {rate / baseline:.1%} | "
        f"{median(latencies) * 1000:,.0f} / {pct(latencies, 99) * 1000:,.0f} ms | "
        f"{median(publish_latency) * 1000:,.1f} / {pct(publish_latency, 99) * 1000:,.1f} ms |"
    ]


def bare_send_rate(receivers: list[Receiver], body: str, count: int) -> float:
    """One httpx client signing and posting the same body round-robin, no database."""
    hook = Webhook("whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    from datetime import datetime, timezone

    with httpx.Client(timeout=30) as client:
        start = time.monotonic()
        for i in range(count):
            now = datetime.now(timezone.utc)
            headers = {"webhook-id": f"msg_{i}", "webhook-timestamp": str(int(now.timestamp())),
                       "webhook-signature": hook.sign(f"msg_{i}", now, body),
                       "content-type": "application/json"}
            client.post(receivers[i % len(receivers)].url, content=body.encode(),
                        headers=headers).raise_for_status()
        return count / (time.monotonic() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--flags", type=int, default=200)
    parser.add_argument("--db", nargs="+", default=["sqlite", "postgresql"])
    args = parser.parse_args()
    rows = []
    for kind in args.db:
        with tempfile.TemporaryDirectory() as tmp:
            rows += run(kind, args.flags, Path(tmp))
    lines = [
        "Publish flags (domestic abuse incident naming 3 related people, policy gives 5 "
        "recipients, each with a webhook "
        "subscription to its own loopback receiver). SQLite: embedded worker in `serve`; "
        "PostgreSQL: one separate `flagshare worker`. Baseline: one bare httpx client posting "
        "the same signed body to the same receivers.",
        "",
        "| db | load | fan-out | baseline (bare send) | ratio | publish→received p50 / p99 "
        "| publish request p50 / p99 |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]
    write_section("Fan-out (issue 3)", lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
