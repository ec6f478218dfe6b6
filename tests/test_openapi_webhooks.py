"""`/openapi.json` describes the webhooks the service sends (contract: "Forwarding"), and what
a real receiver is sent matches that description."""

from __future__ import annotations

import jsonschema
import pytest
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from openapi_spec_validator import OpenAPIV31SpecValidator

from api.forwarding.openapi import EVENT_TYPES
from tests.factories import flag_body
from tests.receiver import Receiver

# Typed from CONTRACT.md, not read from the code: the code may add types, never drop these.
CONTRACT_EVENT_TYPES = {
    "flag.shared", "flag.updated", "transfer.created", "transfer.not_picked_up",
    "transfer.accepted", "move.suspected", "delivery.unacknowledged", "child.accessed",
    "match.proposed", "household.risk_joined", "sibling.flagged",
}
SIGNED_HEADERS = {"webhook-id", "webhook-timestamp", "webhook-signature"}
DOC_URI = "https://flagshare.test/openapi.json"


@pytest.fixture
async def doc(client) -> dict:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    return r.json()


def body_validator(doc: dict, event_type: str) -> jsonschema.Draft202012Validator:
    """The webhook's body schema, its `$ref`s resolved within the document as published."""
    registry = Registry().with_resource(DOC_URI, DRAFT202012.create_resource(doc))
    pointer = f"/webhooks/{event_type}/post/requestBody/content/application~1json/schema"
    return jsonschema.Draft202012Validator({"$ref": f"{DOC_URI}#{pointer}"},
                                           registry=registry)


def event(event_type: str) -> dict:
    return {"id": "evt_1", "type": event_type, "occurred_at": "2025-01-06T09:00:00+00:00",
            "data": {}}


async def test_every_event_type_the_service_sends_is_a_webhook(doc):
    assert set(doc["webhooks"]) == set(EVENT_TYPES)
    assert CONTRACT_EVENT_TYPES <= set(EVENT_TYPES)
    assert all(set(item) == {"post"} for item in doc["webhooks"].values())


async def test_each_webhook_requires_the_standard_webhooks_headers(doc):
    for event_type, item in doc["webhooks"].items():
        headers = {p["name"]: p for p in item["post"]["parameters"] if p["in"] == "header"}
        assert set(headers) == SIGNED_HEADERS, event_type
        assert all(p["required"] and p["description"] for p in headers.values()), event_type
        signature = headers["webhook-signature"]["description"]
        assert "HMAC-SHA256" in signature and "whsec_" in signature
        assert "{webhook-id}.{webhook-timestamp}.{body}" in signature


async def test_each_webhook_body_is_the_event_of_its_own_type(doc):
    for event_type in doc["webhooks"]:
        validator = body_validator(doc, event_type)
        assert validator.is_valid(event(event_type)), event_type
        other = next(t for t in EVENT_TYPES if t != event_type)
        assert not validator.is_valid(event(other)), event_type
        assert not validator.is_valid({**event(event_type), "data": None}), event_type


async def test_each_webhook_says_what_the_recipients_answers_lead_to(doc):
    for event_type, item in doc["webhooks"].items():
        responses = item["post"]["responses"]
        assert set(responses) == {"200", "410", "default"}, event_type
        assert "2xx" in responses["200"]["description"]
        assert "feed" in responses["410"]["description"]
        assert "same `webhook-id`" in responses["default"]["description"]


async def test_the_document_with_its_webhooks_is_valid_openapi_3_1(doc):
    """Checked by openapi-spec-validator: the OpenAPI Initiative's 3.1 schema, and every
    reference resolved."""
    assert doc["openapi"].startswith("3.1.") and doc["webhooks"]
    errors = [f"{list(e.absolute_path)}: {e.message}"
              for e in OpenAPIV31SpecValidator(doc).iter_errors()]
    assert errors == []


async def test_what_a_real_receiver_is_sent_matches_the_description(client, world, child, worker,
                                                                    doc):
    with Receiver() as rx:
        r = await client.post("/v1/subscriptions",
                              json={"delivery": {"mode": "webhook", "url": rx.url}},
                              headers=world.auth("SCHOOL-A"))
        assert r.status_code == 201, r.text
        r = await client.post("/v1/flags", json=flag_body(), headers=world.auth("POLICE-A"))
        assert r.status_code == 201, r.text
        worker.run_once()
        [sent] = rx.requests
    operation = doc["webhooks"][sent.event["type"]]["post"]
    body_validator(doc, sent.event["type"]).validate(sent.event)
    for param in operation["parameters"]:
        jsonschema.validate(sent.headers[param["name"]], param["schema"])
