"""One child's whole record: who may read it, what each reader sees, and who is told."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import bindparam, insert, text
from sqlmodel import select

from api.audit.models import AuditEvent
from api.auth.principal import Principal
from api.children.access import load_access
from api.children.service import _MERGED_INTO, Reader, silent_rule
from api.db import plain_rows, utcnow
from api.flags.models import Disclosure
from api.forwarding.models import Delivery
from api.identity.models import Person
from api.policy.loader import PolicyError, load_policy
from api.policy.schema import AccessPolicy, SilentRead
from tests.factories import NHS, flag_body, relationship_body
from tests.plans import query_plan

READ = {"purpose": "mash_triage", "reason": "Referral from school: bruise on Amelia's arm"}
CHILD = {"nhs_number": NHS[0], "given_name": "Amelia", "family_name": "Hartley",
         "birth_date": "2022-03-14", "postcode": "B31 2AB"}
MOTHER, FATHER, OTHER_FATHER = NHS[2], NHS[5], NHS[4]
SECRET_DETAIL = "Partner arrested for assault occasioning actual bodily harm."


async def publish(client, world, who="POLICE-A", **override):
    r = await client.post("/v1/flags", json=flag_body(**override), headers=world.auth(who))
    assert r.status_code == 201, r.text
    return r.json()


async def relate(client, world, who, kind, nhs=NHS[0], start="2023-01-01", **extra):
    r = await client.post("/v1/relationships", json={**relationship_body(kind, nhs, start),
                                                     **extra}, headers=world.auth(who))
    assert r.status_code == 201, r.text
    return r.json()


async def read(client, world, who, child_id, **params):
    return await client.get(f"/v1/children/{child_id}", headers=world.auth(who),
                            params={**READ, **params})


async def plan(client, world, who="CSC-A", category="child_protection_plan", nhs=NHS[0]):
    return await publish(client, world, who=who, category=category, purpose="child_protection",
                         subject={"nhs_number": nhs}, details="Category of harm: neglect.",
                         summary="Amelia has a child protection plan because of neglect at "
                                 "home; her social worker visits every ten days.")


def deliveries(session, recipient, event_type):
    return session.exec(select(Delivery).where(Delivery.recipient_id == recipient,
                                               Delivery.event_type == event_type)
                        .order_by(Delivery.seq)).all()


def reads(session, child_id=None):
    q = select(AuditEvent).where(AuditEvent.action.in_(("child.read", "child.break_glass")))
    if child_id:
        q = q.where(AuditEvent.child_id == child_id)
    return session.exec(q.order_by(AuditEvent.seq)).all()


@pytest.fixture
async def family(client, world):
    """Amelia (NHS[0]) with her GP and school; a police incident naming her mother and the
    mother's new partner, a child protection plan, a missed appointment; her full sister
    (NHS[1]), her half-brother (NHS[3], another father) and a child in the new partner's
    other household (NHS[6])."""
    await relate(client, world, "GP-A", "registered_gp")
    await relate(client, world, "SCHOOL-A", "school")
    da = await publish(client, world, subject=CHILD, related_people=[
        {"role": "parent", "nhs_number": MOTHER, "given_name": "Sarah",
         "family_name": "Hartley", "relationship": "mother"},
        {"role": "parent", "nhs_number": FATHER, "given_name": "Mark",
         "family_name": "Hartley", "relationship": "father"},
        {"role": "household_member", "nhs_number": NHS[7], "given_name": "Dean",
         "family_name": "Morris", "relationship": "mother's new partner"}])
    cpp = await plan(client, world)
    nba = await publish(client, world, who="GP-A", category="not_brought_to_appointment",
                        severity="medium", subject={"nhs_number": NHS[0]},
                        summary="Amelia was not brought to her 2-year review; this is the "
                                "third missed appointment this year.", details=None)
    sister = await publish(client, world, subject={"nhs_number": NHS[1]}, related_people=[
        {"role": "parent", "nhs_number": MOTHER, "relationship": "mother"},
        {"role": "parent", "nhs_number": FATHER, "relationship": "father"}])
    half = await publish(client, world, subject={"nhs_number": NHS[3]}, related_people=[
        {"role": "parent", "nhs_number": MOTHER, "relationship": "mother"},
        {"role": "parent", "nhs_number": OTHER_FATHER, "relationship": "father"}])
    other_household = await publish(client, world, subject={"nhs_number": NHS[6]},
                                    related_people=[{"role": "household_member",
                                                     "nhs_number": NHS[7]}])
    return {"child": da["child_id"], "da": da, "cpp": cpp, "nba": nba,
            "sister": sister["child_id"], "half": half["child_id"],
            "other_household": other_household["child_id"]}


# --- the MASH view ------------------------------------------------------------------------

async def test_mash_sees_one_chronology_people_and_siblings(client, world, family, session):
    r = await read(client, world, "mash.a", family["child"])
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["child"]["nhs_number"] == NHS[0] and view["child"]["given_name"] == "Amelia"
    assert view["access"] == {"basis": "area", **READ}
    # Newest first, across agencies; MASH reads details.
    assert [f["id"] for f in view["flags"]] == [family["nba"]["id"], family["cpp"]["id"],
                                                family["da"]["id"]]
    assert [f["publisher"] for f in view["flags"]] == ["GP-A", "CSC-A", "POLICE-A"]
    da = view["flags"][2]
    assert da["details"] == SECRET_DETAIL and "versions" not in da
    # In the order the flag named them, here and on the flag itself.
    assert [p["relationship"] for p in da["related_people"]] == [
        "mother", "father", "mother's new partner"]
    alone = await client.get(f"/v1/flags/{da['id']}", headers=world.auth("POLICE-A"))
    assert [p["relationship"] for p in alone.json()["related_people"]] == [
        "mother", "father", "mother's new partner"]
    household = {p["given_name"]: p for p in view["household"]}
    assert set(household) == {"Sarah", "Mark", "Dean"}
    assert household["Dean"]["roles"] == ["household_member"]
    assert household["Dean"]["recorded_by"] == ["POLICE-A"]
    siblings = {s["child_id"]: s["relation"] for s in view["siblings"]}
    assert siblings == {family["sister"]: "sibling", family["half"]: "half_sibling",
                        family["other_household"]: "household"}
    assert {(r["agency"], r["kind"]) for r in view["relationships"]} == {
        ("GP-A", "registered_gp"), ("SCHOOL-A", "school")}
    assert view["transfers"] == [] and view["suspected_moves"] == []
    outstanding = {(d["recipient"], d["flag_id"]) for d in view["outstanding_deliveries"]}
    assert ("SCHOOL-A", family["da"]["id"]) in outstanding
    assert ("GP-A", family["cpp"]["id"]) in outstanding
    assert view["recent_accesses"] == []
    [event] = reads(session, family["child"])
    assert (event.action, event.actor, event.actor_agency) == ("child.read", "mash.a", "MASH-A")
    assert (event.purpose, event.reason) == (READ["purpose"], READ["reason"])
    assert event.policy_rule == "READ-MASH-AREA" and event.policy_version


async def test_versions_collapse_unless_history_is_asked_for(client, world, family):
    da = family["da"]["id"]
    r = await client.patch(f"/v1/flags/{da}", headers=world.auth("POLICE-A"), json={
        "summary": "Correction: the incident was at the grandparents' home; Amelia was there "
                   "and frightened."})
    assert r.status_code == 200
    err = await client.patch(f"/v1/flags/{family['nba']['id']}", headers=world.auth("GP-A"),
                             json={"status": "entered_in_error"})
    assert err.status_code == 200
    current = (await read(client, world, "mash.a", family["child"])).json()["flags"]
    assert [f["id"] for f in current] == [family["cpp"]["id"], da]
    assert current[1]["version"] == 2 and current[1]["summary"].startswith("Correction")
    full = (await read(client, world, "mash.a", family["child"], history="true")).json()
    by_id = {f["id"]: f for f in full["flags"]}
    assert by_id[family["nba"]["id"]]["status"] == "entered_in_error"
    assert [v["version"] for v in by_id[da]["versions"]] == [1]
    assert by_id[da]["versions"][0]["summary"].startswith("Police attended")


async def test_recent_accesses_and_acknowledged_deliveries(client, world, family, session):
    await read(client, world, "mash.a", family["child"])
    await read(client, world, "SCHOOL-A", family["child"], purpose="safeguarding")
    school = [d for d in deliveries(session, "SCHOOL-A", "flag.shared")
              if d.flag_id == family["da"]["id"]][0]
    ack = await client.post(f"/v1/deliveries/{school.id}/ack", json={"status": "received"},
                            headers=world.auth("SCHOOL-A"))
    assert ack.status_code == 200
    view = (await read(client, world, "mash.a", family["child"])).json()
    assert [(a["actor"], a["organisation"], a["purpose"]) for a in view["recent_accesses"]] == [
        ("SCHOOL-A", "SCHOOL-A", "safeguarding"), ("mash.a", "MASH-A", "mash_triage")]
    assert school.id not in {d["delivery_id"] for d in view["outstanding_deliveries"]}


async def test_by_nhs_number(client, world, family):
    r = await client.get("/v1/children", headers=world.auth("mash.a"),
                         params={"nhs_number": "999 000 0018", **READ})
    assert r.status_code == 200 and r.json()["child"]["child_id"] == family["child"]
    bad = await client.get("/v1/children", headers=world.auth("mash.a"),
                           params={"nhs_number": "9990000019", **READ})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "nhs_number"
    unknown = await client.get("/v1/children", headers=world.auth("mash.a"),
                               params={"nhs_number": NHS[9], **READ})
    assert unknown.status_code == 404
    missing = await client.get("/v1/children", headers=world.auth("mash.a"), params=READ)
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "nhs_number"


# --- purpose is mandatory -----------------------------------------------------------------

@pytest.mark.parametrize("params, fields", [
    ({}, {"purpose", "reason"}),
    ({"reason": "Referral"}, {"purpose"}),
    ({"purpose": "mash_triage"}, {"reason"}),
    ({"purpose": "mash_triage", "reason": "   "}, {"reason"}),
    ({"purpose": "curiosity", "reason": "Just looking"}, {"purpose"}),
    ({"purpose": "", "reason": "x"}, {"purpose"}),
])
async def test_no_purpose_is_422_naming_each_field(client, world, family, session, params,
                                                   fields):
    for who in ("mash.a", "SCHOOL-A"):
        r = await client.get(f"/v1/children/{family['child']}", headers=world.auth(who),
                             params=params)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert {e["field"] for e in r.json()["errors"]} == fields
    assert reads(session) == []


# --- scope ---------------------------------------------------------------------------------

async def test_another_areas_practitioner_gets_404_without_break_glass(client, world, family,
                                                                       session):
    r = await read(client, world, "mash.b", family["child"])
    assert r.status_code == 404
    unknown = await read(client, world, "mash.b", "00000000-0000-0000-0000-000000000000")
    assert unknown.status_code == 404 and unknown.json()["detail"] == r.json()["detail"]
    assert "Amelia" not in r.text
    assert reads(session) == []
    assert deliveries(session, "MASH-A", "child.accessed") == []


@pytest.mark.parametrize("who,asked", [
    ("GP-B", {"purpose": "not_a_purpose"}), ("mash.b", {"purpose": "not_a_purpose"}),
    ("GP-B", {"break_glass": "true"}),  # only MASH practitioners break the glass
])
async def test_a_refused_purpose_does_not_tell_whether_the_number_is_known(
        client, world, family, session, who, asked):
    """A caller who may not see the child gets the same answer for a number held here (the
    child's, or an adult named on a flag) as for one never seen."""
    answers = []
    for nhs in (NHS[0], NHS[8]):  # the child's; a number nobody holds
        r = await client.get("/v1/children", headers=world.auth(who), params={
            "nhs_number": nhs, "purpose": "mash_triage", "reason": "Probe", **asked})
        answers.append((r.status_code, r.json()["detail"]))
    assert answers[0] == answers[1] and answers[0][0] in (403, 422)
    assert reads(session) == []


async def test_break_glass_is_marked_and_alerts_the_home_mash(client, world, family, session):
    r = await read(client, world, "mash.b", family["child"], break_glass="true",
                   purpose="section_47_enquiry",
                   reason="Amelia presented at Sandwell A&E with her mother overnight")
    assert r.status_code == 200, r.text
    assert r.json()["access"]["basis"] == "break_glass"
    assert {f["id"]: f.get("details") for f in r.json()["flags"]}[family["da"]["id"]] \
        == SECRET_DETAIL
    [event] = reads(session, family["child"])
    assert (event.action, event.actor, event.policy_rule) == ("child.break_glass", "mash.b",
                                                              "BREAK-GLASS")
    assert event.reason.startswith("Amelia presented")
    alerts = [d for d in deliveries(session, "MASH-A", "child.accessed")
              if d.payload["data"]["notified_as"] == "break_glass"]
    assert len(alerts) == 1
    data = alerts[0].payload["data"]
    assert (data["accessed_by"], data["organisation"], data["purpose"]) == (
        "mash.b", "MASH-B", "section_47_enquiry")
    assert data["break_glass"] is True and data["reason"].startswith("Amelia presented")
    assert deliveries(session, "MASH-B", "child.accessed") == []  # not to the reader's own MASH
    # Within its own area a practitioner does not break the glass even when asking to.
    inside = await read(client, world, "mash.a", family["child"], break_glass="true")
    assert inside.json()["access"]["basis"] == "area"


@pytest.mark.parametrize("link", ["transfer", "flag", "relationship"])
async def test_mash_scope_follows_transfers_flags_and_relationships(client, world, session,
                                                                    link):
    child = (await publish(client, world))["child_id"]
    assert (await read(client, world, "mash.b", child)).status_code == 404
    if link == "transfer":
        r = await client.post("/v1/transfers", headers=world.auth("CSC-A"), json={
            "subject": {"nhs_number": NHS[0]}, "to_area": "E08000028",
            "plan": "child_protection_plan", "notified_at": "2026-11-20T09:30:00+00:00"})
        assert r.status_code == 201, r.text
    elif link == "flag":
        await publish(client, world, who="POLICE-B")
    else:
        await relate(client, world, "GP-B", "registered_gp")
    r = await read(client, world, "mash.b", child)
    assert r.status_code == 200 and r.json()["access"]["basis"] == "area"
    if link == "transfer":
        assert r.json()["transfers"][0]["to_area"] == "E08000028"


async def test_an_ended_relationship_takes_the_child_out_of_scope(client, world, session):
    child = (await relate(client, world, "GP-B", "registered_gp"))["child_id"]
    assert (await read(client, world, "mash.b", child)).status_code == 200
    await relate(client, world, "GP-B", "registered_gp", end="2023-06-30")
    assert (await read(client, world, "mash.b", child)).status_code == 404
    assert (await read(client, world, "GP-B", child)).status_code == 404


# --- agencies ------------------------------------------------------------------------------

async def test_an_agency_sees_only_what_was_shared_with_it(client, world, family, session):
    r = await read(client, world, "SCHOOL-A", family["child"], purpose="safeguarding")
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["access"]["basis"] == "relationship"
    shared = set(session.exec(select(Disclosure.flag_id).where(
        Disclosure.recipient_id == "SCHOOL-A", Disclosure.shared.is_(True))).all())
    seen = {f["id"] for f in view["flags"]}
    assert seen == shared & {family["da"]["id"], family["cpp"]["id"], family["nba"]["id"]}
    assert family["nba"]["id"] not in seen  # the policy gives schools no missed appointments
    da = next(f for f in view["flags"] if f["id"] == family["da"]["id"])
    assert "details" not in da and "related_people" not in da and SECRET_DETAIL not in r.text
    # People named only on flags the school was given without their related people stay hidden.
    assert view["related_people"] == [] and view["household"] == []
    assert view["siblings"] == []
    assert {d["recipient"] for d in view["outstanding_deliveries"]} == {"SCHOOL-A"}
    # Children's social care was given the related people: it sees the family.
    csc_child = await relate(client, world, "CSC-A", "allocated_social_worker")
    csc = (await read(client, world, "CSC-A", csc_child["child_id"],
                      purpose="section_47_enquiry")).json()
    assert {p["given_name"] for p in csc["household"]} == {"Sarah", "Mark", "Dean"}
    assert next(f for f in csc["flags"] if f["id"] == family["da"]["id"])["details"] \
        == SECRET_DETAIL
    # The GP sees the flag it published, and the police flag without its details.
    gp = (await read(client, world, "GP-A", family["child"], purpose="safeguarding")).json()
    gp_flags = {f["id"]: f for f in gp["flags"]}
    assert gp_flags[family["nba"]["id"]]["summary"].startswith("Amelia was not brought")
    assert "details" not in gp_flags[family["da"]["id"]]


@pytest.mark.parametrize("who", ["SCHOOL-A2", "HOUSING-A", "CSC-B", "GP-B", "POLICE-A"])
async def test_an_agency_without_a_relationship_cannot_read(client, world, family, session,
                                                            who):
    # POLICE-A published a flag about the child but holds no relationship with it.
    r = await read(client, world, who, family["child"], purpose="safeguarding")
    assert r.status_code == 404
    assert "Amelia" not in r.text
    nhs = await client.get("/v1/children", headers=world.auth(who),
                           params={"nhs_number": NHS[0], **READ})
    assert nhs.status_code == 404
    assert reads(session) == []


async def test_break_glass_is_not_for_agencies(client, world, family, session):
    r = await read(client, world, "SCHOOL-A2", family["child"], break_glass="true")
    assert r.status_code == 403
    r = await read(client, world, "SCHOOL-A", family["child"], break_glass="true")
    assert r.status_code == 403
    assert reads(session) == []


@pytest.mark.parametrize("who", ["auditor", "admin"])
async def test_auditors_and_admins_cannot_read_flag_details(client, world, family, session,
                                                            who):
    for r in (await read(client, world, who, family["child"]),
              await client.get("/v1/children", headers=world.auth(who),
                               params={"nhs_number": NHS[0], **READ}),
              await client.get("/v1/children/search", headers=world.auth(who), params={
                  "family_name": "Hartley", "birth_date": "2022-03-14", **READ})):
        assert r.status_code == 403
        assert "Amelia" not in r.text and "Police attended" not in r.text
    assert reads(session) == []


async def test_a_token_is_needed(client, family):
    r = await client.get(f"/v1/children/{family['child']}", params=READ)
    assert r.status_code == 401


# --- access notifications -----------------------------------------------------------------

async def test_out_of_area_read_of_a_child_on_a_plan_tells_the_owning_csc(client, world,
                                                                          session):
    plan_flag = await plan(client, world)
    child = plan_flag["child_id"]
    await relate(client, world, "GP-B", "other")  # e.g. a walk-in consultation in Sandwell
    r = await read(client, world, "GP-B", child, purpose="unscheduled_care")
    assert r.status_code == 200
    [notice] = deliveries(session, "CSC-A", "child.accessed")
    data = notice.payload["data"]
    assert (data["accessed_by"], data["organisation"], data["organisation_kind"],
            data["organisation_area"], data["purpose"]) == (
        "GP-B", "GP-B", "gp", "E08000028", "unscheduled_care")
    assert data["notified_as"] == "access" and data["break_glass"] is False
    assert data["plans"] == [{"flag_id": plan_flag["id"], "category": "child_protection_plan"}]
    assert data["child"]["nhs_number"] == NHS[0] and data["accessed_at"]
    assert "reason" not in data  # who, which organisation, when, purpose: nothing more
    disclosed = session.exec(select(AuditEvent).where(
        AuditEvent.action == "alert.disclose", AuditEvent.recipient == "CSC-A",
        AuditEvent.child_id == child)).all()
    assert [e.policy_rule for e in disclosed if e.outcome == "child.accessed"] == [
        "ACCESS-NOTIFY"]


async def test_the_childs_own_gp_reads_silently(client, world, session):
    child = (await plan(client, world))["child_id"]
    await relate(client, world, "GP-B", "registered_gp")  # the family registered in Sandwell
    assert (await read(client, world, "GP-B", child, purpose="safeguarding")).status_code == 200
    assert deliveries(session, "CSC-A", "child.accessed") == []


async def test_reads_inside_the_area_or_without_an_active_plan_tell_nobody(client, world,
                                                                           session):
    cpp = await plan(client, world)
    await relate(client, world, "SCHOOL-A", "school")
    await read(client, world, "SCHOOL-A", cpp["child_id"], purpose="safeguarding")
    await read(client, world, "mash.a", cpp["child_id"])
    assert deliveries(session, "CSC-A", "child.accessed") == []
    r = await client.patch(f"/v1/flags/{cpp['id']}", headers=world.auth("CSC-A"),
                           json={"status": "inactive"})
    assert r.status_code == 200
    await relate(client, world, "GP-B", "other")
    await read(client, world, "GP-B", cpp["child_id"], purpose="unscheduled_care")
    assert deliveries(session, "CSC-A", "child.accessed") == []


async def test_a_looked_after_child_read_by_break_glass_tells_csc_and_home_mash(
        client, world, session):
    child = (await plan(client, world, category="looked_after_child"))["child_id"]
    r = await read(client, world, "mash.b", child, break_glass="true")
    assert r.status_code == 200
    kinds = sorted((d.recipient_id, d.payload["data"]["notified_as"])
                   for d in session.exec(select(Delivery).where(
                       Delivery.event_type == "child.accessed")).all())
    assert kinds == [("CSC-A", "access"), ("MASH-A", "break_glass")]


def agency_reader(world, agency_id: str) -> Reader:
    agency = world.agencies[agency_id]
    return Reader(Principal(sub=agency_id, role="agency_system", agency_id=agency_id,
                            area=agency.area, issuer="test"), agency)


def test_silent_rules_come_from_the_policy(session, world):
    child = Person(nhs_number=NHS[0])
    session.add(child)
    session.flush()
    gp_b = agency_reader(world, "GP-B")
    access = AccessPolicy(silent=[SilentRead(id="ALL-GPS", why="Any GP reads silently here.",
                                             agency_kinds=["gp"])])
    assert silent_rule(session, access, gp_b, child) == "ALL-GPS"
    assert silent_rule(session, AccessPolicy(), gp_b, child) is None
    police = agency_reader(world, "POLICE-B")
    assert silent_rule(session, access, police, child) is None
    with pytest.raises(ValidationError, match="agency_kinds or relationship_kinds"):
        SilentRead(id="NOTHING", why="No condition at all.")


def test_shipped_access_policy(policy_dir_copy):
    policy = load_policy(policy_dir_copy)
    access = load_access(policy_dir_copy, frozenset(policy.categories))
    assert access.notify.categories == ["child_protection_plan", "looked_after_child"]
    assert {r.id for r in access.silent} == {"ACCESS-SILENT-GP", "ACCESS-SILENT-HV",
                                             "ACCESS-SILENT-SW"}
    assert "mash_triage" in access.purposes and access.recent_accesses_shown == 10


def test_access_policy_errors_name_the_file_and_key(policy_dir_copy):
    cats = frozenset(load_policy(policy_dir_copy).categories)
    (policy_dir_copy / "local.yaml").write_text("access:\n  recent_accesses_shown: 5\n")
    with pytest.raises(PolicyError, match="local.yaml: access: already set in access.yaml"):
        load_access(policy_dir_copy, cats)
    (policy_dir_copy / "local.yaml").unlink()
    (policy_dir_copy / "access.yaml").write_text(
        "access:\n  notify:\n    categories: [child_protection_plan, weather]\n")
    with pytest.raises(PolicyError, match="access.notify.categories: unknown category weather"):
        load_access(policy_dir_copy, cats)
    (policy_dir_copy / "access.yaml").write_text(
        "access:\n  silent:\n    - id: QUIET\n      why: because\n")
    with pytest.raises(PolicyError, match="access.yaml: access.silent.0"):
        load_policy(policy_dir_copy)


# --- search --------------------------------------------------------------------------------

@pytest.fixture
async def records(client, world):
    """The same girl as the GP, the school and the police hold her, and two other children."""
    gp = await relate(client, world, "GP-A", "registered_gp", subject={
        "nhs_number": NHS[0], "given_name": "Amelia", "family_name": "Hartley",
        "birth_date": "2019-06-02", "postcode": "B31 2AB", "sex": "female"})
    school = await relate(client, world, "SCHOOL-A", "school", subject={
        "local_id": "UPN-77", "given_name": "Millie", "family_name": "Hartley",
        "birth_date": "2019-02-06", "postcode": "B31 2AB"})
    other = await relate(client, world, "GP-A", "registered_gp", subject={
        "nhs_number": NHS[1], "given_name": "Jack", "family_name": "Patel",
        "birth_date": "2019-06-02", "postcode": "B12 9QA"})
    sandwell = await relate(client, world, "GP-B", "registered_gp", subject={
        "nhs_number": NHS[3], "given_name": "Amelia", "family_name": "Hartley",
        "birth_date": "2019-06-12", "postcode": "B69 4RD"})
    return {"gp": gp["child_id"], "school": school["child_id"], "other": other["child_id"],
            "sandwell": sandwell["child_id"]}


async def search(client, world, who="mash.a", **params):
    return await client.get("/v1/children/search", headers=world.auth(who),
                            params={**READ, **params})


async def test_search_by_name_and_birth_date_says_why_each_matched(client, world, records,
                                                                   session):
    r = await search(client, world, family_name="Hartly", birth_date="2019-06-02",
                     given_name="Amelia", postcode="B31 2AB")
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["child"]["child_id"] for i in items] == [records["gp"], records["school"]]
    gp, school = ({(x["field"], x["match"]) for x in i["reasons"]} for i in items)
    assert gp == {("family_name", "sounds_alike"), ("given_name", "exact"),
                  ("birth_date", "exact"), ("postcode", "exact")}
    assert school == {("family_name", "sounds_alike"), ("given_name", "nickname"),
                      ("birth_date", "day_month_transposed"), ("postcode", "exact")}
    assert items[0]["score"] > items[1]["score"] and not items[0]["break_glass"]
    # Another child born the same day, and one outside the area, are not shown.
    assert records["other"] not in r.text and records["sandwell"] not in r.text
    audited = session.exec(select(AuditEvent).where(AuditEvent.action == "child.search")).all()
    assert sorted(e.child_id for e in audited) == sorted([records["gp"], records["school"]])
    assert all(e.purpose == "mash_triage" and e.reason == READ["reason"] for e in audited)


async def test_search_by_nhs_number_and_paging(client, world, records):
    r = await search(client, world, nhs_number=NHS[0])
    assert [(i["child"]["child_id"], i["reasons"]) for i in r.json()["items"]] == [
        (records["gp"], [{"field": "nhs_number", "match": "exact"}])]
    first = await search(client, world, family_name="Hartley", birth_date="2019-06-02",
                         limit=1)
    assert len(first.json()["items"]) == 1 and first.json()["next_cursor"]
    second = await search(client, world, family_name="Hartley", birth_date="2019-06-02",
                          limit=1, cursor=first.json()["next_cursor"])
    assert second.json()["items"][0]["child"]["child_id"] != \
        first.json()["items"][0]["child"]["child_id"]
    assert second.json()["next_cursor"] is None


async def test_search_outside_scope_needs_break_glass_and_alerts(client, world, records,
                                                                 session):
    r = await search(client, world, "mash.b", family_name="Hartley", birth_date="2019-06-02",
                     given_name="Amelia")
    assert [i["child"]["child_id"] for i in r.json()["items"]] == [records["sandwell"]]
    glass = await search(client, world, "mash.b", family_name="Hartley",
                         birth_date="2019-06-02", given_name="Amelia", break_glass="true")
    shown = {i["child"]["child_id"]: i["break_glass"] for i in glass.json()["items"]}
    assert shown[records["gp"]] is True and shown[records["sandwell"]] is False
    alerted = {d.payload["data"]["child"]["child_id"]
               for d in deliveries(session, "MASH-A", "child.accessed")}
    assert records["gp"] in alerted and records["sandwell"] not in alerted


async def test_an_agency_searches_only_children_it_works_with(client, world, records):
    r = await search(client, world, "SCHOOL-A", family_name="Hartley",
                     birth_date="2019-06-02", purpose="safeguarding")
    assert [i["child"]["child_id"] for i in r.json()["items"]] == [records["school"]]
    assert (await search(client, world, "SCHOOL-A", nhs_number=NHS[0])).json()["items"] == []


@pytest.mark.parametrize("params, fields", [
    ({"family_name": "Hartley"}, {"birth_date"}),
    ({"birth_date": "2019-06-02"}, {"family_name"}),
    ({}, {"family_name", "birth_date"}),
    ({"nhs_number": "9990000019"}, {"nhs_number"}),
    ({"family_name": "Hartley", "birth_date": "2019-02-30"}, {"birth_date"}),
    ({"family_name": "Hartley", "birth_date": "2019-06-02", "postcode": "nowhere"},
     {"postcode"}),
])
async def test_bad_searches_are_422_naming_the_field(client, world, records, params, fields):
    r = await search(client, world, **params)
    assert r.status_code == 422, r.text
    assert {e["field"] for e in r.json()["errors"]} == fields


async def test_search_by_a_future_birth_date_finds_nothing(client, world, records):
    future = (date.today() + timedelta(days=30)).isoformat()
    r = await search(client, world, family_name="Hartley", birth_date=future)
    assert r.status_code == 200 and r.json()["items"] == []


def test_records_merged_into_a_child_are_found_through_the_index_once_statistics_exist(
        session):
    """Nearly every person has no merged_into_id. A full index on it looked useless to SQLite
    once ANALYZE had counted those NULLs as one shared value, and every child view scanned
    the whole person table (27 ms at 133,000 people); only merged records are indexed now."""
    now = utcnow()
    session.execute(insert(Person.__table__), [
        {"id": f"p{n:05d}", "given_name": "Alex", "family_name": f"Person{n}", "unborn": False,
         "created_at": now, "updated_at": now} for n in range(3000)])
    session.add(Person(id="kept", given_name="Kept", unborn=False))
    session.add(Person(id="retired", given_name="Retired", unborn=False, merged_into_id="kept"))
    session.flush()
    session.execute(text("ANALYZE"))
    params = {"child_id": "kept"}
    plan = query_plan(session, _MERGED_INTO, params)
    assert "ix_person_merged_into_id" in plan, plan
    assert session.scalars(_MERGED_INTO, params).all() == ["retired"]


def test_the_views_plain_reads_see_what_the_session_has_not_flushed(session):
    """The view's column-only reads skip the ORM's execution layer; as its autoflush would,
    they still see what the session holds but has not yet written."""
    person = Person(given_name="Pending", family_name="Person", unborn=False)
    session.add(person)
    by_id = select(Person.id, Person.given_name).where(Person.id == bindparam("id"))
    assert plain_rows(session, by_id, {"id": person.id}).all() == [(person.id, "Pending")]
