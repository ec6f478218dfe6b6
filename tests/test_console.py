"""The web console over HTTP (in process, each test in a rolled-back transaction): who may open
which page, sign-in and its cookie, CSRF on every form, the idle timeout, and that a page showing
a child is audited exactly as the API's read. The browser tests (tests/browser/) drive the same
pages in Chromium against a real server."""

from __future__ import annotations

import re
import time
from types import SimpleNamespace
from urllib.parse import unquote

import httpx
import pytest
from jose import jwt as jose_jwt
from sqlmodel import select

from api.agencies.models import Agency
from api.audit.models import AuditEvent
from api.auth.models import User
from api.auth.service import set_person_disabled
from api.console import session as console_session
from api.flags.models import Flag
from api.forwarding.models import Delivery
from tests.factories import BIRMINGHAM, NHS, PASSWORD, flag_body

SEARCH = {"purpose": "mash_triage", "reason": "Referral from Northfield Primary this morning"}
PRACTITIONER_PAGES = ["/console/children", "/console/area", "/console/matches",
                      "/console/children/some-child-id"]
AUDIT_PAGES = ["/console/audit", "/console/audit/verify", "/console/audit/events.csv",
               "/console/audit/disclosures?child_id=x"]


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


async def sign_in(client, username: str, password: str = PASSWORD, next_url: str = "/console"):
    login = await client.get("/console/login")
    assert login.status_code == 200
    return await client.post("/console/login", data={
        "username": username, "password": password, "csrf_token": csrf_of(login.text),
        "next": next_url})


async def signed_in(client, username: str) -> str:
    """Sign in and return the session's CSRF token (from the page the person lands on)."""
    r = await sign_in(client, username)
    assert r.status_code == 303, r.text
    page = await client.get(r.headers["location"])
    if page.status_code == 303:
        page = await client.get(page.headers["location"])
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


def events(session, action: str, **where) -> list[AuditEvent]:
    q = select(AuditEvent).where(AuditEvent.action == action)
    for name, value in where.items():
        q = q.where(getattr(AuditEvent, name) == value)
    return list(session.exec(q.order_by(AuditEvent.seq)).all())


@pytest.fixture
async def amelia(client, world) -> str:
    """A child of Birmingham (where mash.a works) with a police flag."""
    r = await client.post("/v1/flags", json=flag_body(), headers=world.auth("POLICE-A"))
    assert r.status_code == 201, r.text
    return r.json()["child_id"]


@pytest.mark.parametrize("path", ["/console", *PRACTITIONER_PAGES, *AUDIT_PAGES])
async def test_pages_send_you_to_sign_in_first(client, world, path):
    r = await client.get(path)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/console/login?next=")
    assert unquote(r.headers["location"].split("next=")[1]) == path


async def test_posts_without_a_session_show_nothing(client, world, session, amelia):
    r = await client.post("/console/children/search", data={**SEARCH, "nhs_number": NHS[0]})
    assert r.status_code == 303 and r.headers["location"].startswith("/console/login")
    r = await client.post(f"/console/children/{amelia}", data=SEARCH)
    assert r.status_code == 303 and "Amelia" not in r.text
    assert events(session, "child.read") == [] and events(session, "child.search") == []


async def test_sign_in_sets_a_protected_session_cookie_and_is_audited(client, world, session,
                                                                      app, settings):
    r = await sign_in(client, "mash.a", next_url="/console/matches")
    assert r.status_code == 303 and r.headers["location"] == "/console/matches"
    cookie = next(c for c in r.headers.get_list("set-cookie")
                  if c.startswith(console_session.COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # development only: the test server speaks plain http
    [login] = events(session, "login", actor="mash.a")
    assert (login.outcome, login.actor_agency) == ("console session", "MASH-A")

    app.state.settings = settings.model_copy(update={"environment": "production"})
    r = await sign_in(client, "auditor")
    cookies = r.headers.get_list("set-cookie")
    assert all("Secure" in c for c in cookies if c.startswith(console_session.COOKIE + "="))


async def test_wrong_password_is_refused_with_an_error_summary(client, world, session):
    r = await sign_in(client, "mash.a", password="not-the-password")
    assert r.status_code == 401
    assert "govuk-error-summary" in r.text and 'href="#username"' in r.text
    assert console_session.COOKIE + "=" not in r.headers.get("set-cookie", "")
    [denied] = events(session, "login", actor="mash.a")
    assert denied.outcome == "denied"
    blank = await sign_in(client, "", password="")
    assert blank.status_code == 400 and "Enter your username" in blank.text


async def test_no_redirect_to_another_site_after_sign_in(client, world):
    r = await sign_in(client, "mash.a", next_url="//evil.example/console")
    assert r.headers["location"] == "/console"


async def test_a_practitioner_cannot_open_the_audit_pages(client, world, session):
    csrf = await signed_in(client, "mash.a")
    for path in AUDIT_PAGES:
        r = await client.get(path)
        assert r.status_code == 403, path
        assert "You cannot do this" in r.text
    r = await client.post("/console/audit/checkpoints", data={"csrf_token": csrf})
    assert r.status_code == 403
    assert events(session, "audit.read") == []


async def test_an_auditor_cannot_open_child_pages(client, world, session, amelia):
    csrf = await signed_in(client, "auditor")
    for path in PRACTITIONER_PAGES:
        assert (await client.get(path)).status_code == 403, path
    for path in ("/console/children/search", f"/console/children/{amelia}"):
        r = await client.post(path, data={**SEARCH, "nhs_number": NHS[0], "csrf_token": csrf})
        assert r.status_code == 403 and "Amelia" not in r.text
    assert events(session, "child.read") == [] and events(session, "child.search") == []


async def test_form_posts_without_the_csrf_token_are_refused(client, world, session, amelia):
    await signed_in(client, "mash.a")
    for token in (None, "", "forged-token"):
        data = {**SEARCH, "nhs_number": NHS[0]}
        if token is not None:
            data["csrf_token"] = token
        r = await client.post("/console/children/search", data=data)
        assert r.status_code == 403 and "Amelia" not in r.text
        r = await client.post(f"/console/children/{amelia}", data=data)
        assert r.status_code == 403
        assert (await client.post("/console/logout", data=data)).status_code == 403
    assert events(session, "child.read") == [] and events(session, "child.search") == []
    # The sign-in form carries its own token, bound to a cookie set with the form.
    client.cookies.clear()
    r = await client.post("/console/login", data={"username": "mash.a", "password": PASSWORD})
    assert r.status_code == 403
    assert events(session, "login", actor="mash.a", outcome="console session")[1:] == []


async def test_a_session_ends_after_the_idle_timeout(client, world, monkeypatch):
    idle = 15 * 60
    # Signed in 16 minutes ago with nothing done since: the session has expired.
    monkeypatch.setattr(console_session, "time",
                        SimpleNamespace(time=lambda: time.time() - idle - 60))
    assert (await sign_in(client, "mash.a")).status_code == 303
    monkeypatch.setattr(console_session, "time", time)
    r = await client.get("/console/children")
    assert r.status_code == 303
    assert r.headers["location"].endswith("&expired=true")
    notice = await client.get(r.headers["location"])
    assert "had not done anything for a while" in notice.text


async def test_every_page_restarts_the_idle_clock(client, world, monkeypatch):
    await signed_in(client, "mash.a")
    first = jose_jwt.get_unverified_claims(client.cookies.get(console_session.COOKIE))
    assert first["exp"] - first["iat"] == 15 * 60
    later = time.time() + 10 * 60  # ten minutes later, still within the idle timeout
    monkeypatch.setattr(console_session, "time", SimpleNamespace(time=lambda: later))
    r = await client.get("/console/children")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    renewed = jose_jwt.get_unverified_claims(client.cookies.get(console_session.COOKIE))
    assert renewed["exp"] >= first["exp"] + 9 * 60
    assert renewed["auth_time"] == first["auth_time"] and renewed["csrf"] == first["csrf"]


async def test_the_session_cookie_and_api_tokens_are_not_interchangeable(client, world):
    await signed_in(client, "mash.a")
    cookie = client.cookies.get(console_session.COOKIE)
    r = await client.get("/v1/matches", headers={"Authorization": f"Bearer {cookie}"})
    assert r.status_code == 401
    client.cookies.clear()
    client.cookies.set(console_session.COOKIE, world.token("mash.a"), path="/console")
    assert (await client.get("/console/children")).status_code == 303


async def test_a_disabled_account_is_signed_out_for_good(client, world, session):
    """Disabling a person ends their console sessions; enabling them again revives none, so a
    copy of the cookie on a lost device stays refused."""
    await signed_in(client, "mash.a")
    kept = client.cookies.get(console_session.COOKIE)
    set_person_disabled(session, "mash.a", True, actor="cli", reason="Laptop lost")
    session.commit()
    assert (await client.get("/console/children")).status_code == 303
    set_person_disabled(session, "mash.a", False, actor="cli", reason="New laptop issued")
    session.commit()
    _replay(client, kept)
    r = await client.get("/console/children")
    assert r.status_code == 303 and r.headers["location"].startswith("/console/login")
    client.cookies.clear()
    await signed_in(client, "mash.a")
    assert (await client.get("/console/children")).status_code == 200


def _replay(client, cookie: str) -> None:
    """The browser's cookies replaced by a copy of a session cookie taken earlier."""
    client.cookies.clear()
    client.cookies.set(console_session.COOKIE, cookie, path="/console")


async def test_signing_out_ends_the_session_and_every_copy_of_its_cookie(client, app, world,
                                                                       session):
    csrf = await signed_in(client, "mash.a")
    copied = client.cookies.get(console_session.COOKIE)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://flagshare.test") as other:
        await signed_in(other, "mash.a")  # the same person in another browser
        assert (await client.get("/console/children")).status_code == 200
        renewed = client.cookies.get(console_session.COOKIE)  # re-signed by that page

        r = await client.post("/console/logout", data={"csrf_token": csrf})
        assert r.status_code == 303
        assert r.headers["location"] == "/console/login?signed_out=true"
        for cookie in (copied, renewed):
            _replay(client, cookie)
            r = await client.get("/console/children")
            assert r.status_code == 303 and r.headers["location"].startswith("/console/login")
            r = await client.post("/console/children/search",
                                  data={**SEARCH, "nhs_number": NHS[0], "csrf_token": csrf})
            assert r.status_code == 303 and r.headers["location"].startswith("/console/login")
        assert (await other.get("/console/children")).status_code == 303
    assert events(session, "child.search") == []
    # signing in again starts a session that works
    client.cookies.clear()
    await signed_in(client, "mash.a")
    assert (await client.get("/console/children")).status_code == 200


@pytest.mark.parametrize("record, key, change", [
    (User, "mash.a", {"role": "auditor", "agency_id": None}),
    (User, "mash.a", {"agency_id": "MASH-B"}),
    (Agency, "MASH-A", {"disabled": True}),  # the person's agency
], ids=["role", "agency", "agency-disabled"])
async def test_a_session_ends_when_the_account_changes(client, world, session, record, key,
                                                       change):
    await signed_in(client, "mash.a")
    row = (session.exec(select(User).where(User.username == key)).one() if record is User
           else session.get(record, key))
    for name, value in change.items():
        setattr(row, name, value)
    session.add(row)
    session.commit()
    r = await client.get("/console/children")
    assert r.status_code == 303 and r.headers["location"].startswith("/console/login")


async def test_a_session_cookie_without_its_generation_is_refused(client, app, world):
    """Cookies issued before sign-out could end carry no generation: they are refused."""
    await signed_in(client, "mash.a")
    claims = jose_jwt.get_unverified_claims(client.cookies.get(console_session.COOKIE))
    assert claims["gen"] == 0
    del claims["gen"]
    _replay(client, app.state.keyring.sign(claims))
    assert (await client.get("/console/children")).status_code == 303


async def test_reading_a_child_is_audited_as_through_the_api(client, world, session, amelia):
    csrf = await signed_in(client, "mash.a")
    purpose_form = await client.get(f"/console/children/{amelia}")
    assert purpose_form.status_code == 200 and "Amelia" not in purpose_form.text
    assert events(session, "child.read") == []

    r = await client.post("/console/children/search",
                          data={**SEARCH, "nhs_number": NHS[0], "csrf_token": csrf})
    assert r.status_code == 200, r.text
    assert "Amelia Hartley" in r.text and "Domestic abuse incident" in r.text
    api = await client.get(f"/v1/children/{amelia}", params=SEARCH, headers=world.auth("mash.a"))
    assert api.status_code == 200
    console_read, api_read = events(session, "child.read", child_id=amelia)
    fields = ("actor", "actor_agency", "action", "outcome", "child_id", "purpose", "reason",
              "lawful_basis", "policy_rule", "policy_version")
    assert {f: getattr(console_read, f) for f in fields} == {
        f: getattr(api_read, f) for f in fields}
    assert (console_read.actor, console_read.policy_rule) == ("mash.a", "READ-MASH-AREA")


async def test_purpose_and_reason_come_before_anything_is_shown(client, world, session, amelia):
    csrf = await signed_in(client, "mash.a")
    r = await client.post("/console/children/search",
                          data={"nhs_number": NHS[0], "csrf_token": csrf})
    assert r.status_code == 400
    assert 'href="#purpose"' in r.text and 'href="#reason"' in r.text
    assert "Amelia" not in r.text
    r = await client.post("/console/children/search", data={"csrf_token": csrf})
    assert all(f'href="#{f}"' in r.text for f in ("purpose", "reason", "nhs_number"))
    r = await client.post(f"/console/children/{amelia}",
                          data={"purpose": "curiosity", "reason": "x", "csrf_token": csrf})
    assert r.status_code == 400 and "Select why" in r.text
    assert events(session, "child.read") == [] and events(session, "child.search") == []


async def test_search_by_name_and_birth_date_lists_candidates(client, world, session, amelia):
    csrf = await signed_in(client, "mash.a")
    r = await client.post("/console/children/search", data={
        **SEARCH, "family_name": "Hartley", "birth_date-day": "14", "birth_date-month": "3",
        "birth_date-year": "2022", "csrf_token": csrf})
    assert r.status_code == 200, r.text
    assert f'action="/console/children/{amelia}"' in r.text
    assert events(session, "child.read") == []
    [shown] = events(session, "child.search", child_id=amelia)
    assert (shown.purpose, shown.reason) == (SEARCH["purpose"], SEARCH["reason"])


@pytest.mark.parametrize("fields, field_id, message", [
    ({"family_name": "Hartley"}, "birth_date-day", "Enter the date of birth"),
    ({"family_name": "Hartley", "birth_date-day": "31", "birth_date-month": "2",
      "birth_date-year": "2022"}, "birth_date-day", "must be a real date"),
    ({"nhs_number": "9990000019"}, "nhs_number", "Enter a valid NHS number"),
    ({}, "nhs_number", "Enter an NHS number, or a last name"),
])
async def test_search_names_each_bad_field(client, world, fields, field_id, message):
    csrf = await signed_in(client, "mash.a")
    r = await client.post("/console/children/search",
                          data={**SEARCH, **fields, "csrf_token": csrf})
    assert r.status_code == 400
    assert f'href="#{field_id}"' in r.text and message in r.text


async def test_a_child_outside_the_area_is_not_found(client, world, session):
    r = await client.post("/v1/flags", json=flag_body(subject={"nhs_number": NHS[3]}),
                          headers=world.auth("POLICE-B"))
    assert r.status_code == 201
    csrf = await signed_in(client, "mash.a")
    r = await client.post("/console/children/search",
                          data={**SEARCH, "nhs_number": NHS[3], "csrf_token": csrf})
    assert r.status_code == 404 and "No child you can open" in r.text
    assert events(session, "child.read") == []


async def test_the_auditor_sees_the_log_and_downloads_csv(client, world, session, amelia):
    await client.get(f"/v1/children/{amelia}", params=SEARCH, headers=world.auth("mash.a"))
    await signed_in(client, "auditor")
    r = await client.get("/console/audit", params={"action": "child.read"})
    assert r.status_code == 200 and "mash.a" in r.text
    assert re.findall(r"<td class=\"govuk-table__cell\">(flag\.publish)", r.text) == []
    csv = await client.get("/console/audit/events.csv", params={"action": "child.read"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    lines = csv.content.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("seq,at,") and len(lines) == 2 and ",child.read," in lines[1]
    reads = events(session, "audit.read", actor="auditor")
    # the landing page, the filtered page and the CSV: each read of the log is itself logged
    assert [(e.outcome, e.reason) for e in reads] == [
        ("events", "filters: none"), ("events", "filters: action=child.read"),
        ("events.csv", "filters: action=child.read")]
    bad = await client.get("/console/audit", params={"since-day": "40", "since-month": "1",
                                                     "since-year": "2026"})
    assert bad.status_code == 400 and 'href="#since-day"' in bad.text


async def test_the_auditor_sees_verification_and_signs_the_head(client, world, session, amelia):
    csrf = await signed_in(client, "auditor")
    page = await client.get("/console/audit/verify")
    assert page.status_code == 200 and "Intact" in page.text
    r = await client.post("/console/audit/checkpoints", data={"csrf_token": csrf})
    assert r.status_code == 303
    page = await client.get(r.headers["location"])
    assert "The current head of the log is signed" in page.text and "Key id" in page.text


async def test_the_govuk_frontend_assets_are_served(client, world):
    page = await client.get("/console/login")
    assert "govuk-icon" not in page.text and "favicon" not in page.text  # no GOV.UK crown
    css = await client.get("/console/static/govuk/govuk-frontend.min.css")
    assert css.status_code == 200 and "govuk-template" in css.text
    assert "GDS Transport" not in css.text  # not on GOV.UK: no GOV.UK typeface
    js = await client.get("/console/static/console.js")
    assert js.status_code == 200 and "initAll" in js.text


async def test_area_work_shows_only_the_areas_own_unacknowledged_deliveries(client, world,
                                                                            session, amelia):
    r = await client.post("/v1/flags", json=flag_body(subject={"nhs_number": NHS[3]}),
                          headers=world.auth("POLICE-B"))
    assert r.status_code == 201
    sandwell_child = r.json()["child_id"]
    mine = session.exec(select(Delivery).join(Flag, Flag.id == Delivery.flag_id)
                        .where(Flag.child_id == amelia, Delivery.acknowledge_by.is_not(None))
                        .order_by(Delivery.seq)).all()
    assert mine and all(world.agencies[d.recipient_id].area == BIRMINGHAM for d in mine)
    acked = mine[0]
    r = await client.post(f"/v1/deliveries/{acked.id}/ack", json={"status": "received"},
                          headers=world.auth(acked.recipient_id))
    assert r.status_code == 200, r.text
    await signed_in(client, "mash.a")
    page = (await client.get("/console/area")).text
    table = page[page.index('id="unacknowledged"'):]
    assert table.count(f'href="/console/children/{amelia}"') == len(mine) - 1
    assert sandwell_child not in page
    await client.post("/console/logout", data={"csrf_token": csrf_of(page)})
    await signed_in(client, "mash.b")
    page = (await client.get("/console/area")).text
    assert sandwell_child in page and amelia not in page


async def test_the_child_page_shows_household_risk_without_its_content(client, world, session):
    """A new partner flagged for domestic abuse elsewhere: category, date and holder only."""
    r = await client.post("/v1/flags", headers=world.auth("POLICE-B"), json=flag_body(
        subject={"nhs_number": NHS[5]}, related_people=[
            {"role": "alleged_perpetrator", "nhs_number": NHS[9], "given_name": "Dean",
             "family_name": "Cole"}]))
    assert r.status_code == 201, r.text
    r = await client.post("/v1/household-members", headers=world.auth("HV-A"), json={
        "subject": {"nhs_number": NHS[0], "given_name": "Amelia", "family_name": "Hartley"},
        "people": [{"role": "household_member", "nhs_number": NHS[9],
                    "relationship": "mother's new partner"}]})
    assert r.status_code == 201, r.text
    csrf = await signed_in(client, "mash.a")
    r = await client.post("/console/children/search",
                          data={**SEARCH, "nhs_number": NHS[0], "csrf_token": csrf})
    assert r.status_code == 200, r.text
    assert 'id="household-risk"' in r.text and "Domestic abuse incident" in r.text
    assert "Dean Cole" in r.text and "POLICE-B" in r.text
    assert flag_body()["summary"] not in r.text and flag_body()["details"] not in r.text
