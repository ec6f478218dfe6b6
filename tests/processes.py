"""Real `flagshare` processes on loopback for end-to-end tests."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

FLAGSHARE = str(Path(sys.executable).parent / "flagshare")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([FLAGSHARE, *args], env=env, capture_output=True, text=True,
                          timeout=120)


class Server:
    """A `flagshare serve` process, and CLI calls against the same database."""

    def __init__(self, env: dict, port: int, process: subprocess.Popen, tmp: Path):
        self.env, self.port, self.process, self.tmp = env, port, process, tmp
        self.url = f"http://127.0.0.1:{port}"
        self.secrets: dict[str, str] = {}

    def add_agency(self, agency_id: str, kind: str, area: str) -> str:
        out = run_cli(self.env, "agencies", "add", "--id", agency_id, "--name", agency_id,
                      "--kind", kind, "--area", area)
        assert out.returncode == 0, out.stderr
        self.secrets[agency_id] = re.search(r"client_secret: (\S+)", out.stdout).group(1)
        return self.secrets[agency_id]

    def token(self, client: httpx.Client, agency_id: str) -> dict[str, str]:
        r = client.post("/v1/oauth/token", data={
            "grant_type": "client_credentials", "client_id": agency_id,
            "client_secret": self.secrets[agency_id]})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def start_worker(self, name: str) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "w")
        return subprocess.Popen([FLAGSHARE, "worker"], env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, cwd=self.tmp,
                                start_new_session=True)


@contextmanager
def running_server(database_url: str, tmp: Path, **env_extra: str):
    env = {**os.environ, "FLAGSHARE_DATABASE_URL": database_url,
           "FLAGSHARE_ENVIRONMENT": "development", **env_extra}
    port = free_port()
    log_path = tmp / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([FLAGSHARE, "serve", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
        server = Server(env, port, proc, tmp)
        try:
            _wait_ready(server, log_path)
            yield server
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        process.wait(timeout=20)


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def _wait_ready(srv: Server, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if srv.process.poll() is not None:
            pytest.fail(f"server exited early:\n{log.read_text()}")
        try:
            if httpx.get(srv.url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"server did not become ready:\n{log.read_text()}")
