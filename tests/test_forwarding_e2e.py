"""Forwarding with the scaled-out topology: an API process and separate worker processes.

Real processes, real database, real HTTP receivers on loopback. Workers use a short lease so a
killed worker's claims come back quickly.
"""

from __future__ import annotations

import signal
from collections import Counter

import httpx
import pytest

from tests.conftest import fresh_database
from tests.factories import NHS, flag_body, relationship_body
from tests.processes import running_server, stop, wait_until
from tests.receiver import Receiver

AREA = "E08000025"
WORKER_ENV = {"FLAGSHARE_EMBEDDED_WORKER": "false", "FLAGSHARE_WORKER_LEASE_SECONDS": "2",
              "FLAGSHARE_WORKER_POLL_SECONDS": "0.2"}


@pytest.fixture
def server(db_kind, tmp_path):
    with fresh_database(db_kind, tmp_path) as url, \
            running_server(url, tmp_path, **WORKER_ENV) as srv:
        srv.add_agency("FW-POLICE", "police", AREA)
        srv.add_agency("FW-SCHOOL", "education", AREA)
        yield srv


def publish_flags(server, http, receiver_url: str, count: int) -> dict[str, str]:
    """`count` flags about a child at the school; returns school delivery id -> flag id."""
    school = server.token(http, "FW-SCHOOL")
    police = server.token(http, "FW-POLICE")
    r = http.post("/v1/subscriptions", headers=school,
                  json={"delivery": {"mode": "webhook", "url": receiver_url}})
    assert r.status_code == 201, r.text
    nhs = NHS[0]
    assert http.post("/v1/relationships", json=relationship_body("school", nhs),
                     headers=school).status_code == 201
    expected = {}
    for i in range(count):
        body = flag_body(subject={"nhs_number": nhs},
                         summary=f"Incident {i}: police attended the home; Amelia was present.")
        flag = http.post("/v1/flags", json=body, headers=police)
        assert flag.status_code == 201, flag.text
        deliveries = http.get(f"/v1/flags/{flag.json()['id']}/deliveries",
                              headers=police).json()["items"]
        expected.update({d["delivery_id"]: flag.json()["id"] for d in deliveries
                         if d["recipient"] == "FW-SCHOOL"})
    assert len(expected) == count
    return expected


def test_worker_killed_mid_batch_loses_nothing(server):
    with Receiver(delay=0.05) as rx, httpx.Client(base_url=server.url, timeout=30) as http:
        expected = publish_flags(server, http, rx.url, 40)
        first = server.start_worker("worker-1")
        wait_until(lambda: len(rx.requests) >= 5, 60, "the first deliveries")
        stop(first, signal.SIGKILL)  # mid-batch: claimed, some sent, none settled
        assert len(set(rx.ids())) < len(expected)
        second = server.start_worker("worker-2")
        try:
            wait_until(lambda: set(expected) <= set(rx.ids()), 90, "every delivery")
            police = server.token(http, "FW-POLICE")
            # Every delivery settles as delivered (at least once, same webhook-id on repeats).
            wait_until(lambda: _all_delivered(http, police, expected), 30, "deliveries to settle")
        finally:
            stop(second)
    assert set(rx.ids()) == set(expected)


def _all_delivered(http, headers, expected: dict[str, str]) -> bool:
    for flag_id in set(expected.values()):
        items = http.get(f"/v1/flags/{flag_id}/deliveries", headers=headers).json()["items"]
        if any(d["status"] != "delivered" for d in items if d["delivery_id"] in expected):
            return False
    return True


def test_two_workers_do_not_send_the_same_delivery(server):
    with Receiver(delay=0.02) as rx, httpx.Client(base_url=server.url, timeout=30) as http:
        expected = publish_flags(server, http, rx.url, 60)
        workers = [server.start_worker(f"worker-{n}") for n in (1, 2)]
        try:
            wait_until(lambda: set(expected) <= set(rx.ids()), 90, "every delivery")
        finally:
            for w in workers:
                stop(w)
    repeats = {k: v for k, v in Counter(rx.ids()).items() if v > 1}
    assert repeats == {}


def test_receiver_down_for_a_while_gets_everything(server):
    # Every first attempt fails (the receiver is down), then it recovers: retries reach it.
    with Receiver(lambda n: (500, {}) if n < 5 else (200, {})) as rx, \
            httpx.Client(base_url=server.url, timeout=30) as http:
        expected = publish_flags(server, http, rx.url, 5)
        worker = server.start_worker("worker")
        try:
            delivered = lambda: {r.headers["webhook-id"] for i, r in enumerate(rx.requests)  # noqa
                                 if i >= 5}
            wait_until(lambda: set(expected) <= delivered(), 90, "delivery after recovery")
        finally:
            stop(worker)
