"""Registering and listing agencies (api/agencies): validation, secrets, paging, idempotency."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid

import httpx
import pytest
from sqlalchemy import delete as sa_delete
from sqlmodel import Session, func, select

from api.agencies.models import Agency
from api.audit.models import AuditEvent
from api.auth.models import User
from api.auth.passwords import verify_secret
from api.idempotency.models import IdempotencyRecord
from api.main import create_app
from api.policy.schema import AGENCY_KINDS
from tests.factories import AGENCIES, BIRMINGHAM, SANDWELL, SECRET

CONTRACT_KINDS = ("gp", "midwifery", "health_visiting", "police", "childrens_social_care",
                  "education", "ambulance", "adult_social_care", "mental_health",
                  "substance_misuse", "youth_justice", "housing", "mash")
UNKNOWN_AREA = "E06999999"
UNLISTED_AREA = "E06999998"  # well formed, not in the policy; an agency is registered there


def body(**override) -> dict:
    b = {"id": "P81001", "name": "Oak Tree Surgery", "kind": "gp", "area": BIRMINGHAM}
    b.update(override)
    return {k: v for k, v in b.items() if v is not ...}


def problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    b = r.json()
    assert {"type", "title", "status", "detail"} <= b.keys()
    assert b["status"] == status and b["title"] and b["detail"]
    return b


def field_errors(r: httpx.Response) -> set[str]:
    b = problem(r, 422)
    assert b["errors"], "a 422 must name the bad fields"
    return {e["field"] for e in b["errors"]}


def agency_count(session: Session) -> int:
    session.expire_all()
    return session.exec(select(func.count()).select_from(Agency)).one()


async def register(client, world, **override) -> httpx.Response:
    return await client.post("/v1/agencies", json=body(**override), headers=world.auth("admin"))


async def get_token(client, client_id: str, secret: str) -> httpx.Response:
    return await client.post("/v1/oauth/token", data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})


# --- registering -----------------------------------------------------------------------------

async def test_admin_registers_an_agency_and_gets_its_secret_once(client, world, session):
    r = await register(client, world)
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created.pop("client_secret")
    assert created == {"id": "P81001", "name": "Oak Tree Surgery", "kind": "gp",
                       "area": BIRMINGHAM, "disabled": False}
    assert isinstance(secret, str) and len(secret) >= 32

    stored = session.get(Agency, "P81001")
    assert stored.client_secret_hash.startswith("$argon2")
    assert secret not in stored.client_secret_hash
    assert verify_secret(stored.client_secret_hash, secret)

    # reading it back never shows the secret
    one = await client.get("/v1/agencies/P81001", headers=world.auth("GP-A"))
    assert one.status_code == 200 and one.json() == created
    listed = await client.get("/v1/agencies", params={"limit": 500}, headers=world.auth("admin"))
    assert created in listed.json()["items"]
    assert secret not in one.text and secret not in listed.text
    assert all("client_secret" not in item for item in listed.json()["items"])


async def test_the_secret_works_at_the_token_endpoint(client, world):
    secret = (await register(client, world, kind="police", id="POL-WM")).json()["client_secret"]
    r = await get_token(client, "POL-WM", secret)
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert (claims["sub"], claims["agency"], claims["area"], claims["role"]) == (
        "POL-WM", "POL-WM", BIRMINGHAM, "agency_system")
    me = await client.get("/v1/agencies/POL-WM", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert (await get_token(client, "POL-WM", secret[:-1])).status_code == 401


async def test_each_agency_gets_its_own_secret(client, world):
    first = (await register(client, world, id="A1")).json()["client_secret"]
    second = (await register(client, world, id="A2")).json()["client_secret"]
    assert first != second
    assert (await get_token(client, "A2", first)).status_code == 401


async def test_registration_is_audited(client, world, session):
    await register(client, world)
    session.expire_all()
    event = session.exec(select(AuditEvent).where(AuditEvent.action == "agency.register")
                         .order_by(AuditEvent.seq.desc())).first()
    assert event is not None
    assert (event.actor, event.recipient, event.outcome) == ("admin", "P81001", "registered")


# --- disabling --------------------------------------------------------------------------------

async def change(client, world, agency_id: str, **body) -> httpx.Response:
    return await client.patch(f"/v1/agencies/{agency_id}", json=body, headers=world.auth("admin"))


async def test_an_admin_disables_an_agency_and_enables_it_again(client, world, session):
    """A system retired or compromised is shut out at once, with its practitioners, and the
    log says who did it and why; enabled again, its secret and held tokens work as before."""
    system, practitioner = world.auth("GP-A"), world.auth("mash.a")  # issued before
    r = await change(client, world, "GP-A", disabled=True, reason="Practice closed: CHG-4411")
    assert r.status_code == 200 and r.json() == {"id": "GP-A", "name": r.json()["name"],
                                                 "kind": "gp", "area": BIRMINGHAM,
                                                 "disabled": True}
    assert (await client.get("/v1/subscriptions", headers=system)).status_code == 401
    assert (await get_token(client, "GP-A", SECRET)).status_code == 401
    shown = await client.get("/v1/agencies/GP-A", headers=world.auth("auditor"))
    assert shown.json()["disabled"] is True
    assert (await client.get("/v1/suspected-moves", headers=practitioner)).status_code == 200

    await change(client, world, "MASH-A", disabled=True, reason="MASH merged: CHG-4412")
    assert (await client.get("/v1/suspected-moves", headers=practitioner)).status_code == 401

    for agency_id in ("GP-A", "MASH-A"):
        r = await change(client, world, agency_id, disabled=False, reason="Reopened: CHG-4413")
        assert r.status_code == 200 and r.json()["disabled"] is False
    assert (await client.get("/v1/subscriptions", headers=system)).status_code == 200
    assert (await get_token(client, "GP-A", SECRET)).status_code == 200
    assert (await client.get("/v1/suspected-moves", headers=practitioner)).status_code == 200
    session.expire_all()
    logged = session.exec(select(AuditEvent.action, AuditEvent.actor, AuditEvent.recipient,
                                 AuditEvent.outcome, AuditEvent.reason)
                          .where(AuditEvent.action.in_(["agency.disable", "agency.enable"]))
                          .order_by(AuditEvent.seq)).all()
    assert [tuple(e) for e in logged] == [
        ("agency.disable", "admin", "GP-A", "disabled", "Practice closed: CHG-4411"),
        ("agency.disable", "admin", "MASH-A", "disabled", "MASH merged: CHG-4412"),
        ("agency.enable", "admin", "GP-A", "enabled", "Reopened: CHG-4413"),
        ("agency.enable", "admin", "MASH-A", "enabled", "Reopened: CHG-4413")]


async def test_disabling_twice_is_recorded_as_unchanged(client, world, session):
    for outcome in ("disabled", "unchanged"):
        r = await change(client, world, "GP-A", disabled=True, reason="Retired")
        assert r.status_code == 200 and r.json()["disabled"] is True
        session.expire_all()
        last = session.exec(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
        assert (last.action, last.outcome) == ("agency.disable", outcome)


async def test_a_change_retried_with_its_key_is_made_and_audited_once(client, world, session):
    keyed = {**world.auth("admin"), "Idempotency-Key": "disable-gp-a"}
    change_body = {"disabled": True, "reason": "Practice closed"}
    first = await client.patch("/v1/agencies/GP-A", json=change_body, headers=keyed)
    again = await client.patch("/v1/agencies/GP-A", json=change_body, headers=keyed)
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()
    session.expire_all()
    assert session.exec(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "agency.disable")).one() == 1
    problem(await client.patch("/v1/agencies/GP-A", headers=keyed,
                               json={**change_body, "disabled": False}), 409)


@pytest.mark.parametrize("who", ["GP-A", "mash.a", "auditor"])
async def test_only_an_admin_disables_an_agency(client, world, session, who):
    r = await client.patch("/v1/agencies/GP-A", json={"disabled": True, "reason": "Mine"},
                           headers=world.auth(who))
    problem(r, 403)
    session.expire_all()
    assert session.get(Agency, "GP-A").disabled is False


@pytest.mark.parametrize("payload,fields", [
    ({"disabled": True}, {"reason"}),
    ({"disabled": True, "reason": "   "}, {"reason"}),
    ({"reason": "Retired"}, {"disabled"}),
    ({"disabled": "maybe", "reason": "Retired"}, {"disabled"}),
    ({"disabled": True, "reason": "Retired", "name": "Renamed"}, {"name"}),
])
async def test_a_bad_change_is_422_naming_the_field(client, world, session, payload, fields):
    assert field_errors(await change(client, world, "GP-A", **payload)) == fields
    session.expire_all()
    assert session.get(Agency, "GP-A").disabled is False


async def test_disabling_an_unknown_agency_is_404(client, world):
    problem(await change(client, world, "NO-SUCH", disabled=True, reason="Retired"), 404)


@pytest.mark.parametrize("kind", CONTRACT_KINDS)
async def test_every_contract_kind_is_accepted(client, world, kind):
    assert set(CONTRACT_KINDS) == set(AGENCY_KINDS)
    r = await register(client, world, id=f"NEW-{kind}".replace("_", "-"), kind=kind)
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == kind


@pytest.mark.parametrize("area", ["E06000001", BIRMINGHAM, "E09000001", "E10000003"])
async def test_areas_of_each_prefix_in_the_policy_are_accepted(client, world, policy, area):
    assert area in policy.areas
    r = await register(client, world, area=area)
    assert r.status_code == 201, r.text
    assert r.json()["area"] == area


async def test_duplicate_id_is_409_and_changes_nothing(client, world, session):
    r = await register(client, world, id="GP-A", name="Impostor", area=SANDWELL)
    problem(r, 409)
    session.expire_all()
    kept = session.get(Agency, "GP-A")
    assert (kept.name, kept.area) == ("Test gp GP-A", BIRMINGHAM)
    assert (await get_token(client, "GP-A", SECRET)).status_code == 200

    secret = (await register(client, world)).json()["client_secret"]
    problem(await register(client, world, name="Again"), 409)
    assert (await get_token(client, "P81001", secret)).status_code == 200


@pytest.mark.parametrize("kind", ["social_work", "GP", "Police", "", "school", None, 3])
async def test_unknown_kind_is_422_naming_kind(client, world, session, kind):
    before = agency_count(session)
    r = await register(client, world, kind=kind)
    assert field_errors(r) == {"kind"}
    assert agency_count(session) == before


@pytest.mark.parametrize("area", [
    "E07000001",      # a district council: no children's services
    "E11000001",
    "W06000001",      # Wales
    "S12000033",      # Scotland
    "e08000025",      # lower case
    "E0800002",       # too short
    "E080000250",     # too long
    "E08 000025",
    " E08000025",
    "",
    "E08000025\n",
    None,
    8000025,
])
async def test_malformed_area_is_422_naming_area(client, world, session, area):
    before = agency_count(session)
    r = await register(client, world, area=area)
    assert field_errors(r) == {"area"}
    assert agency_count(session) == before


async def test_well_formed_but_unknown_area_is_422(client, world, session, policy):
    assert UNKNOWN_AREA not in policy.areas
    before = agency_count(session)
    r = await register(client, world, area=UNKNOWN_AREA)
    assert field_errors(r) == {"area"}
    assert UNKNOWN_AREA in problem(r, 422)["detail"]
    assert agency_count(session) == before


async def test_an_unknown_area_is_named_with_the_fields_the_schema_refuses(client, world,
                                                                          session):
    before = agency_count(session)
    r = await register(client, world, kind="dentist", area="E09999999", name="")
    assert field_errors(r) == {"kind", "area", "name"}
    area = next(e for e in r.json()["errors"] if e["field"] == "area")
    assert area["message"] == ("E09999999 is not an area known to this service (not in the "
                               "policy data and no registered agency there)")
    assert agency_count(session) == before


async def test_area_of_a_registered_agency_is_known_without_policy(client, world, session, policy):
    assert UNLISTED_AREA not in policy.areas
    problem(await register(client, world, area=UNLISTED_AREA), 422)
    session.add(Agency(id="CSC-X", name="Outside the policy", kind="childrens_social_care",
                       area=UNLISTED_AREA, client_secret_hash="x"))
    session.commit()
    r = await register(client, world, area=UNLISTED_AREA)
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("override,fields", [
    ({"id": ...}, {"id"}),
    ({"name": ...}, {"name"}),
    ({"kind": ...}, {"kind"}),
    ({"area": ...}, {"area"}),
    ({"id": ..., "name": ..., "kind": ..., "area": ...}, {"id", "name", "kind", "area"}),
    ({"id": "x"}, {"id"}),                      # too short
    ({"id": "A" * 65}, {"id"}),                 # too long
    ({"id": "-leading-dash"}, {"id"}),
    ({"id": "has space"}, {"id"}),
    ({"id": "slash/in/id"}, {"id"}),
    ({"name": ""}, {"name"}),
    ({"name": "n" * 201}, {"name"}),
    ({"name": 7}, {"name"}),
    ({"client_secret": "my-own-secret"}, {"client_secret"}),  # cannot choose its own secret
    ({"kind": "police", "area": "X"}, {"area"}),
    ({"kind": "nope", "area": "X"}, {"kind", "area"}),
])
async def test_invalid_bodies_are_422_naming_each_field(client, world, session, override, fields):
    before = agency_count(session)
    r = await register(client, world, **override)
    assert field_errors(r) == fields
    assert agency_count(session) == before


@pytest.mark.parametrize("content", [b"{not json", b"[]", b'"agency"', b"null", b"{,}"])
async def test_malformed_body_is_400(client, world, session, content):
    before = agency_count(session)
    r = await client.post("/v1/agencies", content=content,
                          headers={**world.auth("admin"), "Content-Type": "application/json"})
    problem(r, 400)
    assert agency_count(session) == before


async def test_empty_body_is_422_naming_the_body(client, world, session):
    before = agency_count(session)
    r = await client.post("/v1/agencies", content=b"",
                          headers={**world.auth("admin"), "Content-Type": "application/json"})
    assert field_errors(r) == {"body"}
    assert agency_count(session) == before


async def test_oversized_body_is_413(client, world, session, settings):
    before = agency_count(session)
    r = await register(client, world, name="n" * (settings.max_body_bytes + 1))
    problem(r, 413)
    assert agency_count(session) == before


# --- reading ---------------------------------------------------------------------------------

async def test_get_unknown_agency_is_404_problem(client, world):
    b = problem(await client.get("/v1/agencies/NO-SUCH", headers=world.auth("GP-A")), 404)
    assert b["type"] and b["title"]


@pytest.mark.parametrize("path", ["/v1/agencies/" + "A" * 300])
async def test_get_odd_ids_is_404_not_5xx(client, world, path):
    problem(await client.get(path, headers=world.auth("GP-A")), 404)


@pytest.mark.parametrize("path", ["/v1/agencies", "/v1/agencies/GP-A"])
async def test_reading_needs_a_token(client, world, path):
    problem(await client.get(path), 401)


@pytest.mark.parametrize("who", ["GP-A", "mash.a", "auditor", "admin"])
async def test_any_authenticated_caller_may_read(client, world, who):
    r = await client.get("/v1/agencies/CSC-B", headers=world.auth(who))
    assert r.status_code == 200
    assert r.json() == {"id": "CSC-B", "name": "Test childrens_social_care CSC-B",
                        "kind": "childrens_social_care", "area": SANDWELL, "disabled": False}


async def _all_pages(client, world, limit: int, **params) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        query = {"limit": limit, **params} | ({"cursor": cursor} if cursor else {})
        r = await client.get("/v1/agencies", params=query, headers=world.auth("GP-A"))
        assert r.status_code == 200, r.text
        page = r.json()
        assert set(page) == {"items", "next_cursor"}
        pages.append([a["id"] for a in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "pagination does not end"


async def test_list_default_page_holds_everything_here(client, world):
    r = await client.get("/v1/agencies", headers=world.auth("GP-A"))
    page = r.json()
    assert page["next_cursor"] is None
    assert [a["id"] for a in page["items"]] == sorted(AGENCIES)
    assert all(set(a) == {"id", "name", "kind", "area", "disabled"} for a in page["items"])


@pytest.mark.parametrize("limit", [1, 4, 5, 12])
async def test_pages_cover_every_agency_once(client, world, limit):
    pages = await _all_pages(client, world, limit)
    assert all(len(p) == limit for p in pages[:-1])
    assert 1 <= len(pages[-1]) <= limit
    assert [i for p in pages for i in p] == sorted(AGENCIES)


async def test_next_cursor_is_null_when_the_last_page_is_exactly_full(client, world):
    pages = await _all_pages(client, world, len(AGENCIES))
    assert pages == [sorted(AGENCIES)]


async def test_limit_of_500_is_allowed_and_counts_new_agencies(client, world):
    for i in range(3):
        assert (await register(client, world, id=f"NEW-{i}")).status_code == 201
    r = await client.get("/v1/agencies", params={"limit": 500}, headers=world.auth("GP-A"))
    assert r.status_code == 200
    assert len(r.json()["items"]) == len(AGENCIES) + 3 and r.json()["next_cursor"] is None


@pytest.mark.parametrize("limit", ["0", "501", "-1", "abc", "2.5", ""])
async def test_bad_limit_is_422_naming_limit(client, world, limit):
    r = await client.get("/v1/agencies", params={"limit": limit}, headers=world.auth("GP-A"))
    assert field_errors(r) == {"limit"}


def _cursor_of(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    "!!!", "not-a-cursor", "x" * 600, _cursor_of(5), _cursor_of({"id": "GP-A"}),
    _cursor_of(["GP-A"]), _cursor_of(True), _cursor_of("GP-A\u0000"),
])
async def test_bad_cursor_is_422_naming_cursor(client, world, cursor):
    r = await client.get("/v1/agencies", params={"cursor": cursor}, headers=world.auth("GP-A"))
    assert field_errors(r) == {"cursor"}


async def test_filters_by_area_and_kind_page_too(client, world):
    sandwell = await _all_pages(client, world, 2, area=SANDWELL)
    assert [i for p in sandwell for i in p] == sorted(
        a for a, (_, area) in AGENCIES.items() if area == SANDWELL)
    gps = await _all_pages(client, world, 1, kind="gp")
    assert gps == [["GP-A"], ["GP-B"]]
    both = await _all_pages(client, world, 50, kind="education", area=BIRMINGHAM)
    assert both == [["SCHOOL-A", "SCHOOL-A2"]]


@pytest.mark.parametrize("params,field", [
    ({"area": "E07000001"}, "area"),
    ({"area": "birmingham"}, "area"), ({"kind": "school"}, "kind"),
])
async def test_bad_filters_are_422_naming_them(client, world, params, field):
    r = await client.get("/v1/agencies", params=params, headers=world.auth("GP-A"))
    assert field_errors(r) == {field}


async def test_filter_on_an_area_with_no_agencies_is_an_empty_page(client, world):
    r = await client.get("/v1/agencies", params={"area": "E06000001"}, headers=world.auth("GP-A"))
    assert r.json() == {"items": [], "next_cursor": None}


# --- idempotency -----------------------------------------------------------------------------

async def test_same_idempotency_key_and_body_replays_the_first_result(client, world, session):
    headers = {**world.auth("admin"), "Idempotency-Key": "reg-1"}
    first = await client.post("/v1/agencies", json=body(), headers=headers)
    assert first.status_code == 201, first.text
    count = agency_count(session)
    audits = session.exec(select(func.count()).select_from(AuditEvent)
                          .where(AuditEvent.action == "agency.register")).one()
    # the same JSON in another key order is the same body
    again = await client.post("/v1/agencies", content=json.dumps(dict(reversed(body().items()))),
                              headers={**headers, "Content-Type": "application/json"})
    assert again.status_code == 201, again.text
    assert again.json()["id"] == first.json()["id"] == "P81001"
    # The secret is never stored for replays; only its hash exists anywhere.
    assert again.json()["client_secret"] is None and first.json()["client_secret"]
    stored = session.exec(select(IdempotencyRecord)).all()
    assert stored and all(first.json()["client_secret"] not in json.dumps(r.response_body)
                          for r in stored)
    assert agency_count(session) == count
    session.expire_all()
    assert session.exec(select(func.count()).select_from(AuditEvent)
                        .where(AuditEvent.action == "agency.register")).one() == audits
    assert (await get_token(client, "P81001", first.json()["client_secret"])).status_code == 200


async def test_admin_rotates_a_lost_secret(client, world, session):
    first = await client.post("/v1/agencies", json=body(), headers=world.auth("admin"))
    old = first.json()["client_secret"]
    for who in ("GP-A", "mash.a", "auditor"):
        r = await client.post("/v1/agencies/P81001/secret", headers=world.auth(who))
        assert r.status_code == 403
    assert (await client.post("/v1/agencies/NOPE/secret",
                              headers=world.auth("admin"))).status_code == 404
    rotated = await client.post("/v1/agencies/P81001/secret", headers=world.auth("admin"))
    assert rotated.status_code == 200
    new = rotated.json()["client_secret"]
    assert new and new != old
    assert (await get_token(client, "P81001", new)).status_code == 200
    assert (await get_token(client, "P81001", old)).status_code == 401


async def test_a_rotation_retried_with_its_key_rotates_once(client, world, session):
    await client.post("/v1/agencies", json=body(), headers=world.auth("admin"))
    keyed = {**world.auth("admin"), "Idempotency-Key": "rotate-1"}
    first = await client.post("/v1/agencies/P81001/secret", headers=keyed)
    again = await client.post("/v1/agencies/P81001/secret", headers=keyed)
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == {**first.json(), "client_secret": None}  # never stored, never shown
    assert (await get_token(client, "P81001", first.json()["client_secret"])).status_code == 200
    rotations = session.exec(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "agency.rotate_secret")).one()
    assert rotations == 1
    other = await client.post("/v1/agencies/GP-A/secret", headers=keyed)  # another agency
    problem(other, 409)


async def test_same_idempotency_key_with_another_body_is_409(client, world, session):
    headers = {**world.auth("admin"), "Idempotency-Key": "reg-2"}
    assert (await client.post("/v1/agencies", json=body(), headers=headers)).status_code == 201
    count = agency_count(session)
    r = await client.post("/v1/agencies", json=body(id="P81002"), headers=headers)
    problem(r, 409)
    assert agency_count(session) == count
    assert session.get(Agency, "P81002") is None


async def test_different_idempotency_keys_are_different_requests(client, world):
    admin = world.auth("admin")
    r1 = await client.post("/v1/agencies", json=body(id="K1"),
                           headers={**admin, "Idempotency-Key": "k-1"})
    r2 = await client.post("/v1/agencies", json=body(id="K2"),
                           headers={**admin, "Idempotency-Key": "k-2"})
    assert (r1.status_code, r2.status_code) == (201, 201)
    # the same body under a fresh key is a new request: a duplicate
    r3 = await client.post("/v1/agencies", json=body(id="K1"),
                           headers={**admin, "Idempotency-Key": "k-3"})
    problem(r3, 409)


async def test_a_refused_request_does_not_use_up_its_key(client, world):
    headers = {**world.auth("admin"), "Idempotency-Key": "reg-3"}
    problem(await client.post("/v1/agencies", json=body(area=UNKNOWN_AREA), headers=headers), 422)
    r = await client.post("/v1/agencies", json=body(), headers=headers)
    assert r.status_code == 201, r.text


async def test_idempotency_key_over_200_characters_is_422(client, world, session):
    before = agency_count(session)
    r = await client.post("/v1/agencies", json=body(),
                          headers={**world.auth("admin"), "Idempotency-Key": "k" * 201})
    assert field_errors(r) == {"idempotency-key"}
    assert agency_count(session) == before


# --- concurrent registrations (committed through a real session, then cleaned up) ------------

@pytest.fixture
async def committing_client(engine, settings):
    """A client on an app whose sessions commit for real, so requests can race each other.

    Uses no `connection`/`world` fixture: that test transaction would hold SQLite's write lock.
    What it wrote is removed afterwards, except its audit events: the log is append-only.
    """
    app = create_app(settings, session_factory=lambda: Session(engine, expire_on_commit=False))
    app.state.keyring.ensure_signing_key()
    with Session(engine) as s:  # a person's token works while the account does
        s.add(User(username="race-admin", role="admin", password_hash="x"))
        s.commit()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://flagshare.test") as c:
        c.admin = {"Authorization": "Bearer " + app.state.keyring.sign(_admin_claims(settings))}
        yield c
    with Session(engine) as s:
        s.exec(sa_delete(User).where(User.username == "race-admin"))
        s.exec(sa_delete(IdempotencyRecord).where(IdempotencyRecord.key.like("race-%")))
        s.exec(sa_delete(Agency).where(Agency.id.like("RACE-%")))
        s.commit()


def _admin_claims(settings) -> dict:
    now = int(time.time())
    return {"iss": settings.issuer, "aud": settings.audience, "sub": "race-admin",
            "role": "admin", "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}


async def test_racing_registrations_of_one_id_give_one_201_and_409s(committing_client):
    c = committing_client
    rs = await asyncio.gather(*[
        c.post("/v1/agencies", json=body(id="RACE-1"), headers=c.admin) for _ in range(4)])
    assert sorted(r.status_code for r in rs) == [201, 409, 409, 409], [r.text for r in rs]
    for r in rs:
        if r.status_code == 409:
            problem(r, 409)


async def test_racing_retries_with_one_key_all_get_the_first_result(committing_client):
    c = committing_client
    headers = {**c.admin, "Idempotency-Key": "race-key-1"}
    rs = await asyncio.gather(*[
        c.post("/v1/agencies", json=body(id="RACE-2"), headers=headers) for _ in range(4)])
    assert [r.status_code for r in rs] == [201] * 4, [r.text for r in rs]
    assert {r.json()["id"] for r in rs} == {"RACE-2"}
    # Exactly one caller (the winner) sees the secret; replays never carry it.
    secrets = [r.json()["client_secret"] for r in rs if r.json()["client_secret"]]
    assert len(secrets) == 1
    token = await get_token(c, "RACE-2", secrets[0])
    assert token.status_code == 200, token.text


@pytest.mark.parametrize("request_args", [
    ("GET", "/v1/agencies/GP-A%00", None), ("GET", "/v1/agencies?area=E08000025%00", None),
    ("POST", "/v1/agencies", {"id": "GP-A\u0000", "name": "x", "kind": "gp",
                              "area": "E08000025"}),
])
async def test_nul_anywhere_is_400_before_the_database(client, world, session, request_args):
    method, url, body = request_args
    r = await client.request(method, url, json=body, headers=world.auth("admin"))
    assert r.status_code == 400 and "NUL" in r.json()["detail"]
