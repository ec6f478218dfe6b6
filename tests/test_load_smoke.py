"""The load test script runs: a few seconds of bench/load.py on the two-API-process topology.
The real run (several minutes) writes bench/LOAD.md; see README, "Scale-out"."""

from __future__ import annotations

import subprocess
import sys

from api.settings import REPO_ROOT


def test_load_script_runs_and_reports_zero_errors(db_kind, tmp_path):
    report = tmp_path / "LOAD.md"
    out = subprocess.run([sys.executable, "-m", "bench.load", "--minutes", "0.1", "--rate", "10",
                          "--users", "4", "--db", db_kind, "--report", str(report)],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    text = report.read_text()
    assert "**errors: 0 (0.00%)**" in text
    latency_rows = text.split("## Latency")[1].split("## API")[0].count("\n| ") - 1
    memory_rows = text.split("## API process memory")[1].count("\n| ") - 1
    assert latency_rows >= 1 and memory_rows >= 2, text
