"""Risk following an adult into a new household, siblings of children on a plan, and the
data-quality report (issue 7)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, text
from sqlmodel import select

from api.agencies.models import Agency
from api.audit.models import AuditEvent
from api.db import utcnow
from api.flags.models import Flag, FlagVersion
from api.forwarding.models import Delivery
from api.households.models import RiskAlert
from api.households.service import _HISTORY_NOT_ABOUT, joined_children, risk_history
from api.identity.models import Person, PersonLink, PossibleMatch
from api.identity.merging import confirm
from api.auth.principal import Principal
from api.policy.loader import PolicyError, load_policy
from tests.factories import BASIS, NHS, flag_body, relationship_body
from tests.plans import query_plan
from tests.population import SANDWELL, generate

ADULT_NHS = NHS[9]


def events(session, event_type, recipient=None):
    query = select(Delivery).where(Delivery.event_type == event_type)
    if recipient:
        query = query.where(Delivery.recipient_id == recipient)
    return session.exec(query.order_by(Delivery.seq)).all()


def recipients(session, event_type):
    return sorted(d.recipient_id for d in events(session, event_type))


async def publish(client, world, who, body, status=201):
    r = await client.post("/v1/flags", json=body, headers=world.auth(who))
    assert r.status_code == status, r.text
    return r.json()


def baby_in_sandwell(seed=20261123):
    """The youngest child of a Sandwell family of the synthetic population, and its mother."""
    population = generate(seed=seed)
    babies = sorted((c for c in population.children.values()
                     if c.area == SANDWELL and c.birth_date and not c.moved_to),
                    key=lambda c: c.birth_date, reverse=True)
    return babies[0], population


def baby_subject(baby) -> dict:
    return {"nhs_number": baby.nhs, "given_name": baby.given, "family_name": baby.family,
            "birth_date": baby.birth_date.isoformat(), "postcode": baby.postcode,
            "mother_nhs_number": baby.mother_nhs}


async def domestic_abuse_in_birmingham(client, world, adult=None):
    """Police in area A flag a child, naming the mother's partner as the alleged perpetrator."""
    adult = adult or {"nhs_number": ADULT_NHS, "given_name": "Dean", "family_name": "Cole",
                      "birth_date": "1990-04-02"}
    return await publish(client, world, "POLICE-A", flag_body(related_people=[
        {"role": "alleged_perpetrator", "relationship": "mother's partner", **adult}]))


async def new_partner_in_sandwell(client, world, baby, adult=None, who="GP-B"):
    adult = adult or {"nhs_number": ADULT_NHS, "given_name": "Dean", "family_name": "Cole"}
    r = await client.post("/v1/household-members", headers=world.auth(who), json={
        "subject": baby_subject(baby),
        "people": [{"role": "household_member", "relationship": "mother's new partner",
                    **adult}]})
    assert r.status_code == 201, r.text
    return r.json()


async def test_adult_with_history_joining_a_household_in_another_area(client, world, session):
    baby, _ = baby_in_sandwell()
    earlier = await domestic_abuse_in_birmingham(client, world)
    assert events(session, "household.risk_joined") == []  # a history alone tells nobody
    await new_partner_in_sandwell(client, world, baby)
    # Exactly one alert at area B's social care and MASH (the GP-B recorded the link but holds
    # no relationship with the baby, so it is not a recipient), one event for all of them.
    assert recipients(session, "household.risk_joined") == ["CSC-B", "MASH-B"]
    sent = events(session, "household.risk_joined")
    assert len({d.event_id for d in sent}) == 1
    data = sent[0].payload["data"]
    assert data["child"]["nhs_number"] == baby.nhs
    assert data["person"]["nhs_number"] == ADULT_NHS
    assert data["person"]["joined_as"] == "household_member"
    # named as the child view names them (every other event's child is `child_id` too)
    child = session.exec(select(Person).where(Person.nhs_number == baby.nhs)).one()
    adult = session.exec(select(Person).where(Person.nhs_number == ADULT_NHS)).one()
    assert data["child"]["child_id"] == child.id and "id" not in data["child"]
    assert data["person"]["person_id"] == adult.id and "id" not in data["person"]
    assert data["history"] == [{
        "flag_id": earlier["id"], "category": "domestic_abuse_incident",
        "role": "alleged_perpetrator", "date": data["history"][0]["date"],
        "publisher": "POLICE-A", "publisher_name": world.agencies["POLICE-A"].name,
        "publisher_kind": "police", "publisher_area": "E08000025"}]
    assert data["policy_rule"] == "HRJ-1" and data["lawful_basis"] == BASIS
    # No flag content travels: not the summary, not the details, not the other child.
    body = str(sent[0].payload)
    for secret in (flag_body()["summary"], flag_body()["details"], NHS[0], "Amelia"):
        assert secret not in body
    # Every disclosure is audited with purpose, lawful basis and rule, for both children.
    audited = session.exec(select(AuditEvent).where(
        AuditEvent.outcome == "household.risk_joined")).all()
    assert {(e.child_id == earlier["child_id"], e.recipient) for e in audited} == {
        (False, "CSC-B"), (False, "MASH-B"), (True, "CSC-B"), (True, "MASH-B")}
    assert {(e.policy_rule, e.purpose, e.lawful_basis) for e in audited} == {
        ("HRJ-1", "safeguarding", "6(1)(e) + 9(2)(g) + schedule1-part2-para18")}


async def test_relinking_the_same_adult_raises_nothing_new(client, world, session):
    baby, _ = baby_in_sandwell()
    await domestic_abuse_in_birmingham(client, world)
    await new_partner_in_sandwell(client, world, baby)
    again = await new_partner_in_sandwell(client, world, baby)
    assert again["people"][0]["new"] is False
    # ... and named again on a flag about the same baby by another agency.
    await publish(client, world, "POLICE-B", flag_body(
        subject={"nhs_number": baby.nhs}, related_people=[
            {"role": "household_member", "nhs_number": ADULT_NHS}]))
    assert len(events(session, "household.risk_joined")) == 2  # still the first event's two


def test_an_adult_named_on_many_flags_is_reviewed_once_per_child(world, session, policy):
    """Each child the adult joined comes back once, with the first link that joined them;
    merged records and roles that join no household are left out."""
    adult, first, second, merged, survivor = (Person(given_name=name) for name in (
        "Dean", "Amy", "Ben", "Cara (merged)", "Cara"))
    session.add_all([adult, first, second, survivor])
    session.flush()
    merged.merged_into_id = survivor.id
    session.add(merged)
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    made = {}
    for n, (child, role, agency) in enumerate([
            (second, "parent", "GP-B"), (first, "household_member", "POLICE-A"),
            (first, "parent", "GP-A"), (first, "sibling", "GP-A"), (merged, "parent", "GP-A"),
            (second, "alleged_perpetrator", "POLICE-B")]):
        made[n] = PersonLink(child_id=child.id, person_id=adult.id, role=role,
                             agency_id=agency, created_at=at + timedelta(days=n))
        session.add(made[n])
    session.flush()
    joined = joined_children(session, policy.household_risk, [adult.id, first.id])
    assert list(joined) == [adult.id]  # the child joined no household
    links = joined[adult.id]
    assert [(link.id, link.child_id) for link in links] == [
        (made[0].id, second.id), (made[1].id, first.id)]
    assert links[1].role == "household_member" and links[1].agency_id == "POLICE-A"


async def test_history_recorded_after_the_adult_joined_is_told(client, world, session):
    baby, _ = baby_in_sandwell()
    await new_partner_in_sandwell(client, world, baby)
    assert events(session, "household.risk_joined") == []
    await domestic_abuse_in_birmingham(client, world)
    assert recipients(session, "household.risk_joined") == ["CSC-B", "MASH-B"]


async def test_an_adult_with_no_risk_history_raises_nothing(client, world, session):
    baby, _ = baby_in_sandwell()
    # Named on a flag, but as a parent on a missed-appointment flag: no history.
    await publish(client, world, "GP-A", flag_body(
        category="not_brought_to_appointment", purpose="safeguarding",
        summary="Amelia was not brought to her 2-year review twice; we could not reach mum.",
        related_people=[{"role": "parent", "nhs_number": ADULT_NHS}]))
    await new_partner_in_sandwell(client, world, baby)
    assert events(session, "household.risk_joined") == []
    assert session.exec(select(RiskAlert)).all() == []


async def test_the_childs_gp_hears_where_the_policy_allows(client, world, session):
    baby, _ = baby_in_sandwell()
    r = await client.post("/v1/relationships", headers=world.auth("GP-B"),
                          json=relationship_body("registered_gp", nhs=baby.nhs))
    assert r.status_code == 201
    await domestic_abuse_in_birmingham(client, world)
    await new_partner_in_sandwell(client, world, baby, who="POLICE-B")
    assert recipients(session, "household.risk_joined") == ["CSC-B", "GP-B", "MASH-B"]


async def test_a_category_the_policy_does_not_let_travel_raises_nothing(client, world, session,
                                                                        app):
    baby, _ = baby_in_sandwell()
    policy = app.state.policy
    rule = policy.household_risk
    narrowed = rule.model_copy(update={"history": {
        k: v for k, v in rule.history.items() if k != "domestic_abuse_incident"}})
    app.state.policy = dataclasses.replace(policy, household_risk=narrowed)
    await domestic_abuse_in_birmingham(client, world)
    await new_partner_in_sandwell(client, world, baby)
    assert events(session, "household.risk_joined") == []
    # Switched back on, the same category travels.
    app.state.policy = policy
    await new_partner_in_sandwell(client, world, baby, who="POLICE-B")
    assert recipients(session, "household.risk_joined") == ["CSC-B", "MASH-B"]


async def test_no_household_risk_section_means_no_alerts(client, world, session, app):
    app.state.policy = dataclasses.replace(app.state.policy, household_risk=None)
    baby, _ = baby_in_sandwell()
    await domestic_abuse_in_birmingham(client, world)
    await new_partner_in_sandwell(client, world, baby)
    assert events(session, "household.risk_joined") == []


async def test_recipient_cannot_read_the_earlier_flag(client, world, session):
    baby, _ = baby_in_sandwell()
    earlier = await domestic_abuse_in_birmingham(client, world)
    await new_partner_in_sandwell(client, world, baby)
    assert "CSC-B" in recipients(session, "household.risk_joined")
    # The alert names the flag; it does not entitle anyone to it.
    for who in ("CSC-B", "GP-B"):
        r = await client.get(f"/v1/flags/{earlier['id']}", headers=world.auth(who))
        assert r.status_code == 404, who
    # A MASH practitioner of area B cannot open it either (the child is not in B's scope).
    r = await client.get(f"/v1/flags/{earlier['id']}", headers=world.auth("mash.b"),
                         params={"purpose": "mash_triage", "reason": "household risk alert"})
    assert r.status_code == 404
    # The publisher's own area still can, as before.
    r = await client.get(f"/v1/flags/{earlier['id']}", headers=world.auth("CSC-A"))
    assert r.status_code == 200


async def test_an_adult_without_nhs_number_is_queued_not_assumed(client, world, session, policy):
    baby, _ = baby_in_sandwell()
    adult = {"given_name": "Dean", "family_name": "Cole", "birth_date": "1990-04-02"}
    await domestic_abuse_in_birmingham(client, world, adult=adult)
    await new_partner_in_sandwell(client, world, baby, adult=adult)
    # Same name and birth date, no NHS number: possibly the same man, never assumed.
    assert events(session, "household.risk_joined") == []
    match = session.exec(select(PossibleMatch)).one()
    assert {m.recipient_id for m in events(session, "match.proposed")} == {"MASH-A", "MASH-B"}
    # A MASH practitioner confirms they are one person: the history now follows him.
    practitioner = Principal(sub="mash.b", role="mash_practitioner", agency_id="MASH-B",
                             area=SANDWELL, issuer="test")
    confirm(session, policy, practitioner, match.id, "same man: checked with police")
    session.commit()  # as the endpoint does: alerts go to the outbox at commit
    assert recipients(session, "household.risk_joined") == ["CSC-B", "MASH-B"]


# --- siblings ----------------------------------------------------------------------------

async def plan_for(client, world, subject, category="child_protection_plan"):
    return await publish(client, world, "CSC-A", flag_body(
        subject=subject, category=category, purpose="child_protection", severity="high",
        summary="Amelia is on a child protection plan for neglect: she was often left alone "
                "at home and missed health appointments."))


async def test_a_sibling_flagged_by_a_school_reaches_the_plan_owner(client, world, session):
    mother = NHS[8]
    plan = await plan_for(client, world, {"nhs_number": NHS[0], "mother_nhs_number": mother})
    sibling = {"nhs_number": NHS[1], "given_name": "Oliver", "family_name": "Hartley",
               "birth_date": "2016-05-01", "mother_nhs_number": mother}
    flagged = await publish(client, world, "SCHOOL-A", flag_body(
        subject=sibling, category="missing_episode", severity="medium",
        summary="Oliver did not come back to school after lunch and was found by police at "
                "10pm in the town centre."))
    sent = events(session, "sibling.flagged")
    assert [d.recipient_id for d in sent] == ["CSC-A"]
    data = sent[0].payload["data"]
    assert data["trigger"] == "flagged"
    assert data["child"]["nhs_number"] == NHS[1] and "child_id" in data["child"]
    assert data["flag"]["flag_id"] == flagged["id"] and data["flag"]["publisher"] == "SCHOOL-A"
    assert data["plans"] == [{"child_id": plan["child_id"], "category": "child_protection_plan",
                              "plan_flag_id": plan["id"]}]
    assert "found by police" not in str(sent[0].payload)


@pytest.mark.parametrize("path,body", [
    ("/v1/household-members", {"subject": {"nhs_number": NHS[0]}, "people": [
        {"role": "household_member", "nhs_number": ADULT_NHS},
        {"role": "parent", "nhs_number": NHS[0]}]}),
    ("/v1/flags", flag_body(related_people=[
        {"role": "household_member", "nhs_number": ADULT_NHS},
        {"role": "alleged_perpetrator", "nhs_number": NHS[0]}])),
])
async def test_a_child_is_never_named_as_its_own_relative(client, world, session, path, body):
    field = "people" if "people" in body else "related_people"
    r = await client.post(path, headers=world.auth("POLICE-A"), json=body)
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == [f"{field}.1.nhs_number"]
    assert session.exec(select(PersonLink)).all() == []


async def test_siblings_through_a_household_member_and_named_siblings(client, world, session):
    plan = await plan_for(client, world, {"nhs_number": NHS[0]}, category="looked_after_child")
    # The plan child's household includes an adult who also lives with another child.
    r = await client.post("/v1/household-members", headers=world.auth("HV-A"), json={
        "subject": {"nhs_number": NHS[0]},
        "people": [{"role": "household_member", "nhs_number": ADULT_NHS}]})
    assert r.status_code == 201
    r = await client.post("/v1/household-members", headers=world.auth("HV-A"), json={
        "subject": {"nhs_number": NHS[2]},
        "people": [{"role": "household_member", "nhs_number": ADULT_NHS}]})
    assert r.status_code == 201
    await publish(client, world, "GP-A", flag_body(
        subject={"nhs_number": NHS[2]}, category="not_brought_to_appointment",
        summary="Not brought to two hearing appointments; the family did not answer calls."))
    assert [d.recipient_id for d in events(session, "sibling.flagged")] == ["CSC-A"]
    # Named as a sibling on a flag counts too, in either direction.
    await publish(client, world, "POLICE-A", flag_body(
        subject={"nhs_number": NHS[3]},
        related_people=[{"role": "sibling", "nhs_number": NHS[0]}]))
    assert len(events(session, "sibling.flagged")) == 2
    assert plan["id"] in str(events(session, "sibling.flagged")[1].payload)


async def test_no_sibling_alert_without_an_active_plan_or_to_the_publisher_itself(
        client, world, session):
    mother = NHS[8]
    plan = await plan_for(client, world, {"nhs_number": NHS[0], "mother_nhs_number": mother})
    # The plan owner flagging the sibling itself is not told what it just did.
    await publish(client, world, "CSC-A", flag_body(
        subject={"nhs_number": NHS[1], "mother_nhs_number": mother}, category="child_in_need",
        purpose="child_protection",
        summary="Oliver is a child in need: his mother is struggling after losing her job."))
    assert events(session, "sibling.flagged") == []
    r = await client.patch(f"/v1/flags/{plan['id']}", headers=world.auth("CSC-A"),
                           json={"status": "inactive"})
    assert r.status_code == 200
    await publish(client, world, "SCHOOL-A", flag_body(
        subject={"nhs_number": NHS[1]}, category="school_exclusion", severity="low",
        summary="Oliver was excluded for two days after a fight; he is back on Monday."))
    assert events(session, "sibling.flagged") == []  # the plan ended


async def test_an_unborn_sibling_born_reaches_the_plan_owner(client, world, session, policy):
    mother = NHS[8]
    await plan_for(client, world, {"nhs_number": NHS[0], "mother_nhs_number": mother})
    unborn = {"unborn": True, "mother_nhs_number": mother, "expected_delivery_date": "2026-11-01"}
    await publish(client, world, "MW-A", flag_body(
        subject=unborn, category="unborn_child_protection_concern", purpose="child_protection",
        summary="Mum is 30 weeks pregnant; her older child is on a plan for neglect and she "
                "has missed three antenatal appointments."))
    before = len(events(session, "sibling.flagged"))
    assert before == 1  # the unborn child is a sibling through the mother already
    r = await client.post("/v1/relationships", headers=world.auth("GP-A"), json={
        "subject": {"nhs_number": NHS[4], "family_name": "Hartley", "birth_date": "2026-10-28",
                    "mother_nhs_number": mother}, "kind": "registered_gp",
        "start": "2026-10-30"})
    assert r.status_code == 201
    match = session.exec(select(PossibleMatch).where(
        PossibleMatch.kind == "unborn_to_born")).one()
    practitioner = Principal(sub="mash.a", role="mash_practitioner", agency_id="MASH-A",
                             area="E08000025", issuer="test")
    confirm(session, policy, practitioner, match.id, "born 28 October, same mother")
    session.commit()  # as the endpoint does: alerts go to the outbox at commit
    sent = events(session, "sibling.flagged")
    assert len(sent) == before + 1
    assert sent[-1].recipient_id == "CSC-A"
    assert sent[-1].payload["data"]["trigger"] == "born"


def test_policy_rejects_an_unknown_category_in_household_risk(policy_dir_copy):
    path = policy_dir_copy / "household.yaml"
    path.write_text(path.read_text().replace("    injury_non_mobile_infant:",
                                             "    injury_non_mobile_infnat:"))
    with pytest.raises(PolicyError, match="household_risk: category 'injury_non_mobile_infnat'"):
        load_policy(policy_dir_copy)


def test_policy_refuses_household_risk_set_twice(policy_dir_copy):
    text = (policy_dir_copy / "household.yaml").read_text()
    (policy_dir_copy / "zz-local.yaml").write_text(
        text[text.index("household_risk:"):text.index("siblings:")])
    with pytest.raises(PolicyError, match="household_risk: already set in household.yaml"):
        load_policy(policy_dir_copy)


# --- data-quality report -----------------------------------------------------------------

async def test_data_quality_report(client, world, session):
    # GP-A: one flag with everything, one without NHS number or ethnicity, with jargon.
    await publish(client, world, "GP-A", flag_body(
        category="not_brought_to_appointment",
        summary="Amelia was not brought to her 2-year review twice; we could not reach mum."))
    await publish(client, world, "GP-A", flag_body(
        category="not_brought_to_appointment",
        subject={"local_id": "GP-123", "family_name": "Khan", "birth_date": "2021-02-02"},
        summary="DNA x2, no concerns."))
    # Amelia is now flagged by police (flag_body) and a school too: three agencies, and no
    # children's social care works with her.
    await publish(client, world, "POLICE-A", flag_body())
    await publish(client, world, "SCHOOL-A", flag_body(
        category="missing_episode", severity="medium",
        summary="Amelia was not collected from school and was found at a neighbour's house."))
    r = await client.get("/v1/reports/data-quality", params={"area": "E08000025"},
                         headers=world.auth("mash.a"))
    assert r.status_code == 200, r.text
    report = r.json()
    gp = next(a for a in report["agencies"] if a["agency"] == "GP-A")
    assert (gp["flags"], gp["without_nhs_number"], gp["without_ethnicity"],
            gp["with_plain_language_warnings"]) == (2, 1, 1, 1)
    assert gp["without_nhs_number_share"] == 0.5
    unowned = report["known_to_many_owned_by_none"]
    assert [c["nhs_number"] for c in unowned] == [NHS[0]]
    assert unowned[0]["agencies"] == ["GP-A", "POLICE-A", "SCHOOL-A"]
    # Once social care works with her, she is owned.
    r = await client.post("/v1/relationships", headers=world.auth("CSC-A"),
                          json=relationship_body("allocated_social_worker"))
    assert r.status_code == 201
    r = await client.get("/v1/reports/data-quality", params={"area": "E08000025"},
                         headers=world.auth("admin"))
    assert r.json()["known_to_many_owned_by_none"] == []
    # Reading the list is a disclosure of the children listed.
    read = session.exec(select(AuditEvent).where(AuditEvent.action == "report.read",
                                                 AuditEvent.child_id.is_not(None))).all()
    assert [e.actor for e in read] == ["mash.a"]


NOT_BROUGHT = flag_body(category="not_brought_to_appointment",
                        summary="Amelia was not brought to her 2-year review twice; we could "
                                "not reach mum.")
MISSING = flag_body(category="missing_episode", severity="medium",
                    summary="Amelia was not collected from school and was found at a "
                            "neighbour's house.")


async def test_the_mash_is_told_when_a_third_agency_flags_a_child_no_one_owns(client, world,
                                                                              session):
    """What the data-quality report lists, pushed as it happens, once per child."""
    await publish(client, world, "GP-A", NOT_BROUGHT)
    await publish(client, world, "POLICE-A", flag_body())
    await publish(client, world, "POLICE-A", flag_body(severity="medium"))  # still two agencies
    assert events(session, "child.known_to_many") == []
    await publish(client, world, "SCHOOL-A", MISSING)
    [told] = events(session, "child.known_to_many")
    assert told.recipient_id == "MASH-A"
    data = told.payload["data"]
    assert data["agencies"] == ["GP-A", "POLICE-A", "SCHOOL-A"]
    assert data["child"]["nhs_number"] == NHS[0] and data["areas"] == ["E08000025"]
    for body in (NOT_BROUGHT, flag_body(), MISSING):  # nothing they flagged travels
        assert body["summary"] not in str(told.payload) and body["category"] not in str(data)
    # More flags, from them or a fourth agency: she was raised already.
    await publish(client, world, "SCHOOL-A", MISSING)
    await publish(client, world, "SCHOOL-A2", MISSING)
    assert len(events(session, "child.known_to_many")) == 1
    disclosed = session.exec(select(AuditEvent).where(
        AuditEvent.action == "alert.disclose", AuditEvent.outcome == "child.known_to_many")).all()
    assert [(e.recipient, e.child_id) for e in disclosed] == [("MASH-A", told.payload["data"][
        "child"]["child_id"])]


async def test_a_child_social_care_works_with_is_not_raised(client, world, session):
    r = await client.post("/v1/relationships", headers=world.auth("CSC-A"),
                          json=relationship_body("allocated_social_worker"))
    assert r.status_code == 201
    for who, body in (("GP-A", NOT_BROUGHT), ("POLICE-A", flag_body()), ("SCHOOL-A", MISSING)):
        await publish(client, world, who, body)
    assert events(session, "child.known_to_many") == []


@pytest.mark.parametrize("who,area,status", [
    ("mash.b", "E08000025", 403),   # another area's MASH
    ("auditor", "E08000025", 403),
    ("CSC-A", "E08000025", 403),    # agencies do not read the report
    ("admin", "E09999999", 422),    # not an area the service knows
    ("admin", "Birmingham", 422),
])
async def test_data_quality_report_refusals(client, world, who, area, status):
    r = await client.get("/v1/reports/data-quality", params={"area": area},
                         headers=world.auth(who))
    assert r.status_code == status, r.text
    if status == 422:
        assert r.json()["errors"][0]["field"] == "area"


async def test_data_quality_report_needs_area_and_token(client, world):
    r = await client.get("/v1/reports/data-quality", headers=world.auth("admin"))
    assert r.status_code == 422
    r = await client.get("/v1/reports/data-quality", params={"area": "E08000025"})
    assert r.status_code == 401


async def test_household_members_bad_input(client, world, session):
    r = await client.post("/v1/household-members", headers=world.auth("GP-B"), json={
        "subject": {"nhs_number": NHS[1]}, "people": []})
    assert r.status_code == 422 and "people" in r.text
    r = await client.post("/v1/household-members", headers=world.auth("GP-B"), json={
        "subject": {"nhs_number": NHS[1]}, "people": [{"role": "household_member"}]})
    assert r.status_code == 422
    r = await client.post("/v1/household-members", headers=world.auth("mash.b"), json={
        "subject": {"nhs_number": NHS[1]},
        "people": [{"role": "household_member", "nhs_number": ADULT_NHS}]})
    assert r.status_code == 403


async def test_the_mash_sees_what_it_was_told_in_the_child_view(client, world, session):
    baby, _ = baby_in_sandwell()
    earlier = await domestic_abuse_in_birmingham(client, world)
    await new_partner_in_sandwell(client, world, baby)
    params = {"nhs_number": baby.nhs, "purpose": "mash_triage", "reason": "risk alert"}
    r = await client.get("/v1/children", params=params, headers=world.auth("mash.b"))
    assert r.status_code == 200, r.text
    told = r.json()["household_risk"]
    assert [(t["flag_id"], t["category"], t["publisher"]) for t in told] == [
        (earlier["id"], "domestic_abuse_incident", "POLICE-A")]
    assert flag_body()["summary"] not in r.text


def test_an_adults_history_is_read_from_their_links_even_when_statistics_are_stale(
        session, policy):
    """The history is read on every publish naming an adult. Read from the flags' side, it
    visits every flag of the travelling categories and then keeps the adult's few: the plan
    PostgreSQL chose while its statistics still described an empty flag table, about 1 ms a
    call at a few hundred flags. It must start from the adult's links whatever the
    statistics say."""
    now = utcnow()
    session.execute(text("ANALYZE"))  # statistics of tables that hold no flag yet
    # 2,000 domestic abuse flags, each about its own child and naming its own adult, but for
    # four that name adult7.
    flags = range(2000)
    adult = {n: "adult7" if n % 500 == 7 else f"adult{n}" for n in flags}
    session.execute(insert(Agency.__table__), [
        {"id": "POLICE-X", "name": "Police", "kind": "police", "area": "E08000025",
         "client_secret_hash": "x", "disabled": False, "created_at": now}])
    session.execute(insert(Person.__table__), [
        {"id": p, "given_name": "A", "unborn": False, "created_at": now, "updated_at": now}
        for p in sorted(set(adult.values()) | {f"c{n}" for n in flags})])
    session.execute(insert(Flag.__table__), [
        {"id": f"f{n}", "child_id": f"c{n}", "publisher_id": "POLICE-X",
         "category": "domestic_abuse_incident", "version": 1, "status": "active",
         "created_at": now, "updated_at": now} for n in flags])
    session.execute(insert(FlagVersion.__table__), [
        {"flag_id": f"f{n}", "version": 1, "status": "active", "severity": "medium",
         "summary": "s", "purpose": "safeguarding", "article6": "6(1)(e)",
         "policy_rule": "R", "policy_version": "v", "warnings": [], "created_by": "x",
         "created_at": now} for n in flags])
    session.execute(insert(PersonLink.__table__), [
        {"id": f"l{n}", "child_id": f"c{n}", "person_id": adult[n],
         "role": "alleged_perpetrator", "agency_id": "POLICE-X", "flag_id": f"f{n}",
         "created_at": now} for n in flags])
    plan = query_plan(session, _HISTORY_NOT_ABOUT, {
        "person_id": "adult7", "categories": ["domestic_abuse_incident"], "not_about": "c7"})
    assert "ix_personlink_person_id" in plan, plan
    assert "ix_flag_category" not in plan, plan
    history = risk_history(session, policy.household_risk, "adult7", not_about="c7")
    assert sorted(h.flag_id for h in history) == ["f1007", "f1507", "f507"]
