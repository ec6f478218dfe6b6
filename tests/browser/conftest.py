"""Browser tests: Playwright drives Debian's Chromium (never a browser Playwright downloads)
against a real `flagshare serve` process on loopback, on the database chosen with `--db`.

Without /usr/bin/chromium the tests skip with one line naming what to install, except under
CI=true, where a missing browser fails them. Screenshots of each main page are kept in
test-artifacts/browser/<db>/.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from api.settings import REPO_ROOT
from tests.conftest import fresh_database
from tests.factories import NHS, flag_body, relationship_body
from tests.processes import Server, run_cli, running_server

CHROMIUM = os.environ.get("FLAGSHARE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
BIRMINGHAM, SANDWELL = "E08000025", "E08000028"
PASSWORD = "browser-test-password-1"
PRACTITIONER, AUDITOR = "mash.web", "auditor.web"
# The GP knows Olivia by NHS number; police record a girl who is probably her, without one.
GP_RECORD = {"nhs_number": NHS[1], "given_name": "Olivia", "family_name": "Brennan",
             "birth_date": "2019-06-02", "sex": "female", "postcode": "B31 4QT"}
POLICE_RECORD = {"local_id": "NOM-7781", "given_name": "Olivia", "family_name": "Brenan",
                 "birth_date": "2019-02-06", "postcode": "B31 4QT"}


@pytest.fixture(scope="session")
def chromium() -> str:
    path = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if path is None:
        message = (f"browser tests need Chromium at {CHROMIUM} "
                   "(apt-get install chromium; scripts/test installs it when run as root)")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def browser(chromium):
    """Module-scoped: Playwright's sync API holds an event loop in this thread until it stops,
    which the asyncio tests after this folder need back."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def context(browser):
    """A fresh browser profile per test: no cookies carried between people."""
    ctx = browser.new_context(accept_downloads=True)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context):
    """A page that fails its test if the Content-Security-Policy blocked anything on it."""
    opened = context.new_page()
    blocked: list[str] = []
    opened.on("console", lambda message: blocked.append(message.text)
              if "Content Security Policy" in message.text else None)
    yield opened
    assert blocked == [], "the Content-Security-Policy blocked: " + "; ".join(blocked)


@pytest.fixture(scope="session")
def screenshots(db_kind) -> Path:
    folder = REPO_ROOT / "test-artifacts" / "browser" / db_kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def console(db_kind, tmp_path_factory) -> Iterator[Server]:
    """A real server with Birmingham's agencies, a MASH practitioner, an auditor, a flagged
    child, a possible match and a transfer long past its pickup deadline."""
    tmp = tmp_path_factory.mktemp("console")
    with fresh_database(db_kind, tmp) as url, running_server(url, tmp) as server:
        for agency_id, kind, area in (("WEB-POLICE", "police", BIRMINGHAM),
                                      ("WEB-GP", "gp", BIRMINGHAM),
                                      ("WEB-CSC", "childrens_social_care", BIRMINGHAM),
                                      ("WEB-MASH", "mash", BIRMINGHAM),
                                      ("WEB-CSC-B", "childrens_social_care", SANDWELL)):
            server.add_agency(agency_id, kind, area)
        for username, role, agency in ((PRACTITIONER, "mash_practitioner", "WEB-MASH"),
                                       (AUDITOR, "auditor", None)):
            args = ["users", "add", "--username", username, "--password", PASSWORD,
                    "--role", role] + (["--agency", agency] if agency else [])
            out = run_cli(server.env, *args)
            assert out.returncode == 0, out.stderr
        with httpx.Client(base_url=server.url, timeout=30) as http:
            _seed(server, http)
        yield server


def _seed(server: Server, http: httpx.Client) -> None:
    police = server.token(http, "WEB-POLICE")
    r = http.post("/v1/flags", json=flag_body(), headers=police)  # Amelia Hartley, NHS[0]
    assert r.status_code == 201, r.text
    r = http.post("/v1/relationships", json={**relationship_body("registered_gp", NHS[1]),
                                             "subject": GP_RECORD},
                  headers=server.token(http, "WEB-GP"))
    assert r.status_code == 201, r.text
    r = http.post("/v1/flags", headers=police, json=flag_body(
        subject=POLICE_RECORD, summary="Police found Olivia alone at home late at night; "
                                       "she was cold and hungry."))
    assert r.status_code == 201, r.text
    notified = datetime.now(timezone.utc) - timedelta(days=60)  # pickup was due weeks ago
    r = http.post("/v1/transfers", headers=server.token(http, "WEB-CSC"), json={
        "subject": {"nhs_number": NHS[0], "family_name": "Hartley"}, "to_area": SANDWELL,
        "plan": "child_protection_plan", "notified_at": notified.isoformat(),
        "reason": "Family moved to Oldbury; mother gave the new address."})
    assert r.status_code == 201, r.text
    assert r.json()["overdue"] is True


def sign_in(page, server: Server, username: str, start: str = "/console") -> None:
    page.goto(server.url + start)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
