from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo,
    field_validator,
)

from api.agencies.areas import known_area
from api.forwarding.targets import check_url
from api.policy.rules import known_category
from api.validation import ContextChecked


class WebhookDelivery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["webhook"]
    url: str = Field(max_length=2000)
    secret: str | None = Field(default=None, max_length=200,
                               description="whsec_ + base64 of 24-64 random bytes; generated "
                               "and returned once if absent")

    @field_validator("url")
    @classmethod
    def _allowed_target(cls, url: str, info: ValidationInfo) -> str:
        """One the SSRF guard allows under the settings (judged in context); the addresses it
        resolves to are checked before each send."""
        if info.context is not None:
            check_url(url, info.context.settings, resolve=False)
        return url

    @field_validator("secret")
    @classmethod
    def _whsec(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.startswith("whsec_"):
            raise ValueError("must start with whsec_")
        try:
            raw = base64.b64decode(v.removeprefix("whsec_"), validate=True)
        except ValueError as exc:
            raise ValueError("must be whsec_ followed by base64") from exc
        if not 24 <= len(raw) <= 64:
            raise ValueError("must encode 24 to 64 random bytes")
        return v


class FeedDelivery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["feed"]


class SubscriptionCreate(ContextChecked):
    model_config = ConfigDict(extra="forbid")

    # An empty list would select nothing: leave it out to select every one.
    categories: list[Annotated[str, StringConstraints(max_length=64),
                               AfterValidator(known_category)]] | None = Field(
        default=None, min_length=1, max_length=100)
    areas: list[Annotated[str, StringConstraints(max_length=64),
                          AfterValidator(known_area)]] | None = Field(
        default=None, min_length=1, max_length=200)
    delivery: Annotated[WebhookDelivery | FeedDelivery, Field(discriminator="mode")]


class SubscriptionOut(BaseModel):
    id: str
    agency: str
    # Absent (not null) when the subscription does not narrow by them: the body omits nulls.
    categories: list[str] | None = Field(default=None, description="Absent: every category")
    areas: list[str] | None = Field(default=None, description="Absent: every area")
    delivery: dict[str, Any]
    active: bool
    disabled_reason: str | None = None
    created_at: datetime


class SubscriptionCreated(SubscriptionOut):
    secret: str | None = Field(default=None, description="Webhook signing secret; only in the "
                                                         "response that created it")


class Event(BaseModel):
    id: str
    type: Literal["flag.shared", "flag.updated", "transfer.created", "transfer.not_picked_up",
                  "transfer.accepted", "transfer.closed", "move.suspected", "delivery.unacknowledged",
                  "delivery.acknowledged",
                  "child.accessed", "match.proposed", "household.risk_joined", "sibling.flagged",
                  "multiple_birth.found", "child.known_to_many"]
    occurred_at: datetime
    data: dict[str, Any]


class FeedItem(BaseModel):
    delivery_id: str
    event: Event


class FeedPage(BaseModel):
    items: list[FeedItem]
    next_cursor: str | None = Field(description=(
        "Pass back to resume after the last item; null when there is nothing more yet (keep "
        "the cursor you sent and ask again, with `wait` to long-poll)"))


class AckCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["received", "actioned"]
    outcome: str | None = Field(default=None, max_length=4000,
                                description="What the recipient did, for the publisher")


class AckOut(BaseModel):
    delivery_id: str
    status: str
    outcome: str | None
    acked_at: datetime


class DeliveryStatus(BaseModel):
    delivery_id: str
    recipient: str
    event_type: str
    flag_version: int | None
    mode: str
    status: Literal["queued", "delivered", "received", "actioned", "dead"]
    attempts: int
    last_error: str | None
    delivered_at: datetime | None
    acknowledge_by: datetime | None
    ack_outcome: str | None
    acked_at: datetime | None
