"""Finding records that may be the same child, and queueing them for a person to decide.

An exact NHS number links records automatically (resolve_child does that). Anything weaker —
demographics, or a baby whose record carries the mother's NHS number and a birth date near an
unborn child's expected delivery date — becomes a possible match for a MASH practitioner.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, func, or_, select

from api.agencies.models import Agency
from api.audit import service as audit
from api.flags.models import Flag
from api.identity import matching
from api.identity.models import IdentityMerge, Person, PossibleMatch
from api.identity.scope import person_areas
from api.transfers.notify import LAWFUL_BASIS, PURPOSE, area_agencies, notify

# A baby is proposed as an unborn child's birth when born up to 17 weeks before (viability)
# or 3 weeks after the expected delivery date.
BORN_BEFORE_EDD = timedelta(weeks=17)
BORN_AFTER_EDD = timedelta(weeks=3)
CANDIDATE_LIMIT = 2000  # a safety net: a birth date is shared by a few dozen children per area


def candidates(session: Session, probe: matching.Demographics,
               exclude_id: str | None = None) -> list[tuple[Person, matching.Score]]:
    """Current records whose birth date could be the probe's, scored against it, best first.

    Blocking: the same birth date or day and month transposed; a date one digit away only
    with a family name starting with the same letter (one digit off scores too little to
    count without a matching family name).
    """
    if probe.birth_date is None:
        return []
    same = {probe.birth_date} | {d for d in matching.birth_date_variants(probe.birth_date)
                                 if matching.birth_date_match(probe.birth_date, d)
                                 == "day_month_transposed"}
    dated = Person.birth_date.in_(same)
    if probe.family_name and matching.normalise(probe.family_name):
        initial = matching.normalise(probe.family_name)[0].upper()
        near = matching.birth_date_variants(probe.birth_date) - same
        dated = or_(dated, Person.birth_date.in_(near)
                    & (func.upper(func.substr(Person.family_name, 1, 1)) == initial))
    query = select(Person).where(dated, Person.merged_into_id.is_(None))
    if exclude_id is not None:
        query = query.where(Person.id != exclude_id)
    scored = [(p, matching.score(probe, p)) for p in
              session.exec(query.order_by(Person.id).limit(CANDIDATE_LIMIT)).all()]
    return sorted(scored, key=lambda ps: (-ps[1].total, ps[0].id))


def propose_matches(session: Session, person: Person, agency_id: str) -> list[PossibleMatch]:
    """Queue every current record that may be this one; called when a record is named or gains
    demographics. Never merges anything."""
    if person.merged_into_id is not None:
        return []
    found: list[tuple[str, Person, float, list[dict]]] = []
    for other, result in candidates(session, person, exclude_id=person.id):
        if result.total < matching.QUEUE_AT:
            break
        if person.nhs_number and other.nhs_number:
            continue  # two NHS numbers are two children
        found.append(("demographics", other, result.total, result.reasons()))
    if person.mother_nhs_number and person.birth_date is not None:
        for unborn in _unborn_siblings_due(session, person):
            found.append(("unborn_to_born", unborn, 10.0,
                          _birth_reasons(person.birth_date, unborn.expected_delivery_date)))
    elif person.unborn and person.mother_nhs_number and person.expected_delivery_date:
        # The baby's record came first: a concern raised before the birth, recorded after it.
        for baby in _babies_born_around(session, person):
            found.append(("unborn_to_born", baby, 10.0,
                          _birth_reasons(baby.birth_date, person.expected_delivery_date)))
    agency = session.get(Agency, agency_id)
    queued = []
    for kind, other, points, reasons in found:
        match = _queue(session, person, other, kind, points, reasons, agency)
        if match is not None:
            queued.append(match)
            if kind == "unborn_to_born" and other.merged_into_id is not None:
                tell_of_another_baby(session, other, person, agency.id)
    return queued


def tell_of_another_baby(session: Session, pregnancy: Person, baby: Person, actor: str) -> None:
    """Twins and more. An unborn child's record already confirmed as one baby is proposed as
    the birth of another. Two babies are two children and are never merged, so what was
    recorded before the birth stays on the first baby's record, where the other baby's
    agencies never see it; yet a concern about a pregnancy is usually a concern for each baby
    of it. Each publisher of such a flag still active is told of the other baby
    (`multiple_birth.found`), to publish for it too where it applies: only the publisher can
    decide that, and on what basis."""
    merge = session.exec(select(IdentityMerge).where(
        IdentityMerge.merged_id == pregnancy.id, IdentityMerge.unmerged_at.is_(None))
        .order_by(IdentityMerge.merged_at.desc())).first()
    born = _born_as(session, pregnancy)
    if merge is None or born is None or born.id == baby.id:
        return
    by_publisher: dict[str, list[Flag]] = {}
    for flag in session.exec(select(Flag).where(Flag.id.in_(merge.moved.get("flag", [])),
                                                Flag.status == "active")
                             .order_by(Flag.created_at, Flag.id)).all():
        by_publisher.setdefault(flag.publisher_id, []).append(flag)
    for publisher, flags in by_publisher.items():
        notify(session, event_type="multiple_birth.found", recipients=[publisher], data={
            "pregnancy_record": pregnancy.id,
            "expected_delivery_date": (pregnancy.expected_delivery_date.isoformat()
                                       if pregnancy.expected_delivery_date else None),
            "flags": [{"id": f.id, "category": f.category, "child_id": f.child_id}
                      for f in flags],
            "born": person_summary(born), "other_baby": person_summary(baby),
            "what_to_do": "What you recorded before the birth is on the first baby's record "
                          "only. If it applies to this baby too, publish it for this baby.",
        }, child_id=baby.id, actor=actor, areas=(), rule="MULTIPLE-BIRTH")


def person_summary(person: Person) -> dict:
    """Enough for a practitioner to tell two records apart, and for an event."""
    return {
        "child_id": person.id, "nhs_number": person.nhs_number,
        "given_name": person.given_name, "family_name": person.family_name,
        "birth_date": person.birth_date.isoformat() if person.birth_date else None,
        "sex": person.sex, "postcode": person.postcode, "unborn": person.unborn,
        "mother_nhs_number": person.mother_nhs_number,
        "expected_delivery_date": (person.expected_delivery_date.isoformat()
                                   if person.expected_delivery_date else None),
    }


def _unborn_siblings_due(session: Session, baby: Person) -> list[Person]:
    """Unborn children of the baby's mother expected around the baby's birth date, including
    those already confirmed as another baby (a twin: see tell_of_another_baby)."""
    born: date = baby.birth_date
    due = session.exec(select(Person).where(
        Person.mother_nhs_number == baby.mother_nhs_number, Person.unborn.is_(True),
        Person.birth_date.is_(None), Person.id != baby.id,
        Person.expected_delivery_date >= born - BORN_AFTER_EDD,
        Person.expected_delivery_date <= born + BORN_BEFORE_EDD).order_by(Person.id)).all()
    return [u for u in due if u.merged_into_id is None or _born_as(session, u) not in (None, baby)]


def _born_as(session: Session, unborn: Person) -> Person | None:
    """The born child an unborn record was merged into, if it was."""
    record = unborn
    while record.merged_into_id is not None:
        record = session.get(Person, record.merged_into_id)
    return None if record is unborn or record.birth_date is None else record


def _babies_born_around(session: Session, unborn: Person) -> list[Person]:
    """Born children of the unborn child's mother whose birth date could be its birth."""
    due: date = unborn.expected_delivery_date
    return list(session.exec(select(Person).where(
        Person.mother_nhs_number == unborn.mother_nhs_number, Person.merged_into_id.is_(None),
        Person.id != unborn.id, Person.birth_date >= due - BORN_BEFORE_EDD,
        Person.birth_date <= due + BORN_AFTER_EDD).order_by(Person.id)).all())


def _birth_reasons(born: date, due: date) -> list[dict]:
    days = (born - due).days
    return [{"field": "mother_nhs_number", "match": "exact"},
            {"field": "birth_date", "match": f"{abs(days)} days "
             f"{'after' if days >= 0 else 'before'} expected_delivery_date"}]


def _queue(session: Session, person: Person, other: Person, kind: str, points: float,
           reasons: list[dict], agency: Agency) -> PossibleMatch | None:
    """Insert the pair once (lower id first) and tell the MASH of both areas."""
    low, high = sorted((person.id, other.id))
    if session.exec(select(PossibleMatch.id).where(PossibleMatch.person_id == low,
                                                   PossibleMatch.other_person_id == high)).first():
        return None
    others_areas = person_areas(session, other.id) - {agency.area}
    match = PossibleMatch(person_id=low, other_person_id=high, kind=kind, score=points,
                          reasons=reasons, area=agency.area,
                          other_area=min(others_areas) if others_areas else None,
                          proposed_by_agency_id=agency.id)
    try:
        with session.begin_nested():
            session.add(match)
    except IntegrityError:  # queued concurrently by another request
        return None
    for child_id in (person.id, other.id):
        audit.record(session, actor=agency.id, actor_agency=agency.id, action="match.propose",
                     outcome=kind, child_id=child_id, purpose=PURPOSE,
                     lawful_basis=LAWFUL_BASIS, policy_rule="MATCH-PROPOSED",
                     reason=f"possible match {match.id}")
    areas = [a for a in (match.area, match.other_area) if a]
    notify(session, event_type="match.proposed",
           recipients=[m for a in areas for m in area_agencies(session, a, ["mash"])],
           data={"match_id": match.id, "kind": kind, "score": points, "reasons": reasons,
                 "area": match.area, "other_area": match.other_area,
                 "proposed_by": agency.id,
                 "records": [person_summary(person), person_summary(other)]},
           child_id=person.id, actor=agency.id, areas=areas, rule="MATCH-PROPOSED")
    return match
