"""Publishing, reading, amending flags and recording sharing decisions.

Every decision cites the policy rule and policy version, and is written to the audit log in
the same transaction as the data it concerns.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import bindparam
from sqlmodel import Session, or_, select

from api.agencies.models import Agency
from api.audit import service as audit
from api.auth.principal import Principal
from api.children.access import check_listed_purpose
from api.db import get_locked, plain_rows, utcnow
from api.encoding import json_ready
from api.flags.models import Disclosure, Flag, FlagVersion, SharingDecision
from api.forwarding import service as forwarding
from api.forwarding.models import Delivery
from api.flags.schemas import DecisionCreate, FlagCreate, FlagUpdate
from api.households import service as households
from api.identity import service as identity
from api.identity.models import Person, PersonLink
from api.identity.scope import child_areas
from api.policy import rules
from api.policy.language import summary_warnings
from api.policy.loader import Policy
from api.policy.schema import AccessPolicy
from api.problems import ProblemError, invalid, not_found, validated
from api.reports import service as reports
from api.transfers.moves import check_for_move
from api.transfers.working_days import england_date
from api.validation import BodyContext

PLAN_CATEGORIES = ("child_protection_plan", "child_in_need", "looked_after_child")
MINIMUM_FIELDS = ["summary"]
# What a MASH practitioner with the child in scope reads: everything but the sharing lists.


def publish(session: Session, policy: Policy, agency: Agency, body: FlagCreate) -> dict:
    # Every bad field is a 422 before the policy decides: a refusal is recorded.
    body = validated(body, BodyContext(policy, session))
    basis = rules.LawfulBasis(**body.lawful_basis.model_dump())
    try:
        publish_rule = rules.check_publish(policy, body.category, agency.kind, body.purpose, basis)
    except rules.PublishRefused as refusal:
        # The refusal is itself a decision to record; nothing else is written.
        session.rollback()
        audit.record(session, actor=agency.id, actor_agency=agency.id, action="flag.refuse",
                     outcome="refused", purpose=body.purpose, lawful_basis=basis.cite(),
                     policy_rule=refusal.rule_id, policy_version=policy.version,
                     reason=refusal.detail)
        session.commit()
        raise
    child = identity.resolve_child(session, agency.id, body.subject)
    warnings = summary_warnings(body.summary, policy.plain_language)
    flag = Flag(child_id=child.id, publisher_id=agency.id, category=body.category,
                subject_nhs_number_given=body.subject.nhs_number is not None,
                subject_ethnicity_given=body.subject.ethnicity is not None)
    session.add(flag)
    session.flush()
    version = FlagVersion(
        flag_id=flag.id, version=1, status="active", severity=body.severity,
        summary=body.summary, details=body.details, occurred_at=body.occurred_at,
        period_start=body.period.start if body.period else None,
        period_end=body.period.end if body.period else None,
        purpose=body.purpose, article6=basis.article6, article9=basis.article9,
        dpa2018=basis.dpa2018, policy_rule=publish_rule.id, policy_version=policy.version,
        warnings=warnings, created_by=agency.id,
    )
    session.add(version)
    named = [related.id for related in identity.resolve_related(
        session, body.related_people, agency.id, child, "related_people")]
    for person, person_id in zip(body.related_people, named):
        identity.link_person(session, child.id, person_id, person.role, person.relationship,
                             agency.id, flag.id)
    audit.record(session, actor=agency.id, actor_agency=agency.id, action="flag.publish",
                 outcome="published", child_id=child.id, flag_id=flag.id, purpose=body.purpose,
                 lawful_basis=basis.cite(), policy_rule=publish_rule.id,
                 policy_version=policy.version)
    decisions, unsent = _decide_and_record(session, policy, flag, version, agency,
                                           previous={}, event_type="flag.shared")
    check_for_move(session, child.id, agency, f"flag:{body.category}")
    households.after_publish(session, policy, flag, version, named, agency)
    agencies = reports.newly_known_to_many(session, child.id, agency.id)
    if agencies and not child_context(session, child, agency.area).open_case:
        reports.tell_mash_known_to_many(session, child, agencies, agency.id)
    return _published(flag, version, decisions, unsent, warnings)


def amend(session: Session, policy: Policy, agency: Agency, flag_id: str,
          body: FlagUpdate) -> dict:
    """A new version with the change; everyone who had an earlier version hears of it."""
    # Locked, so that concurrent amendments queue and each numbers its version after the
    # one before.
    flag = own_flag(session, agency, flag_id, to="change a flag", locked=True)
    current = _version(session, flag)
    if current.status == "entered_in_error":
        raise ProblemError(409, "This flag was marked entered_in_error; it cannot change again.")
    data = current.model_dump(exclude={"version", "created_at", "created_by", "warnings"})
    if body.status is not None:
        data["status"] = body.status
    if body.period is not None:
        start = current.period_start
        if start is None:  # published without a period: none can be before its end
            start = min(_implied_start(flag, current), body.period.end)
        elif body.period.end < start:
            raise invalid("period.end", f"must not be before the period start, {start}")
        data["period_start"], data["period_end"] = start, body.period.end
    warnings = current.warnings
    if body.summary is not None:
        data["summary"] = body.summary
        warnings = summary_warnings(body.summary, policy.plain_language)
    version = FlagVersion(**data, version=current.version + 1, warnings=warnings,
                          created_by=agency.id)
    version.policy_version = policy.version
    flag.version, flag.status, flag.updated_at = version.version, version.status, utcnow()
    session.add(version)
    session.add(flag)
    audit.record(session, actor=agency.id, actor_agency=agency.id, action="flag.update",
                 outcome=f"version {version.version}", child_id=flag.child_id, flag_id=flag.id,
                 purpose=version.purpose, lawful_basis=_cite(version),
                 policy_rule=version.policy_rule, policy_version=policy.version)
    previous = {d.recipient_id: d for d in _shared_disclosures(session, flag.id)}
    decisions, unsent = _decide_and_record(session, policy, flag, version, agency, previous,
                                           event_type="flag.updated")
    return _published(flag, version, decisions, unsent, warnings)


def visible_flag(session: Session, policy: Policy, access: AccessPolicy, principal: Principal,
                 flag_id: str, *, purpose: str | None = None, reason: str | None = None) -> dict:
    """The flag as this caller may see it, or 404; every read is audited."""
    if principal.role in ("auditor", "admin"):
        raise ProblemError(403, "Auditors and administrators review the sharing log, not "
                           "flag content.")
    flag = session.get(Flag, flag_id)
    if flag is None:
        raise not_found("flag")
    version = _version(session, flag)
    fields: set[str] | None
    if principal.role == "agency_system" and principal.agency_id == flag.publisher_id:
        fields = None  # everything
    elif principal.role == "agency_system":
        disclosures = [d for d in _shared_disclosures(session, flag.id)
                       if d.recipient_id == principal.agency_id]
        if not disclosures:
            raise not_found("flag")
        fields = set(disclosures[-1].fields)
    else:  # mash_practitioner
        # Scope first: a flag out of scope answers as a missing one does, with or without a
        # purpose, so that the answer never tells that it exists.
        if not _mash_in_scope(session, principal, flag):
            raise not_found("flag")
        if not purpose or not reason:
            raise ProblemError(422, "A MASH practitioner states purpose and reason to read a "
                               "flag.", errors=[{"field": f, "message": "required"}
                                                for f, v in (("purpose", purpose),
                                                             ("reason", reason)) if not v])
        check_listed_purpose(access, purpose)
        fields = set(rules.mash_fields(policy, flag.category))
    out = _flag_out(session, flag, version, fields)
    if fields is None:
        out.update(_sharing_lists(session, flag, version))
    audit.record(session, actor=principal.actor, actor_agency=principal.agency_id,
                 action="flag.read", outcome="disclosed", child_id=flag.child_id,
                 flag_id=flag.id, purpose=purpose or version.purpose, reason=reason,
                 lawful_basis=_cite(version), policy_rule=version.policy_rule,
                 policy_version=version.policy_version)
    session.commit()
    return out


# Built once: the child view reads a chronology on every request. Bind parameters: child_id,
# agency_id, and ids (a list).
# Plain rows with the models' column names: no ORM objects to build for a read.
_FLAGS_OF_CHILD = (select(*Flag.__table__.c).where(Flag.child_id == bindparam("child_id"))
                   .order_by(Flag.created_at.desc(), Flag.id.desc()))
_SHARED_WITH = (select(Disclosure.flag_id, Disclosure.flag_version, Disclosure.fields).where(
    Disclosure.flag_id.in_(bindparam("ids", expanding=True)),
    Disclosure.recipient_id == bindparam("agency_id"), Disclosure.shared.is_(True))
    .order_by(Disclosure.flag_version, Disclosure.created_at))
_ALL_VERSIONS = (select(*FlagVersion.__table__.c)
                 .where(FlagVersion.flag_id.in_(bindparam("ids", expanding=True)))
                 .order_by(FlagVersion.version.desc()))
# The view's reads by child_id, not by a list of the flags' ids: a list is bound as one
# parameter per id, and the statement is rewritten for it on every execution (about 60 µs on
# SQLite, and on PostgreSQL a statement prepared anew for each length of list). Rows of flags
# the reader may not see are read and dropped.
_CURRENT_VERSIONS_OF_CHILD = (
    select(*FlagVersion.__table__.c)
    .join(Flag, (Flag.id == FlagVersion.flag_id) & (Flag.version == FlagVersion.version))
    .where(Flag.child_id == bindparam("child_id")))
_PEOPLE = (select(PersonLink.flag_id, PersonLink.person_id, PersonLink.role,
                  PersonLink.relationship, Person.nhs_number, Person.given_name,
                  Person.family_name, Person.birth_date)
           .join(Person, Person.id == PersonLink.person_id)
           .order_by(PersonLink.created_at, PersonLink.id))  # as the flag named them
_PEOPLE_NAMED = _PEOPLE.where(PersonLink.flag_id.in_(bindparam("ids", expanding=True)))
_PEOPLE_NAMED_ON_FLAGS_OF_CHILD = _PEOPLE.join(Flag, Flag.id == PersonLink.flag_id).where(
    Flag.child_id == bindparam("child_id"))


def shares_to(session: Session, flag_ids: list[str], agency_id: str):
    """(flag_id, flag_version, fields) of what each of these flags' versions shared with the
    agency, oldest version first: the last row of a flag is what the agency may now see."""
    return plain_rows(session, _SHARED_WITH, {"ids": flag_ids, "agency_id": agency_id})


def child_flags(session: Session, policy: Policy, child_id: str, agency_id: str | None, *,
                history: bool = False) -> list[dict]:
    """The child's flags as one chronology, newest first, each as this reader may see it.

    `agency_id` None is a MASH practitioner with the child in scope: every flag, with what the
    policy gives the MASH of its category (`rules.mash_fields`).
    An agency sees the flags it published in full and those shared with it with the fields its
    latest disclosure gave it; nothing else. Versions collapse to the current one unless
    `history` is asked for, which also shows flags entered in error.
    """
    flags = plain_rows(session, _FLAGS_OF_CHILD, {"child_id": child_id}).all()
    if not history:
        flags = [f for f in flags if f.status != "entered_in_error"]
    if not flags:
        return []
    fields: dict[str, frozenset[str] | None] = {}
    received: dict[str, set[int]] = {}
    if agency_id is None:
        fields = {f.id: rules.mash_fields(policy, f.category) for f in flags}
    else:
        for flag_id, version, shown in shares_to(session, [f.id for f in flags], agency_id):
            fields[flag_id] = frozenset(shown)
            received.setdefault(flag_id, set()).add(version)
        fields.update({f.id: None for f in flags if f.publisher_id == agency_id})
    flags = [f for f in flags if f.id in fields]
    if not flags:
        return []
    versions: dict[str, list] = {}
    for v in (plain_rows(session, _ALL_VERSIONS, {"ids": [f.id for f in flags]}) if history
              else plain_rows(session, _CURRENT_VERSIONS_OF_CHILD, {"child_id": child_id})):
        versions.setdefault(v.flag_id, []).append(v)
    related = _people_by_flag(plain_rows(session, _PEOPLE_NAMED_ON_FLAGS_OF_CHILD,
                                         {"child_id": child_id}))
    out = []
    for flag in flags:
        current, *older = versions[flag.id]
        seen = fields[flag.id]
        item = _flag_out(session, flag, current, seen, related=related.get(flag.id, []))
        if history:
            item["versions"] = [
                _flag_out(session, flag, v, seen, related=related.get(flag.id, []))
                for v in older
                if agency_id is None or seen is None or v.version in received[flag.id]]
        out.append(item)
    return out


def share_with_new_recipients(session: Session, policy: Policy, flag: Flag) -> list[str]:
    """Share an active flag with agencies now entitled to it that never had it — after two
    records of the child were merged, the kept record's GP or health visitor, say. Agencies
    that already had the flag are not sent it again."""
    version = _version(session, flag)
    if version.status != "active":
        return []
    child = session.get(Person, flag.child_id)
    publisher = session.get(Agency, flag.publisher_id)
    context = child_context(session, child, publisher.area)
    had = {d.recipient_id for d in _shared_disclosures(session, flag.id)}
    decisions = [d for d in rules.decide_recipients(
        policy, flag.category, publisher.id, context,
        _candidates(session, policy, flag.category, context))
        if d.shared and d.agency_id not in had]
    event = forwarding.new_event()
    for d in decisions:
        _disclose(session, policy, flag, version, d.agency_id, True, d.reason, d.rule_id,
                  list(d.fields), d.acknowledge_within_hours, event=event,
                  event_type="flag.shared", child=child, areas=context.areas)
    return [d.agency_id for d in decisions]


def record_decision(session: Session, policy: Policy, principal: Principal, flag_id: str,
                    body: DecisionCreate) -> SharingDecision:
    body = validated(body, BodyContext(policy, session))
    flag = session.get(Flag, flag_id)
    if flag is None or not _can_see(session, principal, flag):
        raise not_found("flag")
    recipient = session.get(Agency, body.recipient) if body.recipient is not None else None
    if body.decision == "share" and not _may_share_further(session, principal, flag):
        raise ProblemError(403, "Sharing a flag further is decided by its publisher, children's "
                           "social care or the MASH: ask them, or record a decision not to "
                           "share.")
    if body.decision == "share" and recipient is not None and recipient.disabled:
        raise invalid("recipient", f"agency {recipient.id} is disabled: nothing is shared with "
                      "it until an administrator enables it again")
    version = _version(session, flag)
    decision = SharingDecision(flag_id=flag.id, decision=body.decision,
                               recipient_id=body.recipient, reason=body.reason,
                               decided_by=principal.actor, decided_by_agency=principal.agency_id)
    session.add(decision)
    audit.record(session, actor=principal.actor, actor_agency=principal.agency_id,
                 action="decision.record", outcome=body.decision, child_id=flag.child_id,
                 flag_id=flag.id, recipient=body.recipient, reason=body.reason,
                 purpose=version.purpose, lawful_basis=_cite(version),
                 policy_version=policy.version)
    if body.decision == "share" and recipient is not None and recipient.id != flag.publisher_id:
        already = [d for d in _shared_disclosures(session, flag.id)
                   if d.recipient_id == recipient.id and d.flag_version == version.version]
        if not already:
            child = session.get(Person, flag.child_id)
            _disclose(session, policy, flag, version, recipient.id, True,
                      f"practitioner decision: {body.reason}", None, MINIMUM_FIELDS,
                      policy.defaults.acknowledge_within_hours, event=forwarding.new_event(),
                      event_type="flag.shared", child=child, areas=[recipient.area])
    session.flush()
    return decision


# --- helpers -----------------------------------------------------------------------------

def _decide_and_record(session, policy, flag, version, publisher, previous, event_type):
    """Decide each recipient, record the decision, and queue a delivery for each share.
    Returns the decisions, and the recipients entitled but not sent it (see NOT_SENT)."""
    child = session.get(Person, flag.child_id)
    context = child_context(session, child, publisher.area)
    candidates = _candidates(session, policy, flag.category, context)
    decisions = rules.decide_recipients(policy, flag.category, publisher.id, context, candidates)
    decided = {d.agency_id for d in decisions}
    for d in list(decisions):
        if not d.shared and d.agency_id in previous:
            # Whoever had an earlier version must hear of a change, above all an error.
            earlier = previous[d.agency_id]
            decisions.remove(d)
            decisions.append(rules.RecipientDecision(
                d.agency_id, True, earlier.policy_rule,
                "received an earlier version of this flag", tuple(earlier.fields)))
    for agency_id, earlier in previous.items():
        if agency_id not in decided:
            decisions.append(rules.RecipientDecision(
                agency_id, True, earlier.policy_rule, "received an earlier version of this flag",
                tuple(earlier.fields)))
    event = forwarding.new_event()
    shares = [d for d in decisions if d.shared]
    # Read once for every recipient: who is named on the flag, and how each is subscribed.
    related = (_related_people(session, [flag.id]).get(flag.id, [])
               if any("related_people" in d.fields for d in shares) else None)
    subscriptions = forwarding.active_subscriptions(session, [d.agency_id for d in shares])
    unsent = set()
    for d in decisions:
        delivery = _disclose(session, policy, flag, version, d.agency_id, d.shared, d.reason,
                             d.rule_id, list(d.fields), d.acknowledge_within_hours,
                             event=event, event_type=event_type, child=child,
                             areas=context.areas, related=related,
                             subscriptions=subscriptions.get(d.agency_id, []))
        if d.shared and delivery is None:
            unsent.add(d.agency_id)
    return decisions, unsent


def _disclose(session, policy, flag, version, recipient_id, shared, reason, rule_id, fields,
              ack_hours, *, event, event_type, child, areas, related=None,
              subscriptions=None):
    """Record one recipient decision; a share also goes to the outbox in this transaction.
    `related` and `subscriptions` are read here unless the caller, deciding for many
    recipients, read them once for all. Returns the share's delivery, None if the recipient's
    subscriptions select neither the flag's category nor its areas."""
    now = utcnow()
    disclosure = Disclosure(
        flag_id=flag.id, flag_version=version.version, recipient_id=recipient_id, shared=shared,
        reason=reason, policy_rule=rule_id, policy_version=policy.version, fields=fields,
        acknowledge_by=now + timedelta(hours=ack_hours) if shared and ack_hours else None,
    )
    session.add(disclosure)
    delivery = None
    if shared:
        data = {
            "flag": _flag_out(session, flag, version, set(fields), related=related),
            "child": _child_identity(child),
            "shared_under": {"policy_rule": rule_id, "policy_version": policy.version,
                             "reason": reason, "fields": fields,
                             "acknowledge_by": disclosure.acknowledge_by},
        }
        delivery = forwarding.enqueue(
            session, event=event, event_type=event_type, recipient_id=recipient_id,
            data=json_ready(data), category=flag.category, areas=areas, flag_id=flag.id,
            disclosure_id=disclosure.id, acknowledge_by=disclosure.acknowledge_by,
            subscriptions=subscriptions)
    audit.record(session, actor=flag.publisher_id, actor_agency=flag.publisher_id,
                 action="flag.disclose" if shared else "flag.withhold",
                 outcome="shared" if shared else "not_shared", child_id=flag.child_id,
                 flag_id=flag.id, recipient=recipient_id, purpose=version.purpose,
                 lawful_basis=_cite(version), policy_rule=rule_id,
                 policy_version=policy.version, reason=reason)
    return delivery


# Built once: read on every flag published.
_AN_ACTIVE_PLAN = (select(Flag.id).where(Flag.child_id == bindparam("child_id"),
                                         Flag.status == "active",
                                         Flag.category.in_(PLAN_CATEGORIES)).limit(1))


def child_context(session: Session, child: Person, publisher_area: str) -> rules.ChildContext:
    """Areas where the child is known, who works with it, its age, and whether CSC is open."""
    relationships: dict[str, set[str]] = {}
    areas = {publisher_area}
    open_case = False
    for r in identity.current_relationships(session, child.id):
        relationships.setdefault(r.agency_id, set()).add(r.kind)
        areas.add(r.agency_area)
        open_case = open_case or r.agency_kind == "childrens_social_care"
    if not open_case:
        open_case = session.exec(_AN_ACTIVE_PLAN,
                                 params={"child_id": child.id}).first() is not None
    return rules.ChildContext(
        areas=frozenset(areas),
        relationships={k: frozenset(v) for k, v in relationships.items()},
        age_years=identity.age_in_years(child),
        open_case=open_case,
    )


def _candidates(session, policy, category, context: rules.ChildContext):
    """Agencies working with the child, and area-wide recipients the category's rules name."""
    area_kinds = rules.share_rule_kinds(policy, category, "area")
    conditions = []
    if context.relationships:
        conditions.append(Agency.id.in_(list(context.relationships)))
    if area_kinds:
        conditions.append(Agency.area.in_(list(context.areas)) & Agency.kind.in_(area_kinds))
    if not conditions:
        return []
    rows = session.exec(select(Agency).where(or_(*conditions), Agency.disabled.is_(False))
                        .order_by(Agency.id)).all()
    return [rules.Candidate(a.id, a.kind, a.area) for a in rows]


# Reviews found agencies acting on the belief that another had been told. A recipient the
# policy entitles may narrow its subscriptions so that a flag is not sent to it; the publisher
# must not read `shared_with` as "they know".
NOT_SENT = ("entitled, and may read it here, but its subscriptions select neither this "
            "category nor this area, so it was not sent: tell it another way if it must know")


def _published(flag, version, decisions, unsent, warnings) -> dict:
    return {
        "id": flag.id, "child_id": flag.child_id, "version": version.version,
        "status": version.status,
        "shared_with": sorted(d.agency_id for d in decisions if d.shared),
        "not_shared": [{"agency": d.agency_id, "reason": d.reason}
                       for d in sorted(decisions, key=lambda d: d.agency_id) if not d.shared],
        "not_sent": [{"agency": a, "reason": NOT_SENT} for a in sorted(unsent)],
        "warnings": warnings, "policy_rule": version.policy_rule,
        "policy_version": version.policy_version,
    }


def own_flag(session: Session, agency: Agency, flag_id: str, *, to: str,
             locked: bool = False) -> Flag:
    """The calling agency's own flag, for what only its publisher may do (`to`): not found
    for an agency that cannot see it, 403 for a recipient, who knows that it exists.
    `locked`: until commit (PostgreSQL; SQLite serialises writers already)."""
    flag = get_locked(session, Flag, flag_id) if locked else session.get(Flag, flag_id)
    if flag is None or not _agency_can_see(session, agency.id, flag):
        raise not_found("flag")
    if flag.publisher_id != agency.id:
        raise ProblemError(403, f"Only the publishing agency may {to}.")
    return flag


def _implied_start(flag: Flag, version: FlagVersion) -> date:
    """Where the period of a flag published without one starts, once it is given an end (if
    that end is not earlier still: a flag closed in the publisher's own record before it
    reached flagshare, say): the day what it records happened, or the day it was published if
    that is earlier (or unknown). Days in England, as every deadline here counts them."""
    published = england_date(flag.created_at)
    return min(published, england_date(version.occurred_at)) if version.occurred_at else published


def _version(session, flag) -> FlagVersion:
    return session.get(FlagVersion, (flag.id, flag.version))


def _shared_disclosures(session, flag_id) -> list[Disclosure]:
    return list(session.exec(select(Disclosure).where(
        Disclosure.flag_id == flag_id, Disclosure.shared.is_(True))
        .order_by(Disclosure.flag_version, Disclosure.created_at)).all())


def _can_see(session, principal: Principal, flag: Flag) -> bool:
    if principal.role == "agency_system":
        return _agency_can_see(session, principal.agency_id, flag)
    if principal.role == "mash_practitioner":
        return _mash_in_scope(session, principal, flag)
    return False


def _may_share_further(session, principal: Principal, flag: Flag) -> bool:
    """Who may pass a flag on beyond what the policy entitles: its publisher, whose
    information it is; the MASH; and children's social care, which leads the enquiries.
    Any other recipient passing it on would let information travel where neither its
    publisher nor the policy sent it, hop by hop."""
    if principal.role == "mash_practitioner" or principal.agency_id == flag.publisher_id:
        return True
    return session.get(Agency, principal.agency_id).kind == "childrens_social_care"


def _agency_can_see(session, agency_id: str, flag: Flag) -> bool:
    return agency_id == flag.publisher_id or any(
        d.recipient_id == agency_id for d in _shared_disclosures(session, flag.id))


def _mash_in_scope(session, principal: Principal, flag: Flag) -> bool:
    """A MASH practitioner sees flags about children linked to their own area (the same scope
    as the child's whole record): worked with there, flagged there, or transferred to or from
    it."""
    if not principal.area:
        return False
    publisher = session.get(Agency, flag.publisher_id)
    return publisher.area == principal.area or principal.area in child_areas(session,
                                                                             flag.child_id)


def _cite(version: FlagVersion) -> str:
    return rules.LawfulBasis(version.article6, version.article9, version.dpa2018).cite()


def _sharing_lists(session, flag, version) -> dict:
    rows = session.exec(select(Disclosure).where(
        Disclosure.flag_id == flag.id, Disclosure.flag_version == version.version)).all()
    sent = set(session.exec(select(Delivery.disclosure_id).where(
        Delivery.disclosure_id.in_([d.id for d in rows if d.shared]))).all())
    return {
        "shared_with": sorted(d.recipient_id for d in rows if d.shared),
        "not_shared": [{"agency": d.recipient_id, "reason": d.reason}
                       for d in sorted(rows, key=lambda d: d.recipient_id) if not d.shared],
        "not_sent": [{"agency": d.recipient_id, "reason": NOT_SENT}
                     for d in sorted(rows, key=lambda d: d.recipient_id)
                     if d.shared and d.id not in sent],
    }


def _child_identity(child: Person) -> dict:
    """Enough for a recipient to match the child in its own records."""
    return {
        "child_id": child.id, "nhs_number": child.nhs_number, "given_name": child.given_name,
        "family_name": child.family_name, "birth_date": child.birth_date,
        "unborn": child.unborn, "mother_nhs_number": child.mother_nhs_number,
        "expected_delivery_date": child.expected_delivery_date,
    }


def _related_people(session, flag_ids: list[str]) -> dict[str, list[dict]]:
    """The people named on each flag, for many flags in one query."""
    if not flag_ids:
        return {}
    return _people_by_flag(plain_rows(session, _PEOPLE_NAMED, {"ids": flag_ids}))


def _people_by_flag(rows) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row.flag_id, []).append(
            {"person_id": row.person_id, "role": row.role, "relationship": row.relationship,
             "nhs_number": row.nhs_number, "given_name": row.given_name,
             "family_name": row.family_name, "birth_date": row.birth_date})
    return out


def _flag_out(session, flag: Flag, version: FlagVersion, fields: set[str] | None, *,
              related: list[dict] | None = None) -> dict:
    def allowed(name: str) -> bool:
        return fields is None or name in fields

    out = {
        "id": flag.id, "child_id": flag.child_id, "publisher": flag.publisher_id,
        "category": flag.category, "version": version.version, "status": version.status,
        "severity": version.severity, "summary": version.summary,
        "purpose": version.purpose,
        "lawful_basis": {"article6": version.article6, "article9": version.article9,
                         "dpa2018": version.dpa2018},
        "policy_rule": version.policy_rule, "policy_version": version.policy_version,
        "created_at": flag.created_at, "updated_at": flag.updated_at,
    }
    if fields is None:
        out["warnings"] = version.warnings
    if allowed("details"):
        out["details"] = version.details
    if allowed("occurred_at"):
        out["occurred_at"] = version.occurred_at
    if allowed("period") and version.period_start:
        out["period"] = {"start": version.period_start, "end": version.period_end}
    if allowed("related_people"):
        out["related_people"] = (related if related is not None
                                 else _related_people(session, [flag.id]).get(flag.id, []))
    return out
