"""Run every benchmark on each database and write one results file: the machine, a summary of
the three targets (figure, baseline measured in the same run, ratio, met or not), then each
benchmark's own section.

    python -m bench [--quick] [--db sqlite postgresql] [--output bench/RESULTS.md]

Each benchmark runs as its own process (`python -m bench.X`), so one's memory and threads do
not weigh on the next, and writes its section into the file named by FLAGSHARE_BENCH_RESULTS.
`--quick` uses smoke-test sizes: the numbers
then say that everything runs, not how fast.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

from bench.common import PG_ADMIN_URL, RESULTS_ENV

REPO = Path(__file__).resolve().parent.parent
# Kept by hand: each change made to meet a target and what it bought, measured before/after.
WHAT_CHANGED = REPO / "bench" / "what-changed.md"

# Benchmark module -> (arguments for the full run, for --quick); "DB" stands for the databases.
BENCHMARKS = {
    "publish": (["--seconds", "30", "--connections", "8", "--db", "DB"],
                ["--seconds", "3", "--connections", "4", "--db", "DB"]),
    # 10 s at 100/s is 1,000 flags and 5,000 deliveries: enough for a p99, and a service that
    # falls behind still finishes within the drain time. 5/s: a rate it sustains.
    "webhook_latency": (["--rate", "100", "5", "--seconds", "10", "--db", "DB"],
                        ["--rate", "10", "--seconds", "2", "--db", "DB"]),
    "fanout": (["--flags", "200", "--db", "DB"], ["--flags", "5", "--db", "DB"]),
    "audit_verify": (["--events", "100000", "--db", "DB"], ["--events", "2000", "--db", "DB"]),
    # The sweep reads 500 due transfers a pass and 1 in 100 is due: at least 50,000 rows.
    "sweep": (["--rows", "1000000", "--db", "DB"], ["--rows", "60000", "--db", "DB"]),
    "child_view": (["--flags", "1000000", "--samples", "2000", "--db", "DB"],
                   ["--flags", "10000", "--samples", "40", "--db", "DB"]),
}


@dataclass
class Target:
    """One of the issue's targets: a figure over a baseline, read from a benchmark's table."""

    name: str
    section: str  # the benchmark's section title in the results file
    figure: str  # column holding the figure
    baseline: str  # column holding the baseline
    pick: int  # for "a / b" cells: which of the values (0 = p50, 1 = p99)
    bound: float  # the ratio figure / baseline must be at least (or, if `at_most`, at most)
    at_most: bool
    ratio: str | None = None  # the table's own ratio column (unrounded figures), if it has one

    def row(self, table: list[dict[str, str]]) -> list[list[str]]:
        rows = []
        for cells in table:
            figure_text = cells[self.figure].split(" / ")[self.pick]
            baseline_text = cells[self.baseline].split(" / ")[self.pick]
            ratio = (number(cells[self.ratio]) / 100 if self.ratio
                     else number(figure_text) / number(baseline_text))
            met = ratio <= self.bound if self.at_most else ratio >= self.bound
            shown = f"{ratio:.1f}×" if self.at_most else f"{ratio:.1%}"
            goal = f"≤ {self.bound:g}×" if self.at_most else f"≥ {self.bound:.0%}"
            rows.append([self.name, cells["db"], figure_text.split(" (")[0],
                         baseline_text.split(" (")[0], shown, goal,
                         "**met**" if met else "**not met**"])
        return rows


TARGETS = [
    Target("Publish throughput vs bare INSERT endpoint", "Publish throughput (issue 10)",
           "publish", "bare INSERT", 0, 0.5, at_most=False, ratio="ratio"),
    Target("Child view p99 vs primary-key SELECT endpoint p99 (same stack, over loopback)",
           "Child view (issue 6)", "child view p50 / p99", "bare endpoint PK SELECT p50 / p99", 1,
           3.0, at_most=True),
    Target("Child view p99 vs primary-key SELECT p99 in-process (no HTTP)",
           "Child view (issue 6)", "child view p50 / p99", "in-process PK SELECT p50 / p99", 1,
           3.0, at_most=True),
    Target("Offline audit verification vs raw SHA-256", "Audit log: verification and CSV "
           "export (issue 5)", "offline verify", "baseline: SHA-256 per event", 0, 0.25,
           at_most=False),
]


def number(text: str) -> float:
    """The first number in a cell such as `1,234.5 ms` or `12 flags/s`."""
    return float(re.search(r"[\d,]*\.?\d+", text).group().replace(",", ""))


def first_table(text: str, section: str) -> list[dict[str, str]]:
    """The first markdown table under `## section`, as one dict per row keyed by header."""
    marker = f"\n## {section}\n"
    if marker not in text:
        return []
    body = text.split(marker, 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in body.splitlines():
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            break  # the end of the first table
    if len(rows) < 3:
        return []
    split = lambda line: [c.strip() for c in line.strip("|").split("|")]  # noqa: E731
    header = split(rows[0])
    return [dict(zip(header, split(line))) for line in rows[2:]]


def summary(text: str, failed: dict[str, int]) -> list[str]:
    lines = ["## Summary: the targets", "",
             "| target | db | figure | baseline (same run) | ratio | target | result |",
             "|---|---|---|---|---|---|---|"]
    for target in TARGETS:
        try:
            rows = target.row(first_table(text, target.section))
        except (KeyError, IndexError, AttributeError, ZeroDivisionError) as exc:
            rows = [[target.name, "", "", "", "", "", f"not read from its table ({exc!r})"]]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        if not rows:
            lines.append(f"| {target.name} | | | | | | not measured in this run |")
    if failed:
        lines += ["", "Benchmarks that failed (their sections are missing or stale): "
                  + ", ".join(f"`{name}` (exit {code})" for name, code in failed.items())]
    return lines


def benchmark_sections(text: str) -> str:
    """The benchmarks' own sections of a results file, without what this runner writes around
    them (header, summary, what changed), which it writes afresh."""
    ours = ("Summary: the targets", WHAT_CHANGED.read_text().split("\n", 1)[0].lstrip("# "))
    parts = text.split("\n## ")[1:]
    return "".join("\n## " + part for part in parts if not part.startswith(ours))


def machine(dbs: list[str], quick: bool) -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    cpu = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    mem_kb = int(re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text()).group(1))
    postgres = "not used"
    if "postgresql" in dbs:
        engine = sa.create_engine(PG_ADMIN_URL)
        with engine.connect() as conn:
            postgres = conn.execute(sa.text("SHOW server_version")).scalar()
        engine.dispose()
    return [
        "# flagshare benchmarks", "",
        "Each figure sits beside a baseline measured in the same run on the same machine; "
        "ratios are what to compare across machines. Written by `python -m bench"
        + (" --quick" if quick else "") + "` (`scripts/bench`).", "",
        "| | |", "|---|---|",
        f"| date | {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC |",
        f"| machine | {socket.gethostname()} |",
        f"| CPU | {cpu.group(1) if cpu else platform.processor()}, {os.cpu_count()} cores |",
        f"| RAM | {mem_kb / 1024 / 1024:.1f} GiB |",
        f"| load average at start (1, 5, 15 min) | "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())} |",
        f"| Python | {platform.python_version()} |",
        f"| SQLite | {sqlite3.sqlite_version} |",
        f"| PostgreSQL | {postgres} |",
        f"| sizes | {'--quick (smoke test: numbers not meaningful)' if quick else 'full'} |",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes")
    parser.add_argument("--db", nargs="+", choices=["sqlite", "postgresql"],
                        default=["sqlite", "postgresql"])
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "RESULTS.md")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS),
                        help="run only these benchmarks, keeping the others' sections")
    args = parser.parse_args(argv)
    output = args.output.resolve()
    header = machine(args.db, args.quick)
    output.parent.mkdir(parents=True, exist_ok=True)
    if set(args.only) == set(BENCHMARKS):
        output.unlink(missing_ok=True)
    env = {**os.environ, RESULTS_ENV: str(output)}
    failed: dict[str, int] = {}
    for name in args.only:
        full, quick = BENCHMARKS[name]
        command = [sys.executable, "-m", f"bench.{name}"]
        for arg in quick if args.quick else full:
            command += args.db if arg == "DB" else [arg]
        print(f"--- {' '.join(command[1:])}", flush=True)
        started = time.monotonic()
        code = subprocess.run(command, cwd=REPO, env=env).returncode
        print(f"--- {name}: exit {code} after {time.monotonic() - started:,.0f} s", flush=True)
        if code:
            failed[name] = code
    sections = benchmark_sections(output.read_text() if output.exists() else "")
    text = ("\n".join(header) + "\n\n" + "\n".join(summary(sections, failed)) + "\n"
            + sections.rstrip("\n") + "\n\n" + WHAT_CHANGED.read_text())
    output.write_text(text)
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
