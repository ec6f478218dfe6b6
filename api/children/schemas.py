"""One child's whole record as a reader may see it, and search candidates."""

from __future__ import annotations

import datetime as dt
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field

from api.flags.schemas import FlagOut
from api.identity.schemas import MatchReason, PersonSummary
from api.transfers.schemas import SuspectedMoveOut, TransferOut


class ChildIdentity(BaseModel):
    child_id: str
    nhs_number: str | None
    given_name: str | None
    family_name: str | None
    birth_date: date | None
    sex: str | None
    postcode: str | None
    ethnicity: str | None
    disability: str | None
    unborn: bool
    mother_nhs_number: str | None
    expected_delivery_date: date | None
    merged_from: list[str] = Field(description="Records confirmed to be this child")


class ReadAccess(BaseModel):
    basis: Literal["area", "relationship", "break_glass"]
    purpose: str
    reason: str


class ChronologyFlag(FlagOut):
    versions: list[FlagOut] | None = Field(
        default=None, description="Earlier versions, newest first (with ?history=true)")


class PersonOut(BaseModel):
    person_id: str
    nhs_number: str | None
    given_name: str | None
    family_name: str | None
    birth_date: date | None
    roles: list[str]
    relationships: list[str] = Field(description="e.g. mother, mother's new partner")
    recorded_by: list[str]


class Via(BaseModel):
    person_id: str
    role: str


class SiblingOut(BaseModel):
    child_id: str
    nhs_number: str | None
    given_name: str | None
    family_name: str | None
    birth_date: date | None
    relation: Literal["sibling", "half_sibling", "household"] = Field(
        description="half_sibling: one parent shared and each has another, different one; "
                    "household: linked through a household member, no parent shared")
    via: list[Via]


class RelationshipEntry(BaseModel):
    agency: str
    agency_kind: str
    area: str
    kind: str
    start: date
    end: date | None


class OutstandingDelivery(BaseModel):
    delivery_id: str
    event_type: str
    flag_id: str | None
    recipient: str
    status: str
    created_at: datetime
    acknowledge_by: datetime | None
    overdue: bool


class AccessEntry(BaseModel):
    at: datetime
    actor: str
    organisation: str | None
    purpose: str | None
    break_glass: bool


class HouseholdRiskEntry(BaseModel):
    """An earlier flag naming a household member, as `household.risk_joined` told it."""

    person_id: str
    told_at: datetime
    flag_id: str
    category: str
    role: str | None
    date: dt.date  # `date` as a field name would shadow the type
    publisher: str
    publisher_name: str
    publisher_kind: str
    publisher_area: str


class ChildView(BaseModel):
    child: ChildIdentity
    access: ReadAccess
    flags: list[ChronologyFlag] = Field(description=(
        "Visible flags, newest first: the most recently published first (when what a flag "
        "records happened is its `occurred_at` and `period`, which not every reader is "
        "given: the order must not tell it)"))
    related_people: list[PersonOut]
    household: list[PersonOut] = Field(description="Parents and household members")
    siblings: list[SiblingOut]
    household_risk: list[HouseholdRiskEntry] = Field(
        description="Risk histories of household members told to this child's agencies: "
                    "category, date and publisher only; ask the publisher for more")
    relationships: list[RelationshipEntry]
    transfers: list[TransferOut]
    suspected_moves: list[SuspectedMoveOut]
    outstanding_deliveries: list[OutstandingDelivery] = Field(
        description="Deliveries of this child's flags not yet acknowledged")
    recent_accesses: list[AccessEntry] = Field(description="Most recent reads, newest first")


class CandidateChild(PersonSummary):
    """A search candidate, named apart from match records in the OpenAPI document."""


class Candidate(BaseModel):
    child: CandidateChild
    score: float
    reasons: list[MatchReason]
    break_glass: bool = Field(description="Outside your scope: shown because you broke the glass")


class CandidatePage(BaseModel):
    items: list[Candidate]
    next_cursor: str | None
