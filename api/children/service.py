"""One child's whole record across agencies, as the reader may see it, and who has read it.

Every read states a purpose and a reason and is written to the audit log in the same
transaction. A MASH practitioner reads children linked to their own area, or any child by
breaking the glass (marked in the log, and the MASH of the child's areas is alerted); an agency
reads children it works with, and sees only the flags shared with it. A read from outside the
area of a child's active plan tells the children's social care holding the plan, unless the
policy lists the read as silent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import bindparam
from sqlmodel import Session, or_, select

from api.agencies.models import Agency
from api.audit import service as audit
from api.audit.models import AuditEvent
from api.auth.principal import Principal
from api.children.access import check_listed_purpose
from api.db import plain_rows
from api.encoding import rfc3339
from api.flags import service as flags
from api.flags.models import Flag
from api.forwarding.models import Delivery
from api.forwarding.service import FLAG_EVENTS
from api.households import service as households
from api.identity import linking, matching
from api.identity.models import Person, PersonLink
from api.identity.scope import child_areas
from api.identity.service import current, current_relationships
from api.policy import rules
from api.policy.loader import Policy
from api.policy.schema import AccessPolicy
from api.problems import ProblemError, not_found
from api.transfers.models import SuspectedMove, Transfer
from api.transfers.notify import LAWFUL_BASIS, area_agencies, notify
from api.transfers.router import move_out, transfer_out
from api.transfers.working_days import england_date

READ_ACTIONS = ("child.read", "child.break_glass")
BASIS_RULES = {"area": "READ-MASH-AREA", "relationship": "READ-RELATIONSHIP",
               "break_glass": "BREAK-GLASS"}
HOUSEHOLD_ROLES = ("parent", "household_member")
AREA_KINDS = ("childrens_social_care", "mash")  # see transfers and moves of their own area


@dataclass(frozen=True)
class Reader:
    """Who reads: a MASH practitioner (with their MASH agency, if registered) or an agency."""

    principal: Principal
    agency: Agency | None

    def __post_init__(self) -> None:
        if self.principal.unchecked:  # a route took it as claimed and forgot `checked`
            raise RuntimeError("a reader's principal must be checked against the database")

    @property
    def practitioner(self) -> bool:
        return self.principal.role == "mash_practitioner"

    @property
    def area(self) -> str | None:
        return self.principal.area if self.practitioner else self.agency.area

    @property
    def organisation(self) -> str | None:
        return self.agency.id if self.agency else self.principal.agency_id


@dataclass(frozen=True)
class SearchProbe:
    nhs_number: str | None = None
    family_name: str | None = None
    birth_date: date | None = None
    given_name: str | None = None
    postcode: str | None = None
    sex: str | None = None  # the scorer reads it; a search does not narrow by sex


@dataclass(frozen=True)
class Purpose:
    purpose: str
    reason: str
    break_glass: bool = False


def check_purpose(access: AccessPolicy, reader: Reader, stated: Purpose) -> None:
    check_listed_purpose(access, stated.purpose)
    if stated.break_glass and not reader.practitioner:
        raise ProblemError(403, "Breaking the glass is for MASH practitioners; an agency reads "
                           "the children it works with.")


def find_child(session: Session, child_id: str | None = None,
               nhs_number: str | None = None) -> Person:
    """The child by id or NHS number; a record merged into another leads to that one."""
    if nhs_number is not None:
        person = session.exec(select(Person).where(Person.nhs_number == nhs_number)).first()
    else:
        person = session.get(Person, child_id)
    person = current(session, person)
    if person is None:
        raise not_found("child")
    return person


def read_basis(session: Session, reader: Reader, child: Person, break_glass: bool) -> str | None:
    """Why this reader may see the child — area, relationship or break_glass — or None."""
    if reader.practitioner:
        if reader.area and reader.area in child_areas(session, child.id):
            return "area"
        return "break_glass" if break_glass else None
    if any(r.agency_id == reader.agency.id for r in current_relationships(session, child.id)):
        return "relationship"
    return None


def child_view(session: Session, policy: Policy, access: AccessPolicy, reader: Reader,
               stated: Purpose, *, history: bool, now: datetime, child_id: str | None = None,
               nhs_number: str | None = None) -> dict:
    """The whole record of the child with this id or NHS number as this reader may see it;
    the read is audited and may notify.

    The stated purpose is checked before the child is looked for: checked after, its answer
    would tell a caller with no right to the child whether the number is known here at all.
    """
    check_purpose(access, reader, stated)
    child = find_child(session, child_id, nhs_number)
    basis = read_basis(session, reader, child, stated.break_glass)
    if basis is None:
        raise not_found("child")
    agency_id = None if reader.practitioner else reader.agency.id
    chronology = flags.child_flags(session, policy, child.id, agency_id, history=history)
    related = _related_links(session, policy, reader, child.id)
    people = _people(related)
    view = {
        "child": identity(session, child),
        "access": {"basis": basis, "purpose": stated.purpose, "reason": stated.reason},
        "flags": chronology,
        "related_people": people,
        "household": [p for p in people if set(p["roles"]) & set(HOUSEHOLD_ROLES)],
        "siblings": _siblings(session, policy, reader, child.id, related),
        # What the MASH was already told (household.risk_joined); agencies see their own alerts.
        "household_risk": households.told_for_child(session, child.id) if reader.practitioner
        else [],
        "relationships": [
            {"agency": r.agency_id, "agency_kind": r.agency_kind, "area": r.agency_area,
             "kind": r.kind, "start": r.start, "end": r.end}
            for r in sorted(current_relationships(session, child.id),
                            key=lambda r: (r.agency_id, r.kind))],
        **_transfers_and_moves(session, reader, child.id, england_date(now)),
        "outstanding_deliveries": _outstanding(session, reader, child.id, now),
        "recent_accesses": recent_accesses(session, child.id, access.recent_accesses_shown),
    }
    owners = plan_owners_to_tell(session, access, reader, child)  # read before the lock
    _record_read(session, policy, reader, child, stated, basis)  # the chain is locked till commit
    notify_access(session, access, reader, child, stated, now, owners)
    if basis == "break_glass":
        alert_break_glass(session, reader, child, stated, now)
    session.commit()
    return view


def search(session: Session, access: AccessPolicy, reader: Reader, probe: SearchProbe,
           stated: Purpose, *, offset: int, limit: int,
           now: datetime) -> tuple[list[dict], bool]:
    """Children the reader may open that match the probe, best first, each with its reasons.

    Each candidate shown is audited; one shown only because the glass was broken also alerts
    the MASH of its areas.
    """
    check_purpose(access, reader, stated)
    if probe.nhs_number:
        found = session.exec(select(Person).where(Person.nhs_number == probe.nhs_number)).first()
        found = current(session, found)
        scored = [] if found is None else [
            (found, matching.Score(10.0, (matching.Evidence("nhs_number", "exact", 10.0),)))]
    else:
        scored = [(p, s) for p, s in linking.candidates(session, probe)
                  if s.total >= matching.SEARCH_AT]
    shown = []
    for person, result in scored:
        basis = read_basis(session, reader, person, stated.break_glass)
        if basis is not None:
            shown.append((person, result, basis))
    page = shown[offset:offset + limit]
    items = []
    for person, result, basis in page:
        audit.record(session, actor=reader.principal.actor, actor_agency=reader.organisation,
                     action="child.search", outcome="candidate", child_id=person.id,
                     purpose=stated.purpose, reason=stated.reason, lawful_basis=LAWFUL_BASIS,
                     policy_rule=BASIS_RULES[basis])
        if basis == "break_glass":
            alert_break_glass(session, reader, person, stated, now)
        items.append({"child": linking.person_summary(person), "score": result.total,
                      "reasons": result.reasons(), "break_glass": basis == "break_glass"})
    session.commit()
    return items, len(shown) > offset + limit


# Statements of the view, built once: it runs on every read of a child. Bind parameters are
# named after what they hold (child_id, agency_id, ids as a list, limit).
_MERGED_INTO = (select(Person.id).where(Person.merged_into_id == bindparam("child_id"))
                .order_by(Person.id))
_RECENT_READS = (select(AuditEvent.at, AuditEvent.actor, AuditEvent.actor_agency,
                        AuditEvent.purpose, AuditEvent.action)
                 .where(AuditEvent.child_id == bindparam("child_id"),
                        # not IN: a list is bound anew on every execution
                        or_(*(AuditEvent.action == action for action in READ_ACTIONS)))
                 .order_by(AuditEvent.seq.desc()).limit(bindparam("limit")))


def identity(session: Session, child: Person) -> dict:
    merged = plain_rows(session, _MERGED_INTO, {"child_id": child.id}).scalars().all()
    return {
        "child_id": child.id, "nhs_number": child.nhs_number, "given_name": child.given_name,
        "family_name": child.family_name, "birth_date": child.birth_date, "sex": child.sex,
        "postcode": child.postcode, "ethnicity": child.ethnicity, "disability": child.disability,
        "unborn": child.unborn, "mother_nhs_number": child.mother_nhs_number,
        "expected_delivery_date": child.expected_delivery_date, "merged_from": list(merged),
    }


def recent_accesses(session: Session, child_id: str, limit: int) -> list[dict]:
    rows = plain_rows(session, _RECENT_READS, {"child_id": child_id, "limit": limit}).all() \
        if limit else []
    return [{"at": e.at, "actor": e.actor, "organisation": e.actor_agency, "purpose": e.purpose,
             "break_glass": e.action == "child.break_glass"} for e in rows]


# Columns, not ORM objects: read on every view, and usually finding none.
_ACTIVE_PLANS = (select(Flag.id, Flag.category, Agency.id.label("owner_id"),
                        Agency.area.label("owner_area"))
                 .join(Agency, Agency.id == Flag.publisher_id)
                 .where(Flag.child_id == bindparam("child_id"), Flag.status == "active",
                        Flag.category.in_(bindparam("categories", expanding=True)))
                 .order_by(Flag.created_at))


@dataclass(frozen=True)
class PlanOwner:
    """A children's social care holding active plans for a child: (flag id, category) each."""

    id: str
    area: str | None
    plans: list[tuple[str, str]]


def plan_owners_to_tell(session: Session, access: AccessPolicy, reader: Reader,
                        child: Person) -> list[PlanOwner]:
    """Each children's social care holding an active plan for the child, with its plans, when
    the reader is outside that area and the read is not silent."""
    plans = plain_rows(session, _ACTIVE_PLANS, {"child_id": child.id,
                                                "categories": list(access.notify.categories)})
    owners: dict[str, PlanOwner] = {}
    for plan in plans:
        if plan.owner_area != reader.area and plan.owner_id != reader.organisation:
            owner = owners.setdefault(plan.owner_id,
                                      PlanOwner(plan.owner_id, plan.owner_area, []))
            owner.plans.append((plan.id, plan.category))
    if not owners or silent_rule(session, access, reader, child) is not None:
        return []
    return list(owners.values())


def notify_access(session: Session, access: AccessPolicy, reader: Reader, child: Person,
                  stated: Purpose, now: datetime, owners: list[PlanOwner]) -> list[str]:
    """`child.accessed` to each plan owner of `plan_owners_to_tell`. Returns who was told."""
    for owner in owners:
        notify(session, event_type="child.accessed", recipients=[owner.id],
               data={**_access_event(reader, child, stated, now), "notified_as": "access",
                     "plans": [{"flag_id": flag_id, "category": category}
                               for flag_id, category in owner.plans]},
               child_id=child.id, actor=reader.principal.actor,
               areas=[a for a in (owner.area, reader.area) if a], rule=access.notify.id)
    return [owner.id for owner in owners]


def silent_rule(session: Session, access: AccessPolicy, reader: Reader,
                child: Person) -> str | None:
    """The policy's silent-read rule this read falls under, if any."""
    if reader.agency is None:
        return None
    kinds = {r.kind for r in current_relationships(session, child.id)
             if r.agency_id == reader.agency.id}
    for rule in access.silent:
        if rule.agency_kinds and reader.agency.kind not in rule.agency_kinds:
            continue
        if rule.relationship_kinds and not kinds & set(rule.relationship_kinds):
            continue
        return rule.id
    return None


def alert_break_glass(session: Session, reader: Reader, child: Person, stated: Purpose,
                      now: datetime) -> list[str]:
    """Tell the MASH of every area the child is linked to that the glass was broken, and why."""
    areas = sorted(child_areas(session, child.id))
    recipients = [m for a in areas for m in area_agencies(session, a, ["mash"])
                  if m != reader.organisation]
    notify(session, event_type="child.accessed", recipients=recipients,
           data={**_access_event(reader, child, stated, now), "notified_as": "break_glass",
                 "reason": stated.reason},
           child_id=child.id, actor=reader.principal.actor, areas=areas, rule="BREAK-GLASS")
    return recipients


# --- helpers -----------------------------------------------------------------------------

def _access_event(reader: Reader, child: Person, stated: Purpose, now: datetime) -> dict:
    """Who read, from which organisation, when and for what purpose (as CP-IS tells)."""
    return {
        "child": linking.person_summary(child), "accessed_at": rfc3339(now),
        "accessed_by": reader.principal.actor, "role": reader.principal.role,
        "organisation": reader.organisation,
        "organisation_kind": reader.agency.kind if reader.agency else None,
        "organisation_area": reader.area, "purpose": stated.purpose,
        "break_glass": stated.break_glass,
    }


def _record_read(session: Session, policy: Policy, reader: Reader, child: Person,
                 stated: Purpose, basis: str) -> None:
    audit.record(session, actor=reader.principal.actor, actor_agency=reader.organisation,
                 action="child.break_glass" if basis == "break_glass" else "child.read",
                 outcome="disclosed", child_id=child.id, purpose=stated.purpose,
                 reason=stated.reason, lawful_basis=LAWFUL_BASIS,
                 policy_rule=BASIS_RULES[basis], policy_version=policy.version)


# A link with the state of the flag it was named on (none for an identity link), read in the
# same query as the link: the columns _visible_links needs.
_LINK = (PersonLink.child_id, PersonLink.person_id, PersonLink.role, PersonLink.relationship,
         PersonLink.agency_id, PersonLink.flag_id, Flag.status.label("flag_status"),
         Flag.publisher_id.label("flag_publisher"), Flag.category.label("flag_category"))
_PERSON = (Person.nhs_number, Person.given_name, Person.family_name, Person.birth_date,
           Person.merged_into_id)


def _links(*where, person_is=PersonLink.person_id):
    """Links (with the person `person_is` names, and their flag's state) as plain rows."""
    return (select(*_LINK, *_PERSON).join(Person, Person.id == person_is)
            .outerjoin(Flag, Flag.id == PersonLink.flag_id).where(*where))


_LINKS_OF_CHILD = _links(PersonLink.child_id == bindparam("child_id")).order_by(
    PersonLink.created_at)
# Other children linked to the same parents or household members (ids), or naming this child
# as their sibling; the person columns are the other child's.
_SIBLING_LINKS = _links(or_(PersonLink.person_id.in_(bindparam("ids", expanding=True))
                            & PersonLink.role.in_(HOUSEHOLD_ROLES),
                            (PersonLink.person_id == bindparam("child_id"))
                            & (PersonLink.role == "sibling")),
                        PersonLink.child_id != bindparam("child_id"),
                        Person.merged_into_id.is_(None), person_is=PersonLink.child_id)
_PARENT_LINKS = _links(PersonLink.child_id.in_(bindparam("ids", expanding=True)),
                       PersonLink.role == "parent")


def _visible_links(session: Session, policy: Policy, reader: Reader, rows: list) -> list:
    """Links the reader may see: identity links (no flag), and links named on a flag not
    entered in error that the reader was given with its related people (a MASH practitioner:
    a flag of a category whose related people the policy gives the MASH)."""
    ok = {r.flag_id for r in rows if r.flag_id and r.flag_status is not None
          and r.flag_status != "entered_in_error"}
    if reader.practitioner:
        ok = {r.flag_id for r in rows if r.flag_id in ok
              and "related_people" in rules.mash_fields(policy, r.flag_category)}
    elif ok:
        agency_id = reader.agency.id
        latest: dict[str, list] = {}
        for flag_id, _version, fields in flags.shares_to(session, list(ok), agency_id):
            latest[flag_id] = fields
        publisher = {r.flag_id: r.flag_publisher for r in rows if r.flag_id in ok}
        ok = {fid for fid in ok if publisher[fid] == agency_id
              or "related_people" in latest.get(fid, ())}
    return [r for r in rows if r.flag_id is None or r.flag_id in ok]


def _related_links(session: Session, policy: Policy, reader: Reader, child_id: str) -> list:
    """The people linked to the child as the reader may see them, one row per link."""
    rows = plain_rows(session, _LINKS_OF_CHILD, {"child_id": child_id}).all()
    return _visible_links(session, policy, reader, rows)


def _people(links: list) -> list[dict]:
    people: dict[str, dict] = {}
    for link in links:
        entry = people.setdefault(link.person_id, {
            "person_id": link.person_id, "nhs_number": link.nhs_number,
            "given_name": link.given_name, "family_name": link.family_name,
            "birth_date": link.birth_date, "roles": set(), "relationships": set(),
            "recorded_by": set()})
        entry["roles"].add(link.role)
        entry["recorded_by"].add(link.agency_id)
        if link.relationship:
            entry["relationships"].add(link.relationship)
    return [{**e, "roles": sorted(e["roles"]), "relationships": sorted(e["relationships"]),
             "recorded_by": sorted(e["recorded_by"])} for e in people.values()]


def _siblings(session: Session, policy: Policy, reader: Reader, child_id: str,
              related: list) -> list[dict]:
    """Children named as siblings, and children sharing a parent or household member."""
    shared_ids = {r.person_id for r in related if r.role in HOUSEHOLD_ROLES}
    rows = plain_rows(session, _SIBLING_LINKS, {"ids": list(shared_ids),
                                                "child_id": child_id}).all()
    found: dict[str, tuple] = {}
    for link in _visible_links(session, policy, reader, rows):
        via = {"person_id": link.person_id, "role": link.role}
        entry = found.setdefault(link.child_id, (link, []))[1]
        if via not in entry:
            entry.append(via)
    named = {r.person_id: r for r in related if r.role == "sibling"}
    for person_id, person in named.items():
        if person.merged_into_id is None:
            found.setdefault(person_id, (person, []))[1].append(
                {"person_id": child_id, "role": "sibling"})
    parents = _parents(session, policy, reader, [child_id, *found])
    mine = parents.get(child_id, set())
    out = []
    for sib_id, (sib, via) in found.items():
        theirs = parents.get(sib_id, set())
        shared = mine & theirs
        if shared:
            relation = "half_sibling" if (mine - shared) and (theirs - shared) else "sibling"
        else:
            relation = "sibling" if any(v["role"] == "sibling" for v in via) else "household"
        out.append({"child_id": sib_id, "nhs_number": sib.nhs_number,
                    "given_name": sib.given_name, "family_name": sib.family_name,
                    "birth_date": sib.birth_date, "relation": relation,
                    "via": sorted(via, key=lambda v: (v["person_id"], v["role"]))})
    return sorted(out, key=lambda s: (s["birth_date"] or date.max, s["child_id"]))


def _parents(session: Session, policy: Policy, reader: Reader,
             child_ids: list[str]) -> dict[str, set[str]]:
    rows = plain_rows(session, _PARENT_LINKS, {"ids": child_ids}).all()
    out: dict[str, set[str]] = {}
    for link in _visible_links(session, policy, reader, rows):
        out.setdefault(link.child_id, set()).add(link.person_id)
    return out


_TRANSFERS = (select(*Transfer.__table__.c).where(Transfer.child_id == bindparam("child_id"))
              .order_by(Transfer.created_at))
_MOVES = (select(*SuspectedMove.__table__.c)
          .where(SuspectedMove.child_id == bindparam("child_id"))
          .order_by(SuspectedMove.created_at))


def _transfers_and_moves(session: Session, reader: Reader, child_id: str, today: date) -> dict:
    """All of them for a MASH practitioner; for an agency, as the transfers endpoints show:
    children's social care and MASH agencies see those touching their own area."""
    transfers = plain_rows(session, _TRANSFERS, {"child_id": child_id}).all()
    moves = plain_rows(session, _MOVES, {"child_id": child_id}).all()
    if not reader.practitioner:
        area = reader.agency.area if reader.agency.kind in AREA_KINDS else None
        transfers = [t for t in transfers if area in (t.from_area, t.to_area)]
        moves = [m for m in moves if area in (m.plan_area, m.seen_area)]
    return {"transfers": [transfer_out(t, today) for t in transfers],
            "suspected_moves": [move_out(m) for m in moves]}


_OUTSTANDING = (select(Delivery.id, Delivery.event_type, Delivery.flag_id, Delivery.recipient_id,
                       Delivery.status, Delivery.created_at, Delivery.acknowledge_by)
                .join(Flag, Flag.id == Delivery.flag_id)
                .where(Flag.child_id == bindparam("child_id"), Delivery.ack_status.is_(None),
                       Delivery.event_type.in_(FLAG_EVENTS))  # what awaits acknowledgement
                .order_by(Delivery.seq))
# An agency: deliveries sent to it, and those of flags it published.
_OUTSTANDING_FOR_AGENCY = _OUTSTANDING.where(or_(
    Delivery.recipient_id == bindparam("agency_id"),
    Flag.publisher_id == bindparam("agency_id")))


def _outstanding(session: Session, reader: Reader, child_id: str, now: datetime) -> list[dict]:
    """Deliveries of the child's flags not yet acknowledged: all for a MASH practitioner; for an
    agency, those sent to it and those of flags it published."""
    if reader.practitioner:
        rows = plain_rows(session, _OUTSTANDING, {"child_id": child_id}).all()
    else:
        rows = plain_rows(session, _OUTSTANDING_FOR_AGENCY,
                          {"child_id": child_id, "agency_id": reader.agency.id}).all()
    return [{"delivery_id": d.id, "event_type": d.event_type, "flag_id": d.flag_id,
             "recipient": d.recipient_id, "status": d.status, "created_at": d.created_at,
             "acknowledge_by": d.acknowledge_by,
             "overdue": d.acknowledge_by is not None and d.acknowledge_by < now}
            for d in rows]
