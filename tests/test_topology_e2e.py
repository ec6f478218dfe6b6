"""Faults on the scaled-out topology: two `flagshare serve` processes and two `flagshare worker`
processes on one database, real HTTP on loopback, a real webhook receiver.

Each fault runs under load (flags published concurrently through both API processes, each
with its own Idempotency-Key, retried with the same key and body after a 5xx or a broken
connection, as an agency system would). Afterwards nothing is lost or doubled: every flag is
stored once, every delivery reached the receiver at least once (by delivery id), and the audit
chain verifies.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import fresh_database
from tests.factories import NHS, flag_body, relationship_body
from tests.processes import (Topology, free_port, police_and_school, private_postgres,
                             running_topology, stop, wait_until)
from tests.receiver import Receiver

# Short lease and poll so a killed worker's claims come back within seconds.
FAST = {"FLAGSHARE_WORKER_LEASE_SECONDS": "2", "FLAGSHARE_WORKER_POLL_SECONDS": "0.2"}


def prepare(topology: Topology, receiver_url: str) -> None:
    """Police publish; the school works with the children and takes webhooks; an auditor."""
    first = topology.servers[0]
    police_and_school(first, receiver_url, "T-POLICE", "T-SCHOOL")
    first.add_user("t-auditor", "auditor")


class Publisher:
    """Publishes `count` flags through the API processes in turn, from `threads` threads."""

    def __init__(self, topology: Topology, count: int, threads: int = 8):
        self.servers, self.count, self.threads = topology.servers, count, threads
        self.clients = [httpx.Client(base_url=s.url, timeout=30) for s in self.servers]
        self.headers = [s.token(c, "T-POLICE") for s, c in zip(self.servers, self.clients)]
        self.flag_ids: dict[str, str] = {}  # Idempotency-Key -> flag id
        self.retries = 0
        self.published = 0
        self._lock = threading.Lock()

    def publish(self, i: int) -> None:
        key = f"t-incident-{i}"
        body = flag_body(subject={"nhs_number": NHS[i % 4]},
                         summary=f"Incident {i}: police attended the home; the child was there.")
        for attempt in range(240):  # bounded: at most about two minutes of retrying
            side = (i + attempt) % len(self.servers)
            try:
                r = self.clients[side].post("/v1/flags", json=body, headers={
                    **self.headers[side], "Idempotency-Key": key})
            except httpx.TransportError:
                r = None
            if r is not None and r.status_code < 500:
                assert r.status_code == 201, r.text
                with self._lock:
                    self.flag_ids[key] = r.json()["id"]
                    self.published += 1
                return
            with self._lock:
                self.retries += 1
            time.sleep(0.5)
        pytest.fail(f"{key} was never accepted")

    def run(self) -> None:
        with ThreadPoolExecutor(self.threads) as pool:
            list(pool.map(self.publish, range(self.count)))

    def close(self) -> None:
        for c in self.clients:
            c.close()


def school_deliveries(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text(
            "SELECT id FROM delivery WHERE recipient_id = 'T-SCHOOL'")).scalars())


def assert_nothing_lost(topology: Topology, database_url: str, publisher: Publisher,
                        receiver: Receiver) -> None:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            flags = list(conn.execute(sa.text("SELECT id FROM flag")).scalars())
            publishes = conn.execute(sa.text(
                "SELECT count(*) FROM auditevent WHERE action = 'flag.publish'")).scalar()
        # Every flag stored once: one row per key, the ids the callers were given.
        assert len(publisher.flag_ids) == publisher.count
        assert sorted(flags) == sorted(publisher.flag_ids.values())
        assert publishes == publisher.count
        # Every delivery arrived at least once.
        expected = school_deliveries(engine)
        assert len(expected) == publisher.count
        wait_until(lambda: expected <= set(receiver.ids()), 90, "every delivery at the receiver")
    finally:
        engine.dispose()
    with httpx.Client(base_url=topology.servers[1].url, timeout=60) as http:
        token = topology.servers[1].user_token(http, "t-auditor")
        verified = http.get("/v1/audit/verify", headers=token).json()
    assert verified["ok"] is True and verified["first_bad_seq"] is None, verified
    assert verified["events_checked"] == verified["head_seq"]


@pytest.fixture
def database(db_kind, tmp_path):
    with fresh_database(db_kind, tmp_path) as url:
        yield url


def test_worker_sigkilled_mid_batch_loses_nothing(database, tmp_path):
    with Receiver(delay=0.05) as rx, running_topology(database, tmp_path, **FAST) as topology:
        prepare(topology, rx.url)
        publisher = Publisher(topology, 60)
        try:
            load = threading.Thread(target=publisher.run)
            load.start()
            wait_until(lambda: len(rx.requests) >= 10, 60, "the first deliveries")
            stop(topology.workers[0], signal.SIGKILL)  # claims held, some sent, none settled
            topology.start_worker()  # its replacement; the other worker kept going
            load.join(120)
            assert not load.is_alive()
            assert_nothing_lost(topology, database, publisher, rx)
        finally:
            publisher.close()


def test_receiver_down_for_a_while_gets_every_delivery(database, tmp_path):
    port = free_port()  # nothing listens here yet: every attempt is refused
    url = f"http://127.0.0.1:{port}/hooks"
    engine = sa.create_engine(database)
    with running_topology(database, tmp_path, **FAST) as topology:
        prepare(topology, url)
        publisher = Publisher(topology, 30)
        try:
            publisher.run()

            def all_refused_once() -> bool:
                with engine.connect() as conn:
                    return conn.execute(sa.text(
                        "SELECT count(*) FROM delivery WHERE recipient_id = 'T-SCHOOL' "
                        "AND attempts >= 1 AND status = 'queued'")).scalar() == publisher.count
            # Down for a while: until every delivery has failed at least once.
            wait_until(all_refused_once, 60, "every delivery to fail against the dead receiver")
            with Receiver(port=port) as rx:
                assert_nothing_lost(topology, database, publisher, rx)
        finally:
            publisher.close()
            engine.dispose()


def test_postgresql_restart_during_load_loses_nothing(db_kind, tmp_path):
    if db_kind != "postgresql":
        pytest.skip("restarting the database server: SQLite is a file with no server")
    with private_postgres() as pg:
        admin = sa.create_engine(pg.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text('CREATE DATABASE "flagshare"'))
        admin.dispose()
        database = pg.url.rsplit("/", 1)[0] + "/flagshare"
        with Receiver(delay=0.02) as rx, \
                running_topology(database, tmp_path, **FAST) as topology:
            prepare(topology, rx.url)
            publisher = Publisher(topology, 60)
            try:
                load = threading.Thread(target=publisher.run)
                load.start()
                wait_until(lambda: publisher.published >= 15, 60, "load to be under way")
                pg.crash()  # connections die mid-transaction; no shutdown checkpoint
                retries_before = publisher.retries
                wait_until(lambda: publisher.retries > retries_before, 30,
                           "a publish to fail while the database is down")
                pg.start()  # crash recovery, then the same processes carry on
                load.join(120)
                assert not load.is_alive()
                assert publisher.retries > 0
                assert_nothing_lost(topology, database, publisher, rx)
                assert all(w.poll() is None for w in topology.workers)  # survived the outage
            finally:
                publisher.close()


# The 10,000 on PostgreSQL. SQLite runs every transaction one at a time, so there 2,000
# make the same point within the suite's time.
REPEATS = {"postgresql": 10_000, "sqlite": 2_000}
CONNECTIONS = 200  # per API process: 400 connections, each with a request always in flight


def test_ten_thousand_concurrent_repeats_of_one_key_create_one_flag(db_kind, database,
                                                                    tmp_path):
    """"Concurrent" here: 10,000 requests with one Idempotency-Key and body from one asyncio
    client, 400 at a time: 200 keep-alive connections to each API process, each sending its
    next request as soon as its last is answered, so 400 are in flight until the end. A
    request whose connection breaks is sent again (same key), so all are answered."""
    with running_topology(database, tmp_path, workers=0) as topology:
        prepare(topology, "https://school.example.org/hooks")
        with httpx.Client(base_url=topology.servers[0].url, timeout=30) as http:
            token = topology.servers[0].token(http, "T-POLICE")
        headers = {**token, "Idempotency-Key": "t-one-key"}
        body = flag_body()
        repeats = REPEATS[db_kind]
        retried: list[int] = []

        async def hammer() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=CONNECTIONS,
                                  max_keepalive_connections=CONNECTIONS)
            clients = [httpx.AsyncClient(base_url=s.url, limits=limits, timeout=120)
                       for s in topology.servers]
            todo = iter(range(repeats))
            responses: list[httpx.Response] = []

            async def connection(client: httpx.AsyncClient) -> None:
                for _ in todo:  # one shared iterator: `repeats` requests answered in all
                    for _attempt in range(5):
                        try:
                            responses.append(await client.post("/v1/flags", json=body,
                                                               headers=headers))
                            break
                        except httpx.TransportError:
                            # A kept-alive connection the server closed as this request went
                            # out: the caller cannot know if it was processed, so it sends it
                            # again with the same key, as the key is for.
                            retried.append(1)
                    else:
                        pytest.fail("a request failed on five connections in a row")
            try:
                await asyncio.gather(*(connection(c) for c in clients
                                       for _ in range(CONNECTIONS)))
            finally:
                for c in clients:
                    await c.aclose()
            return responses

        responses = asyncio.run(hammer())
        print(f"{repeats} answered; {len(retried)} re-sent after a broken connection")
    statuses = {r.status_code for r in responses}
    ids = {r.json()["id"] for r in responses if r.status_code == 201}
    assert len(responses) == repeats and statuses == {201}, statuses
    assert len(ids) == 1
    replayed = sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses)
    assert replayed == repeats - 1
    engine = sa.create_engine(database)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT id FROM flag")).scalars().all() == list(ids)
            assert conn.execute(sa.text("SELECT count(*) FROM idempotencyrecord")).scalar() == 1
            assert conn.execute(sa.text(
                "SELECT count(*) FROM auditevent WHERE action = 'flag.publish'")).scalar() == 1
    finally:
        engine.dispose()


# Children each known to a GP by NHS number and to the police by name alone: one possible
# match each, and no pair close enough to another to be proposed with it.
MATCHED_CHILDREN = [("Amelia", "Hartley", "2019-06-02"), ("Tyler", "Okafor", "2018-03-14"),
                    ("Aisha", "Begum", "2020-11-30"), ("Jakub", "Kowalski", "2017-08-09"),
                    ("Linh", "Nguyen", "2021-01-21"), ("Sean", "Murphy", "2016-05-05")]


def test_two_practitioners_confirming_one_match_at_once_merge_it_once(database, tmp_path):
    """Two MASH practitioners confirm the same possible match at the same moment, each through
    a different API process: one merges the records, the other is told it was decided (409).
    Two merges of one pair would move the same flags twice and leave the unmerge unable to
    put back what moved."""
    with running_topology(database, tmp_path, workers=0) as topology:
        first = topology.servers[0]
        for agency, kind in (("T-GP", "gp"), ("T-POLICE", "police"), ("T-MASH", "mash")):
            first.add_agency(agency, kind, "E08000025")
        for user in ("t-mash-1", "t-mash-2"):
            first.add_user(user, "mash_practitioner", "T-MASH")
        clients = [httpx.Client(base_url=s.url, timeout=30) for s in topology.servers]
        try:
            gp, police = (first.token(clients[0], a) for a in ("T-GP", "T-POLICE"))
            for n, (given, family, born) in enumerate(MATCHED_CHILDREN):
                child = {"given_name": given, "family_name": family, "birth_date": born,
                         "postcode": "B31 2AB"}
                r = clients[0].post("/v1/relationships", headers=gp, json={
                    **relationship_body("registered_gp"), "subject": {"nhs_number": NHS[n],
                                                                      **child}})
                assert r.status_code == 201, r.text
                r = clients[0].post("/v1/flags", headers=police, json=flag_body(
                    subject={"local_id": f"NOM-{n}", **child}))
                assert r.status_code == 201, r.text
            practitioners = [first.user_token(client, user)
                             for client, user in zip(clients, ("t-mash-1", "t-mash-2"))]
            r = clients[0].get("/v1/matches", headers=practitioners[0])
            matches = [m["id"] for m in r.json()["items"]]
            assert len(matches) == len(MATCHED_CHILDREN), r.json()

            def confirm(side: int, match_id: str, together: threading.Barrier) -> int:
                together.wait(timeout=30)
                return clients[side].post(
                    f"/v1/matches/{match_id}/confirm", headers=practitioners[side],
                    json={"reason": "Same child: date of birth and address agree."}).status_code

            with ThreadPoolExecutor(max_workers=2) as pool:
                for match_id in matches:
                    together = threading.Barrier(2)
                    answers = sorted(pool.map(lambda side: confirm(side, match_id, together),
                                              (0, 1)))
                    assert answers == [200, 409], (match_id, answers)
        finally:
            for client in clients:
                client.close()
    engine = sa.create_engine(database)
    try:
        with engine.connect() as conn:
            def count(sql: str) -> int:
                return conn.execute(sa.text(sql)).scalar()
            assert count("SELECT count(*) FROM identitymerge") == len(MATCHED_CHILDREN)
            assert count("SELECT count(*) FROM person WHERE merged_into_id IS NOT NULL") \
                == len(MATCHED_CHILDREN)
            assert count("SELECT count(*) FROM possiblematch WHERE status = 'confirmed'") \
                == len(MATCHED_CHILDREN)
            assert count("SELECT count(*) FROM auditevent WHERE action = 'identity.merge'") \
                == 2 * len(MATCHED_CHILDREN)
    finally:
        engine.dispose()
