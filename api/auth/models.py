from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from api.db import new_id, timestamp_column


class User(SQLModel, table=True):
    """A person held by the service itself: MASH practitioner, auditor or admin."""

    __tablename__ = "app_user"

    id: str = Field(default_factory=new_id, primary_key=True)
    username: str = Field(max_length=100, unique=True)
    password_hash: str = Field(max_length=200)
    role: str = Field(max_length=40)
    agency_id: str | None = Field(default=None, foreign_key="agency.id", max_length=64)
    disabled: bool = False
    created_at: datetime = timestamp_column()
    # Raised by each sign-out of the web console: a session cookie carrying a lower number is
    # refused, so a copy of the cookie stops working with the one signed out.
    console_generation: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class SigningKey(SQLModel, table=True):
    """RS256 token signing keys, shared by every API process through the database."""

    kid: str = Field(primary_key=True, max_length=64)
    private_pem: str
    public_jwk: dict = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = timestamp_column()
    retired_at: datetime | None = timestamp_column(nullable=True)


class CredentialFailure(SQLModel, table=True):
    """What is left of an account name's or a client address's allowance of failed sign-ins: a
    token bucket kept in the database, so every API process refuses the same guesser and a
    restart forgets no failure."""

    key: str = Field(primary_key=True, max_length=300)
    tokens: float
    # Seconds since the epoch: the API processes share no monotonic clock.
    as_of: float = Field(index=True)
