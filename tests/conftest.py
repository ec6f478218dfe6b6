"""Test fixtures: a migrated database (SQLite or PostgreSQL), each test in a rolled-back
transaction with the app's session dependency bound to it.

Choose the database with `--db sqlite|postgresql` (default sqlite). PostgreSQL is reached at
FLAGSHARE_TEST_PG (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres); each run
creates and drops its own database. Under CI=true an unreachable PostgreSQL fails the run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import Session

from api.db import get_session, make_engine
from api.forwarding.worker import DeliveryWorker
from api.main import create_app
from api.migrate import upgrade
from api.settings import REPO_ROOT, Settings
from tests.factories import World, build_world, relationship_body

GENEROUS_RATE_LIMITS = {"rate_limit_per_minute": 1_000_000, "rate_limit_burst": 1_000_000,
                        "credential_attempts_per_minute": 1_000_000,
                        "credential_attempts_burst": 1_000_000}
PG_ADMIN_URL = os.environ.get(
    "FLAGSHARE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def pytest_addoption(parser):
    parser.addoption("--db", choices=["sqlite", "postgresql"], default="sqlite",
                     help="database to run the suite against")


def pytest_report_header(config):
    return f"flagshare database: {config.getoption('--db')}"


@pytest.fixture(scope="session")
def db_kind(pytestconfig) -> str:
    return pytestconfig.getoption("--db")


@contextmanager
def fresh_database(kind: str, tmp_dir: Path) -> Iterator[str]:
    """A new, empty database of the given kind; dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_dir / f'flagshare-{uuid.uuid4().hex[:8]}.db'}"
        return
    name = f"flagshare_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        message = f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc.orig}"
        if os.environ.get("CI") == "true":
            pytest.exit(message, returncode=3)
        pytest.skip(message)
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
            ).bindparams(n=name))
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(scope="session")
def database_url(db_kind, tmp_path_factory) -> Iterator[str]:
    with fresh_database(db_kind, tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture
def private_database_url(db_kind, tmp_path) -> Iterator[str]:
    """An empty database of the test's own, for a server process that commits: the session's
    database is shared by every rolled-back test and must hold only what the suite seeded."""
    with fresh_database(db_kind, tmp_path) as url:
        yield url


@pytest.fixture(scope="session")
def engine(database_url):
    upgrade(database_url)
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def settings(database_url) -> Settings:
    # Rate limits out of the way of tests that make many requests; tests/test_hardening.py
    # checks the real defaults.
    return Settings(database_url=database_url, environment="development",
                    policy_dir=REPO_ROOT / "policies", issuer="https://flagshare.test",
                    **GENEROUS_RATE_LIMITS)


@pytest.fixture(scope="session")
def signing_ready(engine, settings):
    """The first signing key is created once, committed, outside any test transaction."""
    app = create_app(settings, session_factory=lambda: Session(engine, expire_on_commit=False))
    app.state.keyring.ensure_signing_key()


@pytest.fixture
def connection(engine, signing_ready) -> Iterator[sa.Connection]:
    conn = engine.connect()
    trans = conn.begin()
    yield conn
    trans.rollback()
    conn.close()


def _bound_session(conn) -> Session:
    return Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)


@pytest.fixture
def session(connection) -> Iterator[Session]:
    s = _bound_session(connection)
    yield s
    s.close()


@pytest.fixture
def app(settings, connection, session):
    application = create_app(settings, session_factory=lambda: _bound_session(connection))

    def _test_session():
        yield session

    application.dependency_overrides[get_session] = _test_session
    return application


@pytest.fixture
def app_session_per_request(app):
    """The app with its own database session per request, as served, all inside the test's
    transaction: a request that fails cannot leave the next one a broken session, and a
    savepoint rolled back under the requests undoes them."""
    app.dependency_overrides.pop(get_session)
    return app


@pytest.fixture
async def client(app) -> Iterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://flagshare.test") as c:
        yield c


@pytest.fixture
def policy(app):
    return app.state.policy


@pytest.fixture
def world(session, app) -> World:
    """Two areas with their agencies and people, and a token signer."""
    return build_world(session, app)


@pytest.fixture
def policy_dir_copy(tmp_path) -> Path:
    target = tmp_path / "policies"
    target.mkdir()
    for f in (REPO_ROOT / "policies").iterdir():
        (target / f.name).write_bytes(f.read_bytes())
    return target


@pytest.fixture
async def child(client, world):
    """A child the school and the GP work with: the forwarding tests' recipients."""
    for agency, kind in (("GP-A", "registered_gp"), ("SCHOOL-A", "school")):
        r = await client.post("/v1/relationships", json=relationship_body(kind),
                              headers=world.auth(agency))
        assert r.status_code == 201
    return r.json()["child_id"]


@pytest.fixture
def worker(app, settings):
    """A delivery worker on the test's session factory, run by hand (`run_once`)."""
    return DeliveryWorker(app.state.session_factory, settings)
