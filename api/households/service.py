"""Risk that follows an adult into another child's household, and siblings of children on a
plan.

Both are alerts, not shares: `household.risk_joined` names the earlier flags' categories,
dates and publishers so that the new household's agencies know a history exists and whom to
ask; `sibling.flagged` tells a plan owner that a brother or sister has come to notice. Which
categories travel, to whom and under which lawful basis is the policy's (policies/household.yaml).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from sqlalchemy import bindparam, func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from sqlmodel import Session, select

from api.agencies.models import Agency
from api.audit import service as audit
from api.encoding import rfc3339
from api.forwarding import service as forwarding
from api.flags.models import Flag, FlagVersion
from api.households.models import RiskAlert
from api.identity.models import Person, PersonLink
from api.identity.scope import child_areas
from api.households.schemas import HouseholdCreate
from api.identity.service import (
    current_relationships, link_person, resolve_child, resolve_related,
)
from api.policy.loader import Policy
from api.policy.schema import HouseholdRiskRule, SiblingRule
from api.transfers.moves import check_for_move
from api.transfers.notify import area_agencies


@dataclass(frozen=True)
class Actor:
    """Who caused an alert: an agency system, or a person acting for one."""

    sub: str
    agency_id: str | None


@dataclass(frozen=True)
class HistoryItem:
    """One flag that gives an adult a risk history: what may be told of it, and no more."""

    flag_id: str
    child_id: str
    category: str
    role: str | None  # the adult's role on it; None when recalled from what was told
    on: date
    publisher: Agency

    def told(self) -> dict:
        return {"flag_id": self.flag_id, "category": self.category, "role": self.role,
                "date": self.on.isoformat(), "publisher": self.publisher.id,
                "publisher_name": self.publisher.name, "publisher_kind": self.publisher.kind,
                "publisher_area": self.publisher.area}


def record_household(session: Session, policy: Policy, agency: Agency,
                     body: HouseholdCreate) -> tuple[Person, list[tuple[PersonLink, bool]]]:
    """An agency records who lives with or parents a child, without a flag.

    A person already linked to the child in the same role is not linked again, but is
    reviewed again: history the policy did not let travel before may travel now.
    """
    child = resolve_child(session, agency.id, body.subject)
    links = []
    for named, person in zip(body.people, resolve_related(session, body.people, agency.id,
                                                          child, "people")):
        existing = session.exec(select(PersonLink).where(
            PersonLink.child_id == child.id, PersonLink.person_id == person.id,
            PersonLink.role == named.role, PersonLink.flag_id.is_(None))).first()
        if existing is not None:
            links.append((existing, False))
            continue
        links.append((link_person(session, child.id, person.id, named.role,
                                  named.relationship, agency.id), True))
    check_for_move(session, child.id, agency, "household")
    review_people(session, policy, [link.person_id for link, _ in links],
                  Actor(agency.id, agency.id))
    return child, links


def after_publish(session: Session, policy: Policy, flag: Flag, version: FlagVersion,
                  people: Iterable[str], publisher: Agency) -> None:
    """A new flag may link an adult with a history to this child, give the people it names
    a history that reaches their other households, and concern a sibling of a child on a plan.
    """
    actor = Actor(publisher.id, publisher.id)
    review_people(session, policy, people, actor)
    review_siblings(session, policy, flag.child_id, actor, trigger="flagged",
                    flag=(flag, version, publisher))


def review_people(session: Session, policy: Policy, person_ids: Iterable[str],
                  actor: Actor) -> None:
    """Tell each child's agencies of any history of these people they have not been told."""
    rule = policy.household_risk
    if rule is None:
        return
    for person_id, links in joined_children(session, rule, person_ids).items():
        # A child is never told of its own flags: with one child joined, only history about
        # other children can be untold, and an adult flagged again and again about the same
        # child has none to read.
        history = risk_history(session, rule, person_id,
                               not_about=links[0].child_id if len(links) == 1 else None)
        for link in links:
            untold = [h for h in history if h.child_id != link.child_id]
            _raise_risk_joined(session, rule, link, untold, actor)


def risk_history(session: Session, rule: HouseholdRiskRule, person_id: str,
                 not_about: str | None = None) -> list[HistoryItem]:
    """Flags naming the person in a role the policy lets travel, oldest first, each once;
    without those about the child `not_about`, if given."""
    query = _HISTORY if not_about is None else _HISTORY_NOT_ABOUT
    rows = session.exec(query, params={"person_id": person_id, "categories": list(rule.history),
                                       "not_about": not_about}).all()
    items: dict[str, HistoryItem] = {}
    for role, flag, version, publisher in rows:
        if role in rule.history[flag.category] and flag.id not in items:
            items[flag.id] = _item(flag, version, publisher, role)
    return list(items.values())


def told_for_child(session: Session, child_id: str) -> list[dict]:
    """What this child's agencies were told of household members' histories, newest first."""
    rows = session.exec(_TOLD_FOR_CHILD, params={"child_id": child_id}).all()
    return [{"person_id": alert.person_id, "told_at": alert.created_at,
             **_item(flag, version, publisher, None).told()}
            for alert, flag, version, publisher in rows]


def _history_query(first):
    return (select(first, Flag, FlagVersion, Agency)
            .select_from(Flag)
            .join(FlagVersion, (FlagVersion.flag_id == Flag.id)
                  & (FlagVersion.version == Flag.version))
            .join(Agency, Agency.id == Flag.publisher_id))


# The person's links, read first and on their own (MATERIALIZED: the planner may not fold
# them into the join). Joined freely, PostgreSQL read every flag of the travelling categories
# and kept the person's few whenever its statistics still described a smaller flag table.
_NAMED_ON = (select(PersonLink.flag_id, PersonLink.role)
             .where(PersonLink.person_id == bindparam("person_id")).cte("named_on")
             .prefix_with("MATERIALIZED"))
# Built once: the history is read on every publish naming an adult, what a child was told on
# every MASH view of a child.
_HISTORY = (_history_query(_NAMED_ON.c.role).join(_NAMED_ON, _NAMED_ON.c.flag_id == Flag.id)
            .where(Flag.status != "entered_in_error",
                   Flag.category.in_(bindparam("categories", expanding=True)))
            .order_by(Flag.created_at, Flag.id))
_HISTORY_NOT_ABOUT = _HISTORY.where(Flag.child_id != bindparam("not_about"))
_TOLD_FOR_CHILD = (_history_query(RiskAlert).join(RiskAlert, RiskAlert.history_flag_id == Flag.id)
                   .where(RiskAlert.child_id == bindparam("child_id"))
                   .order_by(RiskAlert.created_at.desc(), RiskAlert.id))


def _item(flag: Flag, version: FlagVersion, publisher: Agency, role: str | None) -> HistoryItem:
    on = (version.occurred_at.date() if version.occurred_at
          else version.period_start or flag.created_at.date())
    return HistoryItem(flag.id, flag.child_id, flag.category, role, on, publisher)


def joined_children(session: Session, rule: HouseholdRiskRule,
                    person_ids: Iterable[str]) -> dict[str, list[PersonLink]]:
    """For each person with any, their first link to each current child record in a joining
    role, in the order the links were made.

    Every flag naming a person links them again, so the first link per child is picked in
    the database: an adult named on many flags costs one row per child, not one per flag."""
    joined: dict[str, list[PersonLink]] = {}
    for link in session.exec(_JOINED_CHILDREN, params={"person_ids": list(person_ids),
                                                       "roles": list(rule.joined_as)}):
        joined.setdefault(link.person_id, []).append(link)
    return joined


def siblings_of(session: Session, rule: SiblingRule, child_id: str) -> set[str]:
    """Children sharing a parent or household member with the child, or named as its sibling."""
    return set(session.exec(_SIBLINGS, params={"child_id": child_id,
                                               "roles": list(rule.linked_as)}).all())


def _first_links():
    """The first link each person has to each current child record, in a joining role:
    links numbered per person and child in the order they were made (read through the
    person's index alone), then the first of each kept if its child was not merged away."""
    links = (select(PersonLink, func.row_number().over(
        partition_by=(PersonLink.person_id, PersonLink.child_id),
        order_by=(PersonLink.created_at, PersonLink.id)).label("nth"))
        .where(PersonLink.person_id.in_(bindparam("person_ids", expanding=True)),
               PersonLink.role.in_(bindparam("roles", expanding=True)))
        .subquery())
    link = aliased(PersonLink, links)
    return (select(link).join(Person, Person.id == link.child_id)
            .where(links.c.nth == 1, Person.merged_into_id.is_(None))
            .order_by(link.created_at, link.id))


def _siblings():
    """Through a shared adult in one of the roles, or named as a sibling either way; current
    records only, never the child itself."""
    roles = bindparam("roles", expanding=True)
    child_id = bindparam("child_id")
    shared = select(PersonLink.person_id).where(PersonLink.child_id == child_id,
                                                PersonLink.role.in_(roles))
    through_adults = select(PersonLink.child_id).where(PersonLink.person_id.in_(shared),
                                                       PersonLink.role.in_(roles))
    named = select(PersonLink.person_id).where(PersonLink.child_id == child_id,
                                               PersonLink.role == "sibling")
    naming = select(PersonLink.child_id).where(PersonLink.person_id == child_id,
                                               PersonLink.role == "sibling")
    return select(Person.id).where(Person.id.in_(through_adults.union(named, naming)),
                                   Person.id != child_id, Person.merged_into_id.is_(None))


# Built once: they run on every publish.
_JOINED_CHILDREN = _first_links()
_SIBLINGS = _siblings()
_SIBLINGS_PLANS = (select(Flag, Agency).join(Agency, Agency.id == Flag.publisher_id)
                   .where(Flag.child_id.in_(bindparam("ids", expanding=True)),
                          Flag.status == "active",
                          Flag.category.in_(bindparam("categories", expanding=True)))
                   .order_by(Flag.created_at, Flag.id))


def review_siblings(session: Session, policy: Policy, child_id: str, actor: Actor, *,
                    trigger: str, flag: tuple[Flag, FlagVersion, Agency] | None = None) -> None:
    """Tell the owner of each sibling's active plan that this child was flagged or born."""
    rule = policy.siblings
    if rule is None:
        return
    siblings = siblings_of(session, rule, child_id)
    if not siblings:
        return
    plans = session.exec(_SIBLINGS_PLANS, params={"ids": list(siblings),
                                                  "categories": list(rule.plan_categories)}).all()
    by_owner: dict[str, tuple[Agency, list[dict]]] = {}
    for plan, owner in plans:
        if owner.id == actor.agency_id:
            continue  # the owner flagged the sibling itself
        by_owner.setdefault(owner.id, (owner, []))[1].append(
            {"child_id": plan.child_id, "category": plan.category, "plan_flag_id": plan.id})
    if not by_owner:
        return
    child = session.get(Person, child_id)
    data = {"child": _identity(child, "child_id"), "trigger": trigger, "policy_rule": rule.id,
            "purpose": rule.purpose, "lawful_basis": rule.lawful_basis.model_dump()}
    if flag is not None:
        sibling_flag, version, publisher = flag
        data["flag"] = {"flag_id": sibling_flag.id, "category": sibling_flag.category,
                        "severity": version.severity,
                        "published_at": rfc3339(sibling_flag.created_at),
                        "publisher": publisher.id, "publisher_name": publisher.name,
                        "publisher_area": publisher.area}
    event = forwarding.new_event()
    for owner, owned in by_owner.values():
        if forwarding.enqueue(session, event=event, event_type="sibling.flagged",
                              recipient_id=owner.id, data={**data, "plans": owned},
                              areas=[owner.area]) is None:
            continue  # nothing was sent, so nothing was disclosed
        audit.record(session, actor=actor.sub, actor_agency=actor.agency_id,
                     action="alert.disclose", outcome="sibling.flagged", child_id=child_id,
                     flag_id=flag[0].id if flag else None, recipient=owner.id,
                     purpose=rule.purpose, lawful_basis=rule.lawful_basis.cite(),
                     policy_rule=rule.id, policy_version=policy.version)


def _raise_risk_joined(session: Session, rule: HouseholdRiskRule, link: PersonLink,
                       history: list[HistoryItem], actor: Actor) -> None:
    """One event per adult and child naming only history this child's agencies were not told."""
    if not history:
        return
    event = forwarding.new_event()
    told = set(session.exec(select(RiskAlert.history_flag_id).where(
        RiskAlert.person_id == link.person_id, RiskAlert.child_id == link.child_id)).all())
    untold = [item for item in history if item.flag_id not in told
              and _claim(session, link.person_id, link.child_id, item.flag_id, event.id)]
    if not untold:
        return
    recipients, areas = _risk_recipients(session, rule, link)
    person = session.get(Person, link.person_id)
    child = session.get(Person, link.child_id)
    data = {
        "child": _identity(child, "child_id"), "areas": sorted(areas),
        "person": {**_identity(person, "person_id"), "joined_as": link.role,
                   "relationship": link.relationship, "recorded_by": link.agency_id},
        "history": [item.told() for item in untold],
        "purpose": rule.purpose, "lawful_basis": rule.lawful_basis.model_dump(),
        "policy_rule": rule.id,
        "next_step": "Ask each publisher for what you need through your information-sharing "
                     "route, quoting the flag_id; this alert carries no details.",
    }
    basis = rule.lawful_basis.cite()
    for recipient in recipients:
        if forwarding.enqueue(session, event=event, event_type="household.risk_joined",
                              recipient_id=recipient, data=data, areas=areas) is None:
            continue  # nothing was sent, so nothing was disclosed
        audit.record(session, actor=actor.sub, actor_agency=actor.agency_id,
                     action="alert.disclose", outcome="household.risk_joined",
                     child_id=child.id, recipient=recipient, purpose=rule.purpose,
                     lawful_basis=basis, policy_rule=rule.id,
                     reason=f"adult {person.id} linked as {link.role}")
        for item in untold:  # the fact of the earlier flag left its child's record too
            audit.record(session, actor=actor.sub, actor_agency=actor.agency_id,
                         action="alert.disclose", outcome="household.risk_joined",
                         child_id=item.child_id, flag_id=item.flag_id, recipient=recipient,
                         purpose=rule.purpose, lawful_basis=basis, policy_rule=rule.id,
                         reason=f"category, date and publisher told to the agencies of "
                                f"child {child.id}")


def _risk_recipients(session: Session, rule: HouseholdRiskRule,
                     link: PersonLink) -> tuple[list[str], set[str]]:
    """The child's area agencies of the policy's kinds, and its own GP or health visitor where
    the policy names them."""
    areas = child_areas(session, link.child_id)
    recipients = [a for area in sorted(areas) for a in area_agencies(session, area,
                                                                     rule.area_kinds)]
    recipients += [r.agency_id for r in current_relationships(session, link.child_id)
                   if r.kind in rule.relationship_kinds and not r.agency_disabled]
    return list(dict.fromkeys(recipients)), areas


def _claim(session: Session, person_id: str, child_id: str, flag_id: str, event_id: str) -> bool:
    """Record that this history flag is told to this child's agencies; False if another
    request told it first."""
    try:
        with session.begin_nested():
            session.add(RiskAlert(person_id=person_id, child_id=child_id,
                                  history_flag_id=flag_id, event_id=event_id))
        return True
    except IntegrityError:  # told concurrently by another request
        return False


def _identity(person: Person, id_key: str) -> dict:
    """Who the alert is about, enough to find the person in the recipient's own records; the
    id named as every event and view names it (`child_id` for a child, `person_id` for
    anyone else)."""
    return {id_key: person.id, "nhs_number": person.nhs_number,
            "given_name": person.given_name, "family_name": person.family_name,
            "birth_date": person.birth_date.isoformat() if person.birth_date else None,
            "unborn": person.unborn,
            "expected_delivery_date": (person.expected_delivery_date.isoformat()
                                       if person.expected_delivery_date else None)}
