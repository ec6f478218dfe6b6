"""Finding or creating persons. Two records are never merged on demographics alone: a record
that may be another one is queued as a possible match (api.identity.linking)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import bindparam
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from api.agencies.models import Agency
from api.db import plain_rows, utcnow
from api.identity.linking import propose_matches
from api.identity.models import LocalIdentifier, Person, PersonLink, Relationship
from api.identity.schemas import RelatedPerson, RelationshipCreate, Subject
from api.problems import ProblemError, invalid
from api.transfers.moves import check_for_move

DEMOGRAPHICS = ("given_name", "family_name", "birth_date", "sex", "postcode", "ethnicity",
                "disability", "mother_nhs_number")


def resolve_child(session: Session, agency_id: str, subject: Subject) -> Person:
    """The child a subject names, created if new; an agency's local id is linked to it."""
    by_local = _by_local_id(session, agency_id, subject.local_id) if subject.local_id else None
    new_unborn = False
    if subject.nhs_number:
        person = current(session, _first(session, select(Person).where(
            Person.nhs_number == subject.nhs_number)))
        if by_local and person and by_local.id != person.id:
            raise ProblemError(409, "subject.local_id already refers to a different child in "
                               "your agency's records than subject.nhs_number does.")
        if person is None and by_local is not None:
            if by_local.nhs_number:  # by_local has another NHS number
                raise ProblemError(409, "subject.local_id already refers to a child with a "
                                   "different NHS number.")
            by_local.nhs_number = subject.nhs_number
            person = by_local
        if person is None:
            person = _create(session, Person(nhs_number=subject.nhs_number),
                             select(Person).where(Person.nhs_number == subject.nhs_number))
    elif subject.unborn:
        person = current(session, _first(session, select(Person).where(
            Person.unborn_key == subject.unborn_key)))
        if by_local is not None and (person is None or by_local.id != person.id):
            # Refuse rather than silently start a second record for a child the agency knows.
            raise ProblemError(409, "subject.local_id already refers to a different child in "
                               "your agency's records than subject.mother_nhs_number and "
                               "subject.expected_delivery_date do.")
        if person is None:
            person = _create(
                session,
                Person(unborn=True, unborn_key=subject.unborn_key,
                       mother_nhs_number=subject.mother_nhs_number,
                       expected_delivery_date=subject.expected_delivery_date),
                select(Person).where(Person.unborn_key == subject.unborn_key),
            )
            mother = get_or_create_by_nhs(session, subject.mother_nhs_number)
            link_person(session, person.id, mother.id, "parent", "mother", agency_id)
            new_unborn = True
    else:
        person = by_local or Person()
    gained = _fill_blanks(person, subject)
    if subject.local_id and by_local is None:
        claimed = _link_local_id(session, agency_id, subject.local_id, person)
        if claimed.id != person.id:  # a racing request linked the id first
            if subject.nhs_number or subject.unborn:
                raise ProblemError(409, "subject.local_id already refers to a different child "
                                   "in your agency's records.")
            person = claimed
            gained = _fill_blanks(person, subject)
    session.flush()
    if subject.mother_nhs_number and not subject.unborn:
        _link_mother(session, person, subject.mother_nhs_number, agency_id)
    if gained or new_unborn:  # it may be a record already held under another name, or born
        propose_matches(session, person, agency_id)
    return person


def resolve_related(session: Session, people: Sequence[RelatedPerson], agency_id: str,
                    child: Person, field: str) -> list[Person]:
    """The person each entry names, in order: by NHS number when given (those already held are
    read in one query); otherwise a new person, never merged on a name: one that may be a
    person already held is queued as a possible match for the MASH to decide, so that an
    adult's history can follow them once someone confirms who they are.

    An entry naming the child itself (its NHS number, here or on a record merged into it) is
    refused, as `field`.N.nhs_number: the child as its own parent or alleged perpetrator would
    make it its own sibling and household, and send it its own history."""
    numbers = {p.nhs_number for p in people if p.nhs_number}
    held = {found.nhs_number: current(session, found) for found in session.exec(
        _BY_NHS_NUMBERS, params={"numbers": list(numbers)})} if numbers else {}
    resolved, gained = [], []
    for person in people:
        if person.nhs_number:
            found = held.get(person.nhs_number)
            if found is None:  # not held yet (or created by a request racing this one)
                found = held[person.nhs_number] = get_or_create_by_nhs(session,
                                                                       person.nhs_number)
        else:
            found = Person()
            session.add(found)
        if found.id == child.id:
            raise invalid(f"{field}.{len(resolved)}.nhs_number",
                          "is the NHS number of the child the record is about")
        if _fill_blanks(found, person):
            gained.append(found)
        resolved.append(found)
    session.flush()
    for found in {found.id: found for found in gained}.values():
        propose_matches(session, found, agency_id)
    return resolved


_BY_NHS_NUMBERS = select(Person).where(Person.nhs_number.in_(bindparam("numbers",
                                                                       expanding=True)))


def get_or_create_by_nhs(session: Session, nhs: str) -> Person:
    query = select(Person).where(Person.nhs_number == nhs)
    return current(session, _first(session, query)) or _create(session, Person(nhs_number=nhs),
                                                                query)


def current(session: Session, person: Person | None) -> Person | None:
    """The record a person stands for now: a record merged into another leads to that one."""
    while person is not None and person.merged_into_id is not None:
        person = session.get(Person, person.merged_into_id)
    return person


def link_person(session: Session, child_id: str, person_id: str, role: str,
                relationship: str | None, agency_id: str, flag_id: str | None = None) -> PersonLink:
    link = PersonLink(child_id=child_id, person_id=person_id, role=role,
                      relationship=relationship, agency_id=agency_id, flag_id=flag_id)
    session.add(link)  # inserted with the next flush, beside the request's other links
    return link


# Built once: read on every publish and every view of a child. Columns, not ORM objects: the
# ORM's entities cost more than the read (about 95 against 40 µs on SQLite).
_RELATIONSHIPS_ON = (select(Relationship.kind, Relationship.start, Relationship.end,
                            Agency.id.label("agency_id"), Agency.kind.label("agency_kind"),
                            Agency.area.label("agency_area"),
                            Agency.disabled.label("agency_disabled"))
                     .join(Agency, Agency.id == Relationship.agency_id)
                     .where(Relationship.child_id == bindparam("child_id"),
                            Relationship.in_force_on(bindparam("on"))))


def current_relationships(session: Session, child_id: str, on: date | None = None) -> list:
    """The child's relationships in force on the given day (default today), each a row of
    kind, start, end and the agency's id, kind, area and whether it is disabled."""
    return plain_rows(session, _RELATIONSHIPS_ON, {"child_id": child_id,
                                                   "on": on or date.today()}).all()


def add_relationship(session: Session, agency: Agency, body: RelationshipCreate) -> Relationship:
    """Record that an agency works with a child; an identical statement is not repeated."""
    child = resolve_child(session, agency.id, body.subject)
    existing = _first(session, select(Relationship).where(
        Relationship.child_id == child.id, Relationship.agency_id == agency.id,
        Relationship.kind == body.kind, Relationship.start == body.start))
    if existing is not None:
        existing.end = body.end
        session.flush()
        return existing
    rel = Relationship(child_id=child.id, agency_id=agency.id, kind=body.kind,
                       start=body.start, end=body.end)
    session.add(rel)
    session.flush()
    check_for_move(session, child.id, agency, f"relationship:{body.kind}")
    return rel


def age_in_years(person: Person, on: date | None = None) -> int | None:
    """Whole years; an unborn child counts as 0 until a birth date is known for it."""
    if person.birth_date is None:
        return 0 if person.unborn else None
    on = on or date.today()
    b = person.birth_date
    return on.year - b.year - ((on.month, on.day) < (b.month, b.day))


def _link_mother(session: Session, child: Person, mother_nhs: str, agency_id: str) -> None:
    """A baby recorded with the mother's NHS number is linked to her, as an unborn child is."""
    mother = get_or_create_by_nhs(session, mother_nhs)
    if mother.id == child.id or session.exec(select(PersonLink.id).where(
            PersonLink.child_id == child.id, PersonLink.person_id == mother.id,
            PersonLink.role == "parent")).first():
        return
    link_person(session, child.id, mother.id, "parent", "mother", agency_id)


def _fill_blanks(person: Person, source) -> bool:
    """Fill the person's unknown fields from the source; never overwrite. True if any changed."""
    changed = False
    for name in DEMOGRAPHICS:
        value = getattr(source, name, None)
        if value is not None and getattr(person, name) is None:
            setattr(person, name, value)
            changed = True
    if changed:
        person.updated_at = utcnow()
    return changed


def _by_local_id(session: Session, agency_id: str, local_id: str) -> Person | None:
    link = session.get(LocalIdentifier, (agency_id, local_id))
    return current(session, session.get(Person, link.person_id)) if link else None


def _link_local_id(session: Session, agency_id: str, local_id: str, person: Person) -> Person:
    """Link the id (inserting a new person with it), or on a racing link, the person it names."""
    try:
        with session.begin_nested():
            session.add(person)
            session.flush()
            session.add(LocalIdentifier(agency_id=agency_id, local_id=local_id,
                                        person_id=person.id))
        return person
    except IntegrityError:
        found = _by_local_id(session, agency_id, local_id)
        if found is None:
            raise
        return found


def _first(session: Session, query):
    return session.exec(query).first()


def _create(session: Session, person: Person, query) -> Person:
    """Insert, or on a racing insert of the same identifier, return the winner's row."""
    try:
        with session.begin_nested():
            session.add(person)
        return person
    except IntegrityError:
        found = _first(session, query)
        if found is None:
            raise
        return found
