from datetime import datetime

from sqlmodel import Field, SQLModel

from api.db import timestamp_column


class AuditEvent(SQLModel, table=True):
    """One entry in the hash-chained sharing log (never updated, never deleted).

    The database refuses UPDATE and DELETE on this table (triggers, migration 0004).
    """

    seq: int = Field(primary_key=True)
    at: datetime = timestamp_column(index=True)
    actor: str = Field(max_length=200)
    actor_agency: str | None = Field(default=None, index=True, max_length=64)
    action: str = Field(max_length=40, index=True)
    child_id: str | None = Field(default=None, index=True, max_length=36)
    flag_id: str | None = Field(default=None, index=True, max_length=36)
    recipient: str | None = Field(default=None, index=True, max_length=64)
    purpose: str | None = Field(default=None, max_length=40)
    reason: str | None = Field(default=None, max_length=2000)
    lawful_basis: str | None = Field(default=None, max_length=120)
    policy_rule: str | None = Field(default=None, max_length=40)
    policy_version: str | None = Field(default=None, max_length=64)
    outcome: str = Field(max_length=40)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)


class AuditCheckpoint(SQLModel, table=True):
    """The chain head (seq, hash, time) signed with the service key, so that an auditor who
    kept it can later prove the log was not rewritten or cut short behind it.

    `signature` is a compact RS256 JWS whose payload is the signed statement; the columns
    repeat it only for querying. Append-only like the log itself.
    """

    seq: int = Field(primary_key=True)
    hash: str = Field(max_length=64)
    at: datetime = timestamp_column()
    signature: str
    kid: str = Field(max_length=64)
