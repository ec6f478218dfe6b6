"""The sharing log under real `flagshare serve` processes: many publishes racing across two API
processes on one database still make one unbroken chain, and the exported log verifies offline
with the `flagshare audit verify` command, which needs no database or configuration."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import httpx
import pytest

from tests.conftest import fresh_database
from tests.factories import NHS, flag_body, relationship_body
from tests.processes import Server, run_cli, running_server, stop, wait_until

AREA = "E08000025"
PUBLISHES = 80
NO_CONFIG = {"FLAGSHARE_DATABASE_URL": "not-a-database", "FLAGSHARE_ENVIRONMENT": "nonsense"}


@pytest.fixture
def two_servers(db_kind, tmp_path):
    """Two API processes (each with its embedded delivery worker) on one fresh database."""
    with ExitStack() as stack:
        url = stack.enter_context(fresh_database(db_kind, tmp_path))
        servers = []
        for name in ("api-1", "api-2"):
            (tmp_path / name).mkdir()
            servers.append(stack.enter_context(running_server(url, tmp_path / name)))
        first = servers[0]
        first.add_agency("E2E-POLICE", "police", AREA)
        first.add_agency("E2E-SCHOOL", "education", AREA)
        first.add_user("e2e-auditor", "auditor")
        servers[1].secrets = first.secrets
        yield servers


def auditor(http: httpx.Client) -> dict[str, str]:
    return Server.user_token(http, "e2e-auditor")


def test_parallel_publishes_on_two_processes_make_one_unbroken_chain(two_servers, tmp_path):
    clients = [httpx.Client(base_url=s.url, timeout=60) for s in two_servers]
    try:
        school = two_servers[0].token(clients[0], "E2E-SCHOOL")
        for nhs in NHS[:4]:
            r = clients[0].post("/v1/relationships", json=relationship_body("school", nhs),
                                headers=school)
            assert r.status_code == 201, r.text
        police = [s.token(c, "E2E-POLICE") for s, c in zip(two_servers, clients)]

        def publish(i: int) -> str:
            side = i % 2
            body = flag_body(subject={"nhs_number": NHS[i % 4]},
                             summary=f"Incident {i}: police attended; the child was present.")
            r = clients[side].post("/v1/flags", json=body, headers=police[side])
            assert r.status_code == 201, r.text
            reads = clients[1 - side].get(f"/v1/flags/{r.json()['id']}", headers=school)
            assert reads.status_code == 200, reads.text
            return r.json()["id"]

        with ThreadPoolExecutor(16) as pool:
            flag_ids = list(pool.map(publish, range(PUBLISHES)))
        assert len(set(flag_ids)) == PUBLISHES

        for http in clients:  # both processes see the same intact chain
            verified = http.get("/v1/audit/verify", headers=auditor(http)).json()
            assert verified["ok"] is True and verified["first_bad_seq"] is None, verified
            assert verified["events_checked"] == verified["head_seq"]
        r = clients[1].get("/v1/audit/export", headers=auditor(clients[1]))
        assert r.status_code == 200
        jwks = clients[0].get("/.well-known/jwks.json").text
    finally:
        for http in clients:
            http.close()

    lines = [json.loads(line) for line in r.text.splitlines()]
    events = lines[:-1]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # no gaps
    # no forks: each event follows exactly the one before it, and no hash is reused
    assert all(e["prev_hash"] == p["hash"] for p, e in zip(events, events[1:]))
    assert len({e["hash"] for e in events}) == len(events)
    published = [e for e in events if e["action"] == "flag.publish"]
    assert sorted(e["flag_id"] for e in published) == sorted(flag_ids)
    reads = [e for e in events if e["action"] == "flag.read"]
    assert len(reads) == PUBLISHES

    export, jwks_file = tmp_path / "audit.jsonl", tmp_path / "jwks.json"
    export.write_text(r.text)
    jwks_file.write_text(jwks)
    env = {**two_servers[0].env, **NO_CONFIG}
    ok = run_cli(env, "audit", "verify", str(export), "--jwks", str(jwks_file))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"events checked: {len(events)}" in ok.stdout and "OK: the log is intact" in ok.stdout


def test_offline_command_finds_an_edit_and_a_cut_tail(db_kind, tmp_path):
    with fresh_database(db_kind, tmp_path) as url, running_server(url, tmp_path) as server, \
            httpx.Client(base_url=server.url, timeout=30) as http:
        server.add_agency("E2E-POLICE", "police", AREA)
        server.add_user("e2e-auditor", "auditor")
        police = server.token(http, "E2E-POLICE")
        for _ in range(3):
            assert http.post("/v1/flags", json=flag_body(), headers=police).status_code == 201
        exported = http.get("/v1/audit/export", headers=auditor(http)).text
        (tmp_path / "jwks.json").write_text(http.get("/.well-known/jwks.json").text)
    env = {**server.env, **NO_CONFIG}
    lines = exported.splitlines(keepends=True)

    edited = [json.loads(line) for line in lines[:-1]]
    target = edited[len(edited) // 2]
    target["purpose"] = "curiosity"
    (tmp_path / "edited.jsonl").write_text(
        "".join(json.dumps(e) + "\n" for e in edited) + lines[-1])
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(lines[:-3] + lines[-1:]))
    for name, first_bad in (("edited.jsonl", target["seq"]),
                            ("cut.jsonl", json.loads(lines[-4])["seq"] + 1)):
        out = run_cli(env, "audit", "verify", str(tmp_path / name),
                      "--jwks", str(tmp_path / "jwks.json"))
        assert out.returncode == 1, out.stdout + out.stderr
        assert f"TAMPERED: first bad seq {first_bad}" in out.stdout


def test_a_separate_worker_process_signs_the_head(db_kind, tmp_path):
    """The scaled-out topology: `flagshare worker` finds the head unsigned and signs it."""
    with fresh_database(db_kind, tmp_path) as url, \
            running_server(url, tmp_path, FLAGSHARE_EMBEDDED_WORKER="false") as server, \
            httpx.Client(base_url=server.url, timeout=30) as http:
        server.add_agency("E2E-POLICE", "police", AREA)
        server.add_user("e2e-auditor", "auditor")
        headers = auditor(http)
        latest = lambda: http.get("/v1/audit/checkpoints/latest", headers=headers)  # noqa: E731
        assert latest().status_code == 404
        worker = server.start_worker("worker")
        try:
            wait_until(lambda: latest().status_code == 200, 30, "a signed checkpoint")
        finally:
            stop(worker)
        checkpoint = latest().json()
        verified = http.get("/v1/audit/verify", headers=headers).json()
        kids = {k["kid"] for k in http.get("/.well-known/jwks.json").json()["keys"]}
    assert checkpoint["kid"] in kids
    assert verified["ok"] and verified["head_matches_checkpoint"] is True
    assert verified["latest_checkpoint"] == checkpoint and verified["signatures_checked"] == 1
