"""Configuration from `FLAGSHARE_` environment variables; invalid values stop start-up."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, HttpUrl, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class TrustedIssuer(BaseModel):
    """An organisation's own identity provider whose tokens the service accepts."""

    issuer: str
    jwks_url: HttpUrl | None = None
    jwks_file: Path | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLAGSHARE_", extra="forbid")

    database_url: str = Field(default=f"sqlite:///{Path.cwd() / 'flagshare.db'}")
    environment: Literal["production", "development"] = "production"
    policy_dir: Path = REPO_ROOT / "policies"
    issuer: str = "https://flagshare.local"
    audience: str = "flagshare"
    token_ttl_seconds: int = Field(default=900, ge=60, le=86400)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    # JSON list of {"issuer", "jwks_url" | "jwks_file"}.
    trusted_issuers: list[TrustedIssuer] = []

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, v: str) -> str:
        if v.startswith("postgresql://"):
            v = "postgresql+psycopg://" + v.removeprefix("postgresql://")
        if not (v.startswith("sqlite:///") or v.startswith("postgresql+psycopg://")):
            raise ValueError("must be sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
        return v

    @field_validator("policy_dir")
    @classmethod
    def _policy_dir_exists(cls, v: Path) -> Path:
        if not v.is_dir():
            raise ValueError(f"{v} is not a directory")
        return v

    @field_validator("trusted_issuers", mode="before")
    @classmethod
    def _parse_json(cls, v):
        return json.loads(v) if isinstance(v, str) else v

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
