"""Naming children: validation, finding or creating the right person, and relationships.

A wrong match sends one child's safeguarding flags to another child's workers, and a missed
match hides them; so two children are never merged on demographics alone.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import date, timedelta

import pytest
from pydantic import ValidationError
from sqlmodel import Session, func, select

from api.agencies.models import Agency
from api.audit.models import AuditEvent
from api.identity.models import LocalIdentifier, Person, PersonLink, PossibleMatch, Relationship
from api.identity.schemas import RelatedPerson, RelationshipCreate, Subject
from api.identity.service import (
    add_relationship,
    age_in_years,
    resolve_child,
    resolve_related,
)
from api.idempotency.models import IdempotencyRecord
from api.problems import ProblemError
from tests.factories import NHS, relationship_body

# 999000000 has a Modulus 11 remainder giving check digit 10, so no tenth digit is valid.
CHECK_DIGIT_TEN = "999000000"
EDD = (date.today() + timedelta(days=120)).isoformat()
LOCAL = {"local_id": "CASE-1001", "family_name": "Hartley", "birth_date": "2019-06-02"}


def _errors(exc: ValidationError) -> list[tuple[str, str]]:
    return [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]


def _count(session, model) -> int:
    return session.exec(select(func.count()).select_from(model)).one()


def _counts(session) -> dict[str, int]:
    return {m.__name__: _count(session, m) for m in
            (Person, LocalIdentifier, Relationship, PersonLink, AuditEvent, IdempotencyRecord)}


# --- the subject object ------------------------------------------------------------------

@pytest.mark.parametrize("written", ["9990000018", "999 000 0018", " 999 000 0018 ",
                                     "999-000-0018"])
def test_nhs_number_spacing_is_normalised(written):
    assert Subject(nhs_number=written).nhs_number == "9990000018"


@pytest.mark.parametrize("bad", [
    "9990000017",                # wrong check digit
    "9990000019",
    "999000001",                 # nine digits
    "99900000180",               # eleven digits
    "999000001X",
    "",
    "٩٩٩٠٠٠٠٠١٨",                # the right digits in another script are not an NHS number
    *[CHECK_DIGIT_TEN + str(d) for d in range(10)],  # check digit would be 10: never valid
])
def test_bad_nhs_numbers_are_refused(bad):
    with pytest.raises(ValidationError) as caught:
        Subject(nhs_number=bad)
    assert [loc for loc, _ in _errors(caught.value)] == ["nhs_number"]


@pytest.mark.parametrize(("postcode", "stored"), [
    ("B31 2AB", "B31 2AB"), ("b312ab", "B31 2AB"), ("  sw1a   1aa ", "SW1A 1AA"),
    ("M1 1AE", "M1 1AE"), ("EC1A1BB", "EC1A 1BB"),
])
def test_postcodes_are_normalised(postcode, stored):
    assert Subject(nhs_number=NHS[0], postcode=postcode).postcode == stored


@pytest.mark.parametrize(("field", "value"), [
    ("postcode", "B31"), ("postcode", "NOT A POSTCODE"), ("postcode", "12345"),
    ("ethnicity", "X"), ("ethnicity", "White British"), ("ethnicity", "a"), ("ethnicity", "I"),
    ("sex", "M"), ("sex", "boy"),
    ("birth_date", "tomorrow"),
    ("birth_date", "1899-12-31"),
    ("family_name", ""),
])
def test_invalid_demographics_are_named(field, value):
    if value == "tomorrow":  # worked out when the test runs, not when it was collected
        value = (date.today() + timedelta(days=1)).isoformat()
    with pytest.raises(ValidationError) as caught:
        Subject(nhs_number=NHS[0], **{field: value})
    assert [loc for loc, _ in _errors(caught.value)] == [field]


def test_every_nhs_ethnic_category_code_is_accepted():
    for code in "A B C D E F G H J K L M N P R S Z 99".split():
        assert Subject(nhs_number=NHS[0], ethnicity=code).ethnicity == code


def test_unknown_fields_are_refused():
    with pytest.raises(ValidationError) as caught:
        Subject(nhs_number=NHS[0], nhs_no=NHS[1])
    assert _errors(caught.value) == [("nhs_no", "Extra inputs are not permitted")]


def test_identification_rules():
    assert Subject(nhs_number=NHS[0]).unborn is False
    local = Subject(**LOCAL)
    assert local.nhs_number is None and local.unborn_key is None
    for partial in ({"local_id": "CASE-1001"},
                    {"local_id": "CASE-1001", "family_name": "Hartley"},
                    {"local_id": "CASE-1001", "birth_date": "2019-06-02"},
                    {"family_name": "Hartley", "birth_date": "2019-06-02", "given_name": "Amelia"},
                    {}):
        with pytest.raises(ValidationError) as caught:
            Subject(**partial)
        ((loc, msg),) = _errors(caught.value)
        assert loc == "" and "identify the child" in msg


def test_blank_local_id_or_name_does_not_identify_a_child():
    """A padded empty field must not become one shared "id" that merges every such child."""
    for blank in ({**LOCAL, "local_id": "   "}, {**LOCAL, "family_name": " "}):
        with pytest.raises(ValidationError):
            Subject(**blank)
    assert Subject(**{**LOCAL, "local_id": " CASE-1001 "}).local_id == "CASE-1001"
    with pytest.raises(ValidationError):
        RelatedPerson(role="parent", given_name="  ")


@pytest.mark.parametrize("flagged", [True, False])
def test_unborn_by_mother_and_expected_delivery(flagged):
    extra = {"unborn": True} if flagged else {}
    s = Subject(mother_nhs_number="999 000 0093", expected_delivery_date=EDD, **extra)
    assert s.unborn is True
    assert s.mother_nhs_number == NHS[8]
    assert s.unborn_key == f"{NHS[8]}:{EDD}"


@pytest.mark.parametrize("body", [
    {"unborn": True, "nhs_number": NHS[0], "mother_nhs_number": NHS[8],
     "expected_delivery_date": EDD},
    {"unborn": True, "birth_date": "2024-01-01", "mother_nhs_number": NHS[8],
     "expected_delivery_date": EDD},
    {"unborn": True, "mother_nhs_number": NHS[8]},
    {"unborn": True, "expected_delivery_date": EDD},
    {"mother_nhs_number": NHS[8]},
])
def test_unborn_needs_mother_and_date_and_no_nhs_number(body):
    with pytest.raises(ValidationError):
        Subject(**body)


def test_an_expected_delivery_date_is_of_a_pregnancy_within_reach():
    """Up to 44 weeks ahead (a pregnancy just confirmed) and back to the oldest a person this
    service is about can be: a mistyped year would key the unborn child where nobody finds it."""
    today = date.today()
    for ok in (today + timedelta(weeks=44), today, today - timedelta(days=25 * 366)):
        assert Subject(mother_nhs_number=NHS[8], expected_delivery_date=ok).unborn
    for wrong, says in ((today + timedelta(weeks=44, days=1), "within 44 weeks"),
                        (today - timedelta(days=25 * 366 + 1), "more than 25 years ago")):
        with pytest.raises(ValidationError, match=says) as caught:
            Subject(mother_nhs_number=NHS[8], expected_delivery_date=wrong)
        assert [loc for loc, _ in _errors(caught.value)] == ["expected_delivery_date"]


def test_a_start_may_be_up_to_a_year_ahead():
    today = date.today()
    body = {"subject": {"nhs_number": NHS[0]}, "kind": "school"}
    assert RelationshipCreate(**body, start=today + timedelta(days=366)).start
    with pytest.raises(ValidationError, match="more than a year from today"):
        RelationshipCreate(**body, start=today + timedelta(days=367))


def test_mothers_nhs_number_is_checked_too():
    with pytest.raises(ValidationError) as caught:
        Subject(mother_nhs_number="9990000017", expected_delivery_date=EDD)
    assert "mother_nhs_number" in [loc for loc, _ in _errors(caught.value)]


def test_related_person_needs_a_name_or_nhs_number():
    assert RelatedPerson(role="parent", given_name="Dean").given_name == "Dean"
    assert RelatedPerson(role="alleged_perpetrator", nhs_number="999 000 0026").nhs_number \
        == NHS[1]
    with pytest.raises(ValidationError):
        RelatedPerson(role="household_member", relationship="mother's new partner")
    with pytest.raises(ValidationError):
        RelatedPerson(role="uncle", given_name="Dean")
    with pytest.raises(ValidationError):
        RelatedPerson(role="parent", nhs_number="9990000017")


def test_relationship_kind_and_dates():
    body = RelationshipCreate(subject={"nhs_number": NHS[0]}, kind="school", start="2024-09-01",
                              end="2024-09-01")
    assert body.end == body.start
    with pytest.raises(ValidationError) as caught:
        RelationshipCreate(subject={"nhs_number": NHS[0]}, kind="school", start="2024-09-01",
                           end="2024-08-31")
    assert _errors(caught.value) == [("end", "Value error, end must not be before start")]
    with pytest.raises(ValidationError):
        RelationshipCreate(subject={"nhs_number": NHS[0]}, kind="friend", start="2024-09-01")


# --- resolve_child -----------------------------------------------------------------------

def test_same_nhs_number_is_the_same_child_for_every_agency(session, world):
    first = resolve_child(session, "GP-A", Subject(nhs_number=NHS[0]))
    again = resolve_child(session, "POLICE-B", Subject(nhs_number="999 000 0018"))
    assert first.id == again.id
    assert first.nhs_number == NHS[0]
    assert resolve_child(session, "GP-A", Subject(nhs_number=NHS[1])).id != first.id
    assert _count(session, Person) == 2


def test_same_local_id_from_the_same_agency_is_the_same_child(session, world):
    first = resolve_child(session, "CSC-A", Subject(**LOCAL))
    # Later requests may carry other demographics: the local id decides.
    again = resolve_child(session, "CSC-A", Subject(
        local_id="CASE-1001", family_name="Hartley-Jones", birth_date="2019-06-03"))
    assert again.id == first.id
    link = session.get(LocalIdentifier, ("CSC-A", "CASE-1001"))
    assert link.person_id == first.id


def test_same_local_id_from_another_agency_is_another_child(session, world):
    a = resolve_child(session, "CSC-A", Subject(**LOCAL))
    b = resolve_child(session, "CSC-B", Subject(**LOCAL))
    assert a.id != b.id
    assert session.get(LocalIdentifier, ("CSC-B", "CASE-1001")).person_id == b.id


def test_identical_demographics_are_never_merged(session, world):
    demographics = {"given_name": "Amelia", "family_name": "Hartley", "birth_date": "2019-06-02",
                    "sex": "female", "postcode": "B31 2AB", "ethnicity": "A"}
    a = resolve_child(session, "SCHOOL-A", Subject(local_id="UPN-1", **demographics))
    b = resolve_child(session, "SCHOOL-A", Subject(local_id="UPN-2", **demographics))
    c = resolve_child(session, "POLICE-A", Subject(local_id="UPN-1", **demographics))
    assert len({a.id, b.id, c.id}) == 3
    assert _count(session, Person) == 3


def test_nhs_number_is_attached_to_a_child_first_known_by_local_id(session, world):
    local = resolve_child(session, "POLICE-A", Subject(**LOCAL))
    assert local.nhs_number is None
    with_nhs = resolve_child(session, "POLICE-A", Subject(nhs_number=NHS[2], **LOCAL))
    assert with_nhs.id == local.id
    session.expire_all()
    assert session.get(Person, local.id).nhs_number == NHS[2]
    # From now on the NHS number alone finds the child, for any agency.
    assert resolve_child(session, "GP-A", Subject(nhs_number=NHS[2])).id == local.id
    assert _count(session, Person) == 1


def test_local_id_is_linked_to_a_child_found_by_nhs_number(session, world):
    known = resolve_child(session, "GP-A", Subject(nhs_number=NHS[3]))
    found = resolve_child(session, "SCHOOL-A", Subject(nhs_number=NHS[3], local_id="UPN-9"))
    assert found.id == known.id
    # Later the school's own id alone (with the required demographics) finds the same child.
    assert resolve_child(session, "SCHOOL-A", Subject(local_id="UPN-9", family_name="Hartley",
                                                      birth_date="2019-06-02")).id == known.id


def test_local_id_of_a_child_with_another_nhs_number_is_409(session, world):
    resolve_child(session, "CSC-A", Subject(nhs_number=NHS[0], **LOCAL))
    with pytest.raises(ProblemError) as caught:
        resolve_child(session, "CSC-A", Subject(nhs_number=NHS[1], **LOCAL))
    assert caught.value.status == 409 and "local_id" in caught.value.detail
    # Also when the other NHS number already belongs to a known child.
    resolve_child(session, "GP-A", Subject(nhs_number=NHS[4]))
    with pytest.raises(ProblemError) as caught:
        resolve_child(session, "CSC-A", Subject(nhs_number=NHS[4], **LOCAL))
    assert caught.value.status == 409
    session.expire_all()
    assert session.exec(select(Person).where(Person.nhs_number == NHS[1])).first() is None


def test_unborn_child_is_found_by_mother_and_date_and_linked_to_her(session, world):
    unborn = Subject(mother_nhs_number=NHS[8], expected_delivery_date=EDD)
    first = resolve_child(session, "MW-A", unborn)
    again = resolve_child(session, "GP-A", Subject(unborn=True, mother_nhs_number=NHS[8],
                                                   expected_delivery_date=EDD))
    assert first.id == again.id
    assert first.unborn and first.nhs_number is None
    assert first.mother_nhs_number == NHS[8]
    assert first.expected_delivery_date.isoformat() == EDD
    mother = session.exec(select(Person).where(Person.nhs_number == NHS[8])).one()
    links = session.exec(select(PersonLink).where(PersonLink.child_id == first.id)).all()
    assert [(lk.person_id, lk.role, lk.relationship) for lk in links] == [
        (mother.id, "parent", "mother")]
    # Another expected date is another pregnancy: another child, same mother.
    earlier = date.fromisoformat(EDD) - timedelta(days=300)
    sibling = resolve_child(session, "MW-A", Subject(mother_nhs_number=NHS[8],
                                                     expected_delivery_date=earlier))
    assert sibling.id != first.id
    assert _count(session, Person) == 3  # two unborn children and their mother


def test_unborn_child_whose_mother_is_already_known(session, world):
    mother = resolve_child(session, "GP-A", Subject(nhs_number=NHS[9]))
    unborn = resolve_child(session, "MW-A", Subject(mother_nhs_number=NHS[9],
                                                    expected_delivery_date=EDD))
    link = session.exec(select(PersonLink).where(PersonLink.child_id == unborn.id)).one()
    assert link.person_id == mother.id


def test_unborn_local_id_naming_another_child_is_409(session, world):
    """An agency's id for an unborn baby never silently starts a second record for it."""
    first = resolve_child(session, "MW-A", Subject(local_id="MW-77", mother_nhs_number=NHS[8],
                                                   expected_delivery_date=EDD))
    same = resolve_child(session, "MW-A", Subject(local_id="MW-77", mother_nhs_number=NHS[8],
                                                  expected_delivery_date=EDD))
    assert same.id == first.id
    assert session.get(LocalIdentifier, ("MW-A", "MW-77")).person_id == first.id
    before = _count(session, Person)
    moved = (date.fromisoformat(EDD) + timedelta(days=14)).isoformat()
    with pytest.raises(ProblemError) as caught:
        resolve_child(session, "MW-A", Subject(local_id="MW-77", mother_nhs_number=NHS[8],
                                               expected_delivery_date=moved))
    assert caught.value.status == 409 and "local_id" in caught.value.detail
    other = resolve_child(session, "MW-A", Subject(mother_nhs_number=NHS[9],
                                                   expected_delivery_date=EDD))
    with pytest.raises(ProblemError):
        resolve_child(session, "MW-A", Subject(local_id="MW-77", mother_nhs_number=NHS[9],
                                               expected_delivery_date=EDD))
    assert _count(session, Person) == before + 2  # only the other mother and her baby
    assert session.get(LocalIdentifier, ("MW-A", "MW-77")).person_id == first.id
    assert other.id != first.id


def test_demographics_fill_blanks_but_never_overwrite(session, world):
    resolve_child(session, "GP-A", Subject(nhs_number=NHS[5], given_name="Amelia",
                                           postcode="B31 2AB"))
    person = resolve_child(session, "POLICE-A", Subject(
        nhs_number=NHS[5], given_name="Amy", family_name="Hartley", postcode="B1 1AA",
        birth_date="2022-03-14", sex="female", ethnicity="A", disability="hearing impairment"))
    session.expire_all()
    stored = session.get(Person, person.id)
    assert stored.given_name == "Amelia" and stored.postcode == "B31 2AB"
    assert stored.family_name == "Hartley"
    assert stored.birth_date == date(2022, 3, 14)
    assert (stored.sex, stored.ethnicity, stored.disability) == ("female", "A",
                                                                 "hearing impairment")


def test_related_people_by_nhs_number_or_always_new(session, world):
    child = resolve_child(session, "GP-A", Subject(nhs_number=NHS[6]))
    subject = resolve_child(session, "GP-A", Subject(nhs_number=NHS[5]))  # whom they are named on

    def resolve(people, agency_id):
        return resolve_related(session, people, agency_id, subject, "related_people")

    # An adult named by NHS number is the same person wherever they appear.
    father, = resolve([RelatedPerson(role="parent", nhs_number=NHS[7], given_name="Dean")],
                      "GP-A")
    again, = resolve([RelatedPerson(role="alleged_perpetrator", nhs_number=NHS[7],
                                    family_name="Cole")], "POLICE-A")
    assert father.id == again.id
    assert (again.given_name, again.family_name) == ("Dean", "Cole")
    # Named twice on one flag (a parent who is also the alleged perpetrator): one person.
    mother, accused = resolve([
        RelatedPerson(role="parent", nhs_number=NHS[8], given_name="Sarah"),
        RelatedPerson(role="alleged_perpetrator", nhs_number=NHS[8], family_name="Hartley")],
        "POLICE-A")
    assert mother is accused and (mother.given_name, mother.family_name) == ("Sarah", "Hartley")
    # A person named by NHS number who is already known as a child is that person.
    assert resolve([RelatedPerson(role="sibling", nhs_number=NHS[6])], "GP-A")[0].id == child.id
    # The subject itself is never one of its own relatives.
    with pytest.raises(ProblemError) as refused:
        resolve([RelatedPerson(role="household_member", nhs_number=NHS[7]),
                 RelatedPerson(role="parent", nhs_number=NHS[5])], "GP-A")
    assert [e["field"] for e in refused.value.errors] == ["related_people.1.nhs_number"]
    # Without an NHS number, a name is never enough to merge: the two records are queued
    # for the MASH to decide whether they are one adult.
    a, = resolve([RelatedPerson(role="household_member", given_name="Dean", family_name="Cole",
                                birth_date="1990-01-01")], "POLICE-A")
    b, = resolve([RelatedPerson(role="household_member", given_name="Dean", family_name="Cole",
                                birth_date="1990-01-01")], "HV-A")
    assert len({a.id, b.id, father.id}) == 3
    queued = session.exec(select(PossibleMatch).where(
        PossibleMatch.person_id.in_([a.id, b.id]))).all()
    assert [(m.person_id, m.other_person_id) for m in queued] == [tuple(sorted((a.id, b.id)))]


def test_age_in_years():
    born = Person(birth_date=date(2020, 3, 14))
    assert age_in_years(born, on=date(2025, 3, 13)) == 4
    assert age_in_years(born, on=date(2025, 3, 14)) == 5
    assert age_in_years(Person(birth_date=date(2020, 2, 29)), on=date(2021, 2, 28)) == 0
    assert age_in_years(Person(birth_date=date(2020, 2, 29)), on=date(2021, 3, 1)) == 1
    assert age_in_years(Person(), on=date(2025, 1, 1)) is None
    assert age_in_years(Person(unborn=True, mother_nhs_number=NHS[8])) == 0
    # Once a birth date is known for a child first recorded unborn, it ages like any other.
    assert age_in_years(Person(unborn=True, birth_date=date(2020, 3, 14)),
                        on=date(2027, 1, 1)) == 6


def test_born_child_keeps_the_record_it_had_before_birth(session, world):
    """A midwife's local id for an unborn baby still finds the baby once born."""
    unborn = resolve_child(session, "MW-A", Subject(local_id="MW-77", mother_nhs_number=NHS[8],
                                                    expected_delivery_date=EDD))
    birth = (date.today() - timedelta(days=400)).isoformat()
    born = resolve_child(session, "MW-A", Subject(local_id="MW-77", family_name="Hartley",
                                                  birth_date=birth))
    assert born.id == unborn.id
    assert age_in_years(born) == 1
    with_nhs = resolve_child(session, "MW-A", Subject(local_id="MW-77", nhs_number=NHS[2]))
    assert with_nhs.id == unborn.id and with_nhs.nhs_number == NHS[2]


def test_add_relationship_does_not_repeat_an_identical_statement(session, world):
    body = RelationshipCreate(subject={"nhs_number": NHS[0]}, kind="registered_gp",
                              start="2023-01-01")
    first = add_relationship(session, world.agencies["GP-A"], body)
    again = add_relationship(session, world.agencies["GP-A"], body)
    assert again.id == first.id
    other_kind = add_relationship(session, world.agencies["GP-A"], body.model_copy(
        update={"kind": "other"}))
    other_agency = add_relationship(session, world.agencies["GP-B"], body)
    assert len({first.id, other_kind.id, other_agency.id}) == 3
    assert _count(session, Relationship) == 3


# --- POST /v1/relationships --------------------------------------------------------------

async def test_post_relationship(client, world, session):
    r = await client.post("/v1/relationships", json=relationship_body("registered_gp"),
                          headers=world.auth("GP-A"))
    assert r.status_code == 201, r.text
    body = r.json()
    child = session.exec(select(Person).where(Person.nhs_number == NHS[0])).one()
    assert body == {"id": body["id"], "child_id": child.id, "agency": "GP-A",
                    "kind": "registered_gp", "start": "2023-01-01", "end": None}
    rel = session.get(Relationship, body["id"])
    assert (rel.child_id, rel.agency_id, rel.kind) == (child.id, "GP-A", "registered_gp")
    events = session.exec(select(AuditEvent).where(AuditEvent.action == "relationship.record")
                          ).all()
    assert [(e.actor_agency, e.child_id) for e in events] == [("GP-A", child.id)]


async def test_post_relationship_with_end_and_local_id(client, world, session):
    r = await client.post("/v1/relationships", headers=world.auth("SCHOOL-A"), json={
        "subject": {**LOCAL, "given_name": "Amelia"}, "kind": "school",
        "start": "2024-09-01", "end": "2025-07-22"})
    assert r.status_code == 201, r.text
    assert (r.json()["kind"], r.json()["end"]) == ("school", "2025-07-22")
    assert session.get(LocalIdentifier, ("SCHOOL-A", "CASE-1001")).person_id == r.json()["child_id"]


async def test_restating_a_relationship_does_not_duplicate_it(client, world, session):
    body = relationship_body("health_visitor", nhs=NHS[1])
    first = await client.post("/v1/relationships", json=body, headers=world.auth("HV-A"))
    second = await client.post("/v1/relationships", json=body, headers=world.auth("HV-A"))
    assert first.status_code == second.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    # Saying it has ended updates the same relationship.
    ended = await client.post("/v1/relationships", json={**body, "end": "2024-12-31"},
                              headers=world.auth("HV-A"))
    assert ended.json()["id"] == first.json()["id"] and ended.json()["end"] == "2024-12-31"
    assert _count(session, Relationship) == 1


async def test_idempotency_key_on_relationships(client, world, session):
    headers = {**world.auth("GP-A"), "Idempotency-Key": "rel-1"}
    first = await client.post("/v1/relationships", json=relationship_body("registered_gp"),
                              headers=headers)
    replay = await client.post("/v1/relationships", json=relationship_body("registered_gp"),
                               headers=headers)
    assert replay.status_code == 201 and replay.json() == first.json()
    before = _counts(session)
    other = await client.post("/v1/relationships", json=relationship_body("other"),
                              headers=headers)
    assert other.status_code == 409
    assert _counts(session) == before


@pytest.mark.parametrize("who", ["mash.a", "auditor", "admin"])
async def test_only_agency_systems_state_relationships(client, world, session, who):
    before = _counts(session)
    r = await client.post("/v1/relationships", json=relationship_body("registered_gp"),
                          headers=world.auth(who))
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")
    assert _counts(session) == before


async def test_relationships_need_a_token(client, world, session):
    before = _counts(session)
    r = await client.post("/v1/relationships", json=relationship_body("registered_gp"))
    assert r.status_code == 401
    assert _counts(session) == before


@pytest.mark.parametrize(("subject", "field"), [
    ({"nhs_number": "9990000017"}, "subject.nhs_number"),
    ({"nhs_number": CHECK_DIGIT_TEN + "0"}, "subject.nhs_number"),
    ({"nhs_number": "99900000"}, "subject.nhs_number"),
    ({"nhs_number": NHS[0], "postcode": "nowhere"}, "subject.postcode"),
    ({"nhs_number": NHS[0], "ethnicity": "British"}, "subject.ethnicity"),
    ({"nhs_number": NHS[0], "sex": "F"}, "subject.sex"),
    ({"nhs_number": NHS[0], "birth_date": "2999-01-01"}, "subject.birth_date"),
    ({"local_id": "CASE-1", "family_name": "Cole", "birth_date": "0215-06-22"},
     "subject.birth_date"),  # found by the fuzzer: was a 500
    ({"nhs_number": NHS[0], "school": "Oak"}, "subject.school"),
    ({"local_id": "CASE-1"}, "subject"),
    ({"unborn": True, "nhs_number": NHS[0], "mother_nhs_number": NHS[8],
      "expected_delivery_date": EDD}, "subject"),
    ({"mother_nhs_number": "9990000017", "expected_delivery_date": EDD},
     "subject.mother_nhs_number"),
    ({"mother_nhs_number": NHS[8], "expected_delivery_date": "2062-03-14"},
     "subject.expected_delivery_date"),
    ({"mother_nhs_number": NHS[8], "expected_delivery_date": "1926-03-14"},
     "subject.expected_delivery_date"),
])
async def test_invalid_subject_is_422_naming_the_field(client, world, session, subject, field):
    before = _counts(session)
    r = await client.post("/v1/relationships", headers=world.auth("GP-A"),
                          json={"subject": subject, "kind": "registered_gp", "start": "2023-01-01"})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in r.json()["errors"]]
    assert _counts(session) == before


@pytest.mark.parametrize(("change", "field"), [
    ({"end": "2022-12-31"}, "end"),
    ({"kind": "neighbour"}, "kind"),
    ({"start": "yesterday"}, "start"),
    ({"start": None}, "start"),
    ({"start": "2999-09-01"}, "start"),
    ({"start": "1899-12-31"}, "start"),
    ({"agency": "GP-B"}, "agency"),
])
async def test_invalid_relationship_is_422_and_writes_nothing(client, world, session, change,
                                                              field):
    before = _counts(session)
    r = await client.post("/v1/relationships", headers=world.auth("GP-A"),
                          json={**relationship_body("registered_gp"), **change})
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == [field]
    assert _counts(session) == before


async def test_conflicting_local_id_is_409(client, world, session):
    first = {"subject": {"nhs_number": NHS[0], **LOCAL}, "kind": "allocated_social_worker",
             "start": "2024-01-01"}
    assert (await client.post("/v1/relationships", json=first,
                              headers=world.auth("CSC-A"))).status_code == 201
    clash = {**first, "subject": {"nhs_number": NHS[1], **LOCAL}}
    r = await client.post("/v1/relationships", json=clash, headers=world.auth("CSC-A"))
    assert r.status_code == 409
    assert "local_id" in r.json()["detail"]


# --- two requests racing to name a new child ----------------------------------------------

@pytest.fixture
def committed_agency(engine):
    """An agency committed outside any test transaction, removed afterwards with its children."""
    agency_id = f"RACE-{uuid.uuid4().hex[:8].upper()}"
    with Session(engine) as s:
        s.add(Agency(id=agency_id, name="Race test school", kind="education", area="E08000025",
                     client_secret_hash="unused"))
        s.commit()
    yield agency_id
    with Session(engine) as s:
        links = s.exec(select(LocalIdentifier).where(LocalIdentifier.agency_id == agency_id)).all()
        people = [lk.person_id for lk in links]
        for lk in links:
            s.delete(lk)
        s.flush()
        for pid in people:
            s.delete(s.get(Person, pid))
        s.delete(s.get(Agency, agency_id))
        s.commit()


@pytest.mark.parametrize("with_nhs", [False, True])
def test_racing_first_sightings_of_a_local_id_name_one_child(engine, committed_agency, with_nhs):
    """Two requests naming a new child by the same local id at once: one child, no 5xx.

    The second request reads before the first commits; on PostgreSQL its insert then meets the
    first one's row (on SQLite writers are serialised, so it simply finds the first child).
    """
    extra = {"nhs_number": NHS[7]} if with_nhs else {}
    subject = Subject(local_id="UPN-RACE", family_name="Hartley", birth_date="2019-06-02",
                      **extra)
    first_session = Session(engine, expire_on_commit=False)
    first = resolve_child(first_session, committed_agency, subject)
    outcome: dict = {}

    def second_request():
        with Session(engine, expire_on_commit=False) as s:
            try:
                outcome["id"] = resolve_child(s, committed_agency, subject).id
                s.commit()
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                outcome["error"] = exc

    racer = threading.Thread(target=second_request)
    racer.start()
    time.sleep(0.5)  # the second request has read and is now waiting on the first's insert
    first_session.commit()
    first_session.close()
    racer.join(60)
    assert "error" not in outcome, repr(outcome.get("error"))
    assert outcome["id"] == first.id
    with Session(engine) as s:
        linked = s.exec(select(LocalIdentifier).where(
            LocalIdentifier.agency_id == committed_agency)).all()
        assert [lk.person_id for lk in linked] == [first.id]
