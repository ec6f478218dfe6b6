"""Transfers between areas: working-day deadlines, pickup, alerts, suspected moves."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from sqlmodel import func, select

from api.agencies.models import Agency
from api.audit.models import AuditEvent
from api.forwarding.models import Delivery
from api.transfers.models import SuspectedMove, Transfer
from api.transfers.service import sweep_overdue
from api.transfers.working_days import add_working_days, is_working_day
from tests.factories import BASIS, NHS, relationship_body

LONDON_NOON = "T12:00:00+00:00"


@pytest.mark.parametrize("start, days, expected", [
    ("2026-12-24", 3, "2026-12-31"),  # Christmas, Boxing Day (observed Monday 28th)
    ("2026-12-31", 1, "2027-01-04"),  # New Year's Day then a weekend
    ("2027-03-25", 1, "2027-03-30"),  # Good Friday and Easter Monday
    ("2022-12-23", 1, "2022-12-28"),  # Boxing Day and the substitute Christmas Day (27th)
    ("2026-11-20", 15, "2026-12-11"),  # notified on a Friday: 15 working days
    ("2026-08-31", 15, "2026-09-21"),  # notified on a bank holiday
    ("2026-11-21", 1, "2026-11-23"),  # notified on a Saturday
])
def test_working_days_in_england(start, days, expected):
    assert add_working_days(date.fromisoformat(start), days) == date.fromisoformat(expected)


def test_bank_holidays_are_not_working_days():
    assert not is_working_day(date(2026, 12, 28))  # substitute Boxing Day
    assert not is_working_day(date(2026, 5, 25))
    assert is_working_day(date(2026, 11, 23))


def transfer_body(**override) -> dict:
    body = {"subject": {"nhs_number": NHS[0], "family_name": "Hartley"},
            "to_area": "E08000028", "plan": "child_protection_plan",
            "notified_at": "2026-11-20T09:30:00+00:00",
            "reason": "Family moved to Oldbury after eviction; mother gave new address."}
    body.update(override)
    return body


async def create(client, world, who="CSC-A", **override):
    return await client.post("/v1/transfers", json=transfer_body(**override),
                             headers=world.auth(who))


def deliveries(session, recipient, event_type):
    return session.exec(select(Delivery).where(Delivery.recipient_id == recipient,
                                               Delivery.event_type == event_type)).all()


async def test_create_computes_pickup_due_and_alerts_receiving_area(client, world, session):
    r = await create(client, world)
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["status"] == "awaiting_pickup" and t["pickup_due"] == "2026-12-11"
    assert t["from_area"] == "E08000025" and t["to_area"] == "E08000028"
    for who in ("CSC-B", "MASH-B"):
        [d] = deliveries(session, who, "transfer.created")
        assert d.payload["data"]["transfer_id"] == t["id"]
        assert d.payload["data"]["child"]["nhs_number"] == NHS[0]
    assert deliveries(session, "CSC-A", "transfer.created") == []
    assert deliveries(session, "MASH-A", "transfer.created") == []


@pytest.mark.parametrize("who, override, status, field", [
    ("CSC-A", {"to_area": "E08000025"}, 422, "to_area"),
    ("CSC-A", {"to_area": "E06999999"}, 422, "to_area"),
    ("CSC-A", {"to_area": "Sandwell"}, 422, "to_area"),
    ("CSC-A", {"plan": "early_help"}, 422, "plan"),
    ("CSC-A", {"notified_at": "2026-11-20T09:30:00"}, 422, "notified_at"),
    ("CSC-A", {"notified_at": "2999-11-20T09:30:00+00:00"}, 422, "notified_at"),
    ("CSC-A", {"receiving_agency": "GP-B"}, 422, "receiving_agency"),
    ("POLICE-A", {}, 403, None),
    ("mash.a", {}, 403, None),
])
async def test_bad_transfers_write_nothing(client, world, session, who, override, status, field):
    r = await create(client, world, who=who, **override)
    assert r.status_code == status, r.text
    if field:
        assert field in [e["field"] for e in r.json()["errors"]]
    assert session.exec(select(func.count()).select_from(Transfer)).one() == 0
    assert session.exec(select(func.count()).select_from(Delivery)).one() == 0


@pytest.mark.parametrize("override, errors", [
    ({"plan": "early_help", "to_area": "E06999999"}, {
        "plan": None,
        "to_area": "E06999999 is not an area known to this service (not in the policy data "
                   "and no registered agency there)"}),
    ({"plan": "early_help", "to_area": "E08000025"}, {  # CSC-A's own area
        "plan": None, "to_area": "must be another area than your own"}),
    ({"notified_at": "2999-11-20T09:30:00+00:00", "receiving_agency": "GP-B"}, {
        "notified_at": None, "receiving_agency": "must be children's social care in E08000028"}),
    ({"to_area": "E06999999", "receiving_agency": "GP-B"}, {
        "to_area": "E06999999 is not an area known to this service (not in the policy data "
                   "and no registered agency there)",
        "receiving_agency": "must be children's social care"}),
], ids=["unknown-area", "own-area", "receiving-agency", "receiving-agency-of-a-bad-area"])
async def test_one_422_names_every_bad_field(client, world, session, override, errors):
    r = await create(client, world, **override)
    assert r.status_code == 422, r.text
    named = {e["field"]: e["message"] for e in r.json()["errors"]}
    assert named.keys() == errors.keys()
    assert all(named[field] == message for field, message in errors.items() if message)
    assert session.exec(select(func.count()).select_from(Transfer)).one() == 0
    assert session.exec(select(func.count()).select_from(Delivery)).one() == 0


@pytest.mark.parametrize("who", ["POLICE-A", "GP-B"])
async def test_only_social_care_is_told_what_is_wrong_with_a_transfer(client, world, session,
                                                                       who):
    """An agency that may not record transfers at all is refused before its body is judged."""
    r = await create(client, world, who=who, plan="early_help", to_area="E06999999")
    assert r.status_code == 403, r.text
    assert "errors" not in r.json()
    assert session.exec(select(func.count()).select_from(Transfer)).one() == 0


async def test_accept_by_the_receiving_area_only(client, world, session):
    t = (await create(client, world)).json()
    url = f"/v1/transfers/{t['id']}/accept"
    assert (await client.post(url, headers=world.auth("CSC-A"))).status_code == 403
    assert (await client.post(url, headers=world.auth("GP-B"))).status_code == 404
    assert (await client.post(url, headers=world.auth("MASH-B"))).status_code == 403
    ok = await client.post(url, headers=world.auth("CSC-B"))
    assert ok.status_code == 200 and ok.json()["status"] == "picked_up"
    assert ok.json()["closed_by"] == "CSC-B"
    assert (await client.post(url, headers=world.auth("CSC-B"))).status_code == 409
    [back] = deliveries(session, "CSC-A", "transfer.accepted")
    assert back.payload["data"]["status"] == "picked_up"


async def test_withdraw_by_the_outgoing_agency(client, world, session):
    t = (await create(client, world)).json()
    url = f"/v1/transfers/{t['id']}/withdraw"
    body = {"reason": "Family did not move after all; confirmed at home visit."}
    assert (await client.post(url, json=body, headers=world.auth("CSC-B"))).status_code == 403
    r = await client.post(url, json=body, headers=world.auth("CSC-A"))
    assert r.status_code == 200 and r.json()["status"] == "withdrawn"
    assert (await client.post(url, json={}, headers=world.auth("CSC-A"))).status_code == 422
    # The receiving area stops waiting for a case that is not coming; the sender knows.
    for who in ("CSC-B", "MASH-B"):
        [closed] = deliveries(session, who, "transfer.closed")
        data = closed.payload["data"]
        assert (data["transfer_id"], data["status"], data["closed_by"], data["close_reason"]) \
            == (t["id"], "withdrawn", "CSC-A", body["reason"])
    assert deliveries(session, "CSC-A", "transfer.closed") == []


async def test_overdue_alerts_follow_the_working_day_clock(client, world, session, app, policy):
    t = (await create(client, world)).json()  # notified Fri 20 Nov 2026, due Fri 11 Dec
    factory = app.state.session_factory

    def sweep(day: str) -> int:
        return sweep_overdue(factory, policy, datetime.fromisoformat(day + LONDON_NOON))

    def alerts(who):
        return deliveries(session, who, "transfer.not_picked_up")

    assert sweep("2026-12-11") == 0  # due today: not overdue yet
    assert sweep("2026-12-12") == 0  # Saturday: the alert waits for a working day
    assert sweep("2026-12-14") == 1  # the next working day: overdue, alert once
    assert sweep("2026-12-14") == 0  # never twice for the same interval
    for who in ("CSC-A", "CSC-B", "MASH-B"):
        assert len(alerts(who)) == 1, who
    assert alerts("CSC-A")[0].payload["data"]["working_days_overdue"] == 1
    assert sweep("2026-12-15") == 1  # repeated after the policy interval (1 working day)
    assert len(alerts("CSC-A")) == 2
    app.state.clock = lambda: datetime.fromisoformat("2026-12-15" + LONDON_NOON)
    overdue = (await client.get("/v1/transfers", params={"status": "overdue"},
                                headers=world.auth("mash.b"))).json()["items"]
    assert [o["id"] for o in overdue] == [t["id"]] and overdue[0]["overdue"]
    app.state.clock = lambda: datetime.fromisoformat("2026-12-11" + LONDON_NOON)
    on_the_day = (await client.get(f"/v1/transfers/{t['id']}", headers=world.auth("mash.b")))
    assert on_the_day.json()["overdue"] is False
    assert (await client.get("/v1/transfers", params={"status": "overdue"},
                             headers=world.auth("mash.b"))).json()["items"] == []
    await client.post(f"/v1/transfers/{t['id']}/accept", headers=world.auth("CSC-B"))
    assert sweep("2026-12-16") == 0  # stops after pickup
    assert len(alerts("CSC-A")) == 2


async def test_a_child_moving_again_links_the_transfers(client, world, session):
    session.add(Agency(id="CSC-C", name="Hartlepool CSC", kind="childrens_social_care",
                       area="E06000001", client_secret_hash="x"))
    session.commit()
    first = (await create(client, world)).json()
    # Before pickup, Sandwell (which had taken the case) transfers the child on to Hartlepool.
    second = await create(client, world, who="CSC-B", to_area="E06000001")
    assert second.status_code == 201, second.text
    assert second.json()["previous_transfer_id"] == first["id"]
    previous = session.get(Transfer, first["id"])
    session.refresh(previous)
    assert previous.status == "picked_up" and previous.closed_by_agency_id == "CSC-B"
    # The outgoing area redirecting its own transfer supersedes the first.
    third = (await create(client, world, to_area="E06000001",
                          subject={"nhs_number": NHS[1]})).json()
    fourth = (await create(client, world, subject={"nhs_number": NHS[1]})).json()
    assert fourth["previous_transfer_id"] == third["id"]
    assert session.get(Transfer, third["id"]).status == "superseded"


COVENTRY, HARTLEPOOL = "E08000026", "E06000001"


def register_csc(session, agency_id: str, area: str) -> dict[str, str]:
    """Another children's social care; returns a token's claims for it (for world.auth)."""
    session.add(Agency(id=agency_id, name=f"{agency_id} CSC", kind="childrens_social_care",
                       area=area, client_secret_hash="x"))
    session.commit()
    return {"sub": agency_id, "agency": agency_id, "area": area}


async def test_an_unrelated_area_cannot_close_another_areas_transfer(client, world, session):
    """Coventry, neither end of Birmingham→Sandwell, records a transfer of the same child: the
    first stays open for Sandwell to pick up, and Coventry is not told its id."""
    coventry = register_csc(session, "CSC-C", COVENTRY)
    first = (await create(client, world)).json()
    second = await client.post("/v1/transfers", json=transfer_body(to_area="E08000025"),
                               headers=world.auth("CSC-A", **coventry))
    assert second.status_code == 201, second.text
    assert second.json()["from_area"] == COVENTRY
    assert second.json()["previous_transfer_id"] is None
    [told] = deliveries(session, "CSC-A", "transfer.created")
    assert told.payload["data"]["previous_transfer_id"] is None
    previous = session.get(Transfer, first["id"])
    session.refresh(previous)
    assert (previous.status, previous.closed_by_agency_id) == ("awaiting_pickup", None)
    ok = await client.post(f"/v1/transfers/{first['id']}/accept", headers=world.auth("CSC-B"))
    assert ok.status_code == 200, ok.text
    assert ok.json()["status"] == "picked_up" and ok.json()["closed_by"] == "CSC-B"


@pytest.mark.parametrize("who, to_area, closed_as", [
    ("CSC-B", COVENTRY, "picked_up"),  # the receiving area moves the child on
    ("CSC-A", "E08000028", "superseded"),  # the sending area sends again
])
async def test_each_end_closes_its_own_transfer_not_an_unrelated_later_one(
        client, world, session, who, to_area, closed_as):
    coventry = register_csc(session, "CSC-C", COVENTRY)
    register_csc(session, "CSC-H", HARTLEPOOL)
    first = (await create(client, world)).json()
    unrelated = (await client.post("/v1/transfers", json=transfer_body(to_area=HARTLEPOOL),
                                   headers=world.auth("CSC-A", **coventry))).json()
    again = await create(client, world, who=who, to_area=to_area)
    assert again.status_code == 201, again.text
    assert again.json()["previous_transfer_id"] == first["id"]
    session.expire_all()
    assert session.get(Transfer, first["id"]).status == closed_as
    assert session.get(Transfer, first["id"]).closed_by_agency_id == who
    assert session.get(Transfer, unrelated["id"]).status == "awaiting_pickup"


async def test_moving_the_child_on_tells_the_sending_area_it_was_picked_up(client, world,
                                                                           session):
    register_csc(session, "CSC-C", COVENTRY)
    first = (await create(client, world)).json()
    second = await create(client, world, who="CSC-B", to_area=COVENTRY)
    assert second.status_code == 201, second.text
    [told] = deliveries(session, "CSC-A", "transfer.accepted")
    assert told.payload["data"]["transfer_id"] == first["id"]
    assert told.payload["data"]["status"] == "picked_up"
    assert deliveries(session, "CSC-A", "transfer.created") == []  # B→C is not A's to see


async def test_a_resend_by_another_csc_of_the_sending_area_tells_both_ends(client, world,
                                                                          session):
    """The first transfer named Sandwell's CSC as its receiver; a second Birmingham CSC sends
    the child to Sandwell again: the first's sender and its receivers hear it was closed, and
    the second's receivers are sent it."""
    other = register_csc(session, "CSC-A2", "E08000025")
    first = (await create(client, world, receiving_agency="CSC-B")).json()
    register_csc(session, "CSC-B2", "E08000028")
    second = await client.post("/v1/transfers", json=transfer_body(receiving_agency="CSC-B2"),
                               headers=world.auth("CSC-A", **other))
    assert second.status_code == 201, second.text
    assert second.json()["previous_transfer_id"] == first["id"]
    session.expire_all()
    assert session.get(Transfer, first["id"]).status == "superseded"
    for who in ("CSC-A", "CSC-B", "MASH-B"):
        [closed] = deliveries(session, who, "transfer.closed")
        assert closed.payload["data"]["transfer_id"] == first["id"], who
        assert closed.payload["data"]["status"] == "superseded", who
        assert closed.payload["data"]["closed_by"] == "CSC-A2", who
    for who in ("CSC-B2", "MASH-B"):
        told = [d.payload["data"]["transfer_id"]
                for d in deliveries(session, who, "transfer.created")]
        assert second.json()["id"] in told, who
    assert deliveries(session, "CSC-A2", "transfer.closed") == []


async def test_a_transfer_redirected_elsewhere_tells_the_area_that_was_waiting(client, world,
                                                                              session):
    """Birmingham sends the child to Sandwell, then to Coventry instead: Sandwell, which is not
    sent the new transfer (not its to see), hears that the first will not come."""
    register_csc(session, "CSC-C", COVENTRY)
    first = (await create(client, world)).json()
    again = await create(client, world, to_area=COVENTRY)
    assert again.status_code == 201, again.text
    for who in ("CSC-B", "MASH-B"):
        [closed] = deliveries(session, who, "transfer.closed")
        assert (closed.payload["data"]["transfer_id"], closed.payload["data"]["status"]) == (
            first["id"], "superseded"), who
        assert deliveries(session, who, "transfer.created")[-1].payload["data"][
            "transfer_id"] == first["id"], who  # never the one to Coventry
    assert deliveries(session, "CSC-A", "transfer.closed") == []  # it closed it itself


@pytest.mark.parametrize("who, to_area, action, outcome", [
    ("CSC-B", COVENTRY, "transfer.accept", "picked_up"),
    ("CSC-A", COVENTRY, "transfer.supersede", "superseded"),
])
async def test_closing_a_transfer_by_another_is_in_the_log(client, world, session, who, to_area,
                                                           action, outcome):
    """Closed by a second transfer, as by hand: who closed it and why is logged."""
    register_csc(session, "CSC-C", COVENTRY)
    first = (await create(client, world)).json()
    again = (await create(client, world, who=who, to_area=to_area)).json()
    [event] = session.exec(select(AuditEvent).where(AuditEvent.action == action)).all()
    assert (event.actor, event.outcome, event.child_id) == (who, outcome, first["child_id"])
    assert event.reason == (f"transferred on by {who}" if outcome == "picked_up"
                            else f"superseded by transfer {again['id']}")


async def test_transfers_are_visible_only_to_the_areas_involved(client, world, session):
    t = (await create(client, world)).json()
    for who in ("CSC-A", "CSC-B", "MASH-B", "mash.a", "mash.b", "auditor"):
        r = await client.get(f"/v1/transfers/{t['id']}", headers=world.auth(who))
        assert r.status_code == 200, who
        listed = (await client.get("/v1/transfers", headers=world.auth(who))).json()["items"]
        assert [i["id"] for i in listed] == [t["id"]], who
    for who in ("GP-A", "POLICE-B", "admin"):
        assert (await client.get(f"/v1/transfers/{t['id']}",
                                 headers=world.auth(who))).status_code in (403, 404), who
        assert (await client.get("/v1/transfers", headers=world.auth(who))).status_code == 403
    session.add(Agency(id="MASH-C", name="Hartlepool MASH", kind="mash", area="E06000001",
                       client_secret_hash="x"))
    session.commit()
    r = await client.get(f"/v1/transfers/{t['id']}", headers=world.auth("MASH-B"))
    assert r.status_code == 200


@pytest.mark.parametrize("who", ["GP-B", "SCHOOL-A2", "POLICE-B", "admin"])
async def test_a_transfer_the_caller_may_not_see_answers_as_a_missing_one(client, world, who):
    t = (await create(client, world)).json()
    seen = await client.get(f"/v1/transfers/{t['id']}", headers=world.auth(who))
    missing = await client.get("/v1/transfers/00000000-0000-0000-0000-000000000000",
                               headers=world.auth(who))
    assert (seen.status_code, seen.json()) == (missing.status_code, missing.json())


# --- suspected moves ----------------------------------------------------------------------

async def plan_in_birmingham(client, world):
    r = await client.post("/v1/flags", headers=world.auth("CSC-A"), json={
        "subject": {"nhs_number": NHS[0]}, "category": "child_protection_plan",
        "severity": "high", "purpose": "child_protection", "lawful_basis": BASIS,
        "summary": "Amelia is on a child protection plan for neglect: repeated missed meals "
                   "and an unheated home; the plan is reviewed monthly."})
    assert r.status_code == 201, r.text
    return r.json()


async def test_gp_registration_in_a_new_area_raises_a_suspected_move(client, world, session):
    plan = await plan_in_birmingham(client, world)
    same_area = await client.post("/v1/relationships", headers=world.auth("GP-A"),
                                  json=relationship_body("registered_gp"))
    assert same_area.status_code == 201
    assert deliveries(session, "CSC-A", "move.suspected") == []
    await client.post("/v1/relationships", headers=world.auth("GP-B"),
                      json=relationship_body("registered_gp"))
    [to_owner] = deliveries(session, "CSC-A", "move.suspected")
    [to_mash] = deliveries(session, "MASH-B", "move.suspected")
    data = to_owner.payload["data"]
    assert data["plan_flag_id"] == plan["id"] and data["seen_by"] == "GP-B"
    assert data["seen_as"] == "relationship:registered_gp" and to_mash.event_id == to_owner.event_id
    # Once per child and area pair.
    await client.post("/v1/flags", headers=world.auth("POLICE-B"), json={
        "subject": {"nhs_number": NHS[0]}, "category": "missing_episode", "severity": "high",
        "purpose": "safeguarding", "lawful_basis": BASIS,
        "summary": "Amelia was reported missing from a Sandwell address overnight and found "
                   "the next morning."})
    assert len(deliveries(session, "CSC-A", "move.suspected")) == 1
    moves = (await client.get("/v1/suspected-moves", headers=world.auth("mash.b"))).json()
    [move] = moves["items"]
    # A transfer now recorded resolves it.
    await create(client, world)
    session.expire_all()
    assert session.get(SuspectedMove, move["id"]).status == "resolved"


async def test_a_flag_that_raises_a_suspected_move_is_still_shared_and_logged(client, world,
                                                                             session):
    """The move is recorded in a savepoint after the flag's shares were queued for commit;
    releasing that savepoint must not lose them."""
    await plan_in_birmingham(client, world)
    r = await client.post("/v1/flags", headers=world.auth("POLICE-B"), json={
        "subject": {"nhs_number": NHS[0]}, "category": "missing_episode", "severity": "high",
        "purpose": "safeguarding", "lawful_basis": BASIS,
        "summary": "Amelia was reported missing from a Sandwell address overnight and found "
                   "the next morning."})
    assert r.status_code == 201, r.text
    flag = r.json()
    assert flag["shared_with"]
    assert len(deliveries(session, "CSC-A", "move.suspected")) == 1
    shared = session.exec(select(Delivery.recipient_id).where(
        Delivery.flag_id == flag["id"], Delivery.event_type == "flag.shared")).all()
    assert sorted(shared) == flag["shared_with"]
    logged = session.exec(select(AuditEvent.action, AuditEvent.recipient).where(
        AuditEvent.flag_id == flag["id"])).all()
    assert ("flag.publish", None) in logged
    assert sorted(r for a, r in logged if a == "flag.disclose") == flag["shared_with"]


async def test_no_suspected_move_when_a_transfer_exists_and_dismissal(client, world, session):
    await plan_in_birmingham(client, world)
    await create(client, world)
    await client.post("/v1/relationships", headers=world.auth("GP-B"),
                      json=relationship_body("registered_gp"))
    assert deliveries(session, "CSC-A", "move.suspected") == []
    # Another child, no transfer: raised, then dismissed with a reason.
    await client.post("/v1/flags", headers=world.auth("CSC-A"), json={
        "subject": {"nhs_number": NHS[1]}, "category": "looked_after_child", "severity": "high",
        "purpose": "care_planning", "lawful_basis": BASIS,
        "summary": "Jay is looked after by the council under a care order and lives with "
                   "foster carers in Birmingham."})
    await client.post("/v1/relationships", headers=world.auth("GP-B"),
                      json=relationship_body("registered_gp", NHS[1]))
    [move] = (await client.get("/v1/suspected-moves", headers=world.auth("mash.b"))).json()["items"]
    url = f"/v1/suspected-moves/{move['id']}/dismiss"
    reason = {"reason": "Foster placement is across the border; the child has not moved."}
    assert (await client.post(url, json=reason, headers=world.auth("GP-A"))).status_code == 403
    keyed = {**world.auth("mash.b"), "Idempotency-Key": "dismiss-1"}
    r = await client.post(url, json=reason, headers=keyed)
    assert r.status_code == 200 and r.json()["status"] == "dismissed"
    again = await client.post(url, json=reason, headers=keyed)  # a retry after a lost answer
    assert again.status_code == 200 and again.json() == r.json()
    assert again.headers["idempotent-replayed"] == "true"
    other = await client.post(url, json={"reason": "Another reason, the same key."},
                              headers=keyed)
    assert other.status_code == 409
    assert (await client.post(url, json=reason, headers=world.auth("mash.b"))).status_code == 409


async def test_the_worker_loop_runs_the_deadline_sweep(client, world, session, app, settings,
                                                       policy):
    from api.forwarding.worker import DeliveryWorker

    t = (await create(client, world, notified_at="2026-01-05T09:00:00+00:00")).json()
    DeliveryWorker(app.state.session_factory, settings, policy=policy).run_once()
    session.expire_all()
    assert session.get(Transfer, t["id"]).alerts_sent == 1
    assert len(deliveries(session, "CSC-A", "transfer.not_picked_up")) == 1
