"""Policy decisions as plain functions: may this agency publish, and who receives a flag."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import ValidationInfo

from api.policy.loader import Policy
from api.policy.schema import CategoryPolicy, PublishRule, ShareRule
from api.problems import ProblemError, invalid


@dataclass(frozen=True)
class LawfulBasis:
    article6: str
    article9: str | None = None
    dpa2018: str | None = None

    def cite(self) -> str:
        return " + ".join(p for p in (self.article6, self.article9, self.dpa2018) if p)


@dataclass(frozen=True)
class ChildContext:
    """What the policy needs to know about a child to decide who may receive its flags."""

    areas: frozenset[str]
    relationships: dict[str, frozenset[str]]  # agency id -> current relationship kinds
    age_years: int | None  # None when unknown; an unborn child counts as 0
    open_case: bool  # children's social care works with the child or holds a plan


@dataclass(frozen=True)
class Candidate:
    id: str
    kind: str
    area: str


@dataclass(frozen=True)
class RecipientDecision:
    agency_id: str
    shared: bool
    rule_id: str | None
    reason: str
    fields: tuple[str, ...] = ()
    acknowledge_within_hours: int | None = None


class PublishRefused(ProblemError):
    """403 naming the policy rule that does not allow the flag."""

    def __init__(self, rule: PublishRule, policy: Policy, detail: str):
        super().__init__(
            403,
            f"Policy rule {rule.id} (policy {policy.version}): {detail}",
            type_="https://flagshare.example/problems/policy-refused",
            extra={"policy_rule": rule.id, "policy_version": policy.version},
        )
        self.rule_id = rule.id


def category_policy(policy: Policy, category: str) -> CategoryPolicy:
    cat = policy.categories.get(category)
    if cat is None:
        raise invalid("category", unknown_category(policy, category))
    return cat


def unknown_category(policy: Policy, category: str) -> str:
    """Why a flag cannot be of this category, for a caller who must pick another."""
    return (f"unknown category {category!r}; the policy defines: "
            + ", ".join(sorted(policy.categories)))


def mash_fields(policy: Policy, category: str) -> frozenset[str]:
    """What a MASH practitioner is shown of a flag of this category: what the policy gives the
    MASH (every rule naming it as a recipient), or the summary alone where none does. A
    practitioner sees every flag of a child in scope, but never more of it than the
    agreements share: "minimise detail" holds at the front door too."""
    cat = policy.categories.get(category)
    rules = [rule for rule in (cat.share if cat else ()) if "mash" in rule.recipient_kinds]
    return frozenset({"summary"}.union(*(rule.fields for rule in rules)))


def known_category(category: str, info: ValidationInfo) -> str:
    """Pydantic validator of a field naming a category: one the policy in force defines
    (judged in context)."""
    if info.context is not None and category not in info.context.policy.categories:
        raise ValueError(unknown_category(info.context.policy, category))
    return category


def check_publish(
    policy: Policy, category: str, agency_kind: str, purpose: str, basis: LawfulBasis
) -> PublishRule:
    """The publish rule that allows this flag, or PublishRefused naming the rule that does not."""
    rule = category_policy(policy, category).publish
    if agency_kind not in rule.agency_kinds:
        raise PublishRefused(rule, policy, f"{agency_kind} agencies may not publish {category} "
                             f"(allowed: {', '.join(rule.agency_kinds)})")
    if purpose not in rule.purposes:
        raise PublishRefused(rule, policy, f"purpose {purpose} is not allowed for {category} "
                             f"(allowed: {', '.join(rule.purposes)})")
    lb = rule.lawful_basis
    if basis.article6 not in lb.article6:
        raise PublishRefused(rule, policy, f"lawful_basis.article6 {basis.article6} is not allowed "
                             f"for {category} (allowed: {', '.join(lb.article6)})")
    if basis.article9 is None and lb.article9_required:
        raise PublishRefused(rule, policy, f"{category} is special category data: lawful_basis."
                             f"article9 is required (one of: {', '.join(lb.article9)})")
    if basis.article9 is not None and lb.article9 and basis.article9 not in lb.article9:
        raise PublishRefused(rule, policy, f"lawful_basis.article9 {basis.article9} is not allowed "
                             f"for {category} (allowed: {', '.join(lb.article9)})")
    if basis.dpa2018 is not None and lb.dpa2018 and basis.dpa2018 not in lb.dpa2018:
        raise PublishRefused(rule, policy, f"lawful_basis.dpa2018 {basis.dpa2018} is not allowed "
                             f"for {category} (allowed: {', '.join(lb.dpa2018)})")
    return rule


def decide_recipients(
    policy: Policy,
    category: str,
    publisher_id: str,
    child: ChildContext,
    candidates: Iterable[Candidate],
) -> list[RecipientDecision]:
    """For each candidate agency, share or not, with the rule and the reason either way."""
    cat = category_policy(policy, category)
    decisions = []
    for agency in candidates:
        if agency.id == publisher_id:
            continue
        rules = [r for r in cat.share if agency.kind in r.recipient_kinds]
        if not rules:
            decisions.append(RecipientDecision(
                agency.id, False, None,
                f"the policy does not share {category} with {agency.kind} agencies"))
            continue
        passing, first_failure = [], None
        for rule in rules:
            failure = _rule_failure(rule, agency, child)
            if failure is None:
                passing.append(rule)
            elif first_failure is None:
                first_failure = (rule, failure)
        if not passing:
            rule, failure = first_failure
            decisions.append(RecipientDecision(agency.id, False, rule.id, failure))
            continue
        fields = sorted({f for r in passing for f in r.fields})
        ack = [r.acknowledge_within_hours for r in passing if r.acknowledge_within_hours]
        decisions.append(RecipientDecision(
            agency.id, True, passing[0].id, passing[0].why, tuple(fields),
            min(ack) if ack else cat.acknowledge_within_hours
            or policy.defaults.acknowledge_within_hours,
        ))
    return decisions


def share_rule_kinds(policy: Policy, category: str, scope: str) -> set[str]:
    """Recipient kinds the category's rules reach by the given scope."""
    return {k for r in category_policy(policy, category).share if r.scope == scope
            for k in r.recipient_kinds}


def _rule_failure(rule: ShareRule, agency: Candidate, child: ChildContext) -> str | None:
    if rule.scope == "area" and agency.area not in child.areas:
        return f"rule {rule.id} shares only within the areas where the child is known"
    if rule.scope == "relationship":
        kinds = child.relationships.get(agency.id)
        if kinds is None:
            return f"rule {rule.id} shares only with agencies working with the child"
        if rule.relationship_kinds and not kinds & set(rule.relationship_kinds):
            return (f"rule {rule.id} shares only with the child's "
                    + " or ".join(k.replace("_", " ") for k in rule.relationship_kinds))
    if rule.child_under_years is not None and (
        child.age_years is None or child.age_years >= rule.child_under_years
    ):
        return f"rule {rule.id} applies only to children under {rule.child_under_years}"
    if rule.only_if_open_case and not child.open_case:
        return f"rule {rule.id} applies only while children's social care has an open case"
    return None
