"""What a webhook subscription's URL is sent, as the OpenAPI 3.1 `webhooks` of `/openapi.json`.

The contract makes the service's own document describe forwarding, and a recipient builds its
endpoint from it. FastAPI renders these routes into the document and never serves them. The
text follows the worker: `DeliveryWorker.send` for the request, `_settle_one` for the answers.
"""

from __future__ import annotations

from typing import Annotated, get_args

from fastapi import APIRouter, Header, Response

from api.forwarding.schemas import Event
from api.forwarding.service import FLAG_EVENTS
from api.forwarding.worker import BACKOFF, MAX_RETRY_AFTER
from api.settings import Settings

# Every type the service sends: the event schema is the one place that lists them.
EVENT_TYPES: tuple[str, ...] = get_args(Event.model_fields["type"].annotation)

_MAX_ATTEMPTS = Settings.model_fields["webhook_max_attempts"].default
_TIMEOUT = Settings.model_fields["webhook_timeout_seconds"].default
_CHASED = " and ".join(f"`{event_type}`" for event_type in FLAG_EVENTS)

DELIVERY = f"""\
Sent as JSON to the URL of the recipient agency's webhook subscription that selects the event
(one copy per recipient), following [Standard Webhooks](https://www.standardwebhooks.com/).
The copy is a *delivery*: its id is the `webhook-id` header, the id to acknowledge it by
(`POST /v1/deliveries/{{webhook-id}}/ack`) and to drop duplicates by, since a delivery may
arrive more than once.

Check the signature over the body exactly as received before parsing it, and reject a
`webhook-timestamp` far from now (Standard Webhooks suggests 5 minutes).

Any 2xx answer within {_TIMEOUT:g} seconds is delivered; the response body is ignored.
Anything else (another status, redirects included, as they are not followed; a timeout; a
failed connection) is retried with backoff: {BACKOFF[0]} seconds, then longer, up to
{BACKOFF[-1] // 3600} hours apart, or later if a `Retry-After` (at most
{MAX_RETRY_AFTER // 3600} hours) asks. Every retry has the same `webhook-id` and body, and a new
`webhook-timestamp` and signature. Retries stop once the delivery is acknowledged. After
{_MAX_ATTEMPTS} attempts (by default) the delivery is dead; the publisher sees it on
`GET /v1/flags/{{id}}/deliveries`, and for {_CHASED} it and the recipient area's MASH are
sent `delivery.unacknowledged`.
"""

GONE = ("The URL is gone: the subscription is disabled (`active: false` on "
        "`GET /v1/subscriptions`), nothing more is sent to it, and this delivery and the others "
        "still queued for it move to the agency's feed (`GET /v1/feed`) with the same delivery "
        "ids.")

RETRIED = "Not delivered: sent again after backoff with the same `webhook-id`."


def _receive(
    event: Event,
    webhook_id: Annotated[str, Header(
        description="The delivery id: the same on every retry of this delivery, and unique "
                    "to this recipient's copy of the event.")],
    webhook_timestamp: Annotated[str, Header(
        pattern=r"^[0-9]+$",
        description="When this attempt was signed, in whole seconds since 1970-01-01 UTC.")],
    webhook_signature: Annotated[str, Header(
        pattern=r"^v1,[A-Za-z0-9+/]{43}=$",
        description="`v1,` then the base64 HMAC-SHA256 of "
                    "`{webhook-id}.{webhook-timestamp}.{body}`, keyed by the subscription "
                    "secret (`whsec_` + base64; the key is the bytes that base64 decodes "
                    "to).")],
) -> None:
    """Documentation only: the recipient's endpoint, which the service calls."""


def webhook_routes() -> APIRouter:
    """One webhook per event type, so a recipient finds each by name and its body's `type` is
    pinned to it."""
    router = APIRouter(tags=["webhooks"])
    for event_type in EVENT_TYPES:
        router.add_api_route(
            event_type, _receive, methods=["POST"],
            summary=f"`{event_type}` sent to a webhook subscription",
            description=DELIVERY,
            operation_id=f"webhook_{event_type.replace('.', '_')}",
            response_class=Response,  # the recipient's answer has no body the service reads
            response_description="Delivered: any 2xx status counts, not only 200.",
            responses={410: {"description": GONE}, "default": {"description": RETRIED}},
            openapi_extra={"requestBody": {"content": {"application/json": {"schema": {
                "properties": {"type": {"const": event_type}}}}}}},
        )
    return router
