from datetime import datetime

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from api.db import new_id, timestamp_column


class Subscription(SQLModel, table=True):
    """What an agency wants sent to it, and how; it narrows, never widens, the policy."""

    id: str = Field(default_factory=new_id, primary_key=True)
    agency_id: str = Field(foreign_key="agency.id", index=True, max_length=64)
    categories: list | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    areas: list | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    mode: str = Field(max_length=10)
    url: str | None = Field(default=None, max_length=2000)
    # The signing secret is needed to sign, so it is stored, not hashed.
    secret: str | None = Field(default=None, max_length=200)
    active: bool = True
    disabled_reason: str | None = Field(default=None, max_length=200)
    created_at: datetime = timestamp_column()


class Delivery(SQLModel, table=True):
    """The outbox: one recipient's copy of one event, written with the change that caused it.

    `seq` orders each recipient's feed; rows are only inserted while holding the write lock
    that also serialises the audit chain, so `seq` follows commit order.
    """

    __table_args__ = (
        Index("ix_delivery_due", "status", "mode", "next_attempt_at"),
        Index("ix_delivery_feed", "recipient_id", "mode", "seq"),
        Index("ix_delivery_ack_due", "ack_status", "acknowledge_by"),
    )

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True, max_length=40)  # delivery_id, the webhook-id
    event_id: str = Field(max_length=40, index=True)
    event_type: str = Field(max_length=40)
    recipient_id: str = Field(foreign_key="agency.id", max_length=64)
    subscription_id: str | None = Field(default=None, foreign_key="subscription.id")
    mode: str = Field(max_length=10)
    payload: dict = Field(sa_column=Column(JSON, nullable=False))
    flag_id: str | None = Field(default=None, foreign_key="flag.id", index=True)
    disclosure_id: str | None = Field(default=None, foreign_key="disclosure.id")
    status: str = Field(default="queued", max_length=12)  # queued, delivered, dead
    attempts: int = 0
    next_attempt_at: datetime = timestamp_column()
    lease_until: datetime | None = timestamp_column(nullable=True)
    last_error: str | None = Field(default=None, max_length=500)
    delivered_at: datetime | None = timestamp_column(nullable=True)
    ack_status: str | None = Field(default=None, max_length=12)  # received, actioned
    ack_outcome: str | None = Field(default=None, max_length=4000)
    acked_at: datetime | None = timestamp_column(nullable=True)
    acknowledge_by: datetime | None = timestamp_column(nullable=True)
    escalations_sent: int = 0
    created_at: datetime = timestamp_column()
