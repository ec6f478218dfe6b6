"""Rate limits: token buckets for clients' requests and for failed credential attempts.

Every authenticated request takes a token from its principal's bucket (refilled at
FLAGSHARE_RATE_LIMIT_PER_MINUTE, holding at most FLAGSHARE_RATE_LIMIT_BURST), so one runaway
client system cannot crowd out the others. These buckets are held in each API process: they
share load fairly and cost nothing per request, and with N processes a client may make up to
N times the rate.

Credential checks (the token endpoint, console sign-in) are limited separately: each *failed*
attempt takes a token from the account name's bucket and from the client address's bucket, and
while either is empty every attempt is refused before the password is even checked, which slows
guessing without ever counting the successful logins of many systems behind one council's
address. These buckets are kept in the database, because a limit on guessing that each API
process kept for itself would let a guesser spread attempts over the processes behind a load
balancer, or wait for a restart.

An empty bucket is a 429 with `Retry-After`. Unauthenticated operational paths (/healthz,
/readyz, /metrics, JWKS) take none.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from api.auth.models import CredentialFailure
from api.problems import ProblemError
from api.settings import Settings

# Beyond this many tracked keys, buckets are forgotten (see TokenBuckets._forget_full).
MAX_TRACKED_KEYS = 10_000


class TokenBuckets:
    def __init__(self, per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, as of)

    def _level(self, key: str, now: float) -> float:
        tokens, as_of = self._buckets.get(key, (self.burst, now))
        return _refilled(tokens, now - as_of, self.rate, self.burst)

    def wait_seconds(self, key: str) -> float:
        """How long until `key` has a whole token (0 when it has one now)."""
        with self._lock:
            level = self._level(key, self.clock())
        return 0.0 if level >= 1 else (1 - level) / self.rate

    def take(self, key: str) -> float:
        """Take a token for `key`: 0 if there was one, else the seconds until there will be
        (and nothing is taken)."""
        with self._lock:
            now = self.clock()
            level = self._level(key, now)
            if level < 1:
                return (1 - level) / self.rate
            if len(self._buckets) >= MAX_TRACKED_KEYS:
                self._forget_full(now)
            self._buckets[key] = (level - 1, now)
            return 0.0

    def _forget_full(self, now: float) -> None:
        """Bound memory when many keys (say, sprayed account names) are tracked: drop the
        buckets that have refilled, and if that is not enough the oldest tenth."""
        for key in [k for k in self._buckets if self._level(k, now) >= self.burst]:
            del self._buckets[key]
        if len(self._buckets) >= MAX_TRACKED_KEYS:
            for key in list(self._buckets)[:MAX_TRACKED_KEYS // 10]:
                del self._buckets[key]


class SharedTokenBuckets:
    """Token buckets kept in the database, read and taken from within the caller's session, so
    that every API process on the database sees the same levels. A key with no row has a full
    bucket; rows whose buckets have refilled are deleted as failures are noted, and by the
    delivery worker now and then."""

    def __init__(self, per_minute: int, burst: int, clock: Callable[[], float] = time.time):
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock

    def wait_seconds(self, session: Session, keys: list[str]) -> float:
        """How long until every one of `keys` has a whole token (0 when they have one now)."""
        now = self.clock()
        rows = session.exec(select(CredentialFailure).where(CredentialFailure.key.in_(keys)))
        levels = [_refilled(row.tokens, now - row.as_of, self.rate, self.burst) for row in rows]
        return max([0.0, *((1 - level) / self.rate for level in levels if level < 1)])

    def take(self, session: Session, keys: list[str]) -> None:
        """Take a token from each key's bucket that has one, in this session's transaction.
        The rows are locked first, so two processes noting a failure at once both count."""
        now = self.clock()
        self.forget_refilled(session, now)
        session.execute(
            _insert_ignoring_conflicts(session)
            .values([{"key": key, "tokens": self.burst, "as_of": now} for key in keys])
            .on_conflict_do_nothing(index_elements=["key"]))
        rows = session.exec(select(CredentialFailure).where(CredentialFailure.key.in_(keys))
                            .with_for_update().execution_options(populate_existing=True))
        for row in rows:
            level = _refilled(row.tokens, now - row.as_of, self.rate, self.burst)
            # Another process may have written a later time while this one waited for the row.
            row.tokens, row.as_of = (level - 1 if level >= 1 else level), max(now, row.as_of)
            session.add(row)

    def forget_refilled(self, session: Session, now: float | None = None) -> None:
        """Delete the rows of buckets that are full again (burst / rate seconds after their last
        failure): they say nothing more, and an address or account name that failed is kept
        no longer than it counts."""
        now = self.clock() if now is None else now
        session.execute(delete(CredentialFailure).where(
            CredentialFailure.as_of <= now - self.burst / self.rate))


def forget_refilled_failures(session_factory: Callable[[], Session], settings: Settings) -> None:
    """The delivery worker's periodic clean-up of the failed-attempt table."""
    with session_factory() as session:
        _credential_failures(settings).forget_refilled(session)
        session.commit()


def _credential_failures(settings: Settings,
                         clock: Callable[[], float] = time.time) -> SharedTokenBuckets:
    return SharedTokenBuckets(settings.credential_attempts_per_minute,
                              settings.credential_attempts_burst, clock)


def _refilled(tokens: float, elapsed: float, rate: float, burst: float) -> float:
    # A time read before another process's write is earlier than it: nothing refilled, and
    # nothing taken either.
    return min(burst, tokens + max(0.0, elapsed) * rate)


def _insert_ignoring_conflicts(session: Session):
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(CredentialFailure)


def too_many(wait: float, what: str) -> ProblemError:
    seconds = max(1, math.ceil(wait))
    return ProblemError(429, f"Too many {what}; try again in {seconds} s.",
                        headers={"Retry-After": str(seconds)})


class RateLimits:
    """The process's buckets for clients' requests, and the shared ones for failed credential
    attempts."""

    def __init__(self, settings: Settings, clock: Callable[[], float] | None = None):
        self.requests = TokenBuckets(settings.rate_limit_per_minute, settings.rate_limit_burst,
                                     clock or time.monotonic)
        self.credential_failures = _credential_failures(settings, clock or time.time)

    def admit_request(self, principal_key: str) -> None:
        """Raise 429 when this principal has used up its requests."""
        if wait := self.requests.take(principal_key):
            raise too_many(wait, "requests from this client")

    def admit_credential_attempt(self, session: Session, account: str,
                                 client_address: str | None) -> None:
        """Raise 429 while this account name or address has too many recent failures."""
        if wait := self.credential_failures.wait_seconds(
                session, _credential_keys(account, client_address)):
            raise too_many(wait, "failed sign-in attempts")

    def note_failed_attempt(self, session: Session, account: str,
                            client_address: str | None) -> None:
        """Count a failed attempt against the account name and the address, and commit: the
        request fails, but its failure must count in every process."""
        self.credential_failures.take(session, _credential_keys(account, client_address))
        session.commit()


def _credential_keys(account: str, client_address: str | None) -> list[str]:
    return [f"account:{account[:200]}", f"address:{client_address or 'unknown'}"]
