from datetime import datetime

from sqlmodel import Field, SQLModel

from api.db import timestamp_column


class AuditEvent(SQLModel, table=True):
    """One entry in the hash-chained sharing log (never updated, never deleted)."""

    seq: int = Field(primary_key=True)
    at: datetime = timestamp_column()
    actor: str = Field(max_length=200)
    actor_agency: str | None = Field(default=None, max_length=64)
    action: str = Field(max_length=40, index=True)
    child_id: str | None = Field(default=None, index=True, max_length=36)
    flag_id: str | None = Field(default=None, index=True, max_length=36)
    recipient: str | None = Field(default=None, max_length=64)
    purpose: str | None = Field(default=None, max_length=40)
    reason: str | None = Field(default=None, max_length=2000)
    lawful_basis: str | None = Field(default=None, max_length=120)
    policy_rule: str | None = Field(default=None, max_length=40)
    policy_version: str | None = Field(default=None, max_length=64)
    outcome: str = Field(max_length=40)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)
