"""Forwarding: subscriptions, signed webhooks to real loopback receivers, feed, acks, escalation."""

from __future__ import annotations

import base64
import http.server
import json
import socket
import ssl
import threading
from datetime import date, datetime, timedelta, timezone

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.encoders import jsonable_encoder
from sqlalchemy import update
from sqlmodel import select
from standardwebhooks.webhooks import Webhook

from api.agencies.schemas import AgencyOut
from api.audit.models import AuditEvent
from api.db import utcnow
from api.encoding import json_ready
from api.forwarding.models import Delivery, Subscription
from api.forwarding.sealing import SEALED, SealedSecretError, seal_stored_secrets, unseal
from api.forwarding.targets import TargetRefused, check_url, pinned
from api.forwarding.service import GONE, error_for_publisher
from api.forwarding.worker import Claimed, DeliveryWorker, parse_retry_after
from api.idempotency.models import IdempotencyRecord
from api.pagination import encode_cursor
from tests.factories import NHS, flag_body, with_passphrase
from tests.receiver import Receiver




async def subscribe(client, world, who, delivery, **extra):
    r = await client.post("/v1/subscriptions", json={"delivery": delivery, **extra},
                          headers=world.auth(who))
    assert r.status_code == 201, r.text
    return r.json()


async def publish(client, world, who="POLICE-A", **override):
    r = await client.post("/v1/flags", json=flag_body(**override), headers=world.auth(who))
    assert r.status_code == 201, r.text
    return r.json()


async def feed(client, world, who, **params):
    r = await client.get("/v1/feed", params=params, headers=world.auth(who))
    assert r.status_code == 200, r.text
    return r.json()


def make_due(session):
    """Time travel for retries: every queued delivery is due now."""
    session.exec(update(Delivery).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    session.commit()


# --- webhooks -----------------------------------------------------------------------------

async def test_webhooks_are_signed_and_carry_only_allowed_fields(client, world, child, worker,
                                                                 session):
    with Receiver() as school_rx, Receiver() as csc_rx:
        school = await subscribe(client, world, "SCHOOL-A", {"mode": "webhook",
                                                             "url": school_rx.url})
        csc = await subscribe(client, world, "CSC-A", {"mode": "webhook", "url": csc_rx.url})
        assert school["secret"].startswith("whsec_")
        flag = await publish(client, world)
        assert worker.run_once() >= 2
        [to_school], [to_csc] = school_rx.requests, csc_rx.requests
    # The stock Standard Webhooks library verifies what we sent.
    event = Webhook(school["secret"]).verify(to_school.body, to_school.headers)
    Webhook(csc["secret"]).verify(to_csc.body, to_csc.headers)
    with pytest.raises(Exception):
        Webhook(csc["secret"]).verify(to_school.body, to_school.headers)
    assert event["type"] == "flag.shared" and event["data"]["flag"]["id"] == flag["id"]
    assert event["data"]["child"]["nhs_number"] == NHS[0]
    assert "details" not in event["data"]["flag"] and "related_people" not in event["data"]["flag"]
    assert to_csc.event["data"]["flag"]["details"].startswith("Partner arrested")
    assert to_school.event["id"] == to_csc.event["id"]  # one event, two deliveries
    assert to_school.headers["webhook-id"] != to_csc.headers["webhook-id"]
    statuses = (await client.get(f"/v1/flags/{flag['id']}/deliveries",
                                 headers=world.auth("POLICE-A"))).json()["items"]
    by_recipient = {s["recipient"]: s for s in statuses}
    assert by_recipient["SCHOOL-A"]["delivery_id"] == to_school.headers["webhook-id"]
    assert by_recipient["SCHOOL-A"]["status"] == "delivered"


async def test_failed_sends_retry_with_the_same_webhook_id(client, world, child, worker, session):
    responses = {0: (500, {}), 1: (503, {"Retry-After": "1"})}
    with Receiver(lambda n: responses.get(n, (200, {}))) as rx:
        await subscribe(client, world, "SCHOOL-A", {"mode": "webhook", "url": rx.url})
        await publish(client, world)
        for _ in range(3):
            worker.run_once()
            make_due(session)
        ids = rx.ids()
    assert len(ids) == 3 and len(set(ids)) == 1
    delivery = session.exec(select(Delivery).where(Delivery.id == ids[0])).one()
    session.refresh(delivery)
    assert delivery.status == "delivered" and delivery.attempts == 3


async def test_backoff_and_retry_after(client, world, child, worker, session):
    with Receiver(lambda n: (503, {"Retry-After": "7200"})) as rx:
        await subscribe(client, world, "SCHOOL-A", {"mode": "webhook", "url": rx.url})
        await publish(client, world)
        worker.run_once()
    delivery = session.exec(select(Delivery).where(Delivery.recipient_id == "SCHOOL-A")).one()
    session.refresh(delivery)
    wait = (delivery.next_attempt_at - utcnow()).total_seconds()
    assert 7000 < wait <= 7200 and delivery.status == "queued"
    assert delivery.last_error == "HTTP 503"
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", utcnow()) == 0.0


async def test_a_disabled_agency_is_sent_nothing_until_enabled_again(client, world, child,
                                                                     worker, session):
    """What was queued for an agency before it was disabled (a compromised system) waits,
    neither sent nor lost, and goes when it is enabled again."""
    with Receiver() as rx:
        await subscribe(client, world, "SCHOOL-A", {"mode": "webhook", "url": rx.url})
        flag = await publish(client, world)
        disable = {"disabled": True, "reason": "Suspected compromise: INC-77"}
        assert (await client.patch("/v1/agencies/SCHOOL-A", json=disable,
                                   headers=world.auth("admin"))).status_code == 200
        worker.run_once()
        assert rx.requests == []
        assert (await client.patch("/v1/agencies/SCHOOL-A", json={**disable, "disabled": False},
                                   headers=world.auth("admin"))).status_code == 200
        assert worker.run_once() == 1
        [sent] = rx.requests
    assert sent.event["data"]["flag"]["id"] == flag["id"]


async def test_gone_disables_the_subscription_and_keeps_the_item(client, world, child, worker,
                                                                 session):
    with Receiver(lambda n: (410, {})) as rx:
        sub = await subscribe(client, world, "SCHOOL-A", {"mode": "webhook", "url": rx.url})
        flag = await publish(client, world)
        worker.run_once()
    stored = session.get(Subscription, sub["id"])
    session.refresh(stored)
    assert not stored.active and "410" in stored.disabled_reason
    items = (await feed(client, world, "SCHOOL-A"))["items"]
    assert [i["event"]["data"]["flag"]["id"] for i in items] == [flag["id"]]


async def test_dead_letter_alerts_publisher_and_mash(client, world, child, app, settings, session):
    worker = DeliveryWorker(app.state.session_factory,
                            settings.model_copy(update={"webhook_max_attempts": 2}))
    with Receiver(lambda n: (500, {})) as rx:
        await subscribe(client, world, "SCHOOL-A", {"mode": "webhook", "url": rx.url})
        flag = await publish(client, world)
        worker.run_once()
        make_due(session)
        worker.run_once()
        assert len(rx.requests) == 2
    dead = session.exec(select(Delivery).where(Delivery.recipient_id == "SCHOOL-A")).one()
    session.refresh(dead)
    assert dead.status == "dead"
    for who in ("POLICE-A", "MASH-A"):
        alerts = [i["event"] for i in (await feed(client, world, who))["items"]
                  if i["event"]["type"] == "delivery.unacknowledged"]
        assert len(alerts) == 1, who
        data = alerts[0]["data"]
        assert data["flag_id"] == flag["id"] and data["recipient"] == "SCHOOL-A"
        assert "summary" not in str(data) and "could not be delivered" in data["reason"]
    told = unacknowledged_disclosures(session, flag["id"])  # settled in the same transaction
    assert sorted((e.recipient, e.child_id) for e in told) == [("MASH-A", child),
                                                               ("POLICE-A", child)]


@pytest.mark.parametrize("max_attempts", [1, 12], ids=["last-attempt", "retries-left"])
async def test_a_send_failing_after_the_recipient_acknowledged_is_not_chased(
        client, world, child, app, settings, session, max_attempts):
    """The recipient acknowledged while a send was in flight (it had the item from an earlier
    attempt whose answer was lost): the failure is kept on record, but the delivery is not
    retried, not dead, and nobody is told it was not delivered."""
    worker = DeliveryWorker(app.state.session_factory,
                            settings.model_copy(update={"webhook_max_attempts": max_attempts}))
    with Receiver(lambda n: (503, {})) as rx:
        await subscribe(client, world, "SCHOOL-A", {"mode": "webhook", "url": rx.url})
        flag = await publish(client, world)
        [claimed] = worker.claim(10)
        r = await client.post(f"/v1/deliveries/{claimed.delivery_id}/ack",
                              json={"status": "received"}, headers=world.auth("SCHOOL-A"))
        assert r.status_code == 200, r.text
        worker.settle([(claimed, worker.send(claimed))])
        make_due(session)
        worker.run_once()
        assert len(rx.requests) == 1
    stored = session.exec(select(Delivery).where(Delivery.id == claimed.delivery_id)).one()
    session.refresh(stored)
    assert (stored.status, stored.ack_status, stored.last_error) == ("delivered", "received",
                                                                     "HTTP 503")
    for who in ("POLICE-A", "MASH-A"):
        assert [i for i in (await feed(client, world, who))["items"]
                if i["event"]["type"] == "delivery.unacknowledged"] == [], who
    statuses = (await client.get(f"/v1/flags/{flag['id']}/deliveries",
                                 headers=world.auth("POLICE-A"))).json()["items"]
    [school] = [s for s in statuses if s["recipient"] == "SCHOOL-A"]
    assert (school["status"], school["attempts"], school["last_error"]) == ("received", 1,
                                                                            "HTTP 503")


async def test_the_publisher_sees_why_a_delivery_fails_but_not_the_recipients_addresses(
        client, world, child, app, settings, session):
    """The receiver's URL resolves to a private address the network policy refuses: the
    publisher (a different agency) and the MASH it alerts learn that, not the address; the
    full error stays stored for operators."""
    worker = DeliveryWorker(app.state.session_factory, settings.model_copy(
        update={"environment": "production", "webhook_max_attempts": 1}))
    await subscribe(client, world, "SCHOOL-A", {"mode": "webhook",
                                                "url": "https://10.1.2.3/hooks"})
    flag = await publish(client, world)
    assert worker.run_once() == 1
    stored = session.exec(select(Delivery).where(Delivery.recipient_id == "SCHOOL-A")).one()
    session.refresh(stored)
    assert stored.last_error == "target refused: resolves to a non-public address (10.1.2.3)"
    statuses = (await client.get(f"/v1/flags/{flag['id']}/deliveries",
                                 headers=world.auth("POLICE-A"))).json()["items"]
    [school] = [s for s in statuses if s["recipient"] == "SCHOOL-A"]
    assert (school["status"], school["last_error"]) == (
        "dead", "receiver refused by the network policy")
    for who in ("POLICE-A", "MASH-A"):
        [alert] = [i["event"]["data"] for i in (await feed(client, world, who))["items"]
                   if i["event"]["type"] == "delivery.unacknowledged"]
        assert alert["reason"] == ("could not be delivered after 1 attempts "
                                   "(receiver refused by the network policy)"), who


@pytest.mark.parametrize("stored, shown", [
    (None, None),
    ("HTTP 503", "HTTP 503"),
    ("HTTP 410", "HTTP 410"),
    (GONE, GONE),
    ("target refused: resolves to a non-public address (10.1.2.3)",
     "receiver refused by the network policy"),
    ("target refused: must use https outside development",
     "receiver refused by the network policy"),
    ("target refused: host does not resolve: [Errno -2] Name or service not known",
     "receiver's host name does not resolve"),
    ("ConnectError: [Errno 111] Connection refused", "connection failed"),
    ("ReadError: [Errno 104] Connection reset by peer", "connection failed"),
    ("ConnectTimeout: timed out connecting to hooks.csc.internal:443", "timed out"),
    ("ReadTimeout: The read operation timed out", "timed out"),
    ("RemoteProtocolError: Server disconnected without sending a response.",
     "invalid HTTP response"),
    ("ProxyError: 403 from proxy 10.9.9.9:3128", "delivery failed"),
    ("HTTP 502 from gateway 10.1.2.3", "delivery failed"),
])
def test_the_publisher_is_shown_the_kind_of_failure_only(stored, shown):
    assert error_for_publisher(stored) == shown


def test_the_errors_sends_store_are_ones_the_publisher_view_knows(app, settings):
    """The classification reads the texts `send` writes: a refused connection and a receiver
    slower than the timeout, as sent for real."""
    worker = DeliveryWorker(app.state.session_factory,
                            settings.model_copy(update={"webhook_timeout_seconds": 0.2}))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    secret = "whsec_" + base64.b64encode(bytes(32)).decode()
    refused = worker.send(Claimed("msg_1", f"http://127.0.0.1:{port}/hooks", secret, "{}"))
    with Receiver(delay=1.0) as slow:
        late = worker.send(Claimed("msg_2", slow.url, secret, "{}"))
    assert error_for_publisher(refused.error) == "connection failed", refused.error
    assert error_for_publisher(late.error) == "timed out", late.error


def test_a_send_goes_to_the_address_the_guard_checked(app, settings, monkeypatch):
    """DNS rebinding: a name that resolves to a public address when checked and to a private
    one a moment later must not lead the send there, so the send connects to the address
    checked, keeping the name for `Host` and TLS. DNS and the far end are stood in for (this
    machine may reach loopback only): a resolver that rebinds after its first answer, and
    httpx's MockTransport recording where the request was sent."""
    answers = iter(["8.8.8.8", "127.0.0.1"])
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port: [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), 0))])
    sent = []
    http = httpx.Client(transport=httpx.MockTransport(
        lambda request: sent.append(request) or httpx.Response(204)))
    prod = settings.model_copy(update={"environment": "production"})
    worker = DeliveryWorker(app.state.session_factory, prod, http=http)
    secret = "whsec_" + base64.b64encode(bytes(32)).decode()
    outcome = worker.send(Claimed("msg_1", "https://hooks.example.org:8443/in?x=1", secret, "{}"))
    assert outcome.status_code == 204, outcome
    [request] = sent
    assert str(request.url) == "https://8.8.8.8:8443/in?x=1"
    assert request.headers["host"] == "hooks.example.org:8443"
    assert request.extensions["sni_hostname"] == "hooks.example.org"
    assert request.headers["webhook-id"] == "msg_1"


def _tls_receiver(tmp_path, name: str):
    """An HTTPS server on loopback with a self-signed certificate for `name`: (port, CA file,
    Host headers it was sent, the server to shut down)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    hosts = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            hosts.append(self.headers["host"])
            self.rfile.read(int(self.headers["content-length"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1], cert_file, hosts, server


def test_a_send_to_the_checked_address_still_checks_the_certificate_by_name(tmp_path):
    """Real TLS on loopback: sent to the address, the certificate is still checked against
    the URL's host name, so a pinned send cannot be taken by a server without one for it."""
    port, ca, hosts, server = _tls_receiver(tmp_path, "hooks.test")
    try:
        with httpx.Client(verify=ssl.create_default_context(cafile=str(ca))) as http:
            url, host, extensions = pinned(f"https://hooks.test:{port}/in", "127.0.0.1")
            assert http.post(url, content=b"{}", headers=host,
                             extensions=extensions).status_code == 204
            assert hosts == [f"hooks.test:{port}"]
            url, host, extensions = pinned(f"https://other.test:{port}/in", "127.0.0.1")
            with pytest.raises(httpx.ConnectError, match="Hostname mismatch"):
                http.post(url, content=b"{}", headers=host, extensions=extensions)
    finally:
        server.shutdown()


# --- subscriptions narrow, never widen ----------------------------------------------------

async def test_subscription_narrows_what_is_sent(client, world, child, worker, session):
    await subscribe(client, world, "SCHOOL-A", {"mode": "feed"}, categories=["missing_episode"])
    incident = await publish(client, world)  # domestic abuse: not in the school's selection
    assert (await feed(client, world, "SCHOOL-A"))["items"] == []
    # The publisher is not left believing the school was told.
    assert "SCHOOL-A" in incident["shared_with"]
    assert [n["agency"] for n in incident["not_sent"]] == ["SCHOOL-A"]
    assert "was not sent" in incident["not_sent"][0]["reason"]
    as_published = await client.get(f"/v1/flags/{incident['id']}",
                                    headers=world.auth("POLICE-A"))
    assert as_published.json()["not_sent"] == incident["not_sent"]
    school = await client.get(f"/v1/flags/{incident['id']}", headers=world.auth("SCHOOL-A"))
    assert school.status_code == 200 and "not_sent" not in school.json()  # it may still read it
    missing = await publish(client, world, category="missing_episode",
                            summary="Amelia was reported missing from home for six hours "
                                    "overnight and was found by police at a stranger's flat.")
    assert missing["not_sent"] == [] and "SCHOOL-A" in missing["shared_with"]
    items = (await feed(client, world, "SCHOOL-A"))["items"]
    assert [i["event"]["data"]["flag"]["category"] for i in items] == ["missing_episode"]


async def test_subscription_cannot_widen_the_policy(client, world, child, session):
    # The policy never gives parental mental health to schools; subscribing changes nothing.
    await subscribe(client, world, "SCHOOL-A", {"mode": "feed"},
                    categories=["parental_mental_health"])
    await publish(client, world, who="GP-A", category="parental_mental_health",
                  summary="Amelia's mother was admitted to a mental health ward today; Amelia "
                          "is staying with her grandmother.")
    assert (await feed(client, world, "SCHOOL-A"))["items"] == []


@pytest.mark.parametrize("body, field", [
    ({"delivery": {"mode": "webhook", "url": "ftp://x.example/h"}}, "delivery.url"),
    ({"delivery": {"mode": "webhook", "url": "https://x.example/h", "secret": "abc"}},
     "delivery.secret"),
    ({"delivery": {"mode": "pigeon"}}, "delivery"),
    ({"delivery": {"mode": "feed"}, "categories": ["weather"]}, "categories.0"),
    ({"delivery": {"mode": "feed"}, "areas": ["E06999999"]}, "areas.0"),
    ({"delivery": {"mode": "feed"}, "categories": []}, "categories"),  # would select nothing
    ({"delivery": {"mode": "feed"}, "areas": []}, "areas"),
])
async def test_bad_subscriptions_are_422(client, world, session, body, field):
    r = await client.post("/v1/subscriptions", json=body, headers=world.auth("SCHOOL-A"))
    assert r.status_code == 422, r.text
    assert any(e["field"].startswith(field.split(".")[0]) for e in r.json()["errors"])
    assert session.exec(select(Subscription)).all() == []


UNKNOWN_AREA = ("E06999999 is not an area known to this service (not in the policy data and "
                "no registered agency there)")
UNKNOWN_CATEGORY = "unknown category 'weather'; the policy defines: "  # then its list


@pytest.mark.parametrize("body, errors", [
    ({"categories": ["domestic_abuse_incident", "weather"], "areas": ["E06999999"],
      "delivery": {"mode": "webhook", "url": "ftp://x.example/h", "secret": "abc"}},
     {"categories.1": UNKNOWN_CATEGORY, "areas.0": UNKNOWN_AREA,
      "delivery.url": "must be an absolute http(s) URL with a host",
      "delivery.secret": "must start with whsec_"}),
    ({"categories": ["weather"], "areas": ["E08000025", "E06999999"],
      "delivery": {"mode": "webhook", "url": "ftp://x.example/h"}},
     {"categories.0": UNKNOWN_CATEGORY, "areas.1": UNKNOWN_AREA,
      "delivery.url": "must be an absolute http(s) URL with a host"}),
], ids=["with-a-field-the-schema-refuses", "each-judged-in-context"])
async def test_one_422_names_every_bad_field_by_its_path_in_the_body(client, world, session,
                                                                     policy, body, errors):
    """Categories and areas are judged against the policy and the registered agencies, the
    URL against the settings: all named in one 422, with any field the schema refuses, each
    where it is in the body (`delivery.secret`, not pydantic's `delivery.webhook.secret`)."""
    audited = len(session.exec(select(AuditEvent)).all())
    r = await client.post("/v1/subscriptions", json=body, headers=world.auth("SCHOOL-A"))
    assert r.status_code == 422, r.text
    named = {e["field"]: e["message"] for e in r.json()["errors"]}
    errors = {field: message + ", ".join(sorted(policy.categories))
              if message == UNKNOWN_CATEGORY else message for field, message in errors.items()}
    assert named == errors
    assert session.exec(select(Subscription)).all() == []
    assert len(session.exec(select(AuditEvent)).all()) == audited


def test_ssrf_guard_outside_development(settings):
    prod = settings.model_copy(update={"environment": "production"})
    for url in ("http://hooks.example.org/x", "https://127.0.0.1/x", "https://10.1.2.3/x",
                "https://[::1]/x", "https://localhost/x", "https://169.254.169.254/latest"):
        with pytest.raises(TargetRefused):
            check_url(url, prod, resolve=False)
    check_url("https://8.8.8.8/x", prod, resolve=False)  # a public address is fine
    check_url("http://127.0.0.1:9/x", settings, resolve=False)  # development allows loopback
    allowed = prod.model_copy(update={"webhook_allow_private": True})
    check_url("https://10.1.2.3/x", allowed, resolve=False)


async def test_subscriptions_are_private_to_their_agency(client, world, session):
    sub = await subscribe(client, world, "SCHOOL-A", {"mode": "feed"})
    mine = (await client.get("/v1/subscriptions", headers=world.auth("SCHOOL-A"))).json()
    theirs = (await client.get("/v1/subscriptions", headers=world.auth("SCHOOL-A2"))).json()
    assert [s["id"] for s in mine["items"]] == [sub["id"]] and theirs["items"] == []
    assert "secret" not in mine["items"][0]
    r = await client.delete(f"/v1/subscriptions/{sub['id']}", headers=world.auth("SCHOOL-A2"))
    assert r.status_code == 404
    assert (await client.delete(f"/v1/subscriptions/{sub['id']}",
                                headers=world.auth("SCHOOL-A"))).status_code == 204
    assert (await client.post("/v1/subscriptions", json={"delivery": {"mode": "feed"}},
                              headers=world.auth("mash.a"))).status_code == 403


async def test_an_unsubscribe_retried_with_its_key_is_answered_as_the_first(client, world,
                                                                            session):
    sub = await subscribe(client, world, "SCHOOL-A", {"mode": "feed"})
    url, keyed = f"/v1/subscriptions/{sub['id']}", {**world.auth("SCHOOL-A"),
                                                    "Idempotency-Key": "unsubscribe-1"}
    first = await client.delete(url, headers=keyed)
    again = await client.delete(url, headers=keyed)  # the first answer was lost on the way
    assert first.status_code == again.status_code == 204
    assert again.content == b"" and again.headers["idempotent-replayed"] == "true"
    deleted = session.exec(select(AuditEvent).where(
        AuditEvent.action == "subscription.delete", AuditEvent.actor == "SCHOOL-A")).all()
    assert len(deleted) == 1
    # without the key, the subscription is simply gone
    assert (await client.delete(url, headers=world.auth("SCHOOL-A"))).status_code == 404


async def test_with_a_passphrase_webhook_secrets_are_stored_sealed_and_still_sign(
        client, world, child, app, settings, session, tmp_path):
    """A copy of the database must not let anyone sign events as this service."""
    sealed = with_passphrase(settings, tmp_path)
    app.state.settings = sealed
    with Receiver() as rx:
        sub = await subscribe(client, world, "SCHOOL-A", {"mode": "webhook", "url": rx.url})
        stored = session.get(Subscription, sub["id"]).secret
        assert stored.startswith(SEALED) and sub["secret"] not in stored
        assert sub["secret"].removeprefix("whsec_") not in stored
        flag = await publish(client, world)
        assert DeliveryWorker(app.state.session_factory, sealed).run_once() >= 1
        [got] = rx.requests
    event = Webhook(sub["secret"]).verify(got.body, got.headers)
    assert event["data"]["flag"]["id"] == flag["id"]


async def test_a_replayed_subscription_never_stores_nor_shows_its_secret(
        client, world, settings, app, session, tmp_path):
    """The idempotency record keeps the response for replays: with the secret in it, a copy of
    the database would hold every webhook secret in the clear, passphrase or not."""
    app.state.settings = with_passphrase(settings, tmp_path)
    body = {"delivery": {"mode": "webhook", "url": "https://school.example/hooks"}}
    headers = {**world.auth("SCHOOL-A"), "Idempotency-Key": "subscribe-1"}
    first = await client.post("/v1/subscriptions", json=body, headers=headers)
    assert first.status_code == 201 and first.json()["secret"].startswith("whsec_")
    secret = first.json()["secret"]
    stored = session.exec(select(IdempotencyRecord).where(
        IdempotencyRecord.key == "subscribe-1")).one()
    assert secret.removeprefix("whsec_") not in json.dumps(stored.response_body)
    again = await client.post("/v1/subscriptions", json=body, headers=headers)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == {k: v for k, v in first.json().items() if k != "secret"}


async def test_secrets_in_the_clear_are_sealed_at_start_and_need_their_passphrase(
        client, world, settings, session, tmp_path):
    longest = "whsec_" + base64.b64encode(bytes(range(64))).decode()
    sub = await subscribe(client, world, "SCHOOL-A", {"mode": "webhook", "secret": longest,
                                                      "url": "https://school.example/hooks"})
    assert session.get(Subscription, sub["id"]).secret == longest  # no passphrase: as given
    passphrase = with_passphrase(settings, tmp_path).signing_key_passphrase
    assert seal_stored_secrets(session, passphrase) == 1
    stored = session.get(Subscription, sub["id"]).secret
    assert stored.startswith(SEALED) and len(stored) <= 200  # the column's length
    assert unseal(stored, passphrase) == longest
    assert seal_stored_secrets(session, passphrase) == 0  # once
    with pytest.raises(SealedSecretError, match="FLAGSHARE_SIGNING_KEY_PASSPHRASE_FILE"):
        seal_stored_secrets(session, None)
    with pytest.raises(SealedSecretError, match="does not open"):
        seal_stored_secrets(session, b"a wrong passphrase")
    assert unseal(stored, passphrase) == longest  # refusing changed nothing


# --- feed ---------------------------------------------------------------------------------

async def test_feed_pages_resume_exactly_where_they_stopped(client, world, child, session):
    published = [(await publish(client, world, summary=f"Incident number {i}: police attended "
                                "and Amelia was present, frightened but unhurt."))["id"]
                 for i in range(5)]
    seen, cursor = [], None
    while True:
        page = await feed(client, world, "SCHOOL-A", limit=2,
                          **({"cursor": cursor} if cursor else {}))
        if not page["items"]:
            break
        seen += [i["event"]["data"]["flag"]["id"] for i in page["items"]]
        cursor = page["next_cursor"]
    assert seen == published
    # caught up: null, as a generic "page until next_cursor is null" loop expects
    assert (await feed(client, world, "SCHOOL-A", cursor=cursor))["next_cursor"] is None
    paged, after = [], None
    while True:
        page = await feed(client, world, "SCHOOL-A", limit=2,
                          **({"cursor": after} if after else {}))
        paged += [i["event"]["data"]["flag"]["id"] for i in page["items"]]
        if (after := page["next_cursor"]) is None:
            break
    assert paged == published
    later = await publish(client, world)
    page = await feed(client, world, "SCHOOL-A", cursor=cursor)
    assert [i["event"]["data"]["flag"]["id"] for i in page["items"]] == [later["id"]]
    assert (await feed(client, world, "SCHOOL-A2"))["items"] == []
    bad = await client.get("/v1/feed", params={"cursor": "!!"}, headers=world.auth("SCHOOL-A"))
    assert bad.status_code == 422


FORGED_CURSORS = [10**30, 2**63, 2**31, -1, True, False, 1.5, None, [1], {"a": 1}, "a\x00b"]


@pytest.mark.parametrize("path, who, key", [
    ("/v1/feed", "SCHOOL-A", 1),
    ("/v1/flags/{flag}/deliveries", "POLICE-A", 1),
    ("/v1/audit/events", "auditor", 1),
    ("/v1/children/{child}/disclosures", "auditor", 1),
    ("/v1/subscriptions", "SCHOOL-A", "a"),
])
async def test_a_forged_cursor_is_422_naming_it(client, world, child, session, path, who, key):
    """Only a key of the type the list is ordered by, and in range, is a cursor we issued."""
    flag = await publish(client, world)
    url = path.format(flag=flag["id"], child=child)
    wrong_type = "x" if isinstance(key, int) else 5
    for value in [*FORGED_CURSORS, wrong_type]:
        r = await client.get(url, params={"cursor": encode_cursor(value)},
                             headers=world.auth(who))
        assert r.status_code == 422, (value, r.text)
        assert [e["field"] for e in r.json()["errors"]] == ["cursor"], value
    r = await client.get(url, params={"cursor": encode_cursor(key)}, headers=world.auth(who))
    assert r.status_code == 200, r.text


async def test_feed_long_poll_waits_then_returns_empty(client, world, session):
    import time

    start = time.monotonic()
    page = await feed(client, world, "SCHOOL-A", wait=0.6)
    assert page["items"] == [] and time.monotonic() - start >= 0.5
    r = await client.get("/v1/feed", params={"wait": 31}, headers=world.auth("SCHOOL-A"))
    assert r.status_code == 422


async def test_feed_needs_an_agency_token(client, world):
    assert (await client.get("/v1/feed", headers=world.auth("mash.a"))).status_code == 403
    assert (await client.get("/v1/feed")).status_code == 401


# --- acknowledgements and escalation ------------------------------------------------------

async def test_acks_are_seen_by_the_publisher(client, world, child, session):
    flag = await publish(client, world)
    item = (await feed(client, world, "SCHOOL-A"))["items"][0]
    did = item["delivery_id"]
    url = f"/v1/deliveries/{did}/ack"
    assert (await client.post(url, json={"status": "received"},
                              headers=world.auth("SCHOOL-A2"))).status_code == 404
    assert (await client.post(url, json={"status": "received"},
                              headers=world.auth("SCHOOL-A"))).status_code == 200
    done = await client.post(url, json={"status": "actioned", "outcome": "DSL spoke to Amelia "
                                        "at the start of the school day; she is safe."},
                             headers=world.auth("SCHOOL-A"))
    assert done.status_code == 200 and done.json()["status"] == "actioned"
    statuses = (await client.get(f"/v1/flags/{flag['id']}/deliveries",
                                 headers=world.auth("POLICE-A"))).json()["items"]
    school = next(s for s in statuses if s["recipient"] == "SCHOOL-A")
    assert school["status"] == "actioned" and school["ack_outcome"].startswith("DSL spoke")
    # A recipient knows the flag exists, so it is told why it may not see the others'.
    mine = await client.get(f"/v1/flags/{flag['id']}/deliveries", headers=world.auth("SCHOOL-A"))
    assert mine.status_code == 403 and "Only the publishing agency" in mine.json()["detail"]
    downgrade = await client.post(url, json={"status": "received"},
                                  headers=world.auth("SCHOOL-A"))
    assert downgrade.status_code == 409
    bad = await client.post(url, json={"status": "ignored"}, headers=world.auth("SCHOOL-A"))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "status"


def acknowledged(items: list[dict]) -> list[dict]:
    return [i["event"]["data"] for i in items if i["event"]["type"] == "delivery.acknowledged"]


async def test_the_publisher_is_told_what_came_of_its_flag(client, world, child, session):
    """Closing the loop: the referrer hears when a recipient acts, and the outcome."""
    flag = await publish(client, world)
    did = next(i["delivery_id"] for i in (await feed(client, world, "SCHOOL-A"))["items"])
    url = f"/v1/deliveries/{did}/ack"

    async def ack(**body):
        r = await client.post(url, json=body, headers=world.auth("SCHOOL-A"))
        assert r.status_code == 200, r.text

    await ack(status="received")  # received, nothing more to tell
    assert acknowledged((await feed(client, world, "POLICE-A"))["items"]) == []
    outcome = "DSL met Amelia at the start of the school day; she is safe and has a key adult."
    await ack(status="actioned", outcome=outcome)
    await ack(status="actioned", outcome=outcome)  # the same again: no news
    [told] = acknowledged((await feed(client, world, "POLICE-A"))["items"])
    assert told["delivery_id"] == did and told["flag_id"] == flag["id"]
    assert told["child_id"] == flag["child_id"] and told["category"] == flag_body()["category"]
    assert (told["recipient"], told["status"], told["outcome"]) == ("SCHOOL-A", "actioned",
                                                                    outcome)
    await ack(status="actioned", outcome="Referred to the school nurse as well.")
    later = acknowledged((await feed(client, world, "POLICE-A"))["items"])
    assert [t["outcome"] for t in later] == [outcome, "Referred to the school nurse as well."]
    # Nobody else hears it, and it is not a flag delivery awaiting acknowledgement.
    for other in ("SCHOOL-A", "CSC-A", "GP-A", "MASH-A"):
        assert acknowledged((await feed(client, world, other))["items"]) == [], other
    statuses = (await client.get(f"/v1/flags/{flag['id']}/deliveries",
                                 headers=world.auth("POLICE-A"))).json()["items"]
    assert {s["event_type"] for s in statuses} == {"flag.shared"}
    view = await client.get(f"/v1/children/{flag['child_id']}", headers=world.auth("mash.a"),
                            params={"purpose": "mash_triage", "reason": "Closing the loop"})
    assert view.status_code == 200, view.text
    assert {d["event_type"] for d in view.json()["outstanding_deliveries"]} == {"flag.shared"}


async def test_the_outcome_reaches_a_publisher_subscribed_to_other_categories(client, world,
                                                                               child):
    await subscribe(client, world, "POLICE-A", {"mode": "feed"}, categories=["missing_episode"])
    flag = await publish(client, world)
    did = next(i["delivery_id"] for i in (await feed(client, world, "CSC-A"))["items"])
    r = await client.post(f"/v1/deliveries/{did}/ack", headers=world.auth("CSC-A"),
                          json={"status": "received", "outcome": "Strategy discussion today."})
    assert r.status_code == 200, r.text
    [told] = acknowledged((await feed(client, world, "POLICE-A"))["items"])
    assert told["flag_id"] == flag["id"] and told["status"] == "received"
    assert told["outcome"] == "Strategy discussion today."


def unacknowledged_disclosures(session, flag_id: str) -> list[AuditEvent]:
    session.expire_all()
    return session.exec(select(AuditEvent).where(
        AuditEvent.action == "alert.disclose", AuditEvent.outcome == "delivery.unacknowledged",
        AuditEvent.flag_id == flag_id).order_by(AuditEvent.seq)).all()


def overdue_at_school(session) -> tuple[Delivery, timedelta]:
    """The school's copy of the flag just published, its acknowledgement a minute overdue;
    and its acknowledgement window."""
    school = session.exec(select(Delivery).where(Delivery.recipient_id == "SCHOOL-A")).one()
    window = school.acknowledge_by - school.created_at
    session.exec(update(Delivery).where(Delivery.seq == school.seq).values(
        acknowledge_by=utcnow() - timedelta(minutes=1), created_at=utcnow() - window))
    session.commit()
    return school, window


async def test_silence_is_escalated_once_per_window(client, world, child, worker, session):
    flag = await publish(client, world)
    school, window = overdue_at_school(session)

    def alerts(who):
        return session.exec(select(Delivery).where(
            Delivery.recipient_id == who, Delivery.event_type == "delivery.unacknowledged")).all()

    assert worker.escalate() >= 1
    assert worker.escalate() == 0  # same window: nothing new
    assert len(alerts("POLICE-A")) == 1 and len(alerts("MASH-A")) == 1
    # The child's id and the flag's category left the service: one disclosure per recipient,
    # under the rule whose acknowledgement deadline was missed.
    told = unacknowledged_disclosures(session, flag["id"])
    assert sorted(e.recipient for e in told) == ["MASH-A", "POLICE-A"]
    assert {(e.actor, e.child_id, e.purpose, e.lawful_basis, e.policy_rule) for e in told} == {
        ("flagshare", child, "child_protection", "6(1)(e) + 9(2)(g) + schedule1-part2-para18",
         "DAI-SCHOOL")}
    assert all(school.id in e.reason and "SCHOOL-A not acknowledged by" in e.reason
               for e in told)
    r = await client.get(f"/v1/children/{child}/disclosures", params={"limit": 500},
                         headers=world.auth("auditor"))
    assert r.status_code == 200, r.text
    listed = sorted((i["action"], i["disclosed_to"], i["flag_id"], i["category"])
                    for i in r.json()["items"] if i["outcome"] == "delivery.unacknowledged")
    assert listed == [("alert.disclose", who, flag["id"], "domestic_abuse_incident")
                      for who in ("MASH-A", "POLICE-A")]
    # A whole window later, once more.
    session.exec(update(Delivery).where(Delivery.seq == school.seq).values(
        acknowledge_by=utcnow() - window - timedelta(minutes=1),
        created_at=utcnow() - 2 * window))
    session.commit()
    worker.escalate()
    assert len(alerts("POLICE-A")) == 2
    assert len(unacknowledged_disclosures(session, flag["id"])) == 4  # each alert, audited
    # Acknowledged: no more chasing.
    await client.post(f"/v1/deliveries/{school.id}/ack", json={"status": "received"},
                      headers=world.auth("SCHOOL-A"))
    session.exec(update(Delivery).where(Delivery.seq == school.seq).values(
        created_at=utcnow() - 10 * window))
    session.commit()
    worker.escalate()
    assert len(alerts("POLICE-A")) == 2


async def test_a_disabled_agency_is_neither_alerted_nor_chased(client, world, child, worker,
                                                               session):
    """Disabled, an agency is sent no alert, and no disclosure to it is recorded; a delivery
    held for it is not chased as unacknowledged meanwhile."""
    flag = await publish(client, world)
    overdue_at_school(session)
    admin = world.auth("admin")

    async def set_disabled(agency_id: str, disabled: bool) -> None:
        r = await client.patch(f"/v1/agencies/{agency_id}", headers=admin,
                               json={"disabled": disabled, "reason": "Test"})
        assert r.status_code == 200, r.text

    await set_disabled("SCHOOL-A", True)
    assert worker.escalate() == 0
    await set_disabled("SCHOOL-A", False)
    await set_disabled("MASH-A", True)
    assert worker.escalate() == 1
    alerted = session.exec(select(Delivery.recipient_id).where(
        Delivery.event_type == "delivery.unacknowledged")).all()
    assert alerted == ["POLICE-A"]
    assert [e.recipient for e in unacknowledged_disclosures(session, flag["id"])] == ["POLICE-A"]


async def test_updates_reach_everyone_who_received_the_flag(client, world, child, session):
    flag = await publish(client, world)
    r = await client.patch(f"/v1/flags/{flag['id']}", json={"status": "entered_in_error"},
                           headers=world.auth("POLICE-A"))
    assert r.status_code == 200
    events = [i["event"] for i in (await feed(client, world, "SCHOOL-A"))["items"]]
    assert [e["type"] for e in events] == ["flag.shared", "flag.updated"]
    assert events[1]["data"]["flag"]["status"] == "entered_in_error"
    assert events[1]["data"]["flag"]["version"] == 2


def test_event_data_is_encoded_as_fastapi_would():
    """json_ready replaces jsonable_encoder on the publish path: same result, dates, tuples,
    nested models and all, but a UTC time written with `Z`, as the API's responses write it."""
    now = utcnow()
    data = {"flag": {"created_at": now, "fields": ("summary", "details"), "end": None,
                     "related_people": [{"birth_date": date(1990, 2, 28), "nhs_number": "1"}]},
            "agency": AgencyOut(id="GP-A", name="GP", kind="gp", area="E08000025"),
            "count": 3, "shared": True, "ratio": 0.5}
    encoded = json_ready(data)
    assert encoded["flag"]["created_at"] == now.isoformat().replace("+00:00", "Z")
    expected = jsonable_encoder(data)
    expected["flag"]["created_at"] = encoded["flag"]["created_at"]
    assert encoded == expected
    assert encoded["flag"]["fields"] == ["summary", "details"]


async def test_every_copy_of_an_event_says_when_it_happened_alike(client, world, child, session):
    """One event, one time: each recipient's copy was stamped as it was queued, microseconds
    apart; and its times are written as the API writes them (`Z`)."""
    await publish(client, world)
    copies = session.exec(select(Delivery).where(Delivery.event_type == "flag.shared")).all()
    assert len(copies) >= 3 and len({d.event_id for d in copies}) == 1
    assert len({d.payload["occurred_at"] for d in copies}) == 1
    occurred = copies[0].payload["occurred_at"]
    assert occurred.endswith("Z")
    feed_copy = (await feed(client, world, copies[0].recipient_id))["items"][0]["event"]
    assert feed_copy["occurred_at"] == occurred
