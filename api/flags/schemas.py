from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Literal

from pydantic import (
    AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator,
    model_validator,
)

from api.agencies.areas import registered_agency
from api.db import utcnow
from api.identity.schemas import RelatedPerson, StartDate, Subject
from api.policy.rules import known_category
from api.validation import ContextChecked

Purpose = Literal["safeguarding", "child_protection", "early_help", "care_planning"]
CLOCK_SKEW = timedelta(minutes=5)


def _not_in_future(moment: datetime) -> datetime:
    """A little ahead of this service's clock is a caller's clock running fast; further is a
    mistake that would mislead (a transfer notified in 2999 is never overdue)."""
    if moment > utcnow() + CLOCK_SKEW:
        raise ValueError("must not be in the future (clocks may differ by "
                         f"{CLOCK_SKEW.seconds // 60} minutes, no more)")
    return moment


# When something happened, as a caller reports it: with its offset, and not yet to come.
Happened = Annotated[AwareDatetime, AfterValidator(_not_in_future)]


class LawfulBasisIn(BaseModel):
    """UK GDPR Article 6 basis, Article 9 condition, DPA 2018 Schedule 1 condition."""

    model_config = ConfigDict(extra="forbid")

    article6: str = Field(pattern=r"^6\(1\)\([a-f]\)$", examples=["6(1)(e)"])
    article9: str | None = Field(default=None, pattern=r"^9\(2\)\([a-j]\)$",
                                 examples=["9(2)(g)"])
    dpa2018: str | None = Field(default=None, pattern=r"^schedule1-part[1-3]-para\d{1,2}$",
                                examples=["schedule1-part2-para18"])


class Period(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: date
    end: date | None = None

    @field_validator("end")
    @classmethod
    def _ordered(cls, end: date | None, info) -> date | None:
        start = info.data.get("start")
        if end is not None and start is not None and end < start:
            raise ValueError("must not be before period.start")
        return end


class PeriodIn(Period):
    """A period as a publisher gives it: a start within reach (see `StartDate`)."""

    start: StartDate


def _plain_text(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


class FlagCreate(ContextChecked):
    model_config = ConfigDict(extra="forbid")

    subject: Subject
    category: Annotated[str, Field(min_length=1, max_length=64), AfterValidator(known_category)]
    severity: Literal["low", "medium", "high"]
    summary: str = Field(max_length=1000, description="Plain language: what happened and what "
                         "it means for the child")
    details: str | None = Field(default=None, max_length=20000)
    occurred_at: Happened | None = None
    period: PeriodIn | None = None
    purpose: Purpose
    lawful_basis: LawfulBasisIn
    related_people: list[RelatedPerson] = Field(default=[], max_length=50)

    _summary = field_validator("summary")(lambda cls, v: _plain_text(v))

    @field_validator("related_people")
    @classmethod
    def _each_named_once(cls, people: list[RelatedPerson]) -> list[RelatedPerson]:
        """A flag names a person once in each role (they may hold two roles)."""
        first: dict[tuple[str, str], int] = {}
        for i, person in enumerate(people):
            if person.nhs_number is None:
                continue  # without an NHS number, each entry is a person of its own
            earlier = first.setdefault((person.nhs_number, person.role), i)
            if earlier != i:
                raise ValueError(f"related_people.{i} names the same person as "
                                 f"related_people.{earlier} in the same role ({person.role})")
        return people


class FlagUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["inactive", "entered_in_error"] | None = None
    period: PeriodEnd | None = None
    summary: str | None = Field(default=None, max_length=1000)

    @field_validator("summary")
    @classmethod
    def _summary(cls, v: str | None) -> str | None:
        return None if v is None else _plain_text(v)

    @model_validator(mode="after")
    def _something(self) -> FlagUpdate:
        if self.status is None and self.period is None and self.summary is None:
            raise ValueError("give at least one of status, period.end, summary")
        return self


class PeriodEnd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    end: date


FlagUpdate.model_rebuild()


class NotShared(BaseModel):
    agency: str
    reason: str


class Warning(BaseModel):
    code: str
    term: str
    message: str


class FlagPublished(BaseModel):
    id: str
    child_id: str
    version: int
    status: str
    shared_with: list[str]
    not_shared: list[NotShared]
    not_sent: list[NotShared] = Field(
        default=[], description="Of shared_with: recipients entitled to the flag, and able to "
        "read it, whose subscriptions kept it from being sent to them")
    warnings: list[Warning]
    policy_rule: str
    policy_version: str


class RelatedPersonOut(BaseModel):
    person_id: str
    role: str
    relationship: str | None
    nhs_number: str | None
    given_name: str | None
    family_name: str | None
    birth_date: date | None


class FlagOut(BaseModel):
    """A flag as one caller may see it: fields the policy did not give it are absent."""

    id: str
    child_id: str
    publisher: str
    category: str
    version: int
    status: str
    severity: str
    summary: str
    details: str | None = None
    occurred_at: datetime | None = None
    period: Period | None = None
    purpose: str
    lawful_basis: LawfulBasisIn
    related_people: list[RelatedPersonOut] | None = None
    policy_rule: str
    policy_version: str
    created_at: datetime
    updated_at: datetime
    warnings: list[Warning] = []
    shared_with: list[str] | None = Field(default=None, description="Publisher only")
    not_shared: list[NotShared] | None = Field(default=None, description="Publisher only")
    not_sent: list[NotShared] | None = Field(default=None, description="Publisher only: of "
                                             "shared_with, those its subscriptions kept it from")


class DecisionCreate(ContextChecked):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["share", "not_share"]
    recipient: Annotated[str, Field(max_length=64),
                         AfterValidator(registered_agency)] | None = None
    reason: str = Field(max_length=2000)

    _reason = field_validator("reason")(lambda cls, v: _plain_text(v))

    @model_validator(mode="after")
    def _recipient_for_share(self) -> DecisionCreate:
        if self.decision == "share" and not self.recipient:
            raise ValueError("a decision to share names the recipient agency")
        return self


class DecisionOut(BaseModel):
    id: str
    flag_id: str
    decision: str
    recipient: str | None
    reason: str
    decided_by: str
    decided_at: datetime
