from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from api.agencies.areas import known_area
from api.agencies.models import Agency
from api.flags.schemas import Happened
from api.identity.schemas import Subject
from api.validation import ContextChecked

AREA_PATTERN = r"^E(06|08|09|10)\d{6}$"
SOCIAL_CARE = "childrens_social_care"


class TransferCreate(ContextChecked):
    model_config = ConfigDict(extra="forbid")

    subject: Subject
    to_area: str = Field(pattern=AREA_PATTERN)
    plan: Literal["child_protection_plan", "child_in_need", "looked_after_child"]
    notified_at: Happened = Field(description="When the receiving area was notified")
    reason: str | None = Field(default=None, max_length=2000)
    receiving_agency: str | None = Field(default=None, max_length=64)

    @field_validator("to_area")
    @classmethod
    def _another_known_area(cls, to_area: str, info: ValidationInfo) -> str:
        """Not the caller's own area, and one the service knows (judged in context)."""
        caller = info.context.caller if info.context is not None else None
        if caller is not None and to_area == caller.area:
            raise ValueError("must be another area than your own")
        return known_area(to_area, info)

    @field_validator("receiving_agency")
    @classmethod
    def _social_care_there(cls, agency_id: str | None, info: ValidationInfo) -> str | None:
        """Children's social care in to_area (judged in context); while to_area is bad itself,
        children's social care anywhere."""
        if agency_id is None or info.context is None:
            return agency_id
        to_area = info.data.get("to_area")  # absent when bad
        agency = info.context.session.get(Agency, agency_id)
        if agency is None or agency.kind != SOCIAL_CARE or (to_area and agency.area != to_area):
            raise ValueError("must be children's social care"
                             + (f" in {to_area}" if to_area else ""))
        return agency_id


class TransferClose(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)


class TransferOut(BaseModel):
    id: str
    status: Literal["awaiting_pickup", "picked_up", "withdrawn", "superseded"]
    pickup_due: date
    overdue: bool = Field(description="Awaiting pickup and past pickup_due")
    child_id: str
    from_agency: str
    from_area: str
    to_area: str
    receiving_agency: str | None
    plan: str
    notified_at: datetime
    reason: str | None
    previous_transfer_id: str | None
    alerts_sent: int
    closed_at: datetime | None
    closed_by: str | None
    created_at: datetime


class SuspectedMoveOut(BaseModel):
    id: str
    child_id: str
    plan_flag_id: str
    plan_area: str
    seen_area: str
    seen_by: str
    seen_as: str
    status: str
    resolution: str | None
    created_at: datetime


class DismissMove(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)
