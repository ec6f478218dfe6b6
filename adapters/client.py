"""The one HTTP client every adapter uses to talk to flagshare.

It holds the agency's client-credentials token until shortly before it expires, retries what
may succeed later (429, 5xx, connection errors) with backoff that honours `Retry-After`, and
never retries a 4xx: the same request would be refused again. Writes carry an
`Idempotency-Key`, so a retry or a re-run never creates anything twice.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import httpx

RETRYABLE = {429, 500, 502, 503, 504}


class ApiUnavailable(Exception):
    """The API could not be reached, or refused the agency's credentials."""


class ApiError(Exception):
    """A read or acknowledgement the API refused."""

    def __init__(self, status: int, problem: dict):
        self.status, self.problem = status, problem
        super().__init__(describe_problem(status, problem))


@dataclass(frozen=True)
class Outcome:
    """What became of one write: accepted, unchanged (an idempotent replay) or rejected."""

    status: Literal["accepted", "unchanged", "rejected"]
    http_status: int | None  # None when nothing needed sending
    body: dict = field(default_factory=dict)

    @property
    def reason(self) -> str:
        return describe_problem(self.http_status, self.body)

    @property
    def warnings(self) -> list[str]:
        return [w.get("message", "") for w in self.body.get("warnings") or []]


def describe_problem(status: int, problem: dict) -> str:
    """The API's own words: its problem detail, each bad field and any policy rule."""
    detail = problem.get("detail") or problem.get("title") or problem.get("error") or "refused"
    text = f"HTTP {status}: {detail}"
    errors = problem.get("errors") or []
    missing = [f"{e.get('field')}: {e.get('message')}" for e in errors
               if f"{e.get('field')}: {e.get('message')}" not in detail]
    if missing:
        text += " (" + "; ".join(missing) + ")"
    if problem.get("policy_rule"):
        text += f" [policy rule {problem['policy_rule']}]"
    return text


def retry_after_seconds(value: str | None, cap: float) -> float | None:
    """Retry-After as seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return min(max((when - datetime.now(timezone.utc)).total_seconds(), 0.0), cap)


class FlagshareClient:
    def __init__(self, api_url: str, client_id: str, client_secret: str, *,
                 attempts: int = 5, backoff: float = 0.5, max_wait: float = 60.0,
                 timeout: float = 30.0, sleep: Callable[[float], None] = time.sleep):
        self.http = httpx.Client(base_url=api_url.rstrip("/"), timeout=timeout)
        self.client_id, self.client_secret = client_id, client_secret
        self.attempts, self.backoff, self.max_wait = attempts, backoff, max_wait
        self.sleep = sleep
        self._token: str | None = None
        self._token_until = 0.0

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> FlagshareClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the calls adapters make -----------------------------------------------------------

    def authenticate(self) -> None:
        """Obtain the token now, so bad credentials stop a command before it starts."""
        self._access_token()

    def write(self, method: str, path: str, body: dict | None, key: str) -> Outcome:
        response = self._call(method, path, json=body, headers={"Idempotency-Key": key})
        payload = _json(response)
        if response.is_success:
            replayed = response.headers.get("Idempotent-Replayed", "").lower() == "true"
            return Outcome("unchanged" if replayed else "accepted", response.status_code,
                           payload)
        return Outcome("rejected", response.status_code, payload)

    def get(self, path: str, params: dict[str, Any], *, timeout: float | None = None) -> dict:
        extra = {} if timeout is None else {"timeout": timeout}
        response = self._call("GET", path, params=params, **extra)
        if not response.is_success:
            raise ApiError(response.status_code, _json(response))
        return _json(response)

    def ack(self, delivery_id: str) -> None:
        """Tell the publisher the delivery was received; one already actioned stays so."""
        response = self._call("POST", f"/v1/deliveries/{delivery_id}/ack",
                              json={"status": "received"})
        if not response.is_success and response.status_code != 409:
            raise ApiError(response.status_code, _json(response))

    # --- token and retries -----------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs) -> httpx.Response:
        response = self._with_retries(method, path, auth=True, **kwargs)
        if response.status_code == 401:  # the token expired or was revoked: once more, fresh
            self._token = None
            response = self._with_retries(method, path, auth=True, **kwargs)
        return response

    def _with_retries(self, method: str, path: str, *, auth: bool,
                      headers: dict[str, str] | None = None, **kwargs) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            sent = dict(headers or {})
            if auth:
                sent["Authorization"] = f"Bearer {self._access_token()}"
            try:
                response = self.http.request(method, path, headers=sent, **kwargs)
            except httpx.TransportError as exc:
                if attempt >= self.attempts:
                    raise ApiUnavailable(f"cannot reach {self.http.base_url}: {exc}") from exc
                self.sleep(self._backoff(attempt))
                continue
            if response.status_code not in RETRYABLE or attempt >= self.attempts:
                return response
            wait = retry_after_seconds(response.headers.get("Retry-After"), self.max_wait)
            self.sleep(self._backoff(attempt) if wait is None else wait)

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff * 2 ** (attempt - 1), self.max_wait) * random.uniform(0.8, 1.2)

    def _access_token(self) -> str:
        if self._token is not None and time.monotonic() < self._token_until:
            return self._token
        response = self._with_retries("POST", "/v1/oauth/token", auth=False, data={
            "grant_type": "client_credentials", "client_id": self.client_id,
            "client_secret": self.client_secret})
        payload = _json(response)
        if response.status_code != 200 or "access_token" not in payload:
            raise ApiUnavailable(f"the API refused the agency's credentials for "
                                 f"{self.client_id!r}: " + describe_problem(
                                     response.status_code, payload))
        lifetime = float(payload.get("expires_in", 300))
        self._token = payload["access_token"]
        # Renew a minute early (or at 90 % of a short lifetime) so no call carries a stale one.
        self._token_until = time.monotonic() + lifetime - min(60.0, lifetime * 0.1)
        return self._token


def _json(response: httpx.Response) -> dict:
    try:
        payload = response.json()
    except ValueError:
        return {"detail": response.text[:500] or response.reason_phrase}
    return payload if isinstance(payload, dict) else {"items": payload}
