"""Configuration from `FLAGSHARE_` environment variables; unknown or invalid values stop
start-up."""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, HttpUrl, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

REPO_ROOT = Path(__file__).resolve().parent.parent


class TrustedIssuer(BaseModel):
    """An organisation's own identity provider whose tokens the service accepts.

    It vouches only for the roles listed (people by default, never admin unless listed) and,
    when `agencies` is set, only for those agencies.
    """

    issuer: str
    jwks_url: HttpUrl | None = None
    jwks_file: Path | None = None
    roles: list[Literal["agency_system", "mash_practitioner", "auditor", "admin"]] = [
        "mash_practitioner", "auditor"]
    agencies: list[str] | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLAGSHARE_", extra="forbid")

    database_url: str = Field(default=f"sqlite:///{Path.cwd() / 'flagshare.db'}")
    # A file holding the database password (a Docker secret), so it stays out of the URL.
    database_password_file: Path | None = None
    environment: Literal["production", "development"] = "production"
    policy_dir: Path = REPO_ROOT / "policies"
    issuer: str = "https://flagshare.local"
    audience: str = "flagshare"
    token_ttl_seconds: int = Field(default=900, ge=60, le=86400)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    # API requests running at once per process (more queue); below the connection pool's 20.
    max_concurrent_requests: int = Field(default=10, ge=1, le=200)
    # Delivery: run the worker inside `serve` (embedded default) or only in `flagshare worker`.
    embedded_worker: bool = True
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    webhook_max_attempts: int = Field(default=12, ge=1, le=30)
    # Allow webhook targets on private or loopback addresses outside development.
    webhook_allow_private: bool = False
    worker_poll_seconds: float = Field(default=0.25, gt=0, le=60)
    # How long a claimed delivery is reserved; a killed worker's claims are retried after it.
    worker_lease_seconds: float = Field(default=60.0, ge=1, le=3600)
    # Web console: a signed-in person is signed out after this many minutes without a request.
    console_idle_minutes: int = Field(default=15, ge=1, le=480)
    # A file holding the passphrase that encrypts the token and checkpoint signing keys, and
    # the webhook signing secrets, where they are stored, in the database (a Docker secret): a
    # copy of the database, or access to it, is then not enough to sign tokens, audit
    # checkpoints or webhooks.
    signing_key_passphrase_file: Path | None = None
    # JSON list of {"issuer", "jwks_url" | "jwks_file"}.
    trusted_issuers: list[TrustedIssuer] = []
    # Per-client token buckets (per process): API requests per authenticated principal.
    rate_limit_per_minute: int = Field(default=600, ge=1, le=1_000_000)
    rate_limit_burst: int = Field(default=120, ge=1, le=1_000_000)
    # Failed credential attempts (token endpoint, console sign-in) per account name and per
    # client IP; counted in the database, so shared by every API process.
    credential_attempts_per_minute: int = Field(default=30, ge=1, le=1_000_000)
    credential_attempts_burst: int = Field(default=10, ge=1, le=1_000_000)
    # Log lines as JSON objects (for a log shipper) or as text; default json outside development.
    log_format: Literal["json", "text"] | None = None

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, v: str) -> str:
        if v.startswith("postgresql://"):
            v = "postgresql+psycopg://" + v.removeprefix("postgresql://")
        if not (v.startswith("sqlite:///") or v.startswith("postgresql+psycopg://")):
            raise ValueError("must be sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
        return v

    @field_validator("database_password_file")
    @classmethod
    def _readable_password(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        if v is None:
            return v
        if str(info.data.get("database_url", "")).startswith("sqlite"):
            raise ValueError("is for PostgreSQL; a SQLite URL has no password")
        read_secret(v)
        return v

    @field_validator("signing_key_passphrase_file")
    @classmethod
    def _readable_passphrase(cls, v: Path | None) -> Path | None:
        if v is not None:
            read_secret(v)
        return v

    @property
    def signing_key_passphrase(self) -> bytes | None:
        if self.signing_key_passphrase_file is None:
            return None
        return read_secret(self.signing_key_passphrase_file).encode()

    @model_validator(mode="after")
    def _password_into_url(self) -> Settings:
        if self.database_password_file is not None:
            password = read_secret(self.database_password_file)
            url = make_url(self.database_url).set(password=password)
            self.database_url = url.render_as_string(hide_password=False)
        return self

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

    @property
    def is_development(self) -> bool:
        return self.environment == "development"

    @property
    def effective_log_format(self) -> str:
        return self.log_format or ("text" if self.is_development else "json")


def read_secret(path: Path) -> str:
    """A secret file's content, without the line end `openssl rand` or an editor leaves."""
    try:
        secret = path.read_text().strip("\r\n")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    if not secret:
        raise ValueError(f"{path} is empty")
    return secret


# `FLAGSHARE_` variables that other programs read (the agency adapters, Compose, the test and
# benchmark runs): not the service's settings, so they never stop it.
NOT_SETTINGS = frozenset({
    "FLAGSHARE_API_URL", "FLAGSHARE_CLIENT_ID", "FLAGSHARE_CLIENT_SECRET",
    "FLAGSHARE_WEBHOOK_SECRET", "FLAGSHARE_HTTP_PORT", "FLAGSHARE_DB_PASSWORD_FILE",
    "FLAGSHARE_TEST_PG", "FLAGSHARE_TEST_CHROMIUM", "FLAGSHARE_FUZZ_EXPLORE",
    "FLAGSHARE_BENCH_RESULTS"})
NOT_SETTINGS_PREFIXES = ("FLAGSHARE_LOAD_",)


class UnknownSettings(ValueError):
    """`FLAGSHARE_` variables that are no setting: a misspelt one would otherwise be passed
    over in silence, and the service run on a default (a typo in the database URL: a new,
    empty SQLite file)."""

    def __init__(self, names: list[str]):
        known = [f"FLAGSHARE_{name.upper()}" for name in Settings.model_fields]
        lines = []
        for name in names:
            close = difflib.get_close_matches(name.upper(), known, n=1)
            lines.append(f"  {name}: not a setting"
                         + (f" (did you mean {close[0]}?)" if close else ""))
        super().__init__("\n".join(lines))
        self.names = names


def unknown_settings(environ: Mapping[str, str]) -> list[str]:
    """The `FLAGSHARE_` variables in `environ` that name no setting (names are matched
    case-insensitively, as the settings read them)."""
    known = {f"FLAGSHARE_{name.upper()}" for name in Settings.model_fields} | NOT_SETTINGS
    return sorted(name for name in environ if name.upper().startswith("FLAGSHARE_")
                  and name.upper() not in known
                  and not name.upper().startswith(NOT_SETTINGS_PREFIXES))


def settings_from_environment() -> Settings:
    """The settings as the environment gives them; UnknownSettings, or pydantic's
    ValidationError, if they would not be what the operator meant."""
    if unknown := unknown_settings(os.environ):
        raise UnknownSettings(unknown)
    return Settings()


@lru_cache
def get_settings() -> Settings:
    return settings_from_environment()
