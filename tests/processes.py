"""Real `flagshare` processes on loopback for end-to-end tests."""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import GENEROUS_RATE_LIMITS
from tests.factories import NHS, relationship_body

FLAGSHARE = str(Path(sys.executable).parent / "flagshare")
USER_PASSWORD = "a-long-password-for-e2e-users"  # every person `Server.add_user` adds


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

    def add_user(self, username: str, role: str, agency_id: str | None = None) -> None:
        """A person held by the service (`flagshare users add`), with USER_PASSWORD."""
        out = run_cli(self.env, "users", "add", "--username", username, "--password",
                      USER_PASSWORD, "--role", role,
                      *(("--agency", agency_id) if agency_id else ()))
        assert out.returncode == 0, out.stderr

    @staticmethod
    def user_token(client: httpx.Client, username: str) -> dict[str, str]:
        """A bearer header for a person added by `add_user` (password grant)."""
        r = client.post("/v1/oauth/token", data={
            "grant_type": "password", "username": username, "password": USER_PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def start_worker(self, name: str) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "w")
        return subprocess.Popen([FLAGSHARE, "worker"], env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, cwd=self.tmp,
                                start_new_session=True)


@contextmanager
def running_server(database_url: str, tmp: Path, *serve_args: str, **env_extra: str):
    env = {**os.environ, "FLAGSHARE_DATABASE_URL": database_url,
           "FLAGSHARE_ENVIRONMENT": "development",
           # load and fault tests drive thousands of requests from one client
           **{f"FLAGSHARE_{name.upper()}": str(value)
              for name, value in GENEROUS_RATE_LIMITS.items()},
           **env_extra}
    port = free_port()
    log_path = tmp / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([FLAGSHARE, "serve", "--host", "127.0.0.1", "--port", str(port),
                                 *serve_args],
                                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
        server = Server(env, port, proc, tmp)
        try:
            _wait_ready(server, log_path)
            yield server
        finally:
            proc.terminate()
            proc.wait(timeout=20)


@dataclass
class Topology:
    """The scaled-out deployment: API processes and `flagshare worker` processes, one database."""

    servers: list[Server]
    workers: list[subprocess.Popen] = field(default_factory=list)

    def start_worker(self) -> subprocess.Popen:
        worker = self.servers[0].start_worker(f"worker-{len(self.workers) + 1}")
        self.workers.append(worker)
        return worker


@contextmanager
def running_topology(database_url: str, tmp: Path, apis: int = 2, workers: int = 2,
                     **env_extra: str):
    """`apis` `flagshare serve` processes (embedded worker off) and `workers` workers."""
    env = {"FLAGSHARE_EMBEDDED_WORKER": "false", **env_extra}
    with ExitStack() as stack:
        servers = []
        for n in range(1, apis + 1):
            (tmp / f"api-{n}").mkdir()
            servers.append(stack.enter_context(running_server(database_url, tmp / f"api-{n}",
                                                              **env)))
        for srv in servers[1:]:
            srv.secrets = servers[0].secrets  # one registry: secrets added via any process
        topology = Topology(servers)
        try:
            for _ in range(workers):
                topology.start_worker()
            yield topology
        finally:
            for worker in topology.workers:
                stop(worker)


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own on a free loopback port, so it can be restarted
    (the shared server must never be). Run as the `postgres` OS user when the test is root."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
        self.bin = Path(found[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="flagshare-pg-"))
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _command(self, *args: str) -> list[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command

    def _run(self, *args: str) -> None:
        out = subprocess.run(self._command(*args), capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"{args[0]} failed: {out.stdout}{out.stderr}"

    def init(self) -> None:
        self._run("initdb", "-D", str(self.dir / "data"), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                   f"-c fsync=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "server.log"),
                  "-o", options, "-w", "start")

    def crash(self) -> None:
        """Stop at once, as on a power cut: no checkpoint, recovery on the next start."""
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")

    def cleanup(self) -> None:
        subprocess.run(self._command("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate",
                                     "-w", "stop"), capture_output=True, timeout=120)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def private_postgres():
    cluster = PrivatePostgres()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()


def police_and_school(server: Server, receiver_url: str, police: str, school: str,
                      area: str = "E08000025") -> dict[str, dict[str, str]]:
    """Police who publish and a school that works with four children and takes webhooks at
    `receiver_url`; returns each agency's bearer header."""
    server.add_agency(police, "police", area)
    server.add_agency(school, "education", area)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        tokens = {police: server.token(http, police), school: server.token(http, school)}
        r = http.post("/v1/subscriptions", headers=tokens[school],
                      json={"delivery": {"mode": "webhook", "url": receiver_url}})
        assert r.status_code == 201, r.text
        for nhs in NHS[:4]:
            r = http.post("/v1/relationships", json=relationship_body("school", nhs),
                          headers=tokens[school])
            assert r.status_code == 201, r.text
    return tokens


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
