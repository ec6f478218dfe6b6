from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.flags.schemas import Happened
from api.identity.schemas import Subject

AREA_PATTERN = r"^E(06|08|09|10)\d{6}$"


class TransferCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: Subject
    to_area: str = Field(pattern=AREA_PATTERN)
    plan: Literal["child_protection_plan", "child_in_need", "looked_after_child"]
    notified_at: Happened = Field(description="When the receiving area was notified")
    reason: str | None = Field(default=None, max_length=2000)
    receiving_agency: str | None = Field(default=None, max_length=64)


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
