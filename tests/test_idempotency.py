import pytest
from sqlalchemy.orm import make_transient
from sqlmodel import func, select

from api.flags.models import Flag, FlagVersion
from api.idempotency.service import Idempotency
from api.problems import ProblemError
from tests.factories import flag_body


async def test_same_key_same_body_returns_the_first_result(client, world, session):
    headers = {**world.auth("POLICE-A"), "Idempotency-Key": "wmp-incident-881-v1"}
    first = await client.post("/v1/flags", json=flag_body(), headers=headers)
    again = await client.post("/v1/flags", json=flag_body(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert session.exec(select(func.count()).select_from(Flag)).one() == 1


async def test_same_key_reordered_json_is_the_same_body(client, world, session):
    headers = {**world.auth("POLICE-A"), "Idempotency-Key": "k1",
               "content-type": "application/json"}
    import json

    body = flag_body()
    first = await client.post("/v1/flags", content=json.dumps(body), headers=headers)
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=2)
    again = await client.post("/v1/flags", content=reordered, headers=headers)
    assert again.json()["id"] == first.json()["id"]


async def test_same_key_different_body_is_409_and_writes_nothing(client, world, session):
    headers = {**world.auth("POLICE-A"), "Idempotency-Key": "wmp-incident-881-v1"}
    await client.post("/v1/flags", json=flag_body(), headers=headers)
    r = await client.post("/v1/flags", json=flag_body(severity="low"), headers=headers)
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    assert session.exec(select(func.count()).select_from(Flag)).one() == 1


async def test_keys_are_per_caller(client, world, session):
    key = {"Idempotency-Key": "shared-key"}
    a = await client.post("/v1/flags", json=flag_body(), headers={**world.auth("POLICE-A"), **key})
    b = await client.post("/v1/flags", json=flag_body(), headers={**world.auth("CSC-A"), **key})
    assert a.status_code == b.status_code == 201 and a.json()["id"] != b.json()["id"]


def test_every_write_takes_an_idempotency_key(app):
    """The contract: every write accepts `Idempotency-Key`. The token endpoint is OAuth's own,
    not a write of this service's records."""
    writes = [(method, path) for path, item in app.openapi()["paths"].items()
              for method, operation in item.items()
              if method in ("post", "put", "patch", "delete") and path != "/v1/oauth/token"
              and not any(p["in"] == "header" and p["name"].lower() == "idempotency-key"
                          for p in operation.get("parameters", []))]
    assert writes == []


async def test_without_a_key_each_post_is_new(client, world, session):
    await client.post("/v1/flags", json=flag_body(), headers=world.auth("POLICE-A"))
    await client.post("/v1/flags", json=flag_body(), headers=world.auth("POLICE-A"))
    assert session.exec(select(func.count()).select_from(Flag)).one() == 2


async def test_a_row_another_request_wrote_first_is_a_409_not_a_500(client, world, session):
    """What two amendments of one flag at once met before they queued for its lock: both
    writing the same next version. Whatever still meets another write at commit is a
    conflict for the caller, not an internal error."""
    flag = (await client.post("/v1/flags", json=flag_body(),
                              headers=world.auth("POLICE-A"))).json()
    version = session.get(FlagVersion, (flag["id"], 1))
    session.expunge(version)
    make_transient(version)
    session.add(version)  # version 1 again
    with pytest.raises(ProblemError) as caught:
        Idempotency(session, "POLICE-A", None, "").commit(200, {})
    assert caught.value.status == 409
    assert session.exec(select(func.count()).select_from(FlagVersion)).one() == 1


async def test_a_write_answers_times_as_a_read_of_the_same_record_does(client, world, session):
    """A client that keeps the `created_at` a write returned and compares it with a later read
    must find the same string: the answer of a write is stored for replays and was written as
    `+00:00` while reads wrote `Z`."""
    sub = await client.post("/v1/subscriptions", json={"delivery": {"mode": "feed"}},
                            headers={**world.auth("SCHOOL-A"), "Idempotency-Key": "s1"})
    assert sub.status_code == 201, sub.text
    [listed] = (await client.get("/v1/subscriptions", headers=world.auth("SCHOOL-A"))).json()[
        "items"]
    assert sub.json()["created_at"] == listed["created_at"]
    assert sub.json()["created_at"].endswith("Z")
