"""Identity linking: exact NHS numbers link, anything weaker is queued for a person to decide;
merges are audited and reversible, and flags follow them."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from itertools import combinations

import pytest
from sqlmodel import func, select

from api.audit.models import AuditEvent
from api.auth.principal import Principal
from api.flags.models import Flag
from api.forwarding.models import Delivery
from api.identity import matching
from api.identity.merging import confirm, reject
from api.identity.models import (
    IdentityMerge, LocalIdentifier, Person, PersonLink, PossibleMatch, Relationship,
)
from api.identity.schemas import Subject
from api.identity.service import resolve_child
from api.problems import ProblemError
from tests.factories import BIRMINGHAM, NHS, SANDWELL, flag_body
from tests.population import generate

GP_RECORD = {"nhs_number": NHS[0], "given_name": "Amelia", "family_name": "Hartley",
             "birth_date": "2019-06-02", "sex": "female", "postcode": "B31 2AB"}
POLICE_RECORD = {"local_id": "NOM-4411", "given_name": "Millie", "family_name": "Hartly",
                 "birth_date": "2019-02-06", "postcode": "B31 2AB"}
DECIDE = {"reason": "Same school, same mother and address on both records; checked with GP."}


def count(session, model, *where) -> int:
    return session.exec(select(func.count()).select_from(model).where(*where)).one()


def practitioner(area: str = BIRMINGHAM) -> Principal:
    mash = "MASH-A" if area == BIRMINGHAM else "MASH-B"
    return Principal(sub=f"mash.{mash[-1].lower()}", role="mash_practitioner",
                     agency_id=mash, area=area, issuer="test")


async def post_flag(client, world, who="POLICE-A", **override):
    r = await client.post("/v1/flags", json=flag_body(**override), headers=world.auth(who))
    assert r.status_code == 201, r.text
    return r.json()


async def relate(client, world, who, kind, subject, start="2023-01-01"):
    r = await client.post("/v1/relationships", headers=world.auth(who),
                          json={"subject": subject, "kind": kind, "start": start})
    assert r.status_code == 201, r.text
    return r.json()


# --- scoring -------------------------------------------------------------------------------

@pytest.mark.parametrize("a, b, expected", [
    ("Hartley", "HARTLEY", "exact"), ("O'Brien", "OBrien", "exact"),
    ("Zoë-Smith", "Zoe Smith", "exact"), ("Hartley-Jones", "Hartley", "shared_part"),
    ("Smith", "Smyth", "sounds_alike"), ("Hartley", "Hatrley", "spelling"),
    ("Hartley", "Patel", "different"), ("Ahmed", "Ahmad", "sounds_alike"),
])
def test_family_names(a, b, expected):
    assert matching.family_match(a, b) == expected


@pytest.mark.parametrize("a, b, expected", [
    ("Amelia", "amelia", "exact"), ("Amelia", "Millie", "nickname"),
    ("Izzy", "Isabella", "nickname"), ("Lottie", "Charlote", "nickname"),
    ("Mohammed", "Muhammad", "nickname"), ("Jayden", "Jaden", "sounds_alike"),
    ("Amelia Rose", "Amelia", "exact"), ("A", "Amelia", "initial"), ("B", "Amelia", "different"),
    ("Oliver", "Olivia", "different"), ("Jack", "Oliver", "different"),
])
def test_given_names(a, b, expected):
    assert matching.given_match(a, b) == expected


def test_birth_dates_and_postcodes():
    d = date(2019, 6, 2)
    assert matching.birth_date_match(d, date(2019, 2, 6)) == "day_month_transposed"
    assert matching.birth_date_match(d, date(2018, 6, 2)) == "one_digit"
    assert matching.birth_date_match(date(2019, 6, 12), date(2019, 6, 21)) == "one_digit"
    assert matching.birth_date_match(d, date(2017, 9, 30)) == "different"
    variants = matching.birth_date_variants(d)
    assert {d, date(2019, 2, 6), date(2018, 6, 2), date(2019, 6, 3)} <= variants
    assert date(2019, 7, 14) not in variants and len(variants) < 80
    # Years before 1000 (a search may name one): every date keeps eight digits. Was a 500.
    early = date(215, 6, 22)
    assert {date(215, 6, 23), date(1215, 6, 22)} <= matching.birth_date_variants(early)
    assert matching.birth_date_match(early, date(216, 6, 22)) == "one_digit"
    assert matching.postcode_match("b31 2ab", "B31 2AB") == "exact"
    assert matching.postcode_match("B31 2AB", "B31 4XY") == "same_district"
    assert matching.postcode_match("B31 2AB", "B69 4RD") is None


def test_scores_say_why_and_rank_siblings_below_the_threshold():
    gp, police = Subject(**GP_RECORD), Subject(**POLICE_RECORD)
    same = matching.score(gp, police)
    assert same.total >= matching.QUEUE_AT
    assert same.reasons() == [
        {"field": "family_name", "match": "sounds_alike"},
        {"field": "given_name", "match": "nickname"},
        {"field": "birth_date", "match": "day_month_transposed"},
        {"field": "postcode", "match": "exact"}]
    sister = Subject(nhs_number=NHS[1], given_name="Grace", family_name="Hartley",
                     birth_date="2021-01-15", sex="female", postcode="B31 2AB")
    assert matching.score(gp, sister).total < matching.SEARCH_AT
    twin_brother = Subject(nhs_number=NHS[1], given_name="Oliver", family_name="Hartley",
                           birth_date="2019-06-02", sex="male", postcode="B31 2AB")
    assert matching.score(gp, twin_brother).total < matching.QUEUE_AT


# --- what is linked automatically, and what is queued -------------------------------------

def test_exact_nhs_number_links_automatically_and_queues_nothing(session, world):
    a = resolve_child(session, "GP-A", Subject(**GP_RECORD))
    b = resolve_child(session, "POLICE-B", Subject(nhs_number=NHS[0], given_name="Millie"))
    assert a.id == b.id
    assert count(session, PossibleMatch) == 0


def test_two_nhs_numbers_are_two_children_whatever_the_names(session, world):
    resolve_child(session, "GP-A", Subject(**GP_RECORD))
    resolve_child(session, "GP-A", Subject(**{**GP_RECORD, "nhs_number": NHS[1]}))
    assert count(session, Person) == 2 and count(session, PossibleMatch) == 0


def test_a_record_without_nhs_number_is_queued_never_merged(session, world):
    gp = resolve_child(session, "GP-A", Subject(**GP_RECORD))
    police = resolve_child(session, "POLICE-A", Subject(**POLICE_RECORD))
    assert police.id != gp.id and police.merged_into_id is None
    [match] = session.exec(select(PossibleMatch)).all()
    assert {match.person_id, match.other_person_id} == {gp.id, police.id}
    assert (match.kind, match.status, match.area, match.other_area) == (
        "demographics", "open", BIRMINGHAM, None)
    assert {"field": "birth_date", "match": "day_month_transposed"} in match.reasons
    session.commit()  # as a request does: alerts and the log are written at commit
    [alert] = session.exec(select(Delivery).where(Delivery.event_type == "match.proposed")).all()
    assert alert.recipient_id == "MASH-A"
    data = alert.payload["data"]
    assert data["match_id"] == match.id and len(data["records"]) == 2
    assert count(session, Delivery, Delivery.recipient_id == "MASH-B") == 0
    # The same record again, or with more detail, is not queued twice.
    resolve_child(session, "POLICE-A", Subject(**POLICE_RECORD, sex="female"))
    assert count(session, PossibleMatch) == 1
    session.commit()
    proposed = session.exec(select(AuditEvent.child_id).where(
        AuditEvent.action == "match.propose")).all()
    assert sorted(proposed) == sorted([gp.id, police.id])


def test_a_match_across_areas_goes_to_both_mashes(session, world):
    resolve_child(session, "GP-A", Subject(**GP_RECORD))
    moved = resolve_child(session, "POLICE-B", Subject(**{**POLICE_RECORD,
                                                          "postcode": "B69 4RD"}))
    [match] = session.exec(select(PossibleMatch)).all()
    # GP-A's record (no flags, no relationships) is linked to no area yet: only Sandwell.
    assert (match.area, match.other_area) == (SANDWELL, None)
    assert moved.id in (match.person_id, match.other_person_id)
    session.add(Relationship(child_id=match.person_id if match.person_id != moved.id
                             else match.other_person_id, agency_id="GP-A",
                             kind="registered_gp", start=date(2023, 1, 1)))
    session.flush()
    resolve_child(session, "POLICE-B", Subject(**{**POLICE_RECORD, "local_id": "NOM-9",
                                                  "postcode": "B69 4RD"}))
    newest = session.exec(select(PossibleMatch).where(PossibleMatch.id != match.id)).all()
    assert any((m.area, m.other_area) == (SANDWELL, BIRMINGHAM) for m in newest)
    session.commit()  # as a request does: alerts are written at commit
    recipients = {d.recipient_id for d in session.exec(select(Delivery).where(
        Delivery.event_type == "match.proposed")).all()}
    assert recipients == {"MASH-A", "MASH-B"}


# --- the queue over the API ------------------------------------------------------------------

@pytest.fixture
async def queued(client, world, session):
    """The GP's record (with NHS number), and the police's for the same girl (without)."""
    gp = await relate(client, world, "GP-A", "registered_gp", GP_RECORD)
    police_flag = await post_flag(client, world, subject=POLICE_RECORD, related_people=[
        {"role": "household_member", "given_name": "Dean", "family_name": "Morris",
         "relationship": "mother's new partner"}])
    [match] = session.exec(select(PossibleMatch)).all()
    return {"gp": gp["child_id"], "police": police_flag["child_id"], "flag": police_flag,
            "match": match.id}


async def test_practitioners_of_the_area_see_the_queue(client, world, queued, session):
    r = await client.get("/v1/matches", headers=world.auth("mash.a"))
    assert r.status_code == 200, r.text
    [item] = r.json()["items"]
    assert item["id"] == queued["match"] and item["status"] == "open"
    records = {rec["child_id"]: rec for rec in item["records"]}
    assert records[queued["gp"]]["known_to"] == ["GP-A"]
    assert records[queued["police"]]["known_to"] == ["POLICE-A"]
    assert records[queued["police"]]["given_name"] == "Millie"
    read = session.exec(select(AuditEvent.child_id).where(
        AuditEvent.action == "match.read")).all()
    assert sorted(read) == sorted([queued["gp"], queued["police"]])
    assert (await client.get("/v1/matches", headers=world.auth("mash.b"))).json()["items"] == []
    for who in ("GP-A", "MASH-A", "auditor", "admin"):
        assert (await client.get("/v1/matches", headers=world.auth(who))).status_code == 403
    closed = await client.get("/v1/matches", headers=world.auth("mash.a"),
                              params={"status": "confirmed"})
    assert closed.json()["items"] == []


async def test_deciding_needs_the_area_a_reason_and_an_open_match(client, world, queued,
                                                                  session):
    url = f"/v1/matches/{queued['match']}"
    other = await client.post(f"{url}/confirm", json=DECIDE, headers=world.auth("mash.b"))
    assert other.status_code == 404
    for body, field in (({}, "reason"), ({"reason": "  "}, "reason"),
                        ({**DECIDE, "kept": "x"}, "kept")):
        r = await client.post(f"{url}/confirm", json=body, headers=world.auth("mash.a"))
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field
    assert (await client.post(f"{url}/confirm", json=DECIDE,
                              headers=world.auth("POLICE-A"))).status_code == 403
    assert (await client.post(f"{url}/unmerge", json=DECIDE,
                              headers=world.auth("mash.a"))).status_code == 409
    assert count(session, IdentityMerge) == 0


async def test_confirming_merges_and_flags_follow(client, world, queued, session):
    r = await client.post(f"/v1/matches/{queued['match']}/confirm", json=DECIDE,
                          headers={**world.auth("mash.a"), "Idempotency-Key": "confirm-1"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "confirmed" and out["decided_by"] == "mash.a"
    merge = out["merge"]
    assert (merge["kept_id"], merge["merged_id"]) == (queued["gp"], queued["police"])
    assert merge["moved"]["flag"] == 1 and merge["moved"]["local_id"] == 1
    again = await client.post(f"/v1/matches/{queued['match']}/confirm", json=DECIDE,
                              headers={**world.auth("mash.a"), "Idempotency-Key": "confirm-1"})
    assert again.status_code == 200 and again.headers.get("idempotent-replayed") == "true"
    twice = await client.post(f"/v1/matches/{queued['match']}/confirm", json=DECIDE,
                              headers=world.auth("mash.a"))
    assert twice.status_code == 409
    session.expire_all()
    assert session.get(Flag, queued["flag"]["id"]).child_id == queued["gp"]
    assert session.get(LocalIdentifier, ("POLICE-A", "NOM-4411")).person_id == queued["gp"]
    link = session.exec(select(PersonLink).where(PersonLink.role == "household_member")).one()
    assert link.child_id == queued["gp"]
    # The GP of the kept record now receives the police flag under the policy.
    [shared] = session.exec(select(Delivery).where(
        Delivery.recipient_id == "GP-A", Delivery.flag_id == queued["flag"]["id"])).all()
    assert shared.event_type == "flag.shared"
    # The police's own id, and the retired record's id, lead to the kept record.
    later = await post_flag(client, world, subject=POLICE_RECORD)
    assert later["child_id"] == queued["gp"]
    view = await client.get(f"/v1/children/{queued['police']}", headers=world.auth("mash.a"),
                            params={"purpose": "mash_triage", "reason": "Checking the merge"})
    assert view.json()["child"]["child_id"] == queued["gp"]
    assert view.json()["child"]["merged_from"] == [queued["police"]]
    assert {f["id"] for f in view.json()["flags"]} == {queued["flag"]["id"], later["id"]}
    merged = session.exec(select(AuditEvent.child_id).where(
        AuditEvent.action == "identity.merge")).all()
    assert sorted(merged) == sorted([queued["gp"], queued["police"]])


async def test_unmerge_puts_back_exactly_what_moved(client, world, queued, session):
    gp_before = session.get(Person, queued["gp"])
    assert gp_before.given_name == "Amelia"
    police_only = await post_flag(client, world, who="POLICE-A", subject={
        **POLICE_RECORD, "ethnicity": "A"})  # the police record knows her ethnicity
    await client.post(f"/v1/matches/{queued['match']}/confirm", json=DECIDE,
                      headers=world.auth("mash.a"))
    session.expire_all()
    assert session.get(Person, queued["gp"]).ethnicity == "A"  # filled from the police record
    after_merge = await post_flag(client, world, subject={"nhs_number": NHS[0]})
    r = await client.post(f"/v1/matches/{queued['match']}/unmerge",
                          json={"reason": "Police confirmed Millie is a cousin, not Amelia."},
                          headers=world.auth("mash.a"))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "unmerged" and r.json()["merge"]["unmerged_by"] == "mash.a"
    session.expire_all()
    police = session.get(Person, queued["police"])
    gp = session.get(Person, queued["gp"])
    assert police.merged_into_id is None and gp.ethnicity is None
    assert session.get(Flag, queued["flag"]["id"]).child_id == queued["police"]
    assert session.get(Flag, police_only["id"]).child_id == queued["police"]
    assert session.get(Flag, after_merge["id"]).child_id == queued["gp"]  # made after: stays
    assert session.get(LocalIdentifier, ("POLICE-A", "NOM-4411")).person_id == queued["police"]
    assert session.exec(select(PersonLink).where(
        PersonLink.role == "household_member")).one().child_id == queued["police"]
    assert (await post_flag(client, world, subject=POLICE_RECORD))["child_id"] == \
        queued["police"]
    for action in ("confirm", "reject", "unmerge"):
        r = await client.post(f"/v1/matches/{queued['match']}/{action}", json=DECIDE,
                              headers=world.auth("mash.a"))
        assert r.status_code == 409, action
    assert count(session, AuditEvent, AuditEvent.action == "identity.unmerge") == 2


async def test_rejected_pairs_are_not_proposed_again(client, world, queued, session):
    r = await client.post(f"/v1/matches/{queued['match']}/reject",
                          json={"reason": "Different girls: Millie's mother is Tracey Hartly."},
                          headers=world.auth("mash.a"))
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    await post_flag(client, world, subject={**POLICE_RECORD, "sex": "female"})
    assert count(session, PossibleMatch) == 1
    assert session.get(Person, queued["police"]).merged_into_id is None
    assert (await client.post(f"/v1/matches/{queued['match']}/confirm", json=DECIDE,
                              headers=world.auth("mash.a"))).status_code == 409


def test_a_retired_record_is_decided_through_the_record_it_joined(session, world, policy):
    """Three records of one child: after the first merge, the other pairs still resolve."""
    gp = resolve_child(session, "GP-A", Subject(**GP_RECORD))
    school = resolve_child(session, "SCHOOL-A", Subject(
        local_id="UPN-1", given_name="Amelia", family_name="Hartley", birth_date="2019-06-02"))
    police = resolve_child(session, "POLICE-A", Subject(**POLICE_RECORD))
    matches = {frozenset((m.person_id, m.other_person_id)): m
               for m in session.exec(select(PossibleMatch)).all()}
    assert set(matches) == {frozenset((gp.id, school.id)), frozenset((gp.id, police.id)),
                            frozenset((school.id, police.id))}
    confirm(session, policy, practitioner(), matches[frozenset((gp.id, school.id))].id, "same")
    _, merge = confirm(session, policy, practitioner(),
                       matches[frozenset((school.id, police.id))].id, "same")
    assert (merge.kept_id, merge.merged_id) == (gp.id, police.id)
    last = matches[frozenset((gp.id, police.id))]
    session.refresh(last)
    assert last.status == "superseded"  # nothing left to decide
    with pytest.raises(ProblemError) as already:
        confirm(session, policy, practitioner(), last.id, "same")
    assert already.value.status == 409


# --- unborn to born ----------------------------------------------------------------------------

async def test_a_baby_with_the_mothers_nhs_number_is_proposed_as_the_unborn_child(
        client, world, session):
    edd = date.today() - timedelta(days=10)
    unborn = {"mother_nhs_number": NHS[8], "expected_delivery_date": edd.isoformat()}
    concern = await post_flag(client, world, who="MW-A", subject=unborn,
                              category="unborn_child_protection_concern",
                              summary="Mother disclosed her previous baby was removed from her "
                                      "care; a pre-birth assessment is needed.")
    baby = {"nhs_number": NHS[0], "given_name": "Baby", "family_name": "Hartley",
            "birth_date": (edd - timedelta(days=4)).isoformat(), "sex": "female",
            "mother_nhs_number": NHS[8]}
    await relate(client, world, "GP-A", "registered_gp", baby)
    await relate(client, world, "HV-A", "health_visitor", {"nhs_number": NHS[0]})
    [match] = session.exec(select(PossibleMatch)).all()
    assert match.kind == "unborn_to_born"
    assert match.reasons == [{"field": "mother_nhs_number", "match": "exact"},
                             {"field": "birth_date",
                              "match": "4 days before expected_delivery_date"}]
    assert [d.recipient_id for d in session.exec(select(Delivery).where(
        Delivery.event_type == "match.proposed")).all()] == ["MASH-A"]
    # Until a practitioner confirms, the GP and health visitor have not had the concern.
    assert count(session, Delivery, Delivery.flag_id == concern["id"],
                 Delivery.recipient_id.in_(["GP-A", "HV-A"])) == 0
    r = await client.post(f"/v1/matches/{match.id}/confirm", json=DECIDE,
                          headers=world.auth("mash.a"))
    assert r.status_code == 200, r.text
    baby_id = r.json()["merge"]["kept_id"]
    assert r.json()["merge"]["merged_id"] == concern["child_id"]
    session.expire_all()
    assert session.get(Flag, concern["id"]).child_id == baby_id
    told = session.exec(select(Delivery).where(Delivery.flag_id == concern["id"],
                                               Delivery.recipient_id.in_(["GP-A", "HV-A"]))).all()
    assert sorted((d.recipient_id, d.event_type) for d in told) == [
        ("GP-A", "flag.shared"), ("HV-A", "flag.shared")]
    # The midwife naming the unborn child again now reaches the baby.
    again = await post_flag(client, world, who="MW-A", subject=unborn,
                            category="unborn_child_protection_concern",
                            summary="Pre-birth assessment completed; the baby goes home with "
                                    "her mother under a safety plan.")
    assert again["child_id"] == baby_id


async def test_an_unborn_record_made_after_the_babys_is_proposed_as_that_baby(
        client, world, session):
    """A midwife's pre-birth concern recorded after the GP registered the baby: the concern
    must still find its way to the baby's record."""
    edd = date.today() - timedelta(days=10)
    baby = {"nhs_number": NHS[0], "given_name": "Baby", "family_name": "Hartley",
            "birth_date": (edd + timedelta(days=6)).isoformat(), "sex": "female",
            "mother_nhs_number": NHS[8]}
    await relate(client, world, "GP-A", "registered_gp", baby)
    assert count(session, PossibleMatch) == 0
    concern = await post_flag(client, world, who="MW-A", subject={
        "mother_nhs_number": NHS[8], "expected_delivery_date": edd.isoformat()},
        category="unborn_child_protection_concern",
        summary="Mother disclosed her previous baby was removed from her care; a pre-birth "
                "assessment was needed.")
    [match] = session.exec(select(PossibleMatch)).all()
    assert match.kind == "unborn_to_born"
    assert concern["child_id"] in (match.person_id, match.other_person_id)
    assert match.reasons == [{"field": "mother_nhs_number", "match": "exact"},
                             {"field": "birth_date",
                              "match": "6 days after expected_delivery_date"}]
    r = await client.post(f"/v1/matches/{match.id}/confirm", json=DECIDE,
                          headers=world.auth("mash.a"))
    assert r.status_code == 200, r.text
    assert r.json()["merge"]["merged_id"] == concern["child_id"]  # the born record is kept
    session.expire_all()
    assert sorted(d.event_type for d in session.exec(select(Delivery).where(
        Delivery.flag_id == concern["id"], Delivery.recipient_id == "GP-A"))) == ["flag.shared"]


PRE_BIRTH = ("Mother disclosed her previous baby was removed from her care; a pre-birth "
             "assessment is needed.")


def told_of_another_baby(session) -> list[tuple[str, dict]]:
    session.expire_all()
    return [(d.recipient_id, d.payload["data"]) for d in session.exec(
        select(Delivery).where(Delivery.event_type == "multiple_birth.found")
        .order_by(Delivery.seq)).all()]


def twin(given: str, edd: date, nhs: str | None) -> dict:
    """A twin as the GP registers it: with an NHS number, or only the practice's own id."""
    return {**({"nhs_number": nhs} if nhs else {"local_id": f"GP-{given}"}),
            "given_name": given, "family_name": "Hartley",
            "birth_date": (edd - timedelta(days=4)).isoformat(), "mother_nhs_number": NHS[8]}


@pytest.mark.parametrize("second_nhs", [NHS[1], None])
async def test_twins_of_one_unborn_record_are_never_merged_into_one_child(
        client, world, session, second_nhs):
    """Both babies of one pregnancy are proposed as its birth. Confirming the first is right;
    confirming the second would make the twins one child, whether or not its record has an
    NHS number yet. The midwife who raised the concern is told of the second baby."""
    edd = date.today() - timedelta(days=10)
    concern = await post_flag(client, world, who="MW-A", summary=PRE_BIRTH,
                              category="unborn_child_protection_concern",
                              subject={"mother_nhs_number": NHS[8],
                                       "expected_delivery_date": edd.isoformat()})
    twins = {}
    for nhs, given in ((NHS[0], "Ava"), (second_nhs, "Isla")):
        twins[given] = (await relate(client, world, "GP-A", "registered_gp",
                                     twin(given, edd, nhs)))["child_id"]
    matches = {next(name for name, child in twins.items()
                    if child in (m.person_id, m.other_person_id)): m
               for m in session.exec(select(PossibleMatch)).all()}
    assert sorted(matches) == ["Ava", "Isla"]
    assert {m.kind for m in matches.values()} == {"unborn_to_born"}
    assert told_of_another_baby(session) == []
    r = await client.post(f"/v1/matches/{matches['Ava'].id}/confirm", json=DECIDE,
                          headers=world.auth("mash.a"))
    assert r.status_code == 200, r.text
    [(publisher, data)] = told_of_another_baby(session)
    assert publisher == "MW-A" and data["pregnancy_record"] == concern["child_id"]
    assert data["flags"] == [{"id": concern["id"], "category": "unborn_child_protection_concern",
                              "child_id": twins["Ava"]}]
    assert data["born"]["child_id"] == twins["Ava"]
    assert data["other_baby"]["child_id"] == twins["Isla"]
    assert data["other_baby"]["given_name"] == "Isla" and PRE_BIRTH not in str(data)
    r = await client.post(f"/v1/matches/{matches['Isla'].id}/confirm", json=DECIDE,
                          headers=world.auth("mash.a"))
    assert r.status_code == 409, r.text
    assert "two babies of one pregnancy" in r.json()["detail"]
    session.expire_all()
    assert session.get(Person, twins["Isla"]).merged_into_id is None
    assert session.get(Person, twins["Ava"]).merged_into_id is None
    r = await client.post(f"/v1/matches/{matches['Isla'].id}/reject", json=DECIDE,
                          headers=world.auth("mash.a"))
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    assert len(told_of_another_baby(session)) == 1


async def test_a_twin_registered_after_the_first_was_confirmed_is_told_of(client, world,
                                                                          session):
    """The second baby's record may come days after the first was matched: its pregnancy's
    record is merged by then, and the baby must not go unnoticed."""
    edd = date.today() - timedelta(days=10)
    concern = await post_flag(client, world, who="MW-A", summary=PRE_BIRTH,
                              category="unborn_child_protection_concern",
                              subject={"mother_nhs_number": NHS[8],
                                       "expected_delivery_date": edd.isoformat()})
    ava = (await relate(client, world, "GP-A", "registered_gp", twin("Ava", edd, NHS[0])))
    [match] = session.exec(select(PossibleMatch)).all()
    r = await client.post(f"/v1/matches/{match.id}/confirm", json=DECIDE,
                          headers=world.auth("mash.a"))
    assert r.status_code == 200, r.text
    assert told_of_another_baby(session) == []
    isla = await relate(client, world, "GP-A", "registered_gp", twin("Isla", edd, NHS[1]))
    await relate(client, world, "HV-A", "health_visitor", {"nhs_number": NHS[1]})  # once only
    [(publisher, data)] = told_of_another_baby(session)
    assert publisher == "MW-A" and data["other_baby"]["child_id"] == isla["child_id"]
    assert data["born"]["child_id"] == ava["child_id"]
    assert [f["id"] for f in data["flags"]] == [concern["id"]]
    # The MASH has the pair to close, and confirming it cannot merge the twins.
    [second] = session.exec(select(PossibleMatch).where(PossibleMatch.status == "open")).all()
    assert isla["child_id"] in (second.person_id, second.other_person_id)
    r = await client.post(f"/v1/matches/{second.id}/confirm", json=DECIDE,
                          headers=world.auth("mash.a"))
    assert r.status_code == 409 and "two babies of one pregnancy" in r.json()["detail"]


@pytest.mark.parametrize("unborn_first", [True, False])
def test_a_baby_born_far_from_the_expected_date_is_not_proposed(session, world, unborn_first):
    edd = date.today() - timedelta(days=100)
    unborn = Subject(mother_nhs_number=NHS[8], expected_delivery_date=edd)
    if unborn_first:
        resolve_child(session, "MW-A", unborn)
    resolve_child(session, "GP-A", Subject(nhs_number=NHS[0], family_name="Hartley",
                                           birth_date=edd + timedelta(days=22),
                                           mother_nhs_number=NHS[8]))
    resolve_child(session, "GP-A", Subject(nhs_number=NHS[1], family_name="Hartley",
                                           birth_date=edd, mother_nhs_number=NHS[9]))
    if not unborn_first:
        resolve_child(session, "MW-A", unborn)
    assert count(session, PossibleMatch) == 0


# --- a synthetic population ------------------------------------------------------------------

def test_population_no_wrong_merge_and_the_queue_holds_the_true_pairs(session, world, policy):
    population = generate()
    counts = population.error_counts()
    assert counts["nickname"] and counts["family_name_typo"] and counts["day_month_transposed"]
    assert counts["no_nhs_number"] and counts["moved_area"]
    assert any(c.expected_delivery for c in population.children.values())
    assert population.new_partners
    record_person: list[tuple[str, str]] = []
    for record in population.records:
        person = resolve_child(session, record.agency, Subject(**record.subject))
        record_person.append((record.truth, person.id))
    # Automatic linking (NHS number, an agency's own id) never put two children together.
    truths_of: dict[str, set[str]] = defaultdict(set)
    persons_of: dict[str, set[str]] = defaultdict(set)
    for truth, person_id in record_person:
        truths_of[person_id].add(truth)
        persons_of[truth].add(person_id)
    auto_links = len(record_person) - len(truths_of)
    wrong = [p for p, truths in truths_of.items() if len(truths) > 1]
    assert auto_links > 0 and wrong == []
    assert count(session, IdentityMerge) == 0  # nothing merged without a person deciding
    # The queue holds the true pairs.
    true_pairs = {frozenset(pair) for persons in persons_of.values()
                  for pair in combinations(sorted(persons), 2)}
    queued = {frozenset((m.person_id, m.other_person_id)): m
              for m in session.exec(select(PossibleMatch)).all()}
    found = true_pairs & set(queued)
    recall = len(found) / len(true_pairs)
    precision = len(found) / len(queued)
    missed = true_pairs - set(queued)
    print(f"\npopulation: {len(population.children)} children, {len(population.records)} "
          f"records, errors {counts}; automatic links {auto_links}, wrong 0 "
          f"(precision 100%); true pairs {len(true_pairs)}, queued {len(queued)}, "
          f"recall {recall:.1%}, queue precision {precision:.1%}")
    assert missed == set(), [sorted(p) for p in missed]
    assert {m.kind for m in queued.values()} >= {"demographics", "unborn_to_born"}
    # A practitioner confirms the true pairs and rejects the rest: one record per child.
    for pair, match in sorted(queued.items(), key=lambda pm: pm[1].id):
        session.refresh(match)
        if match.status != "open":
            assert match.status == "superseded" and pair in true_pairs
        elif pair in true_pairs:
            confirm(session, policy, practitioner(match.area), match.id, "checked")
        else:
            reject(session, practitioner(match.area), match.id, "different children")
    for truth, persons in persons_of.items():
        assert len({_current(session, session.get(Person, p)) for p in persons}) == 1, truth
    currents = {_current(session, session.get(Person, p)) for p in truths_of}
    assert len(currents) == len(persons_of)  # one record per child with any record


def _current(session, person: Person) -> str:
    while person.merged_into_id:
        person = session.get(Person, person.merged_into_id)
    return person.id


async def test_a_practitioner_of_no_area_can_neither_see_nor_decide_a_match(
        client, world, session, policy):
    """Both records known in one area leave the match's `other_area` empty: a principal with
    no area must not pass for it."""
    gp = await client.post("/v1/relationships", json={"subject": GP_RECORD, "kind": "registered_gp",
                                                      "start": "2023-01-01"},
                           headers=world.auth("GP-A"))
    assert gp.status_code == 201, gp.text
    assert (await client.post("/v1/flags", json=flag_body(subject=POLICE_RECORD),
                              headers=world.auth("POLICE-A"))).status_code == 201
    match = session.exec(select(PossibleMatch).where(PossibleMatch.status == "open")).one()
    assert match.other_area is None
    nowhere = Principal(sub="someone", role="mash_practitioner", agency_id=None, area=None,
                        issuer="https://idp.example")
    for decide in (lambda: confirm(session, policy, nowhere, match.id, "Same child"),
                   lambda: reject(session, nowhere, match.id, "Not the same child")):
        with pytest.raises(ProblemError) as refused:
            decide()
        assert refused.value.status == 404
    assert session.get(PossibleMatch, match.id).status == "open"
