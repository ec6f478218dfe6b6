"""Load test: a steady request rate for several minutes against the scaled-out topology (two
`flagshare serve` processes, two `flagshare worker` processes, a loopback webhook receiver),
driven by locust (bench/locustfile.py). Loopback only; it stops by itself.

Reports into bench/LOAD.md: the error rate (must be 0), latency percentiles per interval, and
the API processes' resident memory over time.

    python -m bench.load [--minutes 5] [--rate 20] [--users 20] [--db postgresql|sqlite]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

from bench.common import database, pct
from tests.processes import police_and_school, running_topology
from tests.receiver import Receiver

HERE = Path(__file__).parent
WORKER_ENV = {"FLAGSHARE_WORKER_POLL_SECONDS": "0.2"}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class MemorySampler(threading.Thread):
    def __init__(self, pids: list[int], every: float):
        super().__init__(daemon=True)
        self.pids, self.every = pids, every
        self.samples: list[tuple[float, list[float]]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.samples.append((time.time(), [rss_mib(p) for p in self.pids]))
            self.done.wait(self.every)


def run(args, tmp: Path) -> dict:
    seconds = max(5, round(args.minutes * 60))
    with ExitStack() as stack:
        url = stack.enter_context(database(args.db, tmp))
        topology = stack.enter_context(running_topology(url, tmp, **WORKER_ENV))
        rx = stack.enter_context(Receiver())
        tokens = police_and_school(topology.servers[0], rx.url, "L-POLICE", "L-SCHOOL")
        pids = [s.process.pid for s in topology.servers]
        sampler = MemorySampler(pids, every=max(1.0, seconds / 30))
        samples_file = tmp / "samples.json"
        env = {**os.environ, "FLAGSHARE_LOAD_HOSTS": ",".join(s.url for s in topology.servers),
               "FLAGSHARE_LOAD_TOKENS": json.dumps(tokens),
               "FLAGSHARE_LOAD_USER_RATE": str(args.rate / args.users),
               "FLAGSHARE_LOAD_SAMPLES": str(samples_file),
               "PYTHONPATH": str(HERE.parent)}
        sampler.start()
        started = time.time()
        locust = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless",
             "--users", str(args.users), "--spawn-rate", str(args.users),
             "--run-time", f"{seconds}s", "--stop-timeout", "10", "--only-summary",
             "--loglevel", "WARNING"],
            env=env, cwd=tmp, capture_output=True, text=True, timeout=seconds + 120)
        sampler.done.set()
        sampler.join()
        if not samples_file.exists():
            sys.exit(f"locust did not run:\n{locust.stdout}\n{locust.stderr}")
        requests = json.loads(samples_file.read_text())
        deliveries = len(set(rx.ids()))
    return {"seconds": seconds, "started": started, "requests": requests,
            "memory": sampler.samples, "deliveries": deliveries,
            "locust_exit": locust.returncode, "locust_summary": locust.stdout[-3000:]}


def report(args, result: dict) -> list[str]:
    requests = result["requests"]
    started = min((at for at, _, _ in requests), default=result["started"])  # locust is up
    window = max((at for at, _, _ in requests), default=started) - started
    failures = sum(1 for _, _, ok in requests if not ok)
    rate = failures / len(requests) if requests else float("nan")
    bucket = 60 if result["seconds"] >= 180 else max(1, result["seconds"] // 6)
    lines = [
        "# Load test\n",
        f"_{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{os.cpu_count()} CPUs shared with other work, Python {platform.python_version()}, "
        f"database {args.db}_\n",
        f"`python -m bench.load --minutes {args.minutes:g} --rate {args.rate:g} "
        f"--users {args.users} --db {args.db}`: locust, {args.users} users at a constant "
        f"{args.rate:g} requests/s in all against two `flagshare serve` processes (embedded "
        f"worker off), two `flagshare worker` processes and a loopback webhook receiver. Mix "
        f"per user: publish a flag (2), read a recent flag as the school (3), read the "
        f"school's feed (1); one token per agency, fetched before the run.\n",
        f"- requests: {len(requests)} in {window:.0f} s from the first to the last "
        f"({len(requests) / max(window, 1):.1f}/s)",
        f"- **errors: {failures} ({rate:.2%})**",
        f"- webhook deliveries received meanwhile: {result['deliveries']}\n",
        f"## Latency per {bucket} s (ms)\n",
        "| from (s) | requests | p50 | p95 | p99 | max |", "|---|---|---|---|---|---|"]
    by_bucket: dict[int, list[float]] = {}
    for at, ms, _ in requests:
        by_bucket.setdefault(int((at - started) // bucket), []).append(ms)
    for b in sorted(by_bucket):
        v = by_bucket[b]
        lines.append(f"| {b * bucket} | {len(v)} | {pct(v, 50):.0f} | {pct(v, 95):.0f} | "
                     f"{pct(v, 99):.0f} | {max(v):.0f} |")
    lines += ["", "## API process memory (resident, MiB; time from the first request)\n",
              "| at (s) | api-1 | api-2 |",
              "|---|---|---|"]
    for at, values in result["memory"]:
        lines.append(f"| {at - started:.0f} | " + " | ".join(f"{v:.1f}" for v in values) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0,
                        help="run time; at most 14 (the tokens' lifetime is 15)")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second in all")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--report", type=Path, default=HERE / "LOAD.md")
    args = parser.parse_args(argv)
    if not 0 < args.minutes <= 14:
        parser.error("--minutes must be above 0 and at most 14")
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args, Path(tmp))
    args.report.write_text("\n".join(report(args, result)) + "\n")
    failures = sum(1 for _, _, ok in result["requests"] if not ok)
    print(f"{len(result['requests'])} requests, {failures} errors; report in {args.report}")
    return 0 if failures == 0 and result["requests"] else 1


if __name__ == "__main__":
    sys.exit(main())
