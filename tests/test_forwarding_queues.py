"""Forwarding queues: where queued items go when a subscription ends, the acknowledgement
chaser over a long backlog, and acknowledgements racing each other."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from datetime import timedelta

import httpx
from sqlalchemy import func, update
from sqlmodel import Session, select

from api.audit import service as audit_service
from api.db import make_engine, utcnow
from api.forwarding.models import Delivery
from api.main import create_app
from api.migrate import upgrade
from tests.factories import build_world, flag_body
from tests.receiver import Receiver
from tests.test_forwarding import acknowledged, feed, make_due, publish, subscribe

MISSING = ("Amelia was reported missing from home for six hours overnight and was found by "
           "police at a stranger's flat.")




def flag_ids(items: list[dict]) -> list[str]:
    return [i["event"]["data"]["flag"]["id"] for i in items]


# --- a subscription ends: its queued items move to the feed --------------------------------

async def test_items_a_gone_webhook_leaves_reach_the_feed_after_the_agencys_cursor(
        client, world, child, worker, session):
    """The agency has read its feed past where the webhook items were queued; after a 410 they
    must still reach it, once, under the delivery id the receiver was sent."""
    with Receiver(lambda n: (500, {}) if n == 0 else (410, {})) as rx:
        await subscribe(client, world, "SCHOOL-A", {"mode": "webhook", "url": rx.url},
                        categories=["domestic_abuse_incident"])
        await subscribe(client, world, "SCHOOL-A", {"mode": "feed"},
                        categories=["missing_episode"])
        incident = await publish(client, world)  # to the webhook
        missing = await publish(client, world, category="missing_episode", summary=MISSING)
        read = await feed(client, world, "SCHOOL-A")
        assert flag_ids(read["items"]) == [missing["id"]]
        worker.run_once()  # 500: kept for a retry
        make_due(session)
        worker.run_once()  # 410 Gone
        first, gone = rx.requests
    assert first.headers["webhook-id"] == gone.headers["webhook-id"]
    after = await feed(client, world, "SCHOOL-A", cursor=read["next_cursor"])
    [item] = after["items"]
    assert item["delivery_id"] == first.headers["webhook-id"]
    assert item["event"]["id"] == first.event["id"] and flag_ids([item]) == [incident["id"]]
    assert (await feed(client, world, "SCHOOL-A", cursor=after["next_cursor"]))["items"] == []
    whole = (await feed(client, world, "SCHOOL-A"))["items"]
    assert flag_ids(whole) == [missing["id"], incident["id"]]  # moved after what was read
    r = await client.post(f"/v1/deliveries/{item['delivery_id']}/ack",
                          json={"status": "received"}, headers=world.auth("SCHOOL-A"))
    assert r.status_code == 200, r.text
    statuses = (await client.get(f"/v1/flags/{incident['id']}/deliveries",
                                 headers=world.auth("POLICE-A"))).json()["items"]
    [school] = [s for s in statuses if s["recipient"] == "SCHOOL-A"]
    assert (school["delivery_id"], school["mode"], school["status"]) == (
        item["delivery_id"], "feed", "received")


async def test_unsubscribing_moves_queued_items_to_the_feed(client, world, child, worker,
                                                            session):
    with Receiver(lambda n: (503, {})) as rx:
        sub = await subscribe(client, world, "SCHOOL-A", {"mode": "webhook", "url": rx.url})
        flag = await publish(client, world)
        worker.run_once()  # 503: kept for a retry
        r = await client.delete(f"/v1/subscriptions/{sub['id']}",
                                headers=world.auth("SCHOOL-A"))
        assert r.status_code == 204
        [item] = (await feed(client, world, "SCHOOL-A"))["items"]
        assert item["delivery_id"] == rx.ids()[0] and flag_ids([item]) == [flag["id"]]
        make_due(session)
        worker.run_once()
        assert len(rx.requests) == 1  # nothing more to the deleted webhook
    stored = session.exec(select(Delivery).where(Delivery.id == item["delivery_id"])).one()
    session.refresh(stored)
    assert (stored.mode, stored.subscription_id, stored.status) == ("feed", None, "delivered")


async def test_an_item_in_flight_as_its_subscription_ends_follows_to_the_feed(
        client, world, child, worker, session):
    """Unsubscribing leaves an item a worker is sending to that worker; if the send fails,
    the worker sends it nowhere again and moves it to the feed."""
    with Receiver(lambda n: (503, {})) as rx:
        sub = await subscribe(client, world, "SCHOOL-A", {"mode": "webhook", "url": rx.url})
        await publish(client, world)
        [claimed] = worker.claim(10)
        r = await client.delete(f"/v1/subscriptions/{sub['id']}",
                                headers=world.auth("SCHOOL-A"))
        assert r.status_code == 204
        worker.settle([(claimed, worker.send(claimed))])
        make_due(session)
        worker.run_once()
        assert len(rx.requests) == 1
    [item] = (await feed(client, world, "SCHOOL-A"))["items"]
    assert item["delivery_id"] == claimed.delivery_id


# --- the acknowledgement chaser ------------------------------------------------------------

async def test_every_overdue_delivery_is_chased_however_many_came_before(
        client, world, child, worker, session):
    """Hundreds of older deliveries already chased for their current window must not hide a
    later one that has never been chased."""
    await publish(client, world)
    school = session.exec(select(Delivery).where(Delivery.recipient_id == "SCHOOL-A")).one()
    now = utcnow()
    sent, due = now - timedelta(minutes=90), now - timedelta(minutes=30)  # a 60-minute window

    def overdue(delivery_id: str, escalations_sent: int) -> Delivery:
        return Delivery(id=delivery_id, event_id=school.event_id, event_type="flag.shared",
                        recipient_id="SCHOOL-A", mode="feed", payload=school.payload,
                        flag_id=school.flag_id, disclosure_id=school.disclosure_id,
                        created_at=sent, acknowledge_by=due, escalations_sent=escalations_sent)

    for i in range(250):
        session.add(overdue(f"msg_chased_{i}", 1))
        session.flush()  # in this order
    session.add(overdue("msg_never_chased", 0))
    session.commit()
    assert worker.escalate() == 1
    late = session.exec(select(Delivery).where(Delivery.id == "msg_never_chased")).one()
    session.refresh(late)
    assert late.escalations_sent == 1
    alerts = session.exec(select(Delivery).where(
        Delivery.event_type == "delivery.unacknowledged")).all()
    assert {a.payload["data"]["delivery_id"] for a in alerts} == {"msg_never_chased"}
    assert worker.escalate() == 0


# --- acknowledgements ----------------------------------------------------------------------

OUTCOME = "Strategy discussion held; Amelia and her mother are staying with her grandmother."


async def test_an_ack_is_judged_against_the_delivery_as_it_now_stands(client, world, child,
                                                                      session):
    """The concurrent-ack race, serialised: this transaction read the delivery before another
    committed the same acknowledgement; the repeat must tell the publisher nothing."""
    await publish(client, world)
    did = (await feed(client, world, "SCHOOL-A"))["items"][0]["delivery_id"]
    seen = session.exec(select(Delivery).where(Delivery.id == did)).one()  # read first
    session.exec(update(Delivery).where(Delivery.id == did)
                 .values(ack_status="actioned", ack_outcome=OUTCOME, acked_at=utcnow())
                 .execution_options(synchronize_session=False))
    r = await client.post(f"/v1/deliveries/{did}/ack",
                          json={"status": "actioned", "outcome": OUTCOME},
                          headers=world.auth("SCHOOL-A"))
    assert r.status_code == 200, r.text
    assert acknowledged((await feed(client, world, "POLICE-A"))["items"]) == []
    assert seen.ack_status == "actioned"


async def test_identical_acks_at_once_tell_the_publisher_once(private_database_url, settings,
                                                              monkeypatch):
    """Four identical acknowledgements in flight together, each on its own connection (a real
    race on PostgreSQL; SQLite serialises writers)."""
    upgrade(private_database_url)
    engine = make_engine(private_database_url)
    app = create_app(settings.model_copy(update={"database_url": private_database_url}),
                     session_factory=lambda: Session(engine, expire_on_commit=False))
    app.state.keyring.ensure_signing_key()
    with Session(engine) as s:
        world = build_world(s, app)
    together = threading.Barrier(4)
    record = audit_service.record

    def record_after_the_others_have_read(session, **event):
        if event["action"] == "delivery.ack":  # each has decided whether this is news
            with contextlib.suppress(threading.BrokenBarrierError):
                together.wait(timeout=2)
        record(session, **event)

    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://flagshare.test") as c:
            flag = (await c.post("/v1/flags", json=flag_body(),
                                 headers=world.auth("POLICE-A"))).json()
            [did] = [d["delivery_id"] for d in (await c.get(
                f"/v1/flags/{flag['id']}/deliveries", headers=world.auth("POLICE-A"))
            ).json()["items"] if d["recipient"] == "CSC-A"]
            monkeypatch.setattr(audit_service, "record", record_after_the_others_have_read)
            answers = await asyncio.gather(*(
                c.post(f"/v1/deliveries/{did}/ack", headers=world.auth("CSC-A"),
                       json={"status": "actioned", "outcome": OUTCOME}) for _ in range(4)))
        assert [a.status_code for a in answers] == [200] * 4
        with Session(engine) as s:
            told = s.exec(select(func.count()).select_from(Delivery).where(
                Delivery.event_type == "delivery.acknowledged")).one()
        assert told == 1
    finally:
        engine.dispose()
