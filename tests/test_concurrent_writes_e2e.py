"""Identical requests at the same moment against a real server: one wins, the rest are told
why (409), and nothing is done twice. PostgreSQL runs them side by side, so the locks are what
is tested there; SQLite takes writers one at a time and must answer the same."""

from __future__ import annotations

import threading

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import fresh_database
from tests.factories import BASIS, NHS, flag_body, relationship_body
from tests.processes import running_server

AT_ONCE = 8
BIRMINGHAM, SANDWELL = "E08000025", "E08000028"


@pytest.fixture(scope="module")
def server(db_kind, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("races")
    with fresh_database(db_kind, tmp) as url, running_server(url, tmp) as srv:
        for agency_id, kind, area in (("RACE-CSC-A", "childrens_social_care", BIRMINGHAM),
                                      ("RACE-CSC-B", "childrens_social_care", SANDWELL),
                                      ("RACE-POLICE", "police", BIRMINGHAM),
                                      ("RACE-GP-B", "gp", SANDWELL)):
            srv.add_agency(agency_id, kind, area)
        yield srv


@pytest.fixture(scope="module")
def count(server):
    """Rows the server wrote, counted by SQL of the test's own on the same database."""
    engine = sa.create_engine(server.env["FLAGSHARE_DATABASE_URL"])

    def counted(sql: str, **params) -> int:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar_one()

    yield counted
    engine.dispose()


@pytest.fixture(scope="module")
def tokens(server):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        return {agency: server.token(http, agency) for agency in server.secrets}


def at_once(server, method: str, path: str, headers: dict, body: dict | None = None) -> list:
    """The same request sent AT_ONCE times, released together; each response."""
    barrier = threading.Barrier(AT_ONCE)
    responses: list = [None] * AT_ONCE

    def send(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            barrier.wait()
            responses[i] = http.request(method, path, json=body, headers=headers)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(AT_ONCE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


def statuses(responses) -> list[int]:
    return sorted(r.status_code for r in responses)


def new_transfer(server, tokens, nhs: str) -> dict:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        r = http.post("/v1/transfers", headers=tokens["RACE-CSC-A"], json={
            "subject": {"nhs_number": nhs}, "to_area": SANDWELL,
            "plan": "child_protection_plan", "notified_at": "2026-11-20T09:30:00+00:00"})
    assert r.status_code == 201, r.text
    return r.json()


AUDITED = "SELECT count(*) FROM auditevent WHERE action = :action AND child_id = :child"
SENT = ("SELECT count(*) FROM delivery WHERE event_type = :type "
        "AND CAST(payload AS TEXT) LIKE :transfer")


def test_a_transfer_is_picked_up_once(server, tokens, count):
    transfer = new_transfer(server, tokens, NHS[0])
    responses = at_once(server, "POST", f"/v1/transfers/{transfer['id']}/accept",
                        tokens["RACE-CSC-B"])
    assert statuses(responses) == [200] + [409] * (AT_ONCE - 1), [r.text for r in responses]
    assert all("already picked_up" in r.json()["detail"] for r in responses
               if r.status_code == 409)
    assert count(AUDITED, action="transfer.accept", child=transfer["child_id"]) == 1
    assert count(SENT, type="transfer.accepted", transfer=f"%{transfer['id']}%") == 1


def test_a_transfer_is_withdrawn_once(server, tokens, count):
    transfer = new_transfer(server, tokens, NHS[1])
    responses = at_once(server, "POST", f"/v1/transfers/{transfer['id']}/withdraw",
                        tokens["RACE-CSC-A"], {"reason": "The family did not move after all."})
    assert statuses(responses) == [200] + [409] * (AT_ONCE - 1), [r.text for r in responses]
    assert count(AUDITED, action="transfer.withdraw", child=transfer["child_id"]) == 1


def test_one_idempotency_key_at_once_is_one_pickup_replayed(server, tokens, count):
    """Retries racing the first try with its key get the first try's answer, not a 409."""
    transfer = new_transfer(server, tokens, NHS[2])
    responses = at_once(server, "POST", f"/v1/transfers/{transfer['id']}/accept",
                        {**tokens["RACE-CSC-B"], "Idempotency-Key": f"accept-{transfer['id']}"})
    assert statuses(responses) == [200] * AT_ONCE, [r.text for r in responses]
    assert len({r.text for r in responses}) == 1
    assert count(AUDITED, action="transfer.accept", child=transfer["child_id"]) == 1


def test_amendments_at_once_each_make_the_next_version(server, tokens, count):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        r = http.post("/v1/flags", json=flag_body(subject={"nhs_number": NHS[3]}),
                      headers=tokens["RACE-POLICE"])
    assert r.status_code == 201, r.text
    flag = r.json()["id"]
    responses = at_once(server, "PATCH", f"/v1/flags/{flag}", tokens["RACE-POLICE"], {
        "summary": "Correction: the incident was at the grandparents' home; the child was "
                   "there and frightened."})
    assert statuses(responses) == [200] * AT_ONCE, [r.text for r in responses]
    assert sorted(r.json()["version"] for r in responses) == list(range(2, AT_ONCE + 2))
    assert count("SELECT count(*) FROM flagversion WHERE flag_id = :f", f=flag) == AT_ONCE + 1
    errors = at_once(server, "PATCH", f"/v1/flags/{flag}", tokens["RACE-POLICE"],
                     {"status": "entered_in_error"})
    assert statuses(errors) == [200] + [409] * (AT_ONCE - 1), [r.text for r in errors]


def test_a_suspected_move_is_dismissed_once(server, tokens, count):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        plan = http.post("/v1/flags", headers=tokens["RACE-CSC-A"], json={
            "subject": {"nhs_number": NHS[4]}, "category": "child_protection_plan",
            "severity": "high", "purpose": "child_protection", "lawful_basis": BASIS,
            "summary": "The child is on a child protection plan for neglect; the plan is "
                       "reviewed monthly."})
        assert plan.status_code == 201, plan.text
        seen = http.post("/v1/relationships", headers=tokens["RACE-GP-B"],
                         json=relationship_body("registered_gp", NHS[4]))
        assert seen.status_code == 201, seen.text
        [move] = http.get("/v1/suspected-moves", headers=tokens["RACE-CSC-A"]).json()["items"]
    responses = at_once(server, "POST", f"/v1/suspected-moves/{move['id']}/dismiss",
                        tokens["RACE-CSC-A"],
                        {"reason": "A foster placement across the border; no move."})
    assert statuses(responses) == [200] + [409] * (AT_ONCE - 1), [r.text for r in responses]
    assert count(AUDITED, action="move.dismiss", child=move["child_id"]) == 1
