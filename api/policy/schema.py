"""The shape of an information-sharing agreement held as data in `policies/`.

Every file in the policy directory is one YAML document with any of the top-level keys of
`PolicyFile`; the files are merged into one `Policy`. Unknown keys are errors, so a typo in a
partnership's agreement stops start-up instead of silently widening or narrowing sharing.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

AgencyKind = Literal[
    "gp",
    "midwifery",
    "health_visiting",
    "police",
    "childrens_social_care",
    "education",
    "ambulance",
    "adult_social_care",
    "mental_health",
    "substance_misuse",
    "youth_justice",
    "housing",
    "mash",
]
AGENCY_KINDS = get_args(AgencyKind)
Purpose = Literal["safeguarding", "child_protection", "early_help", "care_planning"]
RelationshipKind = Literal[
    "registered_gp", "school", "health_visitor", "allocated_social_worker", "midwife", "other"
]
# Parts of a flag a recipient may be given; `summary` and the coded fields always travel.
SharedField = Literal["summary", "details", "related_people", "period", "occurred_at"]
AREA_CODE = re.compile(r"^E(06|08|09|10)\d{6}$")
RULE_ID = re.compile(r"^[A-Z][A-Z0-9-]{1,39}$")
# Every decision cites its rule, so a rule must say why it exists.
Why = Annotated[str, Field(min_length=1, pattern=r"\S")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Area(_Strict):
    code: str
    name: str

    @field_validator("code")
    @classmethod
    def _ons_code(cls, v: str) -> str:
        if not AREA_CODE.match(v):
            raise ValueError("must be an ONS code E06/E08/E09/E10 followed by six digits")
        return v


class LawfulBasisRule(_Strict):
    """Which UK GDPR / DPA 2018 grounds a publisher may cite for a category."""

    article6: list[str] = Field(min_length=1)
    # Empty means no Article 9 condition is needed (no special category data expected);
    # `article9_required` forces the publisher to cite one of them.
    article9: list[str] = []
    article9_required: bool = False
    dpa2018: list[str] = []


class PublishRule(_Strict):
    id: str
    why: Why
    agency_kinds: list[AgencyKind] = Field(min_length=1)
    purposes: list[Purpose] = Field(min_length=1)
    lawful_basis: LawfulBasisRule

    _check_id = field_validator("id")(lambda cls, v: _rule_id(v))


class ShareRule(_Strict):
    """One class of recipient entitled to a category, and what it is given."""

    id: str
    why: Why
    recipient_kinds: list[AgencyKind] = Field(min_length=1)
    # area: any such agency in an area where the child is known;
    # relationship: only such agencies that hold a current relationship with the child.
    scope: Literal["area", "relationship"]
    relationship_kinds: list[RelationshipKind] = []
    fields: list[SharedField] = ["summary"]
    # Conditions that narrow the rule.
    child_under_years: int | None = None
    only_if_open_case: bool = False
    acknowledge_within_hours: int | None = Field(default=None, ge=1)

    _check_id = field_validator("id")(lambda cls, v: _rule_id(v))


class CategoryPolicy(_Strict):
    description: str
    publish: PublishRule
    share: list[ShareRule] = []
    acknowledge_within_hours: int | None = Field(default=None, ge=1)
    retention_years: int | None = Field(default=None, ge=1)


class PlainLanguageTerm(_Strict):
    term: str
    say_instead: str


class PlainLanguage(_Strict):
    """Terms that make a summary lose its meaning for another discipline."""

    jargon: list[PlainLanguageTerm] = []
    generic_reassurance: list[str] = []
    min_summary_words: int = Field(default=6, ge=1)


class Defaults(_Strict):
    acknowledge_within_hours: int = Field(default=72, ge=1)
    transfer_pickup_working_days: int = Field(default=15, ge=1)
    transfer_alert_repeat_working_days: int = Field(default=1, ge=1)
    retention_years: int = Field(default=25, ge=1)


class SilentRead(_Strict):
    """A read that does not notify the owning children's social care, e.g. the child's own GP.

    Every condition given must hold: the reading agency is of one of `agency_kinds` and holds
    a current relationship of one of `relationship_kinds` with the child.
    """

    id: str
    why: Why
    agency_kinds: list[AgencyKind] = []
    relationship_kinds: list[RelationshipKind] = []

    _check_id = field_validator("id")(lambda cls, v: _rule_id(v))

    @model_validator(mode="after")
    def _narrow(self) -> SilentRead:
        if not (self.agency_kinds or self.relationship_kinds):
            raise ValueError("a silent read names agency_kinds or relationship_kinds (or both)")
        return self


class AccessNotifyRule(_Strict):
    """Reads from outside the child's home area of a child with one of these flags active
    notify the children's social care that published the flag (as CP-IS does)."""

    id: str = "ACCESS-NOTIFY"
    why: Why = ("The local authority holding a child protection plan or looking after a child "
                "must know when services elsewhere see the child.")
    categories: list[str] = ["child_protection_plan", "looked_after_child"]

    _check_id = field_validator("id")(lambda cls, v: _rule_id(v))


class AccessPolicy(_Strict):
    """Reading a child's whole record: stated purposes, access notifications, silent reads."""

    # What a reader may give as `purpose` when reading a child's record.
    purposes: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{1,39}$")]] = Field(
        default=["mash_triage", "strategy_discussion", "section_47_enquiry", "early_help",
                 "child_in_need_assessment", "child_protection_conference", "care_planning",
                 "unscheduled_care", "safeguarding"], min_length=1)
    notify: AccessNotifyRule = AccessNotifyRule()
    silent: list[SilentRead] = []
    recent_accesses_shown: int = Field(default=10, ge=0, le=100)


class CitedBasis(_Strict):
    """The one lawful basis a rule itself cites for the disclosures it makes."""

    article6: str
    article9: str | None = None
    dpa2018: str | None = None

    def cite(self) -> str:
        return " + ".join(p for p in (self.article6, self.article9, self.dpa2018) if p)


class HouseholdRiskRule(_Strict):
    """Adults whose risk history follows them into another child's household.

    An adult named on a flag of a category in `history` with one of the roles listed for it
    carries that flag as history. When such an adult is later linked to another child as one
    of `joined_as`, that child's area (`area_kinds`) and the agencies holding one of
    `relationship_kinds` with the child are told the earlier flags' categories, dates and
    publishers, never their content.
    """

    id: str = "HRJ"
    why: Why
    history: dict[str, list[Literal["household_member", "parent", "sibling",
                                    "alleged_perpetrator"]]] = Field(min_length=1)
    joined_as: list[Literal["household_member", "parent", "alleged_perpetrator"]] = Field(
        default=["parent", "household_member", "alleged_perpetrator"], min_length=1)
    area_kinds: list[AgencyKind] = Field(default=["childrens_social_care", "mash"], min_length=1)
    relationship_kinds: list[RelationshipKind] = []
    purpose: Purpose = "safeguarding"
    lawful_basis: CitedBasis

    _check_id = field_validator("id")(lambda cls, v: _rule_id(v))


class SiblingRule(_Strict):
    """Siblings of a child on a plan: the plan owner hears when one is flagged or born.

    Siblings are children sharing a parent or household member (a person linked with one of
    `linked_as`), or named as each other's sibling on a flag.
    """

    id: str = "SIB"
    why: Why
    plan_categories: list[str] = Field(default=["child_protection_plan", "looked_after_child"],
                                       min_length=1)
    linked_as: list[Literal["household_member", "parent"]] = ["parent", "household_member"]
    purpose: Purpose = "child_protection"
    lawful_basis: CitedBasis

    _check_id = field_validator("id")(lambda cls, v: _rule_id(v))


class PolicyFile(_Strict):
    """One YAML file in the policy directory; any part may be absent."""

    agreement: str | None = None
    defaults: Defaults | None = None
    plain_language: PlainLanguage | None = None
    areas: list[Area] = []
    categories: dict[str, CategoryPolicy] = {}
    access: AccessPolicy | None = None
    household_risk: HouseholdRiskRule | None = None
    siblings: SiblingRule | None = None

    @field_validator("categories")
    @classmethod
    def _category_names(cls, v: dict[str, CategoryPolicy]) -> dict[str, CategoryPolicy]:
        for name in v:
            if not re.match(r"^[a-z][a-z0-9_]{1,63}$", name):
                raise ValueError(f"category name {name!r} must be lower_snake_case")
        return v


def _rule_id(v: str) -> str:
    if not RULE_ID.match(v):
        raise ValueError("rule id must be upper case letters, digits and dashes, e.g. DAI-SHARE-1")
    return v
