"""Hardening (issue 11): rate limits, security headers, field limits, constant-time secret
checks, opaque 500s and logs that carry no flag content."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import APIRouter
from sqlalchemy import text
from sqlmodel import select

from api import cli
from api.auth import passwords
from api.auth.models import CredentialFailure
from api.forwarding.worker import DeliveryWorker
from api.logs import JsonFormatter
from api.problems import ProblemError
from api.ratelimit import MAX_TRACKED_KEYS, RateLimits, TokenBuckets
from api.settings import Settings
from tests.conftest import GENEROUS_RATE_LIMITS
from tests.factories import BIRMINGHAM, NHS, PASSWORD, SECRET, flag_body
from tests.processes import running_server, running_topology

PROBLEM_JSON = "application/problem+json"


class ManualClock:
    """Monotonic time that moves only when the test says, so refills are exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def default_limits(app, settings, clock) -> Settings:
    """The app's rate limits at the shipped defaults (the suite's settings relax them)."""
    defaults = settings.model_copy(update={name: Settings.model_fields[name].default
                                           for name in GENEROUS_RATE_LIMITS})
    app.state.rate_limits = RateLimits(defaults, clock)
    return defaults


# --- per-client rate limits ----------------------------------------------------------------

async def test_a_client_over_its_burst_gets_429_with_retry_after_and_others_do_not(
        client, world, default_limits, clock):
    assert (default_limits.rate_limit_per_minute, default_limits.rate_limit_burst) == (600, 120)
    police = world.auth("POLICE-A")
    for _ in range(default_limits.rate_limit_burst):
        assert (await client.get("/v1/subscriptions", headers=police)).status_code == 200
    r = await client.get("/v1/subscriptions", headers=police)
    assert r.status_code == 429
    assert r.headers["content-type"] == PROBLEM_JSON
    assert r.json()["status"] == 429 and r.json()["title"] == "Too many requests"
    assert r.headers["retry-after"] == "1"  # 600 a minute: the next token in 0.1 s, said as 1 s
    # another agency, and a person, have buckets of their own
    assert (await client.get("/v1/subscriptions", headers=world.auth("GP-A"))).status_code == 200
    assert (await client.get("/v1/agencies", headers=world.auth("admin"))).status_code == 200
    clock.now += 0.1  # one token refilled: one request, then refused again
    assert (await client.get("/v1/subscriptions", headers=police)).status_code == 200
    assert (await client.get("/v1/subscriptions", headers=police)).status_code == 429


def test_buckets_for_many_keys_are_forgotten_before_memory_grows(settings, clock):
    buckets = TokenBuckets(per_minute=30, burst=3, clock=clock)
    for n in range(MAX_TRACKED_KEYS * 2):  # many principals, each making one request
        buckets.take(f"agency:{n}")
    assert len(buckets._buckets) <= MAX_TRACKED_KEYS
    for _ in range(3):
        buckets.take("agency:hammering")
    assert buckets.wait_seconds("agency:hammering") > 0  # the newest keys are kept


async def test_health_metrics_and_jwks_are_never_rate_limited(client, app, settings, clock):
    app.state.rate_limits = RateLimits(
        settings.model_copy(update={"rate_limit_per_minute": 1, "rate_limit_burst": 1}), clock)
    for path in ("/healthz", "/readyz", "/metrics", "/.well-known/jwks.json"):
        for _ in range(5):
            assert (await client.get(path)).status_code == 200, path


async def test_failed_client_credentials_slow_down_guessing_per_client_id(
        client, world, default_limits, clock):
    assert default_limits.credential_attempts_burst == 10
    guess = {"grant_type": "client_credentials", "client_id": "GP-A"}
    for n in range(10):
        r = await client.post("/v1/oauth/token", data={**guess, "client_secret": f"guess-{n}"})
        assert r.status_code == 401
    r = await client.post("/v1/oauth/token", data={**guess, "client_secret": SECRET})
    assert r.status_code == 429  # refused before the secret is even checked
    assert r.headers["content-type"] == PROBLEM_JSON
    assert int(r.headers["retry-after"]) == 2  # 30 a minute: one attempt every 2 s
    clock.now += 2
    assert (await client.post("/v1/oauth/token",
                              data={**guess, "client_secret": SECRET})).status_code == 200


async def test_failed_logins_from_one_address_slow_down_guessing_across_accounts(
        client, world, default_limits):
    for n in range(10):  # a different username each time: only the address is shared
        r = await client.post("/v1/oauth/token", data={
            "grant_type": "password", "username": f"nobody-{n}", "password": "wrong-password"})
        assert r.status_code == 401
    r = await client.post("/v1/oauth/token", data={
        "grant_type": "password", "username": "auditor", "password": PASSWORD})
    assert r.status_code == 429


async def test_successful_token_requests_are_not_counted_as_attempts(client, world,
                                                                     default_limits):
    for _ in range(default_limits.credential_attempts_burst * 3):
        r = await client.post("/v1/oauth/token", data={
            "grant_type": "client_credentials", "client_id": "SCHOOL-A", "client_secret": SECRET})
        assert r.status_code == 200


async def test_console_sign_in_is_paused_after_wrong_passwords(client, world, default_limits):
    def csrf(page: httpx.Response) -> str:  # each sign-in page carries a fresh one
        return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)

    r = await client.get("/console/login")
    for n in range(10):
        r = await client.post("/console/login", data={
            "username": "auditor", "password": f"wrong-{n}", "csrf_token": csrf(r)})
        assert r.status_code == 401
    r = await client.post("/console/login", data={
        "username": "auditor", "password": PASSWORD, "csrf_token": csrf(r)})
    assert r.status_code == 429 and r.headers["retry-after"] == "2"
    assert "try again in 2 s" in r.text


# Three failures allowed, one more every 2 s: small numbers for the shared-count tests.
GUESSING_LIMITS = {"credential_attempts_per_minute": 30, "credential_attempts_burst": 3}


def test_failures_counted_by_one_process_are_refused_by_another(session, settings, clock):
    """Two RateLimits are two API processes: the count of failures is the database's."""
    one, other = (RateLimits(settings.model_copy(update=GUESSING_LIMITS), clock)
                  for _ in range(2))
    for _ in range(3):
        one.note_failed_attempt(session, "GP-A", "192.0.2.1")
    with pytest.raises(ProblemError) as refused:
        other.admit_credential_attempt(session, "GP-A", "198.51.100.7")  # account exhausted
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "2"
    with pytest.raises(ProblemError):
        other.admit_credential_attempt(session, "POLICE-A", "192.0.2.1")  # address exhausted
    other.admit_credential_attempt(session, "POLICE-A", "198.51.100.7")
    clock.now += 2  # one failure's worth refilled, for every process
    other.admit_credential_attempt(session, "GP-A", "198.51.100.7")


def test_a_process_reading_an_earlier_time_takes_one_failure_and_no_more(session, settings):
    """A process that read the time, then waited for another's write of a later time, finds the
    row 'in its future': that must not eat into the allowance."""
    behind, ahead = ManualClock(), ManualClock()
    ahead.now += 0.5
    limits = {clock: RateLimits(settings.model_copy(update=GUESSING_LIMITS), clock)
              for clock in (behind, ahead)}
    limits[ahead].note_failed_attempt(session, "GP-A", "192.0.2.1")
    limits[behind].note_failed_attempt(session, "GP-A", "192.0.2.1")
    limits[behind].admit_credential_attempt(session, "GP-A", "192.0.2.1")  # one of 3 left
    limits[ahead].note_failed_attempt(session, "GP-A", "192.0.2.1")
    with pytest.raises(ProblemError):
        limits[ahead].admit_credential_attempt(session, "GP-A", "192.0.2.1")


def test_rows_of_refilled_buckets_are_deleted_as_failures_are_noted(session, settings, clock):
    limits = RateLimits(settings.model_copy(update=GUESSING_LIMITS), clock)
    for n in range(50):  # sprayed account names, each failing once, from one address
        limits.note_failed_attempt(session, f"sprayed-{n}", "192.0.2.1")
    keys = lambda: set(session.exec(select(CredentialFailure.key)))  # noqa: E731
    assert len(keys()) == 51
    clock.now += 6  # 3 tokens at one every 2 s: every bucket is full again
    limits.note_failed_attempt(session, "late", "198.51.100.7")
    assert keys() == {"account:late", "address:198.51.100.7"}


def test_the_worker_forgets_failures_once_their_buckets_are_full_again(app, session, settings):
    """A failed sign-in's account name and address are kept no longer than they count, even
    when no later failure comes to clear them."""
    RateLimits(settings).note_failed_attempt(session, "GP-A", "192.0.2.1")
    full_again = time.time() - 60 * settings.credential_attempts_burst \
        / settings.credential_attempts_per_minute - 1
    session.add(CredentialFailure(key="address:198.51.100.7", tokens=0, as_of=full_again))
    session.commit()
    DeliveryWorker(app.state.session_factory, settings).run_once()
    session.expire_all()
    assert set(session.exec(select(CredentialFailure.key))) == {"account:GP-A",
                                                                "address:192.0.2.1"}


def test_a_guesser_spreading_attempts_over_api_processes_is_refused_by_both(
        private_database_url, tmp_path):
    """Behind a load balancer each attempt may reach another API process; the tenth wrong
    secret is the last, whichever process each went to, even when they arrive together."""
    limits = {f"FLAGSHARE_{name.upper()}": str(Settings.model_fields[name].default)
              for name in ("credential_attempts_per_minute", "credential_attempts_burst")}
    with running_topology(private_database_url, tmp_path, workers=0, **limits) as topology:
        secret = topology.servers[0].add_agency("T-GP", "gp", "E08000025")
        clients = [httpx.Client(base_url=s.url, timeout=30) for s in topology.servers]
        together = threading.Barrier(10)

        def guess(n: int) -> int:
            together.wait(timeout=30)
            return clients[n % 2].post("/v1/oauth/token", data={
                "grant_type": "client_credentials", "client_id": "T-GP",
                "client_secret": f"guess-{n}"}).status_code

        try:
            with ThreadPoolExecutor(10) as pool:
                assert list(pool.map(guess, range(10))) == [401] * 10
            for client in clients:
                r = client.post("/v1/oauth/token", data={
                    "grant_type": "client_credentials", "client_id": "T-GP",
                    "client_secret": secret})
                assert r.status_code == 429, r.text
                assert int(r.headers["retry-after"]) >= 1
        finally:
            for client in clients:
                client.close()


# --- security headers -----------------------------------------------------------------------

COMMON = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
          "x-frame-options": "DENY"}


def assert_common_headers(r: httpx.Response) -> None:
    for name, value in COMMON.items():
        assert r.headers.get(name) == value, (r.request.url, name)
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


async def test_api_responses_carry_security_headers_and_are_never_cached(client, world):
    responses = [
        await client.get("/v1/subscriptions", headers=world.auth("POLICE-A")),
        await client.post("/v1/flags", json=flag_body(), headers=world.auth("POLICE-A")),
        await client.get("/v1/subscriptions"),  # 401
        await client.get("/v1/flags/no-such-flag", headers=world.auth("POLICE-A")),  # 404
    ]
    assert [r.status_code for r in responses] == [200, 201, 401, 404]
    for r in responses:
        assert_common_headers(r)
        assert r.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
        assert r.headers["cache-control"] == "no-store"
        assert "strict-transport-security" not in r.headers  # development
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
    jwks = await client.get("/.well-known/jwks.json")
    assert_common_headers(jwks)
    assert "cache-control" not in jwks.headers  # public keys may be cached


async def test_console_pages_admit_only_own_assets_and_the_nonced_inline_script(client):
    pages = [await client.get("/console/login"), await client.get("/console/login")]
    nonces = []
    for r in pages:
        assert r.status_code == 200
        assert_common_headers(r)
        csp = r.headers["content-security-policy"]
        nonce = re.search(r"script-src 'self' 'nonce-([^']+)'", csp).group(1)
        assert "default-src 'self'" in csp and "style-src 'self';" in csp
        assert "unsafe-inline" not in csp
        inline = re.findall(r"<script([^>]*)>(?!</script>)", r.text)
        assert inline and all(f'nonce="{nonce}"' in attrs or "src=" in attrs
                              for attrs in inline)
        nonces.append(nonce)
    assert nonces[0] != nonces[1]  # fresh per response
    asset = await client.get("/console/static/console.js")
    assert asset.status_code == 200
    assert_common_headers(asset)


async def test_strict_transport_security_outside_development(settings, app):
    production = create_app_with(settings.model_copy(update={"environment": "production"}),
                                 app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=production),
                                 base_url="https://flagshare.test") as c:
        r = await c.get("/healthz")
    assert r.headers["strict-transport-security"].startswith("max-age=31536000")


def create_app_with(settings: Settings, like):
    from api.main import create_app

    return create_app(settings, session_factory=like.state.session_factory)


# --- field limits ----------------------------------------------------------------------------

def _bounded_pattern(pattern: str | None) -> bool:
    """An anchored pattern with no open-ended repetition matches only bounded strings."""
    return bool(pattern and re.fullmatch(r"\^[^*+]*\$", pattern)
                and not re.search(r"\{\d+,\}", pattern))


def _unbounded(schema: dict, where: str, components: dict) -> list[str]:
    """Strings without maxLength (or enum/format) and arrays without maxItems, recursively."""
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    found = []
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key, []):
            found += _unbounded(sub, where, components)
    kind = schema.get("type")
    if kind == "string" and not ({"maxLength", "enum", "const", "format"} & set(schema)
                                 or _bounded_pattern(schema.get("pattern"))):
        found.append(where)
    if kind == "array":
        if "maxItems" not in schema:
            found.append(where)
        found += _unbounded(schema.get("items", {}), where + "[]", components)
    for name, sub in schema.get("properties", {}).items():
        found += _unbounded(sub, f"{where}.{name}", components)
    return found


async def test_every_request_body_and_query_string_field_is_bounded(client):
    doc = (await client.get("/openapi.json")).json()
    components = doc["components"]["schemas"]
    unbounded = []
    for path, operations in doc["paths"].items():
        if path == "/v1/oauth/token":  # OAuth: an over-long credential is a wrong one (401)
            continue
        for method, op in operations.items():
            for media in op.get("requestBody", {}).get("content", {}).values():
                unbounded += _unbounded(media["schema"], f"{method} {path} body", components)
            for param in op.get("parameters", []):
                if param["in"] != "path":  # ids in paths: an unknown one is simply 404
                    unbounded += _unbounded(param["schema"],
                                            f"{method} {path} {param['name']}", components)
    assert unbounded == []


@pytest.mark.parametrize("body, field", [
    ({"delivery": {"mode": "feed"}, "categories": ["x" * 65]}, "categories.0"),
    ({"delivery": {"mode": "feed"}, "areas": ["E08000025"] * 201}, "areas"),
])
async def test_overlong_subscription_fields_are_422_naming_the_field(client, world, body, field):
    r = await client.post("/v1/subscriptions", json=body, headers=world.auth("SCHOOL-A"))
    assert r.status_code == 422
    assert field in [e["field"] for e in r.json()["errors"]]


async def test_overlong_nhs_number_is_422_naming_the_field(client, world):
    r = await client.post("/v1/flags", headers=world.auth("POLICE-A"),
                          json=flag_body(subject={"nhs_number": "9" * 5000}))
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["subject.nhs_number"]
    assert "at most 20 characters" in r.json()["errors"][0]["message"]


# --- constant-time secret checks ----------------------------------------------------------------

@pytest.fixture
def argon2_verifications(monkeypatch) -> list[str]:
    """Every stored hash the real argon2 verifier is asked to check (it still checks)."""
    seen: list[str] = []

    class RecordingHasher(PasswordHasher):
        def verify(self, hash, password):  # noqa: A002 (argon2's own parameter names)
            seen.append(hash)
            return super().verify(hash, password)

    monkeypatch.setattr(passwords, "_hasher", RecordingHasher())
    return seen


@pytest.mark.parametrize("form", [
    {"grant_type": "client_credentials", "client_id": "NO-SUCH-AGENCY", "client_secret": "x"},
    {"grant_type": "password", "username": "no.such.person", "password": "x"},
])
async def test_unknown_accounts_cost_the_same_argon2_verification(client, world,
                                                                  argon2_verifications, form):
    r = await client.post("/v1/oauth/token", data=form)
    assert r.status_code == 401
    assert argon2_verifications == [passwords._DUMMY_HASH]
    known = {**form, **({"client_id": "GP-A"} if "client_id" in form else {"username": "auditor"})}
    assert (await client.post("/v1/oauth/token", data=known)).status_code == 401
    assert len(argon2_verifications) == 2 and argon2_verifications[1] != passwords._DUMMY_HASH


def watch_hashing(monkeypatch, in_transaction) -> list[bool]:
    """Whether a transaction was open (as `in_transaction()` tells) each time the real argon2
    hashed or verified a secret."""
    seen: list[bool] = []

    class WatchingHasher(PasswordHasher):
        def hash(self, password, *, salt=None):
            seen.append(in_transaction())
            return super().hash(password, salt=salt)

        def verify(self, hash, password):  # noqa: A002 (argon2's own parameter names)
            seen.append(in_transaction())
            return super().verify(hash, password)

    monkeypatch.setattr(passwords, "_hasher", WatchingHasher())
    return seen


@pytest.mark.parametrize("form,status", [
    ({"grant_type": "client_credentials", "client_id": "GP-A", "client_secret": SECRET}, 200),
    ({"grant_type": "client_credentials", "client_id": "GP-A", "client_secret": "x"}, 401),
    ({"grant_type": "password", "username": "auditor", "password": PASSWORD}, 200),
    ({"grant_type": "password", "username": "auditor", "password": "x"}, 401),
])
async def test_no_transaction_is_held_while_a_secret_is_hashed(client, world, session,
                                                               monkeypatch, form, status):
    """Argon2 takes a fifth of a second: a transaction open meanwhile would hold a pooled
    connection, and on SQLite the one write lock that every publish waits for."""
    hashed = watch_hashing(monkeypatch, session.in_transaction)
    r = await client.post("/v1/oauth/token", data=form)
    assert r.status_code == status, r.text
    assert hashed == [False]


@pytest.mark.parametrize("path,status", [
    ("/v1/agencies", 201), ("/v1/agencies/GP-A/secret", 200)])
async def test_a_new_client_secret_is_hashed_before_the_transaction(client, world, session,
                                                                    monkeypatch, path, status):
    session.expunge_all()  # as a request's own session, which reads the agency from the database
    hashed = watch_hashing(monkeypatch, session.in_transaction)
    body = {"id": "GP-NEW", "name": "New practice", "kind": "gp", "area": BIRMINGHAM}
    r = await client.post(path, json=body if path == "/v1/agencies" else None,
                          headers=world.auth("admin"))
    assert r.status_code == status, r.text
    assert hashed == [False]
    login = {"grant_type": "client_credentials", "client_id": r.json()["id"],
             "client_secret": r.json()["client_secret"]}
    assert (await client.post("/v1/oauth/token", data=login)).status_code == 200


def _write_lock_taken(path) -> bool:
    """Whether a transaction holds the SQLite file's write lock (another would wait for it)."""
    probe = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        probe.close()


@pytest.mark.parametrize("command", [
    ["agencies", "add", "--id", "GP-CLI", "--name", "CLI practice", "--kind", "gp",
     "--area", "E08000025"],
    ["users", "add", "--username", "auditor.cli", "--password", "a-long-password-1",
     "--role", "auditor"],
])
def test_the_cli_hashes_before_it_takes_the_write_lock(tmp_path, monkeypatch, command):
    database = tmp_path / "flagshare.db"
    monkeypatch.setenv("FLAGSHARE_DATABASE_URL", f"sqlite:///{database}")
    hashed = watch_hashing(monkeypatch, lambda: database.exists() and _write_lock_taken(database))
    assert cli.main(command) == 0
    assert hashed == [False]


# --- opaque 500s -------------------------------------------------------------------------------

# What a defect's exception might say; the log's stack shows the code line, not this.
LEAKY_MESSAGE = "Amelia's summary leaked via api/flags/service.py"
BAD_SQL = text("SELECT no_such_column FROM flag_version WHERE summary = :summary")
LEAKS = ("Traceback", "RuntimeError", "OperationalError", "ProgrammingError", "SELECT",
         "flag_version", "no_such_column", "Amelia", "api/", ".py")


@pytest.fixture
def failing_routes(app, session):
    """Routes that fail as a defect would, added to this test's app only."""
    router = APIRouter()

    @router.get("/v1/test-only/raises")
    def raises():
        raise RuntimeError(LEAKY_MESSAGE)

    @router.get("/v1/test-only/bad-sql")
    def bad_sql():
        session.exec(BAD_SQL, params={"summary": LEAKY_MESSAGE})

    app.include_router(router)


@pytest.mark.parametrize("path", ["/v1/test-only/raises", "/v1/test-only/bad-sql"])
async def test_an_unexpected_error_is_an_opaque_problem_with_a_logged_incident_id(
        client, failing_routes, caplog, path):
    with caplog.at_level(logging.ERROR, logger="flagshare"):
        r = await client.get(path, headers={"X-Request-ID": "req-test-500-0001"})
    assert r.status_code == 500
    assert r.headers["content-type"] == PROBLEM_JSON
    body = r.json()
    assert set(body) == {"type", "title", "status", "detail", "incident"}
    assert re.fullmatch(r"[0-9a-f]{32}", body["incident"])
    for leak in LEAKS:
        assert leak not in r.text
    assert_common_headers(r)
    assert r.headers["x-request-id"] == "req-test-500-0001"
    [record] = [rec for rec in caplog.records if getattr(rec, "incident", None)]
    assert record.incident == body["incident"] and record.exc_info is not None
    logged = json.loads(JsonFormatter().format(record))
    assert logged["incident"] == body["incident"]
    assert "(message withheld)" in logged["exception"] and path.rsplit("/", 1)[1].replace(
        "-", "_") in logged["exception"]  # the failing function's frame is there
    assert "Amelia" not in json.dumps(logged)


# --- structured logs without flag content ----------------------------------------------------

LOG_FIELDS = {"time", "level", "logger", "message", "request_id", "principal", "path", "status"}


def test_a_real_server_logs_json_lines_without_flag_content(private_database_url, tmp_path):
    """Publish and read a flag with distinctive content through `flagshare serve`: every line
    it writes is a JSON object with the request fields, and none holds that content."""
    summary = "Quillon Farthingale-Oyelaran disclosed zebrafinch bruising at nursery"
    subject = {"nhs_number": NHS[7], "given_name": "Quillon", "family_name": "Farthingale",
               "birth_date": "2021-05-04", "postcode": "B31 2AB"}
    spaced = f"{NHS[7][:3]} {NHS[7][3:6]} {NHS[7][6:]}"
    with running_server(private_database_url, tmp_path, FLAGSHARE_LOG_FORMAT="json") as server:
        server.add_agency("LOG-POLICE", "police", "E08000025")
        with httpx.Client(base_url=server.url, timeout=30) as http:
            police = server.token(http, "LOG-POLICE")
            r = http.post("/v1/flags", headers=police,
                          json=flag_body(subject=subject, summary=summary,
                                         details="Quillon said zebrafinch twice"))
            assert r.status_code == 201, r.text
            http.get("/v1/children", headers=police, params={
                "nhs_number": spaced, "purpose": "safeguarding", "reason": "Quillon follow-up"})
            http.post("/v1/oauth/token", data={"grant_type": "password", "username": "Quillon",
                                               "password": "zebrafinch"})
    lines = [line for line in (tmp_path / "server.log").read_text().splitlines() if line]
    records = [json.loads(line) for line in lines]  # each line is one JSON object
    assert all(LOG_FIELDS <= set(record) for record in records)
    [published] = [r for r in records if r["logger"] == "flagshare.access"
                   and r["path"] == "/v1/flags"]
    assert (published["status"], published["principal"], published["method"]) == (
        201, "LOG-POLICE", "POST")
    assert re.fullmatch(r"[0-9a-f]{32}", published["request_id"])
    everything = "\n".join(lines)
    for secret in ("Quillon", "Farthingale", "zebrafinch", NHS[7], spaced, "nhs_number",
                   "Oyelaran"):
        assert secret not in everything


def test_log_format_defaults_to_json_outside_development(settings):
    assert settings.effective_log_format == "text"  # the suite runs in development
    assert settings.model_copy(update={"environment": "production"}).effective_log_format == "json"
    with pytest.raises(ValueError):
        Settings(database_url=settings.database_url, log_format="xml")


async def test_request_metrics_count_by_route_template_and_status(client, world):
    """The route's template is the label, never the concrete path (which may be an NHS number);
    a 404 for an unknown path counts as unmatched."""
    def count(route: str, status: str, text: str) -> float:
        line = (f'flagshare_http_requests_total{{method="GET",route="{route}",'
                f'status="{status}"}} ')
        found = [row for row in text.splitlines() if row.startswith(line)]
        return float(found[0].split()[-1]) if found else 0.0

    before = (await client.get("/metrics")).text
    headers = world.auth("GP-A")
    assert (await client.get("/v1/agencies/GP-A", headers=headers)).status_code == 200
    assert (await client.get("/v1/no-such-thing")).status_code == 404
    after = (await client.get("/metrics")).text
    assert count("/v1/agencies/{agency_id}", "200", after) == \
        count("/v1/agencies/{agency_id}", "200", before) + 1
    assert count("unmatched", "404", after) == count("unmatched", "404", before) + 1
    assert "/v1/agencies/GP-A" not in after
    assert 'flagshare_http_request_seconds_count{method="GET",route="/v1/agencies/{agency_id}"}' \
        in after
