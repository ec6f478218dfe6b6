"""Publishing, reading, amending flags and recording sharing decisions through the API."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import func, select

from api.audit.models import AuditEvent
from api.db import utcnow
from api.flags.models import Disclosure, Flag, FlagVersion, SharingDecision
from api.identity.models import Person, PersonLink
from api.transfers.working_days import england_date
from tests.factories import BASIS, NHS, flag_body, relationship_body


def count(session, model) -> int:
    return session.exec(select(func.count()).select_from(model)).one()


@pytest.fixture
async def known_child(client, world):
    """Amelia (aged 4) is registered with GP-A, attends SCHOOL-A and is seen by HV-A."""
    for agency, kind in (("GP-A", "registered_gp"), ("SCHOOL-A", "school"),
                         ("HV-A", "health_visitor")):
        r = await client.post("/v1/relationships", json=relationship_body(kind),
                              headers=world.auth(agency))
        assert r.status_code == 201, r.text
    return r.json()["child_id"]


async def publish(client, world, who="POLICE-A", **override):
    return await client.post("/v1/flags", json=flag_body(**override), headers=world.auth(who))


# --- publish: recipients computed from policy and relationships ---------------------------

async def test_publish_shares_per_policy_and_says_why_not(client, world, known_child, session):
    await client.post("/v1/relationships", json=relationship_body("other"),
                      headers=world.auth("HOUSING-A"))
    r = await publish(client, world)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["child_id"] == known_child
    assert out["version"] == 1 and out["status"] == "active"
    # Area-wide CSC and MASH of Birmingham; the child's own school, GP and (under 5) HV.
    assert out["shared_with"] == ["CSC-A", "GP-A", "HV-A", "MASH-A", "SCHOOL-A"]
    not_shared = {n["agency"]: n["reason"] for n in out["not_shared"]}
    # Housing works with the family but the policy gives it no domestic abuse incidents;
    # a school with no link to the child is not even a candidate.
    assert "does not share domestic_abuse_incident with housing" in not_shared["HOUSING-A"]
    assert "SCHOOL-A2" not in not_shared and "SCHOOL-A2" not in out["shared_with"]
    assert "CSC-B" not in out["shared_with"] and "MASH-B" not in out["shared_with"]
    assert out["policy_rule"] == "DAI-PUB" and len(out["policy_version"]) == 16
    rows = session.exec(select(Disclosure).where(Disclosure.flag_id == out["id"])).all()
    assert {d.recipient_id for d in rows if d.shared} == set(out["shared_with"])
    assert {d.recipient_id for d in rows if not d.shared} == set(not_shared)
    school = next(d for d in rows if d.recipient_id == "SCHOOL-A")
    assert school.policy_rule == "DAI-SCHOOL" and "details" not in school.fields
    assert school.acknowledge_by is not None


async def test_health_visitor_only_for_under_fives(client, world):
    await client.post("/v1/relationships", json=relationship_body("health_visitor", NHS[1]),
                      headers=world.auth("HV-A"))
    older = {"nhs_number": NHS[1], "birth_date": "2015-06-01"}
    r = await publish(client, world, subject=older)
    assert r.status_code == 201, r.text
    reasons = {n["agency"]: n["reason"] for n in r.json()["not_shared"]}
    assert "HV-A" not in r.json()["shared_with"]
    assert "under 5" in reasons["HV-A"]


async def test_other_area_learns_nothing_without_a_link(client, world, known_child):
    r = await publish(client, world)
    assert not {"CSC-B", "MASH-B", "GP-B"} & set(r.json()["shared_with"])
    # Once a Sandwell GP registers the child, Sandwell becomes an area where it is known.
    await client.post("/v1/relationships", json=relationship_body("registered_gp"),
                      headers=world.auth("GP-B"))
    r2 = await publish(client, world)
    assert {"CSC-B", "MASH-B", "GP-B"} <= set(r2.json()["shared_with"])


async def test_every_decision_is_audited_in_the_same_transaction(client, world, known_child,
                                                                 session):
    r = await publish(client, world)
    flag_id = r.json()["id"]
    events = session.exec(select(AuditEvent).where(AuditEvent.flag_id == flag_id)
                          .order_by(AuditEvent.seq)).all()
    actions = [e.action for e in events]
    assert actions[0] == "flag.publish"
    assert actions.count("flag.disclose") == len(r.json()["shared_with"])
    assert actions.count("flag.withhold") == len(r.json()["not_shared"])
    disclose = next(e for e in events if e.action == "flag.disclose")
    assert disclose.purpose == "safeguarding"
    assert disclose.lawful_basis == "6(1)(e) + 9(2)(g) + schedule1-part2-para18"
    assert disclose.policy_rule and disclose.policy_version
    # The chain links each event to the one before.
    for before, after in zip(events, events[1:]):
        assert after.prev_hash == before.hash or after.seq != before.seq + 1


async def test_related_people_are_persons_linked_with_roles(client, world, session):
    r = await publish(client, world, related_people=[
        {"role": "alleged_perpetrator", "given_name": "Dean", "family_name": "Morris",
         "relationship": "mother's new partner"},
        {"role": "parent", "nhs_number": NHS[2], "family_name": "Hartley"},
    ])
    assert r.status_code == 201, r.text
    links = session.exec(select(PersonLink).where(PersonLink.flag_id == r.json()["id"])).all()
    assert sorted(l.role for l in links) == ["alleged_perpetrator", "parent"]
    mother = session.exec(select(Person).where(Person.nhs_number == NHS[2])).one()
    assert any(l.person_id == mother.id for l in links)
    # The same mother named on a second flag is the same person, not a copy.
    r2 = await publish(client, world, related_people=[{"role": "parent", "nhs_number": NHS[2]}])
    assert r2.status_code == 201
    assert len(session.exec(select(Person).where(Person.nhs_number == NHS[2])).all()) == 1


async def test_plain_language_warnings(client, world):
    r = await publish(client, world, summary="Child doing well, no concerns following s47.")
    assert r.status_code == 201
    codes = {(w["code"], w["term"]) for w in r.json()["warnings"]}
    assert ("jargon", "s47") in codes and ("generic_reassurance", "doing well") in codes
    clean = await publish(client, world)
    assert clean.json()["warnings"] == []


# --- publish: refusals and bad input write nothing ----------------------------------------

async def test_policy_refusal_names_the_rule_and_writes_only_the_refusal(client, world, session):
    before = count(session, Flag), count(session, Person)
    r = await publish(client, world, who="SCHOOL-A")  # schools may not publish DA incidents
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["policy_rule"] == "DAI-PUB" and "DAI-PUB" in body["detail"]
    assert (count(session, Flag), count(session, Person)) == before
    refusal = session.exec(select(AuditEvent).where(AuditEvent.action == "flag.refuse")).one()
    assert refusal.actor_agency == "SCHOOL-A" and refusal.policy_rule == "DAI-PUB"


@pytest.mark.parametrize("override, field", [
    ({"purpose": "care_planning"}, "purpose"),
    ({"lawful_basis": {"article6": "6(1)(a)"}}, "article6"),
    ({"category": "parental_mental_health", "lawful_basis": {"article6": "6(1)(e)"},
      "summary": "Mother has been admitted to a mental health ward; nobody else can care for "
                 "the baby tonight."}, "article9"),
])
async def test_policy_refusals_for_purpose_and_lawful_basis(client, world, session, override,
                                                            field):
    who = "GP-A" if override.get("category") == "parental_mental_health" else "POLICE-A"
    r = await publish(client, world, who=who, **override)
    assert r.status_code == 403, r.text
    assert field in r.json()["detail"]
    assert count(session, Flag) == 0


@pytest.mark.parametrize("override, field", [
    ({"subject": {"nhs_number": "9990000019"}}, "subject.nhs_number"),
    ({"subject": {"family_name": "Hartley"}}, "subject"),
    ({"category": "bad_weather"}, "category"),
    ({"summary": "   "}, "summary"),
    ({"summary": "x" * 1001}, "summary"),
    ({"severity": "catastrophic"}, "severity"),
    ({"purpose": "curiosity"}, "purpose"),
    ({"lawful_basis": {"article6": "public task"}}, "lawful_basis.article6"),
    ({"occurred_at": "2026-01-01T10:00:00"}, "occurred_at"),
    ({"occurred_at": "2999-01-01T10:00:00+00:00"}, "occurred_at"),
    ({"period": {"start": "2026-02-01", "end": "2026-01-01"}}, "period.end"),
    ({"period": {"start": "2999-02-01"}}, "period.start"),
    ({"period": {"start": "1899-12-31"}}, "period.start"),
    ({"subject": {"mother_nhs_number": NHS[8], "expected_delivery_date": "2062-03-14"}},
     "subject.expected_delivery_date"),
    ({"related_people": [{"role": "uncle", "family_name": "X"}]}, "related_people.0.role"),
    ({"related_people": [{"role": "parent", "nhs_number": NHS[2]},
                         {"role": "parent", "nhs_number": NHS[2]}]}, "related_people"),
    ({"colour": "red"}, "colour"),
])
async def test_invalid_flags_are_422_naming_the_field(client, world, session, override, field):
    r = await publish(client, world, **override)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in r.json()["errors"]]
    assert count(session, Flag) == 0 and count(session, Person) == 0


async def test_one_422_names_every_bad_field_the_policy_judges_too(client, world, session):
    """An unknown category is judged against the policy in force, yet named in the same 422
    as the fields the schema refuses: the client fixes them all at once."""
    audited = count(session, AuditEvent)
    r = await publish(client, world, category="nope", severity="extreme",
                      lawful_basis={"article6": "public task"})
    assert r.status_code == 422, r.text
    errors = {e["field"]: e["message"] for e in r.json()["errors"]}
    assert errors.keys() == {"category", "severity", "lawful_basis.article6"}
    assert errors["category"].startswith("unknown category 'nope'; the policy defines: ")
    assert count(session, Flag) == 0 and count(session, Person) == 0
    assert count(session, AuditEvent) == audited


async def test_a_body_the_policy_would_refuse_with_a_bad_field_is_422_and_not_recorded(
        client, world, session):
    """A refusal is a decision recorded in the audit log: only for a body with no bad field."""
    audited = count(session, AuditEvent)
    r = await publish(client, world, who="SCHOOL-A", severity="extreme")
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["severity"]
    assert count(session, AuditEvent) == audited


async def test_occurred_at_may_be_a_clock_skew_ahead_and_no_more(client, world, session):
    soon = await publish(client, world, occurred_at=(utcnow() + timedelta(minutes=1)).isoformat())
    assert soon.status_code == 201, soon.text
    later = await publish(client, world,
                          occurred_at=(utcnow() + timedelta(minutes=10)).isoformat())
    assert later.status_code == 422
    assert [e["field"] for e in later.json()["errors"]] == ["occurred_at"]
    assert "future" in later.json()["detail"]


async def test_missing_summary_is_422(client, world, session):
    body = flag_body()
    del body["summary"]
    r = await client.post("/v1/flags", json=body, headers=world.auth("POLICE-A"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "summary"


async def test_malformed_json_is_400_and_oversized_is_413(client, world, session, settings):
    headers = {**world.auth("POLICE-A"), "content-type": "application/json"}
    r = await client.post("/v1/flags", content=b'{"subject": ', headers=headers)
    assert r.status_code == 400 and r.json()["status"] == 400
    big = flag_body(details="x" * (settings.max_body_bytes + 1))
    r = await client.post("/v1/flags", json=big, headers=world.auth("POLICE-A"))
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    assert count(session, Flag) == 0


@pytest.mark.parametrize("who", ["mash.a", "auditor", "admin"])
async def test_only_agency_systems_publish(client, world, session, who):
    r = await publish(client, world, who=who)
    assert r.status_code == 403
    assert count(session, Flag) == 0


async def test_no_token_is_401(client, session):
    r = await client.post("/v1/flags", json=flag_body())
    assert r.status_code == 401 and "Bearer" in r.headers["www-authenticate"]


# --- reading ------------------------------------------------------------------------------

async def test_publisher_sees_everything_recipient_sees_its_share(client, world, known_child):
    flag_id = (await publish(client, world)).json()["id"]
    mine = (await client.get(f"/v1/flags/{flag_id}", headers=world.auth("POLICE-A"))).json()
    assert mine["details"].startswith("Partner arrested")
    assert "SCHOOL-A" in mine["shared_with"] and mine["not_shared"] == []
    school = await client.get(f"/v1/flags/{flag_id}", headers=world.auth("SCHOOL-A"))
    assert school.status_code == 200
    seen = school.json()
    assert seen["summary"] == mine["summary"] and "details" not in seen
    assert "shared_with" not in seen and "related_people" not in seen
    csc = (await client.get(f"/v1/flags/{flag_id}", headers=world.auth("CSC-A"))).json()
    assert csc["details"] == mine["details"]


@pytest.mark.parametrize("who", ["SCHOOL-A2", "CSC-B", "HOUSING-A"])
async def test_agency_without_a_share_gets_404(client, world, known_child, who):
    flag_id = (await publish(client, world)).json()["id"]
    r = await client.get(f"/v1/flags/{flag_id}", headers=world.auth(who))
    assert r.status_code == 404
    unknown = await client.get("/v1/flags/00000000-0000-0000-0000-000000000000",
                               headers=world.auth(who))
    assert unknown.status_code == 404 and unknown.json()["detail"] == r.json()["detail"]


async def test_mash_reads_with_a_purpose_in_its_own_area_only(client, world, session):
    flag_id = (await publish(client, world)).json()["id"]
    r = await client.get(f"/v1/flags/{flag_id}", headers=world.auth("mash.a"))
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"purpose", "reason"}
    ok = await client.get(f"/v1/flags/{flag_id}", headers=world.auth("mash.a"),
                          params={"purpose": "mash_triage", "reason": "Referral from school"})
    assert ok.status_code == 200 and "details" in ok.json()
    read = session.exec(select(AuditEvent).where(AuditEvent.action == "flag.read")).one()
    assert read.purpose == "mash_triage" and read.reason == "Referral from school"
    other = await client.get(f"/v1/flags/{flag_id}", headers=world.auth("mash.b"),
                             params={"purpose": "mash_triage", "reason": "curious"})
    assert other.status_code == 404


async def test_mash_is_shown_what_the_policy_gives_the_mash_and_no_more(client, world,
                                                                        session):
    """A practitioner sees every flag of a child in scope, but of each only the fields the
    policy gives the MASH for its category: parental mental health goes to no MASH, so its
    details (the parent's diagnosis) and the people it names stay with those it was shared
    with, in the flag, the chronology and the people of the child view alike."""
    pmh = await publish(client, world, "GP-A", category="parental_mental_health",
                        summary="Mum has told us her mental health is poor and she is "
                                "struggling to get Amelia to nursery.",
                        details="Diagnosis and medication: see the GP record.",
                        related_people=[{"role": "parent", "nhs_number": NHS[1],
                                         "relationship": "mother"}],
                        lawful_basis={**BASIS, "article9": "9(2)(h)"})
    assert pmh.status_code == 201, pmh.text
    dai = await publish(client, world)  # the MASH is given all of a domestic abuse incident
    assert dai.status_code == 201, dai.text
    params = {"purpose": "mash_triage", "reason": "Referral from nursery"}
    seen = (await client.get(f"/v1/flags/{pmh.json()['id']}", headers=world.auth("mash.a"),
                             params=params)).json()
    assert seen["summary"].startswith("Mum has told us") and "details" not in seen
    assert "related_people" not in seen
    full = (await client.get(f"/v1/flags/{dai.json()['id']}", headers=world.auth("mash.a"),
                             params=params)).json()
    assert full["details"] and "related_people" in full
    view = (await client.get(f"/v1/children/{seen['child_id']}", headers=world.auth("mash.a"),
                             params=params)).json()
    by_id = {f["id"]: f for f in view["flags"]}
    assert "details" not in by_id[seen["id"]] and "related_people" not in by_id[seen["id"]]
    assert by_id[full["id"]]["details"] == full["details"]
    assert NHS[1] not in [p["nhs_number"] for p in view["related_people"]]
    # The GP, who published it, still sees all of it and the mother it named.
    own = (await client.get(f"/v1/flags/{seen['id']}", headers=world.auth("GP-A"))).json()
    assert own["details"] and [p["nhs_number"] for p in own["related_people"]] == [NHS[1]]


async def test_mash_states_a_purpose_the_policy_lists(client, world, session):
    flag_id = (await publish(client, world)).json()["id"]
    r = await client.get(f"/v1/flags/{flag_id}", headers=world.auth("mash.a"),
                         params={"purpose": "curiosity", "reason": "."})
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["purpose"]
    assert session.exec(select(AuditEvent).where(AuditEvent.action == "flag.read")).all() == []


async def test_a_flag_out_of_scope_answers_as_a_missing_one(client, world):
    flag_id = (await publish(client, world)).json()["id"]  # Birmingham's, Sandwell's MASH asks
    for params in ({}, {"purpose": "mash_triage", "reason": "curious"}):
        seen = await client.get(f"/v1/flags/{flag_id}", headers=world.auth("mash.b"),
                                params=params)
        missing = await client.get("/v1/flags/00000000-0000-0000-0000-000000000000",
                                   headers=world.auth("mash.b"), params=params)
        assert (seen.status_code, seen.json()) == (404, missing.json()), params


@pytest.mark.parametrize("who", ["auditor", "admin"])
async def test_auditors_and_admins_cannot_read_flag_content(client, world, who):
    flag_id = (await publish(client, world)).json()["id"]
    r = await client.get(f"/v1/flags/{flag_id}", headers=world.auth(who))
    assert r.status_code == 403 and "summary" not in r.text


# --- amending -----------------------------------------------------------------------------

async def test_patch_makes_a_new_version_and_keeps_the_old(client, world, known_child, session):
    flag_id = (await publish(client, world, occurred_at="2026-11-19T21:40:00+00:00")).json()["id"]
    r = await client.patch(f"/v1/flags/{flag_id}", headers=world.auth("POLICE-A"), json={
        "summary": "Correction: the incident was at the grandparents' home; Amelia was present "
                   "and was frightened.", "period": {"end": "2026-11-20"}})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2 and r.json()["status"] == "active"
    versions = session.exec(select(FlagVersion).where(FlagVersion.flag_id == flag_id)
                            .order_by(FlagVersion.version)).all()
    assert [v.version for v in versions] == [1, 2]
    assert versions[0].summary.startswith("Police attended")
    assert versions[1].summary.startswith("Correction") and versions[1].period_end is not None
    shared_v2 = session.exec(select(Disclosure).where(
        Disclosure.flag_id == flag_id, Disclosure.flag_version == 2, Disclosure.shared)).all()
    assert {d.recipient_id for d in shared_v2} == set(r.json()["shared_with"])


async def test_entered_in_error_reaches_everyone_who_had_it(client, world, known_child, session):
    flag_id = (await publish(client, world)).json()["id"]
    first = set((await client.get(f"/v1/flags/{flag_id}",
                                  headers=world.auth("POLICE-A"))).json()["shared_with"])
    # The school relationship ends; the school must still hear the flag was an error.
    await client.post("/v1/relationships", headers=world.auth("SCHOOL-A"),
                      json={**relationship_body("school"), "end": "2023-06-30"})
    r = await client.patch(f"/v1/flags/{flag_id}", headers=world.auth("POLICE-A"),
                           json={"status": "entered_in_error"})
    assert r.status_code == 200
    assert first <= set(r.json()["shared_with"])
    again = await client.patch(f"/v1/flags/{flag_id}", headers=world.auth("POLICE-A"),
                               json={"status": "inactive"})
    assert again.status_code == 409


async def test_only_the_publisher_may_patch(client, world, known_child, session):
    flag_id = (await publish(client, world)).json()["id"]
    body = {"status": "inactive"}
    assert (await client.patch(f"/v1/flags/{flag_id}", json=body,
                               headers=world.auth("SCHOOL-A"))).status_code == 403
    assert (await client.patch(f"/v1/flags/{flag_id}", json=body,
                               headers=world.auth("CSC-B"))).status_code == 404
    assert (await client.patch(f"/v1/flags/{flag_id}", json=body,
                               headers=world.auth("mash.a"))).status_code == 403
    bad = await client.patch(f"/v1/flags/{flag_id}", json={"status": "active"},
                             headers=world.auth("POLICE-A"))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "status"
    empty = await client.patch(f"/v1/flags/{flag_id}", json={}, headers=world.auth("POLICE-A"))
    assert empty.status_code == 422
    assert count(session, FlagVersion) == 1


async def test_a_period_never_ends_before_it_starts(client, world, known_child, session):
    """A PATCH gives only the end. A flag published without a period is taken to start on the
    day it was published, unless the end is earlier (closed in the publisher's own record
    before it reached flagshare): then on its end. A start the publisher gave is theirs: an
    end before it is refused. Stored the other way round, no read could show the flag."""
    today = england_date(utcnow()).isoformat()
    for end, period in ((today, {"start": today, "end": today}),
                        ("2020-01-01", {"start": "2020-01-01", "end": "2020-01-01"})):
        flag_id = (await publish(client, world)).json()["id"]
        r = await client.patch(f"/v1/flags/{flag_id}", headers=world.auth("POLICE-A"),
                               json={"period": {"end": end}})
        assert r.status_code == 200, r.text
        mine = await client.get(f"/v1/flags/{flag_id}", headers=world.auth("POLICE-A"))
        assert mine.json()["period"] == period
    view = await client.get(f"/v1/children/{known_child}", headers=world.auth("mash.a"),
                            params={"purpose": "mash_triage", "reason": "Referral"})
    assert view.status_code == 200, view.text
    planned = (await publish(client, world, period={"start": "2026-02-01"})).json()["id"]
    r = await client.patch(f"/v1/flags/{planned}", headers=world.auth("POLICE-A"),
                           json={"period": {"end": "2026-01-31"}})
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["period.end"]


async def test_a_period_given_an_end_starts_when_what_was_flagged_happened(client, world):
    flag_id = (await publish(client, world, occurred_at="2026-11-21T22:40:00+00:00")).json()["id"]
    r = await client.patch(f"/v1/flags/{flag_id}", headers=world.auth("POLICE-A"),
                           json={"period": {"end": "2026-11-30"}})
    assert r.status_code == 200, r.text
    seen = await client.get(f"/v1/flags/{flag_id}", headers=world.auth("CSC-A"))
    assert seen.json()["period"] == {"start": "2026-11-21", "end": "2026-11-30"}
    r = await client.patch(f"/v1/flags/{flag_id}", headers=world.auth("POLICE-A"),
                           json={"period": {"end": "2026-11-20"}})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "period.end"


# --- decisions ----------------------------------------------------------------------------

async def test_decision_to_share_further_discloses_and_is_recorded(client, world, known_child,
                                                                   session):
    flag_id = (await publish(client, world)).json()["id"]
    assert (await client.get(f"/v1/flags/{flag_id}",
                             headers=world.auth("HOUSING-A"))).status_code == 404
    r = await client.post(f"/v1/flags/{flag_id}/decisions", headers=world.auth("mash.a"), json={
        "decision": "share", "recipient": "HOUSING-A",
        "reason": "Housing must know before rehousing the family next to the alleged abuser."})
    assert r.status_code == 201, r.text
    assert r.json()["decided_by"] == "mash.a" and r.json()["recipient"] == "HOUSING-A"
    seen = await client.get(f"/v1/flags/{flag_id}", headers=world.auth("HOUSING-A"))
    assert seen.status_code == 200 and "details" not in seen.json()
    assert count(session, SharingDecision) == 1


async def test_nothing_is_shared_further_with_a_disabled_agency(client, world, known_child,
                                                                session):
    """A decision to share with a disabled agency is refused, naming the recipient; a decision
    not to share with it is still recorded."""
    flag_id = (await publish(client, world)).json()["id"]
    housing = world.agencies["HOUSING-A"]
    housing.disabled = True
    session.add(housing)
    session.commit()
    r = await client.post(f"/v1/flags/{flag_id}/decisions", headers=world.auth("mash.a"), json={
        "decision": "share", "recipient": "HOUSING-A", "reason": "Before rehousing."})
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["recipient"]
    assert "disabled" in r.json()["errors"][0]["message"]
    assert count(session, SharingDecision) == 0
    r = await client.post(f"/v1/flags/{flag_id}/decisions", headers=world.auth("mash.a"), json={
        "decision": "not_share", "recipient": "HOUSING-A", "reason": "Not for housing."})
    assert r.status_code == 201, r.text


async def test_only_the_publisher_social_care_and_the_mash_share_a_flag_further(
        client, world, known_child, session):
    """A recipient passing a flag on would let it travel hop by hop where neither its publisher
    nor the policy sent it: another area's police, then a housing provider."""
    flag_id = (await publish(client, world)).json()["id"]  # the GP receives it
    share = {"decision": "share", "recipient": "POLICE-B", "reason": "They may know the family."}
    r = await client.post(f"/v1/flags/{flag_id}/decisions", headers=world.auth("GP-A"),
                          json=share)
    assert r.status_code == 403, r.text
    assert (await client.get(f"/v1/flags/{flag_id}",
                             headers=world.auth("POLICE-B"))).status_code == 404
    assert count(session, SharingDecision) == 0
    keep = {"decision": "not_share", "recipient": "HOUSING-A", "reason": "Not for housing yet."}
    assert (await client.post(f"/v1/flags/{flag_id}/decisions", headers=world.auth("GP-A"),
                              json=keep)).status_code == 201  # a recipient may still record it
    for who in ("POLICE-A", "CSC-A", "mash.a"):  # publisher, social care, MASH
        r = await client.post(f"/v1/flags/{flag_id}/decisions", headers=world.auth(who),
                              json=share)
        assert r.status_code == 201, (who, r.text)
    assert (await client.get(f"/v1/flags/{flag_id}",
                             headers=world.auth("POLICE-B"))).status_code == 200


async def test_decision_not_to_share_and_its_validation(client, world, known_child, session):
    flag_id = (await publish(client, world)).json()["id"]
    r = await client.post(f"/v1/flags/{flag_id}/decisions", headers=world.auth("CSC-A"), json={
        "decision": "not_share", "recipient": "HOUSING-A",
        "reason": "Sharing with housing now would alert the partner before the strategy meeting."})
    assert r.status_code == 201
    event = session.exec(select(AuditEvent).where(AuditEvent.action == "decision.record")).one()
    assert event.outcome == "not_share" and event.recipient == "HOUSING-A"
    missing = await client.post(f"/v1/flags/{flag_id}/decisions", headers=world.auth("CSC-A"),
                                json={"decision": "share", "reason": "because"})
    assert missing.status_code == 422
    unknown = await client.post(f"/v1/flags/{flag_id}/decisions", headers=world.auth("CSC-A"),
                                json={"decision": "share", "recipient": "NOPE", "reason": "x"})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "recipient"
    # An unknown recipient is named in the same 422 as the fields the schema refuses.
    both = await client.post(f"/v1/flags/{flag_id}/decisions", headers=world.auth("CSC-A"),
                             json={"decision": "maybe", "recipient": "NOPE", "reason": "x"})
    assert both.status_code == 422
    assert {e["field"]: e["message"] for e in both.json()["errors"]} == {
        "decision": "Input should be 'share' or 'not_share'",
        "recipient": "no registered agency NOPE"}
    outsider = await client.post(f"/v1/flags/{flag_id}/decisions", headers=world.auth("CSC-B"),
                                 json={"decision": "not_share", "reason": "x"})
    assert outsider.status_code == 404
    auditor = await client.post(f"/v1/flags/{flag_id}/decisions", headers=world.auth("auditor"),
                                json={"decision": "not_share", "reason": "x"})
    assert auditor.status_code == 403
    assert count(session, SharingDecision) == 1


@pytest.mark.parametrize("where", ["body", "query", "path"])
async def test_nul_characters_are_400_not_500(client, world, session, where):
    headers = world.auth("POLICE-A")
    if where == "body":
        r = await client.post("/v1/flags", json=flag_body(summary="Amelia\u0000 was present at "
                                                          "the incident and frightened."),
                              headers=headers)
    elif where == "query":
        r = await client.get("/v1/agencies", params={"kind": "gp\x00"}, headers=headers)
    else:
        r = await client.get("/v1/flags/abc%00def", headers=headers)
    assert r.status_code == 400 and "NUL" in r.json()["detail"]
    assert count(session, Flag) == 0
