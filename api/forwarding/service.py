"""Subscriptions, the outbox, the pull feed and acknowledgements."""

from __future__ import annotations

import base64
import re
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import httpx
from sqlalchemy import bindparam, func, text
from sqlmodel import Session, or_, select

from api.agencies.models import Agency
from api.audit import service as audit
from api.db import utcnow
from api.encoding import rfc3339
from api.flags.models import Flag
from api.forwarding.models import Delivery, Subscription
from api.forwarding.sealing import seal
from api.forwarding.schemas import AckCreate, SubscriptionCreate
from api.forwarding.targets import UNRESOLVED
from api.policy.loader import Policy
from api.problems import ProblemError, not_found, validated
from api.settings import Settings
from api.validation import BodyContext


# The events that carry a flag to a recipient, which it acknowledges and is chased for.
FLAG_EVENTS = ("flag.shared", "flag.updated")


@dataclass(frozen=True)
class NewEvent:
    """One event, however many recipients get a copy: each copy carries its id and the time
    it happened."""

    id: str
    occurred_at: datetime


def new_event(occurred_at: datetime | None = None) -> NewEvent:
    return NewEvent("evt_" + uuid.uuid4().hex, occurred_at or utcnow())


def subscribe(session: Session, policy: Policy, settings: Settings, agency: Agency,
              body: SubscriptionCreate) -> tuple[Subscription, str | None]:
    body = validated(body, BodyContext(policy, session, settings))
    secret = None
    if body.delivery.mode == "webhook":
        secret = body.delivery.secret or "whsec_" + base64.b64encode(
            secrets.token_bytes(32)).decode()
    sub = Subscription(agency_id=agency.id, categories=body.categories, areas=body.areas,
                       mode=body.delivery.mode,
                       url=getattr(body.delivery, "url", None),
                       secret=None if secret is None else seal(secret,
                                                               settings.signing_key_passphrase))
    session.add(sub)
    session.flush()
    return sub, secret


def unsubscribe(session: Session, agency: Agency, subscription_id: str) -> None:
    sub = session.get(Subscription, subscription_id)
    if sub is None or sub.agency_id != agency.id or not sub.active:
        raise not_found("subscription")
    end_subscriptions(session, [sub], "deleted by the agency")


def end_subscriptions(session: Session, subs: list[Subscription], reason: str) -> None:
    """Nothing more is sent to these; what they still had queued moves to the feed."""
    for sub in sorted(subs, key=lambda s: s.id):  # one order: two enders never deadlock
        if sub.active:
            sub.active, sub.disabled_reason = False, reason
            session.add(sub)
    move_to_feed(session, [sub.id for sub in subs])


def move_to_feed(session: Session, subscription_ids: list[str] | None = None) -> None:
    """Move the queued webhook items of ended subscriptions (these, or any) to their
    agencies' feeds.

    Each takes a fresh `seq` in commit order, as a new outbox row would: the feed pages by
    `seq`, and an agency whose cursor is already past the old one would never see it. It
    keeps its delivery id (the webhook-id a receiver may have seen, which acks name) and its
    event, so it is the same delivery, not a second one. An item a worker is sending (leased)
    or another transaction holds is left: its worker settles it, and the worker's sweep moves
    it later if it is still queued.
    """
    query = (select(Delivery).join(Subscription, Subscription.id == Delivery.subscription_id)
             .where(Subscription.active.is_(False), Delivery.status == "queued",
                    Delivery.mode == "webhook",
                    or_(Delivery.lease_until.is_(None), Delivery.lease_until < utcnow()))
             .order_by(Delivery.seq).with_for_update(skip_locked=True, of=Delivery))
    if subscription_ids is not None:
        query = query.where(Delivery.subscription_id.in_(subscription_ids))
    moving = session.exec(query).all()
    if not moving:
        return
    audit.lock_chain(session)  # held to commit, as for the outbox's inserts: commit order
    for delivery, seq in zip(moving, _fresh_seqs(session, len(moving)), strict=True):
        delivery.seq, delivery.mode, delivery.subscription_id = seq, "feed", None
        delivery.lease_until = None
        session.add(delivery)
    session.flush()


def _fresh_seqs(session: Session, n: int) -> list[int]:
    """`n` outbox positions after every one taken so far, ascending; under the chain lock."""
    if session.get_bind().dialect.name == "postgresql":
        return sorted(session.execute(
            text("SELECT nextval(pg_get_serial_sequence('delivery', 'seq')) "
                 "FROM generate_series(1, :n)"), {"n": n}).scalars())
    top = session.exec(select(func.max(Delivery.seq))).one()
    return list(range(top + 1, top + 1 + n))


def enqueue(
    session: Session,
    *,
    event: NewEvent,
    event_type: str,
    recipient_id: str,
    data: dict,
    category: str | None = None,
    areas: Iterable[str] = (),
    flag_id: str | None = None,
    disclosure_id: str | None = None,
    acknowledge_by: datetime | None = None,
    subscriptions: list[Subscription] | None = None,
) -> Delivery | None:
    """Write one recipient's copy of an event to the outbox, routed by its subscriptions.

    An agency with no subscription still gets everything it is entitled to in its feed, so
    nothing is lost for want of set-up; one with subscriptions gets only what they select.
    `subscriptions`: the recipient's from `active_subscriptions`, when the caller sends one
    event to many recipients; otherwise they are read here. The row is inserted at commit,
    with the log's appends.

    An alert (no `subscriptions` given) to a disabled agency is not queued: None, as for one
    whose subscriptions select other things, and the caller records no disclosure. A flag's
    sharing passes `subscriptions`: its recipients were chosen among enabled agencies, and a
    flag's update to one disabled since must still reach it, so it waits, held by the worker.
    """
    if subscriptions is None:
        recipient = session.get(Agency, recipient_id)
        if recipient is None or recipient.disabled:
            return None
        subscriptions = active_subscriptions(session, [recipient_id]).get(recipient_id, [])
    route = _route(subscriptions, category, set(areas))
    if route is None:
        return None
    mode, subscription_id = route
    payload = {"id": event.id, "type": event_type, "occurred_at": rfc3339(event.occurred_at),
               "data": data}
    delivery = Delivery(id="msg_" + uuid.uuid4().hex, event_id=event.id, event_type=event_type,
                        recipient_id=recipient_id, subscription_id=subscription_id, mode=mode,
                        payload=payload, flag_id=flag_id, disclosure_id=disclosure_id,
                        acknowledge_by=acknowledge_by)
    audit.append_at_commit(session, delivery)  # keeps feed `seq` in commit order
    return delivery


# Built once: read for every event sent.
_ACTIVE_SUBSCRIPTIONS = (select(Subscription)
                         .where(Subscription.agency_id.in_(bindparam("agency_ids", expanding=True)),
                                Subscription.active.is_(True))
                         .order_by(Subscription.created_at))


def active_subscriptions(session: Session,
                         recipient_ids: Iterable[str]) -> dict[str, list[Subscription]]:
    """Each recipient's active subscriptions, oldest first, in one query (none: absent)."""
    out: dict[str, list[Subscription]] = {}
    for sub in session.exec(_ACTIVE_SUBSCRIPTIONS,
                            params={"agency_ids": list(recipient_ids)}).all():
        out.setdefault(sub.agency_id, []).append(sub)
    return out


def _route(subs: list[Subscription], category: str | None,
           areas: set[str]) -> tuple[str, str | None] | None:
    if not subs:
        return "feed", None
    for sub in subs:
        if category is not None and sub.categories is not None and category not in sub.categories:
            continue
        if areas and sub.areas is not None and not areas & set(sub.areas):
            continue
        return sub.mode, sub.id
    return None


def read_feed(session: Session, agency_id: str, after: int, limit: int) -> list[Delivery]:
    """The agency's feed items after a position; first reads mark them delivered."""
    rows = session.exec(select(Delivery).where(
        Delivery.recipient_id == agency_id, Delivery.mode == "feed", Delivery.seq > after)
        .order_by(Delivery.seq).limit(limit)).all()
    fresh = [d for d in rows if d.status == "queued"]
    if fresh:
        now = utcnow()
        for d in fresh:
            d.status, d.delivered_at, d.attempts = "delivered", now, d.attempts + 1
            session.add(d)
            record_handover(session, d, "feed")
        session.commit()
    return list(rows)


def record_handover(session: Session, delivery: Delivery, channel: str) -> None:
    """Each handed-over delivery is a disclosure event citing purpose, basis and rule."""
    from api.flags.models import Disclosure, Flag, FlagVersion

    purpose = lawful_basis = rule = version = None
    child_id = None
    if delivery.disclosure_id:
        disclosure = session.get(Disclosure, delivery.disclosure_id)
        flag = session.get(Flag, disclosure.flag_id)
        fv = session.get(FlagVersion, (disclosure.flag_id, disclosure.flag_version))
        purpose, rule, version, child_id = (fv.purpose, disclosure.policy_rule,
                                            disclosure.policy_version, flag.child_id)
        lawful_basis = " + ".join(p for p in (fv.article6, fv.article9, fv.dpa2018) if p)
    audit.record(session, actor="flagshare", action="delivery.handover",
                 outcome=f"{delivery.event_type} via {channel}", child_id=child_id,
                 flag_id=delivery.flag_id, recipient=delivery.recipient_id, purpose=purpose,
                 lawful_basis=lawful_basis, policy_rule=rule, policy_version=version,
                 reason=delivery.id)


def acknowledge(session: Session, agency: Agency, delivery_id: str, body: AckCreate) -> Delivery:
    """Record the recipient's acknowledgement; tell the publisher only what is news.

    The delivery is read locked and afresh: of identical acknowledgements at once, the first
    is news and the others must see it (PostgreSQL; SQLite serialises writers already)."""
    delivery = session.exec(select(Delivery).where(Delivery.id == delivery_id)
                            .with_for_update()
                            .execution_options(populate_existing=True)).first()
    if delivery is None or delivery.recipient_id != agency.id:
        raise not_found("delivery")
    if delivery.ack_status == "actioned" and body.status == "received":
        raise ProblemError(409, "This delivery was already acknowledged as actioned.")
    news = (body.status, body.outcome or delivery.ack_outcome) != (delivery.ack_status,
                                                                   delivery.ack_outcome)
    delivery.ack_status, delivery.acked_at = body.status, utcnow()
    if body.outcome is not None:
        delivery.ack_outcome = body.outcome
    if delivery.status == "queued":  # acknowledged before the worker saw the 2xx settle
        delivery.status, delivery.delivered_at = "delivered", delivery.acked_at
    session.add(delivery)
    audit.record(session, actor=agency.id, actor_agency=agency.id, action="delivery.ack",
                 outcome=body.status, flag_id=delivery.flag_id, recipient=agency.id,
                 reason=delivery.id)
    if news and (delivery.ack_status == "actioned" or delivery.ack_outcome):
        tell_publisher_of_outcome(session, agency, delivery)
    return delivery


def tell_publisher_of_outcome(session: Session, recipient: Agency, delivery: Delivery) -> None:
    """Close the loop: reviews found referrers were seldom told what happened next. A flag's
    publisher is sent `delivery.acknowledged` when a recipient records that it acted, or what
    came of it; the same facts the publisher may read on `GET /v1/flags/{id}/deliveries`."""
    if delivery.event_type not in FLAG_EVENTS:
        return
    flag = session.get(Flag, delivery.flag_id)  # never sent to its own publisher
    data = {
        "delivery_id": delivery.id, "flag_id": flag.id, "child_id": flag.child_id,
        "category": flag.category, "recipient": recipient.id, "recipient_name": recipient.name,
        "recipient_area": recipient.area, "status": delivery.ack_status,
        "outcome": delivery.ack_outcome, "acknowledged_at": rfc3339(delivery.acked_at),
    }
    # Not routed by category or area: it is about the publisher's own flag, and a subscription
    # chosen for what others publish must not silence it.
    enqueue(session, event=new_event(delivery.acked_at), event_type="delivery.acknowledged",
            recipient_id=flag.publisher_id, data=data, flag_id=flag.id)


def delivery_status(d: Delivery) -> str:
    return d.ack_status or d.status


# Error texts the worker writes, which `error_for_publisher` recognises.
REFUSED = "target refused: "
GONE = "HTTP 410: subscription disabled; available in the feed"
# What each kind of httpx failure is called for the publisher, most specific first.
HTTPX_FAILURES = ((httpx.TimeoutException, "timed out"),
                  (httpx.NetworkError, "connection failed"),
                  (httpx.ProtocolError, "invalid HTTP response"))


def error_for_publisher(error: str | None) -> str | None:
    """A delivery's error as agencies other than its recipient see it: the kind of failure,
    enough to chase the recipient by phone, without the host names and addresses of its
    infrastructure that `check_url` and httpx put in the full text (stored as it is, for
    operators)."""
    if error is None or error == GONE or re.fullmatch(r"HTTP \d{3}", error):
        return error
    if error.startswith(REFUSED + UNRESOLVED):
        return "receiver's host name does not resolve"
    if error.startswith(REFUSED):
        return "receiver refused by the network policy"
    failure = getattr(httpx, error.partition(":")[0], None)
    for kind, name in HTTPX_FAILURES:
        if isinstance(failure, type) and issubclass(failure, kind):
            return name
    return "delivery failed"


def unacknowledged_in_area(session: Session, area: str, now: datetime,
                           limit: int = 200) -> list[dict]:
    """Flag deliveries to the area's agencies still awaiting an acknowledgement, earliest
    deadline first: what the area's MASH chases (`delivery.unacknowledged` goes to it too)."""
    rows = session.exec(
        select(Delivery, Flag.child_id, Flag.category, Flag.publisher_id)
        .join(Agency, Agency.id == Delivery.recipient_id)
        .join(Flag, Flag.id == Delivery.flag_id)
        .where(Agency.area == area, Delivery.ack_status.is_(None),
               Delivery.acknowledge_by.is_not(None))
        .order_by(Delivery.acknowledge_by, Delivery.seq).limit(limit)).all()
    return [{"delivery_id": d.id, "event_type": d.event_type, "flag_id": d.flag_id,
             "child_id": child_id, "category": category, "publisher": publisher,
             "recipient": d.recipient_id, "status": delivery_status(d),
             "created_at": d.created_at, "acknowledge_by": d.acknowledge_by,
             "overdue": d.acknowledge_by < now}
            for d, child_id, category, publisher in rows]
