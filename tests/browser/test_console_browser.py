"""The web console in Chromium against a real server: what a MASH practitioner and an auditor
do, and what each may not do."""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from playwright.sync_api import expect

from tests.browser.conftest import AUDITOR, PASSWORD, PRACTITIONER, sign_in
from tests.factories import NHS

PURPOSE = "Strategy discussion"
REASON = "Strategy discussion called after the school's referral today"


def api_token(server, username: str) -> dict[str, str]:
    r = httpx.post(server.url + "/v1/oauth/token", data={
        "grant_type": "password", "username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def audit_events(server, **params) -> list[dict]:
    r = httpx.get(server.url + "/v1/audit/events", params={**params, "limit": 500},
                  headers=api_token(server, AUDITOR))
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_a_practitioner_finds_a_child_and_works_the_area(console, page, screenshots):
    page.goto(console.url + "/console/children")
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to flagshare")
    page.screenshot(path=screenshots / "01-sign-in.png", full_page=True)

    sign_in(page, console, PRACTITIONER, start="/console/children")
    expect(page).to_have_url(console.url + "/console/children")
    page.screenshot(path=screenshots / "02-find-a-child.png", full_page=True)

    # Searching without saying why shows nothing but the errors, and moves focus to them.
    page.get_by_label("Last name").fill("Hartley")
    page.get_by_role("button", name="Search").click()
    summary = page.locator(".govuk-error-summary")
    expect(summary).to_be_visible()
    expect(summary).to_be_focused()
    expect(summary).to_contain_text("Select why you need to see this child's record")
    expect(page.get_by_text("Amelia")).to_have_count(0)
    page.screenshot(path=screenshots / "03-search-errors.png", full_page=True)
    summary.get_by_role("link", name="Select why you need to see this child's record").click()
    expect(page.get_by_label("Why do you need to see this record?")).to_be_focused()

    page.get_by_label("Why do you need to see this record?").select_option(label=PURPOSE)
    page.get_by_label("What prompted this?").fill(REASON)
    page.get_by_label("Day").fill("14")
    page.get_by_label("Month").fill("3")
    page.get_by_label("Year").fill("2022")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#results")).to_have_text("1 child found")
    page.screenshot(path=screenshots / "04-candidates.png", full_page=True)

    page.get_by_role("button", name="Open record of Amelia Hartley").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Amelia Hartley")
    chronology = page.locator("#chronology")
    expect(chronology).to_contain_text("WEB-POLICE")
    expect(chronology).to_contain_text("Domestic abuse incident")
    expect(chronology).to_contain_text("High")
    expect(chronology).to_contain_text("Amelia was present and frightened")
    expect(page.locator("#transfers")).to_contain_text("Overdue")
    page.screenshot(path=screenshots / "05-child.png", full_page=True)
    [read] = [e for e in audit_events(console, action="child.read") if e["actor"] == PRACTITIONER]
    assert (read["purpose"], read["reason"]) == ("strategy_discussion", REASON)

    page.get_by_role("link", name="Area work").click()
    transfers = page.locator("#transfers")
    expect(transfers.get_by_role("row")).to_have_count(2)  # the header and the transfer
    expect(transfers).to_contain_text("Overdue")
    expect(page.locator("#unacknowledged")).to_contain_text("Domestic abuse incident")
    page.screenshot(path=screenshots / "06-area-work.png", full_page=True)

    page.get_by_role("link", name="Possible matches").click()
    match = page.locator("section[id^=match-]")
    expect(match).to_have_count(1)
    expect(match).to_contain_text("Olivia Brennan")
    expect(match).to_contain_text("Olivia Brenan")
    page.screenshot(path=screenshots / "07-possible-matches.png", full_page=True)
    match.get_by_role("button", name=re.compile("Save decision")).click()  # nothing chosen
    expect(page.locator(".govuk-error-summary")).to_contain_text(
        "Select whether these are the same child")
    match = page.locator("section[id^=match-]")
    match.get_by_label("Yes, merge the records").check()
    match.get_by_label("Why?").fill("Same address and mother on both; GP confirmed by phone.")
    match.get_by_role("button", name=re.compile("Save decision")).click()
    expect(page.locator(".govuk-notification-banner--success")).to_contain_text(
        "The records were merged")
    expect(page.locator("#no-matches")).to_be_visible()
    page.screenshot(path=screenshots / "08-match-confirmed.png", full_page=True)
    confirmed = httpx.get(console.url + "/v1/matches", params={"status": "confirmed"},
                          headers=api_token(console, PRACTITIONER)).json()["items"]
    assert [m["decision_reason"] for m in confirmed] == [
        "Same address and mother on both; GP confirmed by phone."]

    page.get_by_role("button", name="Sign out").click()
    expect(page.locator(".govuk-inset-text")).to_have_text("You have signed out.")
    page.goto(console.url + "/console/area")
    expect(page).to_have_url(re.compile(r"/console/login"))


def test_an_auditor_filters_the_log_downloads_csv_and_checks_the_chain(console, page,
                                                                       screenshots):
    sign_in(page, console, AUDITOR)
    expect(page).to_have_url(console.url + "/console/audit")
    expect(page.locator("#events")).to_be_visible()
    page.screenshot(path=screenshots / "10-sharing-log.png", full_page=True)

    page.get_by_label("Action").fill("flag.publish")
    page.get_by_label("Agency").fill("WEB-POLICE")
    page.get_by_role("button", name="Apply filters").click()
    rows = page.locator("#events tbody tr")
    expect(rows).to_have_count(2)  # the two police flags
    for i in range(2):
        expect(rows.nth(i).locator("td").nth(2)).to_contain_text("flag.publish")
    page.screenshot(path=screenshots / "11-sharing-log-filtered.png", full_page=True)

    with page.expect_download() as download:
        page.get_by_role("link", name="Download these events as CSV").click()
    text = open(download.value.path(), encoding="utf-8").read()
    assert text.startswith("\ufeffseq,at,actor,")
    lines = text.removeprefix("\ufeff").splitlines()
    assert len(lines) == 3 and all(",flag.publish," in line for line in lines[1:])

    rows.first.locator("td").nth(5).get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("A child's disclosures")
    expect(page.locator("#disclosures").or_(page.get_by_text("has not been disclosed"))
           ).to_be_visible()
    page.screenshot(path=screenshots / "12-disclosures.png", full_page=True)

    page.get_by_role("link", name="Chain verification").click()
    expect(page.locator("#verification")).to_contain_text("Intact")
    page.get_by_role("button", name="Sign the head now").click()
    expect(page.locator(".govuk-notification-banner--success")).to_be_visible()
    expect(page.locator("#checkpoint")).to_contain_text("Yes")
    page.screenshot(path=screenshots / "13-chain-verification.png", full_page=True)

    reads = [e for e in audit_events(console, action="audit.read") if e["actor"] == AUDITOR]
    assert "events.csv" in [e["outcome"] for e in reads]


def test_each_role_is_kept_to_its_own_pages(console, browser, screenshots):
    practitioner = browser.new_context()
    page = practitioner.new_page()
    sign_in(page, console, PRACTITIONER)
    for path in ("/console/audit", "/console/audit/verify", "/console/audit/events.csv"):
        response = page.goto(console.url + path)
        assert response.status == 403, path
        expect(page.get_by_role("heading", level=1)).to_have_text("You cannot do this")
    page.screenshot(path=screenshots / "20-practitioner-refused-audit.png", full_page=True)
    practitioner.close()

    auditor = browser.new_context()
    page = auditor.new_page()
    sign_in(page, console, AUDITOR)
    for path in ("/console/children", "/console/area", "/console/matches"):
        assert page.goto(console.url + path).status == 403, path
    auditor.close()


class _Attacker(BaseHTTPRequestHandler):
    """Another origin on loopback serving a form that posts to the console on load."""

    target = ""

    def do_GET(self):
        body = (f'<form id="f" method="post" action="{self.target}/console/children/search">'
                f'<input name="purpose" value="mash_triage"><input name="reason" value="x">'
                f'<input name="nhs_number" value="{NHS[0]}"></form>'
                '<script>document.getElementById("f").submit()</script>').encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_cross_origin_form_posts_without_the_token_are_refused(console, context, page,
                                                               screenshots):
    sign_in(page, console, PRACTITIONER)
    before = len(audit_events(console, action="child.read"))
    # The session cookie goes with a request made from the console's own browser session...
    r = context.request.post(console.url + "/console/children/search",
                             form={"purpose": "mash_triage", "reason": "x",
                                   "nhs_number": NHS[0]}, max_redirects=0)
    assert r.status == 403 and "Amelia" not in r.text()
    # ...and with a form another loopback site makes the browser post (same site, other port).
    _Attacker.target = console.url
    attacker = ThreadingHTTPServer(("127.0.0.1", 0), _Attacker)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        with page.expect_response(re.compile(r"/console/children/search$")) as posted:
            page.goto(f"http://127.0.0.1:{attacker.server_address[1]}/")
        assert posted.value.status == 403
        expect(page.get_by_role("heading", level=1)).to_have_text("You cannot do this")
        expect(page.get_by_text("Amelia")).to_have_count(0)
        page.screenshot(path=screenshots / "21-cross-origin-post-refused.png", full_page=True)
    finally:
        attacker.shutdown()
        attacker.server_close()
    assert len(audit_events(console, action="child.read")) == before


def test_the_content_security_policy_lets_govuk_frontend_run(console, page):
    """GOV.UK's inline script runs by its nonce (it marks the body) and the page's own
    stylesheets load; the `page` fixture fails the test on any blocked resource."""
    page.goto(console.url + "/console/login")
    expect(page.locator("body")).to_have_class(re.compile(r"\bgovuk-frontend-supported\b"))
    colour = page.get_by_role("button", name="Sign in").evaluate(
        "button => getComputedStyle(button).backgroundColor")
    assert colour not in ("", "rgba(0, 0, 0, 0)", "rgb(239, 239, 239)")  # GOV.UK's green
