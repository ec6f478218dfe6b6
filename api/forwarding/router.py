import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlmodel import select

from api.audit import service as audit
from api.auth.principal import CallingAgency
from api.deps import PolicyDep, SessionDep, SettingsDep
from api.flags import service as flags
from api.flags.models import Disclosure
from api.forwarding import service
from api.forwarding.models import Delivery, Subscription
from api.forwarding.schemas import (
    AckCreate, AckOut, DeliveryStatus, FeedPage, SubscriptionCreate, SubscriptionCreated,
    SubscriptionOut,
)
from api.idempotency.service import IdempotencyDep
from api.pagination import Page, PageDep, decode_cursor, encode_cursor, page_of

router = APIRouter(prefix="/v1", tags=["forwarding"])
MAX_WAIT_SECONDS = 30


def _sub_out(sub: Subscription) -> SubscriptionOut:
    delivery = {"mode": sub.mode}
    if sub.mode == "webhook":
        delivery["url"] = sub.url
    return SubscriptionOut(id=sub.id, agency=sub.agency_id, categories=sub.categories,
                           areas=sub.areas, delivery=delivery, active=sub.active,
                           disabled_reason=sub.disabled_reason, created_at=sub.created_at)


@router.post("/subscriptions", status_code=201, response_model=SubscriptionCreated,
             response_model_exclude_none=True,
             summary="Subscribe to what the policy entitles the agency to (narrows, never widens)")
def create_subscription(body: SubscriptionCreate, agency: CallingAgency, session: SessionDep,
                        policy: PolicyDep, settings: SettingsDep, idem: IdempotencyDep):
    if replay := idem.replay():
        return replay
    sub, secret = service.subscribe(session, policy, settings, agency, body)
    audit.record(session, actor=agency.id, actor_agency=agency.id, action="subscription.create",
                 outcome=sub.mode)
    out = _sub_out(sub).model_dump(exclude_none=True)
    # A replay answers with the same status and id but never the secret: it rests only in the
    # subscription (sealed, with a passphrase), not in the idempotency record too.
    return idem.commit(201, SubscriptionCreated(**out, secret=secret).model_dump(exclude_none=True),
                       remember=out)


@router.get("/subscriptions", response_model=Page[SubscriptionOut],
            summary="The calling agency's subscriptions")
def list_subscriptions(agency: CallingAgency, session: SessionDep, page: PageDep):
    q = select(Subscription).where(Subscription.agency_id == agency.id).order_by(Subscription.id)
    if (after := page.after_as(str)) is not None:
        q = q.where(Subscription.id > after)
    rows = session.exec(q.limit(page.limit + 1)).all()
    return page_of(rows, page, key=lambda s: s.id, to_item=_sub_out)


@router.delete("/subscriptions/{subscription_id}", status_code=204,
               summary="End a subscription (its queued items move to the feed)")
def delete_subscription(subscription_id: str, agency: CallingAgency, session: SessionDep,
                        idem: IdempotencyDep):
    if replay := idem.replay():
        return replay
    service.unsubscribe(session, agency, subscription_id)
    audit.record(session, actor=agency.id, actor_agency=agency.id, action="subscription.delete",
                 outcome="deleted")
    return idem.commit(204)


@router.get("/feed", response_model=FeedPage,
            summary="The calling agency's deliveries in order, long-polling up to `wait` seconds")
async def feed(
    request: Request,
    agency: CallingAgency,
    session: SessionDep,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = 0,
):
    after = decode_cursor(cursor, int) if cursor else 0
    agency_id = agency.id
    await run_in_threadpool(session.rollback)  # hold no transaction while waiting
    deadline = time.monotonic() + wait
    factory = request.app.state.session_factory
    while True:
        def _read():
            with factory() as s:
                rows = service.read_feed(s, agency_id, after, limit)
                return [{"delivery_id": d.id, "event": d.payload, "seq": d.seq} for d in rows]

        items = await run_in_threadpool(_read)
        if items or time.monotonic() >= deadline:
            break
        await asyncio.sleep(min(0.25, max(deadline - time.monotonic(), 0)))
    # Null when nothing more is there yet, as on every list: a client paging until null stops
    # once it has caught up, and resumes later with the cursor it holds.
    return {"items": [{"delivery_id": i["delivery_id"], "event": i["event"]} for i in items],
            "next_cursor": encode_cursor(items[-1]["seq"]) if items else None}


@router.post("/deliveries/{delivery_id}/ack", response_model=AckOut,
             summary="The recipient acknowledges a delivery: received, or actioned with outcome")
def ack(delivery_id: str, body: AckCreate, agency: CallingAgency, session: SessionDep,
        idem: IdempotencyDep):
    if replay := idem.replay():
        return replay
    d = service.acknowledge(session, agency, delivery_id, body)
    return idem.commit(200, AckOut(delivery_id=d.id, status=d.ack_status, outcome=d.ack_outcome,
                                   acked_at=d.acked_at))


@router.get("/flags/{flag_id}/deliveries", response_model=Page[DeliveryStatus],
            summary="Publisher only: each recipient's delivery, acknowledgement and outcome")
def flag_deliveries(flag_id: str, agency: CallingAgency, session: SessionDep, page: PageDep):
    flags.own_flag(session, agency, flag_id, to="see who received a flag and what they did")
    q = (select(Delivery, Disclosure)
         .outerjoin(Disclosure, Disclosure.id == Delivery.disclosure_id)
         .where(Delivery.flag_id == flag_id, Delivery.event_type.in_(service.FLAG_EVENTS))
         .order_by(Delivery.seq))
    if (after := page.after_as(int)) is not None:
        q = q.where(Delivery.seq > after)
    rows = session.exec(q.limit(page.limit + 1)).all()
    return page_of(rows, page, key=lambda r: r[0].seq, to_item=lambda r: DeliveryStatus(
        delivery_id=r[0].id, recipient=r[0].recipient_id, event_type=r[0].event_type,
        flag_version=r[1].flag_version if r[1] else None, mode=r[0].mode,
        status=service.delivery_status(r[0]), attempts=r[0].attempts,
        last_error=service.error_for_publisher(r[0].last_error), delivered_at=r[0].delivered_at,
        acknowledge_by=r[0].acknowledge_by, ack_outcome=r[0].ack_outcome,
        acked_at=r[0].acked_at))
