"""`python -m bench --quick` runs every benchmark end to end and writes the results file with
its summary of the targets. Numbers are not checked: benchmarks report, tests never time."""

from __future__ import annotations

import subprocess
import sys

from api.settings import REPO_ROOT

SECTIONS = ["Publish throughput (issue 10)", "Publish → webhook received at a steady rate",
            "Fan-out (issue 3)", "Audit log: verification and CSV export (issue 5)",
            "Overdue sweep (issue 4)", "Child view (issue 6)"]
TARGETS = ["Publish throughput vs bare INSERT endpoint",
           "Child view p99 vs primary-key SELECT endpoint p99 (same stack, over loopback)",
           "Child view p99 vs primary-key SELECT p99 in-process (no HTTP)",
           "Offline audit verification vs raw SHA-256"]


def test_quick_benchmark_run_writes_summary_and_every_section(db_kind, tmp_path):
    results = tmp_path / "RESULTS.md"
    committed = REPO_ROOT / "bench" / "RESULTS.md"
    committed_before = committed.read_bytes() if committed.exists() else None
    out = subprocess.run([sys.executable, "-m", "bench", "--quick", "--db", db_kind,
                          "--output", str(results)],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = results.read_text()
    summary = text.split("## Summary: the targets")[1].split("\n## ")[0]
    for target in TARGETS:
        assert f"| {target} |" in summary, summary
    for target in TARGETS:  # each target read from its benchmark's table on this database
        row = next(line for line in summary.splitlines()
                   if line.startswith(f"| {target} | {db_kind} |"))
        assert row.endswith(("| **met** |", "| **not met** |")), row
    for section in SECTIONS:
        assert f"\n## {section}" in text, section
    assert "| PostgreSQL |" in text and "| CPU |" in text
    assert (committed.read_bytes() if committed.exists() else None) == committed_before
