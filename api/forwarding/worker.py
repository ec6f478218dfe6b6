"""The delivery worker: sends queued webhooks and chases unacknowledged deliveries.

Work is claimed with a short lease (`SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL, so
several workers share the queue without sending the same delivery twice); the send happens
outside any transaction; the result is settled in a new one. A worker killed mid-batch leaves
leases that expire, and the deliveries are sent again with the same webhook-id: at least once.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import ColumnElement, case, func, update
from sqlmodel import Session, or_, select
from standardwebhooks.webhooks import Webhook

from api.agencies.models import Agency
from api.audit import service as audit
from api.audit.checkpoints import Checkpointer
from api.auth.keys import KeyRing
from api.db import utcnow
from api.encoding import rfc3339
from api.forwarding import service
from api.forwarding.models import Delivery, Subscription
from api.forwarding.sealing import unseal
from api.forwarding.service import GONE, REFUSED, error_for_publisher
from api.forwarding.targets import TargetRefused, check_url, pinned
from api.policy.loader import Policy
from api.ratelimit import forget_refilled_failures
from api.settings import Settings
from api.transfers.notify import LAWFUL_BASIS as ALERT_LAWFUL_BASIS
from api.transfers.notify import PURPOSE as ALERT_PURPOSE
from api.transfers.service import sweep_overdue

log = logging.getLogger("flagshare.worker")
# Seconds before attempt n+1: minutes at first, then hours; about a day end to end.
BACKOFF = [5, 30, 120, 600, 1800, 3600, 7200, 14400, 21600, 28800]
MAX_RETRY_AFTER = 86400
SEND_CONCURRENCY = 8
SWEEP_EVERY_SECONDS = 30.0  # deadlines are whole working days; a sweep is cheap and safe


@dataclass(frozen=True)
class Claimed:
    delivery_id: str
    url: str
    secret: str
    body: str


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None = None
    retry_after: float | None = None


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff with +-20 % jitter so retries from many deliveries spread out."""
    base = BACKOFF[min(attempts - 1, len(BACKOFF) - 1)]
    return base * random.uniform(0.8, 1.2)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max((when - now).total_seconds(), 0.0), MAX_RETRY_AFTER)


def serialise(payload: dict) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


class DeliveryWorker:
    def __init__(self, session_factory: Callable[[], Session], settings: Settings,
                 http: httpx.Client | None = None, policy: Policy | None = None):
        self.session_factory = session_factory
        self.settings = settings
        self.policy = policy  # given: this worker also runs the transfer deadline sweep
        self._passphrase = settings.signing_key_passphrase  # opens sealed webhook secrets
        self._next_sweep = 0.0
        self.http = http or httpx.Client(timeout=settings.webhook_timeout_seconds,
                                         follow_redirects=False,
                                         limits=httpx.Limits(max_connections=SEND_CONCURRENCY))
        self._pool = ThreadPoolExecutor(SEND_CONCURRENCY, thread_name_prefix="flagshare-send")
        self.checkpointer = Checkpointer(session_factory, KeyRing(settings, session_factory))

    # --- one pass -------------------------------------------------------------------------

    def run_once(self, batch: int = 50) -> int:
        """Send what is due, then escalate silence; now and then sign the audit chain's head,
        sweep transfer deadlines and forget spent failed sign-ins. Returns the number of sends
        attempted."""
        claimed = self.claim(batch)
        # Sends overlap (receivers are slow, not us); settling stays one transaction each.
        if claimed:
            self.settle(list(zip(claimed, self._pool.map(self.send, claimed))))
        self.escalate()
        self.checkpointer.run_once()  # signs the audit chain head when due
        if time.monotonic() >= self._next_sweep:
            self.move_stragglers()
            if self.policy is not None:
                sweep_overdue(self.session_factory, self.policy)
            forget_refilled_failures(self.session_factory, self.settings)
            self._next_sweep = time.monotonic() + SWEEP_EVERY_SECONDS
        return len(claimed)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                busy = self.run_once()
            except Exception:  # a database blip must not kill the worker; it retries
                log.exception("delivery pass failed")
                busy = 0
            if not busy:
                stop.wait(self.settings.worker_poll_seconds)

    def claim(self, limit: int) -> list[Claimed]:
        now = utcnow()
        with self.session_factory() as session:
            rows = session.exec(
                select(Delivery, Subscription)
                .join(Subscription, Subscription.id == Delivery.subscription_id)
                # a disabled agency's deliveries wait, queued, until it is enabled again
                .join(Agency, Agency.id == Delivery.recipient_id)
                .where(Delivery.status == "queued", Delivery.mode == "webhook",
                       Subscription.active.is_(True), Agency.disabled.is_(False),
                       Delivery.next_attempt_at <= now,
                       or_(Delivery.lease_until.is_(None), Delivery.lease_until < now))
                .order_by(Delivery.seq).limit(limit)
                .with_for_update(skip_locked=True, of=Delivery)
            ).all()
            claimed = []
            for delivery, sub in rows:
                delivery.lease_until = now + timedelta(seconds=self.settings.worker_lease_seconds)
                session.add(delivery)
                claimed.append(Claimed(delivery.id, sub.url,
                                       unseal(sub.secret, self._passphrase),
                                       serialise(delivery.payload)))
            session.commit()
        return claimed

    def send(self, item: Claimed) -> Outcome:
        try:
            address = check_url(item.url, self.settings, resolve=True)
        except TargetRefused as exc:
            return Outcome(None, f"{REFUSED}{exc}")
        url, host, extensions = pinned(item.url, address)
        now = utcnow()
        signature = Webhook(item.secret).sign(item.delivery_id, now, item.body)
        headers = {
            "content-type": "application/json",
            "user-agent": "flagshare-webhooks/1",
            "webhook-id": item.delivery_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
            **host,
        }
        try:
            resp = self.http.post(url, content=item.body.encode(), headers=headers,
                                  extensions=extensions)
        except httpx.HTTPError as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}"[:500])
        return Outcome(resp.status_code, None if resp.is_success else f"HTTP {resp.status_code}",
                       parse_retry_after(resp.headers.get("retry-after"), now))

    def settle(self, results: list[tuple[Claimed, Outcome]]) -> None:
        """Record a batch's outcomes in one transaction (one chain lock, one commit).

        Deliveries are found by id: one moved to the feed meanwhile keeps its id, not its
        `seq`. Subscriptions that answered 410 end last, once every row here is settled."""
        now = utcnow()
        with self.session_factory() as session:
            rows = {d.id: d for d in session.exec(
                select(Delivery).where(Delivery.id.in_([item.delivery_id for item, _ in results]))
                .order_by(Delivery.seq).with_for_update())}
            gone = set()
            for item, outcome in results:
                if sub_id := self._settle_one(session, rows[item.delivery_id], outcome, now):
                    gone.add(sub_id)
            if gone:
                service.end_subscriptions(
                    session, [session.get(Subscription, sub_id) for sub_id in gone],
                    "the receiver answered 410 Gone")
            session.commit()

    def _settle_one(self, session: Session, delivery: Delivery, outcome: Outcome,
                    now: datetime) -> str | None:
        """Returns the delivery's subscription if the receiver answered 410 Gone."""
        delivery.lease_until = None
        delivery.attempts += 1
        gone = delivery.subscription_id if outcome.status_code == 410 else None
        if outcome.status_code is not None and 200 <= outcome.status_code < 300:
            delivery.status, delivery.delivered_at, delivery.last_error = "delivered", now, None
            service.record_handover(session, delivery, "webhook")
        elif delivery.mode == "feed" or delivery.ack_status is not None:
            # The feed has it (its subscription ended while it was sent) or the recipient said
            # it has it (acknowledged meanwhile): nothing to retry or chase; the error is kept.
            delivery.last_error = outcome.error
        elif gone:
            delivery.last_error = GONE
        elif delivery.attempts >= self.settings.webhook_max_attempts:
            delivery.status, delivery.last_error = "dead", outcome.error
            if delivery.event_type in service.FLAG_EVENTS:
                alert_unacknowledged(session, delivery, "could not be delivered after "
                                     f"{delivery.attempts} attempts "
                                     f"({error_for_publisher(outcome.error)})")
        else:
            wait = max(backoff_seconds(delivery.attempts), outcome.retry_after or 0)
            delivery.next_attempt_at = now + timedelta(seconds=wait)
            delivery.last_error = outcome.error
        session.add(delivery)
        return gone

    def move_stragglers(self) -> None:
        """Items of ended subscriptions that were in flight, or held, as they ended; and any
        left by a worker that died mid-send: the claim skips them, so they move to the feed."""
        with self.session_factory() as session:
            service.move_to_feed(session)
            session.commit()

    # --- escalation -----------------------------------------------------------------------

    def escalate(self) -> int:
        """`delivery.unacknowledged` once per elapsed window, even with several workers.

        Only deliveries whose current window has not been chased are read: those already
        chased must not fill the batch and hide later ones."""
        now = utcnow()
        with self.session_factory() as session:
            # Held while its agency is disabled, a delivery is not chased meanwhile.
            due = session.exec(select(Delivery).join(Agency, Agency.id == Delivery.recipient_id)
                               .where(Agency.disabled.is_(False), Delivery.ack_status.is_(None),
                                      Delivery.acknowledge_by <= now, Delivery.status != "dead",
                                      Delivery.event_type.in_(service.FLAG_EVENTS),
                                      _next_window_starts() <= now.timestamp())
                               .order_by(Delivery.seq).limit(200)).all()
            candidates = [(d.seq, d.escalations_sent, windows_elapsed(d, now)) for d in due]
        sent = 0
        for seq, already, windows in candidates:
            if windows <= already:
                continue
            with self.session_factory() as session:
                claimed = session.exec(update(Delivery).where(
                    Delivery.seq == seq, Delivery.escalations_sent == already)
                    .values(escalations_sent=windows))
                if claimed.rowcount != 1:  # another worker took this window
                    session.rollback()
                    continue
                delivery = session.get(Delivery, seq)
                alert_unacknowledged(session, delivery, "not acknowledged by "
                                     f"{delivery.acknowledge_by.isoformat()}")
                session.commit()
                sent += 1
        return sent


MIN_WINDOW_SECONDS = 60.0


def windows_elapsed(delivery: Delivery, now: datetime) -> int:
    """How many acknowledgement windows have passed since the deadline, counting the first."""
    window = max((delivery.acknowledge_by - delivery.created_at).total_seconds(),
                 MIN_WINDOW_SECONDS)
    return 1 + int((now - delivery.acknowledge_by).total_seconds() // window)


def _next_window_starts() -> ColumnElement[float]:
    """In SQL, as seconds since 1970: when the window after those already chased begins (the
    deadline itself before the first); `windows_elapsed` exceeds `escalations_sent` from then.
    (Whole seconds on SQLite: a row read a second early is passed over by that check.)"""
    deadline = func.extract("epoch", Delivery.acknowledge_by)
    window = deadline - func.extract("epoch", Delivery.created_at)
    window = case((window > MIN_WINDOW_SECONDS, window), else_=MIN_WINDOW_SECONDS)
    return deadline + Delivery.escalations_sent * window


def alert_unacknowledged(session: Session, delivery: Delivery, reason: str) -> None:
    """Tell the publisher and the recipient area's MASH; no flag content travels, but the
    child's id and the flag's category do, so each copy queued is an `alert.disclose` event
    (in the caller's transaction): chasing the acknowledgement the share rule asked for, under
    the safeguarding basis transfer and move alerts cite."""
    from api.flags.models import Disclosure, Flag

    flag = session.get(Flag, delivery.flag_id)
    recipient = session.get(Agency, delivery.recipient_id)
    data = {
        "delivery_id": delivery.id, "flag_id": flag.id, "child_id": flag.child_id,
        "category": flag.category, "recipient": recipient.id, "recipient_name": recipient.name,
        "recipient_area": recipient.area, "sent_at": rfc3339(delivery.created_at),
        "acknowledge_by": rfc3339(delivery.acknowledge_by),
        "delivery_status": delivery.status, "attempts": delivery.attempts, "reason": reason,
    }
    shared = session.get(Disclosure, delivery.disclosure_id) if delivery.disclosure_id else None
    mash = session.exec(select(Agency.id).where(Agency.kind == "mash",
                                                Agency.area == recipient.area)).all()
    event = service.new_event()
    for target in dict.fromkeys([flag.publisher_id, *mash]):
        if target == recipient.id:
            continue
        queued = service.enqueue(session, event=event, event_type="delivery.unacknowledged",
                                 recipient_id=target, data=data, areas=[recipient.area],
                                 flag_id=flag.id)
        if queued is None:  # its subscriptions leave out the area: nothing was sent
            continue
        audit.record(session, actor="flagshare", action="alert.disclose",
                     outcome="delivery.unacknowledged", child_id=flag.child_id,
                     flag_id=flag.id, recipient=target, purpose=ALERT_PURPOSE,
                     lawful_basis=ALERT_LAWFUL_BASIS,
                     policy_rule=shared.policy_rule if shared else None,
                     policy_version=shared.policy_version if shared else None,
                     reason=f"delivery {delivery.id} to {recipient.id} {reason}")


def start_in_process(session_factory, settings: Settings,
                     policy: Policy) -> tuple[threading.Thread, threading.Event]:
    """The embedded default: the worker runs beside the API in a daemon thread."""
    stop = threading.Event()
    worker = DeliveryWorker(session_factory, settings, policy=policy)
    thread = threading.Thread(target=worker.run, args=(stop,), name="flagshare-worker",
                              daemon=True)
    thread.start()
    return thread, stop
