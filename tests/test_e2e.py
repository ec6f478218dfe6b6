"""End to end: the real `flagshare` command and server process on loopback, over HTTP."""

from __future__ import annotations

import os
import re
import subprocess

from contextlib import ExitStack

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from api.demo import CHILD as DEMO_CHILD, DEMO_PASSWORD
from tests.conftest import fresh_database
from tests.processes import FLAGSHARE, free_port, run_cli, running_server, wait_until
from tests.receiver import Receiver
from tests.factories import NHS, flag_body, relationship_body

@pytest.fixture(scope="module")
def server(db_kind, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    with fresh_database(db_kind, tmp) as url, running_server(url, tmp) as srv:
        yield srv


def test_publish_end_to_end(server):
    for agency_id, kind in (("E2E-POLICE", "police"), ("E2E-CSC", "childrens_social_care"),
                            ("E2E-SCHOOL", "education"), ("E2E-GP", "gp")):
        server.add_agency(agency_id, kind, "E08000025")
    server.add_agency("E2E-CSC-OTHER", "childrens_social_care", "E06000001")
    with ExitStack() as stack, httpx.Client(base_url=server.url, timeout=30) as http:
        jwks = http.get("/.well-known/jwks.json").json()
        assert jwks["keys"] and all("kid" in k for k in jwks["keys"])
        school_token = server.token(http, "E2E-SCHOOL")
        rel = http.post("/v1/relationships", json=relationship_body("school", NHS[5]),
                        headers=school_token)
        assert rel.status_code == 201, rel.text
        receiver = stack.enter_context(Receiver())
        sub = http.post("/v1/subscriptions", headers=school_token,
                        json={"delivery": {"mode": "webhook", "url": receiver.url}})
        assert sub.status_code == 201, sub.text
        police = server.token(http, "E2E-POLICE")
        body = flag_body(subject={"nhs_number": NHS[5]})
        published = http.post("/v1/flags", json=body, headers=police)
        assert published.status_code == 201, published.text
        out = published.json()
        assert out["shared_with"] == ["E2E-CSC", "E2E-SCHOOL"]
        assert "E2E-CSC-OTHER" not in out["shared_with"]
        # Read back as publisher, as a recipient, and as an agency with no share.
        mine = http.get(f"/v1/flags/{out['id']}", headers=police).json()
        assert mine["summary"] == body["summary"] and mine["details"] == body["details"]
        school = http.get(f"/v1/flags/{out['id']}", headers=server.token(http, "E2E-SCHOOL"))
        assert school.status_code == 200 and "details" not in school.json()
        other = http.get(f"/v1/flags/{out['id']}", headers=server.token(http, "E2E-CSC-OTHER"))
        assert other.status_code == 404
        # Idempotency over the wire.
        keyed = {**police, "Idempotency-Key": "e2e-incident-1"}
        first = http.post("/v1/flags", json=body, headers=keyed)
        again = http.post("/v1/flags", json=body, headers=keyed)
        assert first.status_code == again.status_code == 201
        assert again.json()["id"] == first.json()["id"]
        clash = http.post("/v1/flags", json={**body, "severity": "low"}, headers=keyed)
        assert clash.status_code == 409
        assert http.get("/openapi.json").json()["paths"]["/v1/flags"]["post"]
        # The embedded worker inside `serve` delivers the webhook, signed.
        wait_until(lambda: len(receiver.requests) >= 1, 30, "the school's webhook")
        got = receiver.requests[0]
        event = Webhook(sub.json()["secret"]).verify(got.body, got.headers)
        assert event["data"]["flag"]["id"] == out["id"] and "details" not in event["data"]["flag"]


def test_people_log_in_with_a_password(server):
    out = run_cli(server.env, "users", "add", "--username", "auditor.e2e", "--password",
                  "correct horse battery", "--role", "auditor")
    assert out.returncode == 0, out.stderr
    with httpx.Client(base_url=server.url, timeout=30) as http:
        ok = http.post("/v1/oauth/token", data={"grant_type": "password",
                                                 "username": "auditor.e2e",
                                                 "password": "correct horse battery"})
        assert ok.status_code == 200 and ok.json()["token_type"] == "Bearer"
        bad = http.post("/v1/oauth/token", data={"grant_type": "password",
                                                  "username": "auditor.e2e", "password": "nope"})
        assert bad.status_code == 401 and bad.json()["error"] == "invalid_grant"
    dup = run_cli(server.env, "users", "add", "--username", "auditor.e2e", "--password",
                  "correct horse battery", "--role", "auditor")
    assert dup.returncode != 0 and "already exists" in dup.stderr


def test_a_leaver_and_a_retired_system_are_shut_out_at_once(server):
    """`users disable` and `agencies disable` refuse tokens still unexpired, at once, on the
    running server; `enable` lets them back in; each change is in the sharing log with its
    reason; a name that is not there fails, saying so."""
    server.add_user("leaver.e2e", "auditor")
    server.add_agency("E2E-RETIRED", "gp", "E08000025")
    with httpx.Client(base_url=server.url, timeout=30) as http:
        person = server.user_token(http, "leaver.e2e")
        system = server.token(http, "E2E-RETIRED")
        assert http.get("/v1/audit/events", headers=person).status_code == 200
        assert http.get("/v1/subscriptions", headers=system).status_code == 200
        for command in (("users", "disable", "leaver.e2e"),
                        ("agencies", "disable", "E2E-RETIRED")):
            out = run_cli(server.env, *command, "--reason", "Left: HR-1029")
            assert out.returncode == 0 and f"disabled {command[2]}" in out.stdout, out.stderr
        assert http.get("/v1/audit/events", headers=person).status_code == 401
        assert http.get("/v1/subscriptions", headers=system).status_code == 401
        for command in (("users", "enable", "leaver.e2e"), ("agencies", "enable", "E2E-RETIRED")):
            assert run_cli(server.env, *command, "--reason", "Back: HR-1030").returncode == 0
        assert http.get("/v1/subscriptions", headers=system).status_code == 200
        logged = http.get("/v1/audit/events", headers=person,
                          params={"action": "account.disable"}).json()["items"]
        assert [(e["actor"], e["outcome"], e["reason"]) for e in logged] == [
            ("cli", "disabled", "account leaver.e2e: Left: HR-1029")]
    for command in (("users", "disable", "nobody.e2e"), ("agencies", "disable", "NO-SUCH")):
        out = run_cli(server.env, *command, "--reason", "Left")
        assert out.returncode == 1 and command[2] in out.stderr
    blank = run_cli(server.env, "users", "disable", "leaver.e2e", "--reason", "  ")
    assert blank.returncode == 2 and "--reason" in blank.stderr
    system_person = run_cli(server.env, "users", "add", "--username", "gp.person", "--password",
                            "correct horse battery", "--role", "agency_system", "--agency",
                            "E2E-RETIRED")
    assert system_person.returncode == 1 and "client secret" in system_person.stderr


def _demo_child_flags(http: httpx.Client) -> list[dict]:
    login = http.post("/v1/oauth/token", data={"grant_type": "password",
                                               "username": "mash.practitioner",
                                               "password": DEMO_PASSWORD})
    assert login.status_code == 200, login.text
    child = http.get("/v1/children", params={"nhs_number": DEMO_CHILD["nhs_number"],
                                             "purpose": "mash_triage", "reason": "Demo check"},
                     headers={"Authorization": f"Bearer {login.json()['access_token']}"})
    assert child.status_code == 200, child.text
    return child.json()["flags"]


def test_the_demo_starts_with_agencies_and_people_who_can_sign_in(db_kind, tmp_path):
    """`scripts/serve` runs `serve --demo`: what it prints must let a newcomer in."""
    with fresh_database(db_kind, tmp_path) as url:
        secrets = []
        for _ in range(2):  # a restart refreshes the demo; it does not add to it
            with running_server(url, tmp_path, "--demo") as server, \
                    httpx.Client(base_url=server.url, timeout=30) as http:
                printed = (tmp_path / "server.log").read_text()
                secrets.append(re.search(r"client_id=WMP -d client_secret=(\S+)", printed)[1])
                token = http.post("/v1/oauth/token", data={
                    "grant_type": "client_credentials", "client_id": "WMP",
                    "client_secret": secrets[-1]})
                assert token.status_code == 200, token.text
                flags = _demo_child_flags(http)
                assert {f["category"] for f in flags} >= {"domestic_abuse_incident",
                                                          "child_protection_plan"}
                if len(secrets) == 1:
                    first_flags = flags
                else:
                    assert [f["id"] for f in flags] == [f["id"] for f in first_flags]
                    stale = http.post("/v1/oauth/token", data={
                        "grant_type": "client_credentials", "client_id": "WMP",
                        "client_secret": secrets[0]})
                    assert stale.status_code == 401
        assert secrets[0] != secrets[1]


def test_cli_rejects_bad_agency_and_bad_config(server):
    bad_area = run_cli(server.env, "agencies", "add", "--id", "X1", "--name", "X", "--kind",
                       "gp", "--area", "E06999999")
    assert bad_area.returncode != 0 and "E06999999" in bad_area.stderr
    bad_env = run_cli({**server.env, "FLAGSHARE_ENVIRONMENT": "staging"}, "db", "upgrade")
    assert bad_env.returncode == 2 and "FLAGSHARE_ENVIRONMENT" in bad_env.stderr


def test_a_misspelt_setting_stops_start_up_naming_it(server, tmp_path):
    """A typo must not leave the service running on a default: here a token lifetime of 900 s
    where 60 was meant, and in the database URL's case a new, empty SQLite file."""
    for command in (["db", "upgrade"], ["serve", "--port", str(free_port())]):
        out = run_cli({**server.env, "FLAGSHARE_TOKEN_TTL": "60",
                       "FLAGSHARE_DATABASE_ULR": f"sqlite:///{tmp_path / 'typo.db'}"}, *command)
        assert out.returncode == 2, out.stderr
        assert "FLAGSHARE_TOKEN_TTL: not a setting (did you mean " \
               "FLAGSHARE_TOKEN_TTL_SECONDS?)" in out.stderr
        assert "FLAGSHARE_DATABASE_ULR: not a setting (did you mean " \
               "FLAGSHARE_DATABASE_URL?)" in out.stderr
    assert not (tmp_path / "typo.db").exists()
    # what the adapters, Compose and the test runs read is not refused
    others = {name: "x" for name in ("FLAGSHARE_API_URL", "FLAGSHARE_CLIENT_ID",
                                     "FLAGSHARE_CLIENT_SECRET", "FLAGSHARE_DB_PASSWORD_FILE",
                                     "FLAGSHARE_LOAD_HOSTS")}
    assert run_cli({**server.env, **others}, "db", "upgrade").returncode == 0


def test_broken_policy_stops_serve_naming_file_and_key(tmp_path, policy_dir_copy):
    broken = policy_dir_copy / "england-default.yaml"
    broken.write_text(broken.read_text().replace("recipient_kinds:", "recipent_kinds:", 1))
    env = {**os.environ, "FLAGSHARE_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
           "FLAGSHARE_POLICY_DIR": str(policy_dir_copy)}
    proc = subprocess.run([FLAGSHARE, "serve", "--port", str(free_port())], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "england-default.yaml" in proc.stderr and "recipent_kinds" in proc.stderr
