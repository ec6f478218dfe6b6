"""Per-client rate limits: token buckets held in each API process.

Every authenticated request takes a token from its principal's bucket (refilled at
FLAGSHARE_RATE_LIMIT_PER_MINUTE, holding at most FLAGSHARE_RATE_LIMIT_BURST), so one runaway
client system cannot crowd out the others. Credential checks (the token endpoint, console
sign-in) are limited separately: each *failed* attempt takes a token from the account name's
bucket and from the client address's bucket, and while either is empty every attempt is refused
before the password is even checked, which slows guessing without ever counting the successful
logins of many systems behind one council's address. An empty bucket is a 429 with
`Retry-After`. Unauthenticated operational paths (/healthz, /readyz, /metrics, JWKS) take none.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

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
        return min(self.burst, tokens + (now - as_of) * self.rate)

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


def too_many(wait: float, what: str) -> ProblemError:
    seconds = max(1, math.ceil(wait))
    return ProblemError(429, f"Too many {what}; try again in {seconds} s.",
                        headers={"Retry-After": str(seconds)})


class RateLimits:
    """The process's buckets for clients' requests and for credential attempts."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic):
        self.requests = TokenBuckets(settings.rate_limit_per_minute, settings.rate_limit_burst,
                                     clock)
        self.credential_failures = TokenBuckets(settings.credential_attempts_per_minute,
                                                settings.credential_attempts_burst, clock)

    def admit_request(self, principal_key: str) -> None:
        """Raise 429 when this principal has used up its requests."""
        if wait := self.requests.take(principal_key):
            raise too_many(wait, "requests from this client")

    def admit_credential_attempt(self, account: str, client_address: str | None) -> None:
        """Raise 429 while this account name or address has too many recent failures."""
        wait = max(self.credential_failures.wait_seconds(k)
                   for k in _credential_keys(account, client_address))
        if wait:
            raise too_many(wait, "failed sign-in attempts")

    def note_failed_attempt(self, account: str, client_address: str | None) -> None:
        for key in _credential_keys(account, client_address):
            self.credential_failures.take(key)


def _credential_keys(account: str, client_address: str | None) -> list[str]:
    return [f"account:{account}", f"address:{client_address or 'unknown'}"]
