"""The token endpoint, JWKS, bearer-token verification and role checks (api/auth).

Tokens are checked here with code independent of ours: signatures with `cryptography`
directly against the published JWKS, and claims by python-jose's own `jwt.decode`. Hostile
tokens are crafted by hand (base64url + RSA/HMAC) so that no library refuses to make them.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from jose import jwt as jose_jwt
from pydantic import ValidationError
from sqlmodel import Session, func, select
from standardwebhooks.webhooks import Webhook

from api.agencies.models import Agency
from api.audit import checkpoints
from api.audit.models import AuditEvent
from api.audit.verify import Checkpoint, check_signature, keys_from_jwks
from api.auth import jwt
from api.auth.jwt import new_rsa_key
from api.auth.keys import KeyRing, SigningKeyError, reseal_signing_keys
from api.auth.models import SigningKey, User
from api.auth.passwords import hash_secret, new_client_secret, verify_secret
from api.forwarding.models import Subscription
from api.forwarding.sealing import (SEALED, SealedSecretError, reseal_stored_secrets, seal,
                                    seal_stored_secrets, unseal)
from api.db import get_session, make_engine, utcnow
from api.main import create_app
from api.settings import Settings, TrustedIssuer
from tests.factories import (AGENCIES, BIRMINGHAM, NHS, PASSWORD, SECRET, SANDWELL, flag_body,
                             relationship_body, with_passphrase)
from tests.processes import free_port, run_cli, running_server, wait_until
from tests.receiver import Receiver

TOKEN = "/v1/oauth/token"
PROTECTED = "/v1/agencies"
CHILD_READ = {"nhs_number": NHS[0], "purpose": "mash_triage", "reason": "Referral"}


# --- helpers: hand-made JWTs and an independent verifier -------------------------------------

def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def segment(obj) -> str:
    return b64url(json.dumps(obj).encode())


@functools.cache
def _private_key(private_pem: str):
    return serialization.load_pem_private_key(private_pem.encode(), password=None)


def rs256(header: dict, claims, private_pem: str, digest=hashes.SHA256) -> str:
    key = _private_key(private_pem)
    signing_input = f"{segment(header)}.{segment(claims)}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), digest())
    return f"{signing_input}.{b64url(signature)}"


def hs256(header: dict, claims: dict, secret: bytes) -> str:
    signing_input = f"{segment(header)}.{segment(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def header_of(token: str) -> dict:
    return json.loads(b64url_decode(token.split(".")[0]))


def claims_of(token: str) -> dict:
    return json.loads(b64url_decode(token.split(".")[1]))


def public_key_from_jwk(jwk: dict) -> rsa.RSAPublicKey:
    n = int.from_bytes(b64url_decode(jwk["n"]), "big")
    e = int.from_bytes(b64url_decode(jwk["e"]), "big")
    return rsa.RSAPublicNumbers(e, n).public_key()


def stock_verify(token: str, jwks: dict, *, issuer: str, audience: str = "flagshare") -> dict:
    """Verify with the published keys only: RSA signature by hand, claims by python-jose."""
    header = header_of(token)
    assert header["alg"] == "RS256"
    matching = [k for k in jwks["keys"] if k.get("kid") == header["kid"]]
    assert len(matching) == 1, f"kid {header['kid']} not exactly once in the JWKS"
    signing_input, _, signature = token.rpartition(".")
    public_key_from_jwk(matching[0]).verify(
        b64url_decode(signature), signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    return jose_jwt.decode(token, matching[0], algorithms=["RS256"], audience=audience,
                           issuer=issuer)


def audit_count(session: Session, **where) -> int:
    q = select(func.count()).select_from(AuditEvent)
    for column, value in where.items():
        q = q.where(getattr(AuditEvent, column) == value)
    return session.exec(q).one()


def last_audit(session: Session) -> AuditEvent:
    session.expire_all()
    return session.exec(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).one()


def problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == status
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


@pytest.fixture
def own_key(world, session) -> tuple[str, str]:
    """(kid, private PEM) of the key the service signs with, read from the database."""
    kid = header_of(world.token("GP-A"))["kid"]
    row = session.get(SigningKey, kid)
    assert row is not None and row.retired_at is None
    return kid, row.private_pem


def base_claims(world, who: str = "GP-A", **override) -> dict:
    """The claims of a valid token for `who`, as world.token would make them."""
    claims = claims_of(world.token(who))
    claims.update(override)
    return {k: v for k, v in claims.items() if v is not ...}


# --- the token endpoint ----------------------------------------------------------------------

async def test_client_credentials_in_form_issue_a_verifiable_token(client, world, settings):
    before = int(time.time())
    r = await client.post(TOKEN, data={"grant_type": "client_credentials",
                                       "client_id": "GP-A", "client_secret": SECRET})
    assert r.status_code == 200, r.text
    assert "no-store" in r.headers["cache-control"]
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == settings.token_ttl_seconds
    token = body["access_token"]

    jwks = (await client.get("/.well-known/jwks.json")).json()
    claims = stock_verify(token, jwks, issuer=settings.issuer)
    assert header_of(token)["kid"] in {k["kid"] for k in jwks["keys"]}
    assert claims["iss"] == settings.issuer == "https://flagshare.test"
    assert claims["aud"] == "flagshare"
    assert claims["sub"] == "GP-A"
    assert claims["role"] == "agency_system"
    assert claims["agency"] == "GP-A"
    assert claims["area"] == BIRMINGHAM
    assert before - 1 <= claims["iat"] <= int(time.time()) + 1
    assert claims["exp"] - claims["iat"] == body["expires_in"]
    uuid.UUID(claims["jti"])

    # and the service itself accepts what it issued
    r = await client.get("/v1/agencies/GP-B", headers=bearer(token))
    assert r.status_code == 200, r.text


async def test_client_credentials_by_http_basic(client, world, settings):
    r = await client.post(TOKEN, data={"grant_type": "client_credentials"},
                          headers=basic("CSC-B", SECRET))
    assert r.status_code == 200, r.text
    jwks = (await client.get("/.well-known/jwks.json")).json()
    claims = stock_verify(r.json()["access_token"], jwks, issuer=settings.issuer)
    assert (claims["sub"], claims["agency"], claims["area"]) == ("CSC-B", "CSC-B", SANDWELL)


async def test_each_token_has_its_own_jti(client, world):
    form = {"grant_type": "client_credentials", "client_id": "GP-A", "client_secret": SECRET}
    first = (await client.post(TOKEN, data=form)).json()["access_token"]
    second = (await client.post(TOKEN, data=form)).json()["access_token"]
    assert claims_of(first)["jti"] != claims_of(second)["jti"]


@pytest.mark.parametrize("username,role,agency,area", [
    ("mash.a", "mash_practitioner", "MASH-A", BIRMINGHAM),
    ("mash.b", "mash_practitioner", "MASH-B", SANDWELL),
    ("auditor", "auditor", None, None),
    ("admin", "admin", None, None),
])
async def test_password_grant_for_people(client, world, settings, username, role, agency, area):
    r = await client.post(TOKEN, data={"grant_type": "password", "username": username,
                                       "password": PASSWORD})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == settings.token_ttl_seconds
    jwks = (await client.get("/.well-known/jwks.json")).json()
    claims = stock_verify(body["access_token"], jwks, issuer=settings.issuer)
    assert claims["sub"] == username
    assert claims["role"] == role
    assert claims.get("agency") == agency
    assert claims.get("area") == area
    assert {"iat", "exp", "jti"} <= claims.keys()


async def test_admin_password_token_can_register_an_agency(client, world):
    r = await client.post(TOKEN, data={"grant_type": "password", "username": "admin",
                                       "password": PASSWORD})
    token = r.json()["access_token"]
    r = await client.post("/v1/agencies", headers=bearer(token), json={
        "id": "GP-NEW", "name": "New practice", "kind": "gp", "area": BIRMINGHAM})
    assert r.status_code == 201, r.text


async def test_successful_token_issues_are_audited(client, world, session):
    r = await client.post(TOKEN, data={"grant_type": "client_credentials",
                                       "client_id": "POLICE-A", "client_secret": SECRET})
    assert r.status_code == 200
    event = last_audit(session)
    assert (event.action, event.actor, event.actor_agency) == (
        "token.issue", "POLICE-A", "POLICE-A")
    assert event.outcome == "issued"

    r = await client.post(TOKEN, data={"grant_type": "password", "username": "mash.b",
                                       "password": PASSWORD})
    assert r.status_code == 200
    event = last_audit(session)
    assert (event.action, event.actor, event.actor_agency) == ("login", "mash.b", "MASH-B")
    assert event.outcome != "denied"


def _disable_agency(session, agency_id):
    session.get(Agency, agency_id).disabled = True
    session.commit()


def _disable_user(session, username):
    session.exec(select(User).where(User.username == username)).one().disabled = True
    session.commit()


CLIENT_FAILURES = {
    "wrong secret": ({"client_id": "GP-A", "client_secret": "not-the-secret"}, {}, None),
    "unknown client": ({"client_id": "NO-SUCH", "client_secret": SECRET}, {}, None),
    "another agency's id": ({"client_id": "GP-B", "client_secret": "x" + SECRET}, {}, None),
    "wrong secret by basic": ({}, basic("GP-A", "wrong"), None),
    "unknown client by basic": ({}, basic("NOPE", SECRET), None),
    "disabled agency": ({"client_id": "HOUSING-A", "client_secret": SECRET}, {},
                        lambda s: _disable_agency(s, "HOUSING-A")),
    "over-long client id": ({"client_id": "G" * 5000, "client_secret": SECRET}, {}, None),
}


@pytest.mark.parametrize("case", CLIENT_FAILURES)
async def test_bad_client_credentials_are_invalid_client_and_audited(client, world, session, case):
    form, headers, setup = CLIENT_FAILURES[case]
    if setup:
        setup(session)
    before = audit_count(session, action="token.issue", outcome="denied")
    r = await client.post(TOKEN, data={"grant_type": "client_credentials", **form},
                          headers=headers)
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_client"
    assert "access_token" not in r.json()
    assert "WWW-Authenticate" in r.headers
    assert audit_count(session, action="token.issue", outcome="denied") == before + 1


USER_FAILURES = {
    "wrong password": ({"username": "admin", "password": "wrong"}, None),
    "unknown user": ({"username": "nobody", "password": PASSWORD}, None),
    "another user's password": ({"username": "auditor", "password": PASSWORD + "x"}, None),
    "case-changed username": ({"username": "ADMIN", "password": PASSWORD}, None),
    "disabled user": ({"username": "mash.a", "password": PASSWORD},
                      lambda s: _disable_user(s, "mash.a")),
    "agency id as username": ({"username": "GP-A", "password": SECRET}, None),
}


@pytest.mark.parametrize("case", USER_FAILURES)
async def test_bad_passwords_are_invalid_grant_and_audited(client, world, session, case):
    form, setup = USER_FAILURES[case]
    if setup:
        setup(session)
    before = audit_count(session, action="login", outcome="denied")
    r = await client.post(TOKEN, data={"grant_type": "password", **form})
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_grant"
    assert "access_token" not in r.json()
    assert audit_count(session, action="login", outcome="denied") == before + 1


async def test_failed_login_audit_names_who_tried(client, world, session):
    await client.post(TOKEN, data={"grant_type": "password", "username": "mash.a",
                                   "password": "guess"})
    event = last_audit(session)
    assert (event.action, event.actor, event.outcome) == ("login", "mash.a", "denied")


@pytest.mark.parametrize("form", [
    {},
    {"client_id": "GP-A", "client_secret": SECRET},
    {"grant_type": "client_credentials"},
    {"grant_type": "client_credentials", "client_id": "GP-A"},
    {"grant_type": "client_credentials", "client_secret": SECRET},
    {"grant_type": "client_credentials", "client_id": "", "client_secret": SECRET},
    {"grant_type": "password"},
    {"grant_type": "password", "username": "admin"},
    {"grant_type": "password", "password": PASSWORD},
])
async def test_missing_fields_are_invalid_request(client, world, form):
    r = await client.post(TOKEN, data=form)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request"


@pytest.mark.parametrize("grant", ["authorization_code", "refresh_token", "implicit",
                                   "urn:ietf:params:oauth:grant-type:jwt-bearer", "PASSWORD"])
async def test_unknown_grant_type_is_unsupported(client, world, grant):
    r = await client.post(TOKEN, data={"grant_type": grant, "client_id": "GP-A",
                                       "client_secret": SECRET, "username": "admin",
                                       "password": PASSWORD})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "unsupported_grant_type"


async def test_json_body_is_not_a_token_request(client, world):
    r = await client.post(TOKEN, json={"grant_type": "client_credentials", "client_id": "GP-A",
                                       "client_secret": SECRET})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request"


# --- the published key set -------------------------------------------------------------------

async def test_jwks_publishes_public_rsa_keys_only(client, world, own_key):
    r = await client.get("/.well-known/jwks.json")
    assert r.status_code == 200
    keys = r.json()["keys"]
    assert keys, "no keys published"
    kids = [k["kid"] for k in keys]
    assert len(kids) == len(set(kids))
    assert own_key[0] in kids
    for k in keys:
        assert k["kty"] == "RSA" and k["alg"] == "RS256" and k.get("use", "sig") == "sig"
        assert not {"d", "p", "q", "dp", "dq", "qi"} & k.keys(), "private key material published"
        assert public_key_from_jwk(k).key_size >= 2048


async def test_openapi_describes_token_endpoint_and_jwks(client):
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "post" in paths[TOKEN]
    assert "get" in paths["/.well-known/jwks.json"]


# --- hostile and broken bearer tokens --------------------------------------------------------

async def test_hand_made_token_is_accepted(client, world, own_key):
    """Control for the attacks below: the same crafting, done right, passes."""
    kid, pem = own_key
    token = rs256({"alg": "RS256", "typ": "JWT", "kid": kid}, base_claims(world), pem)
    r = await client.get(PROTECTED, headers=bearer(token))
    assert r.status_code == 200, r.text


def _public_pem(private_pem: str, fmt) -> bytes:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM, fmt)


@functools.cache
def _other_rsa_pem() -> str:
    """A key nobody trusts (made once: RSA key generation is slow)."""
    return new_rsa_key()[0]


def _other_public_jwk() -> dict:
    numbers = _private_key(_other_rsa_pem()).public_key().public_numbers()
    return {"kty": "RSA", "n": b64url(numbers.n.to_bytes(256, "big")),
            "e": b64url(numbers.e.to_bytes(3, "big"))}


def _tampered(world) -> str:
    token = world.token("GP-A")
    head, _, sig = token.split(".")
    claims = claims_of(token) | {"role": "admin"}
    return f"{head}.{segment(claims)}.{sig}"


def _attack_tokens(world, kid: str, pem: str) -> dict[str, Callable[[], str]]:
    """Each attack by name, made on demand."""
    now = int(time.time())
    rs = {"alg": "RS256", "typ": "JWT", "kid": kid}
    good = base_claims(world)
    spki = _public_pem(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
    pkcs1 = _public_pem(pem, serialization.PublicFormat.PKCS1)
    return {
        "garbage": lambda: "not-a-token",
        "three garbage segments": lambda: "abc.def.ghi",
        "two segments": lambda: f"{segment(rs)}.{segment(good)}",
        "header not an object": lambda: f"{b64url(b'[1]')}.{segment(good)}.{b64url(b'x')}",
        "payload not an object": lambda: rs256(rs, [1, 2], pem),
        "alg none": lambda: f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(good)}.",
        "alg None with kid": lambda: f"{segment({'alg': 'None', 'kid': kid})}.{segment(good)}.",
        "HS256 keyed with public PEM (SPKI)":
            lambda: hs256({"alg": "HS256", "kid": kid}, good, spki),
        "HS256 keyed with public PEM (PKCS1)":
            lambda: hs256({"alg": "HS256", "kid": kid}, good, pkcs1),
        "HS256 keyed with public PEM, no kid": lambda: hs256({"alg": "HS256"}, good, spki),
        "RS512 with our key":
            lambda: rs256({"alg": "RS512", "kid": kid}, good, pem, hashes.SHA512),
        "expired": lambda: rs256(rs, good | {"iat": now - 600, "exp": now - 60}, pem),
        "not yet valid (nbf)": lambda: rs256(rs, good | {"nbf": now + 600}, pem),
        "wrong aud": lambda: rs256(rs, good | {"aud": "someone-else"}, pem),
        "aud list without us": lambda: rs256(rs, good | {"aud": ["a", "b"]}, pem),
        "missing aud": lambda: world.token("GP-A", aud=...),
        "missing exp": lambda: world.token("GP-A", exp=...),
        "missing sub": lambda: world.token("GP-A", sub=...),
        "sub not a string": lambda: rs256(rs, good | {"sub": 12345}, pem),
        "empty sub": lambda: rs256(rs, good | {"sub": ""}, pem),
        "exp not a number": lambda: rs256(rs, good | {"exp": "tomorrow"}, pem),
        "missing iss": lambda: world.token("GP-A", iss=...),
        "wrong iss": lambda: world.token("GP-A", iss="https://evil.example"),
        "iss not a string": lambda: rs256(rs, good | {"iss": ["https://flagshare.test"]}, pem),
        "unknown kid": lambda: rs256(rs | {"kid": "no-such-kid"}, good, pem),
        "no kid": lambda: rs256({"alg": "RS256", "typ": "JWT"}, good, pem),
        "kid not a string": lambda: rs256(rs | {"kid": [kid]}, good, pem),
        "kid an object": lambda: rs256(rs | {"kid": {"k": kid}}, good, pem),
        "other RSA key with our kid": lambda: rs256(rs, good, _other_rsa_pem()),
        "embedded jwk header": lambda: rs256(rs | {"jwk": _other_public_jwk()}, good,
                                             _other_rsa_pem()),
        "jku header": lambda: rs256(rs | {"jku": "https://evil.example/jwks.json"}, good,
                                    _other_rsa_pem()),
        "tampered payload": lambda: _tampered(world),
        "signature stripped": lambda: world.token("GP-A").rsplit(".", 1)[0] + ".",
        "unknown role": lambda: world.token("GP-A", role="superuser"),
        "missing role": lambda: world.token("GP-A", role=...),
        "role not a string": lambda: rs256(rs, good | {"role": ["admin"]}, pem),
        "agency_system without agency": lambda: world.token("GP-A", agency=...),
        "agency_system with empty agency": lambda: world.token("GP-A", agency=""),
        "agency not a string": lambda: rs256(rs, good | {"agency": ["GP-A", "GP-B"]}, pem),
        "area not a string": lambda: rs256(rs, good | {"area": {"code": BIRMINGHAM}}, pem),
        "NUL in sub": lambda: rs256(rs, good | {"sub": "GP-A\x00"}, pem),
        "NUL in agency": lambda: rs256(rs, good | {"agency": "GP-A\x00"}, pem),
    }


ATTACKS = [
    "garbage", "three garbage segments", "two segments", "header not an object",
    "payload not an object", "alg none", "alg None with kid",
    "HS256 keyed with public PEM (SPKI)", "HS256 keyed with public PEM (PKCS1)",
    "HS256 keyed with public PEM, no kid", "RS512 with our key", "expired",
    "not yet valid (nbf)", "wrong aud", "aud list without us", "missing aud", "missing exp",
    "missing sub", "sub not a string", "empty sub", "exp not a number", "missing iss",
    "wrong iss", "iss not a string", "unknown kid", "no kid", "kid not a string",
    "kid an object", "other RSA key with our kid", "embedded jwk header", "jku header",
    "tampered payload", "signature stripped",
    "unknown role", "missing role", "role not a string", "agency_system without agency",
    "agency_system with empty agency", "agency not a string", "area not a string", "NUL in sub",
    "NUL in agency",
]


@pytest.mark.parametrize("attack", ATTACKS)
async def test_hostile_tokens_are_refused(client, world, own_key, attack):
    tokens = _attack_tokens(world, *own_key)
    assert set(tokens) == set(ATTACKS)
    r = await client.get(PROTECTED, headers=bearer(tokens[attack]()))
    problem(r, 401)
    assert "invalid_token" in r.headers.get("www-authenticate", "")
    # the same request with a good token passes, so the refusal is the token's doing
    assert (await client.get(PROTECTED, headers=world.auth("GP-A"))).status_code == 200


def test_a_kid_that_now_names_another_key_refuses_tokens_of_the_old_one():
    """Keys built from JWKs are kept (building one costs as much as a check): by the key's own
    numbers, so an issuer that reuses a kid for a new key is not answered with the old one."""
    first, second = new_rsa_key(), (_other_rsa_pem(), _other_public_jwk())
    now = int(time.time())
    claims = {"sub": "s", "iss": "https://idp.test", "aud": "flagshare", "exp": now + 60}
    token = jwt.sign(claims, first[0], "k1")
    assert jwt.verify(token, {"k1": first[1]}, issuer="https://idp.test",
                      audience="flagshare")["sub"] == "s"
    with pytest.raises(jwt.TokenInvalid):
        jwt.verify(token, {"k1": second[1]}, issuer="https://idp.test", audience="flagshare")
    assert jwt.verify(jwt.sign(claims, second[0], "k1"), {"k1": second[1]},
                      issuer="https://idp.test", audience="flagshare")["sub"] == "s"
    with pytest.raises(jwt.TokenInvalid, match="not an RSA key"):  # nor one that is not RSA
        jwt.verify(token, {"k1": {"kty": "oct", "k": "c2VjcmV0"}}, issuer="https://idp.test",
                   audience="flagshare")


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": "Token abc"},
    basic("GP-A", SECRET),
])
async def test_missing_bearer_token_is_401(client, world, headers):
    r = await client.get(PROTECTED, headers=headers)
    problem(r, 401)
    assert r.headers.get("www-authenticate", "").startswith("Bearer")


async def test_aud_list_including_us_is_accepted(client, world, own_key):
    kid, pem = own_key
    token = rs256({"alg": "RS256", "kid": kid}, base_claims(world, aud=["other", "flagshare"]), pem)
    assert (await client.get(PROTECTED, headers=bearer(token))).status_code == 200


# --- roles -----------------------------------------------------------------------------------

NEW_AGENCY = {"id": "SCHOOL-NEW", "name": "New school", "kind": "education", "area": BIRMINGHAM}


@pytest.mark.parametrize("who", ["GP-A", "MASH-A", "CSC-B", "mash.a", "auditor"])
async def test_only_admin_registers_agencies(client, world, session, who):
    r = await client.post("/v1/agencies", json=NEW_AGENCY, headers=world.auth(who))
    body = problem(r, 403)
    assert "admin" in body["detail"]
    assert session.get(Agency, "SCHOOL-NEW") is None
    r = await client.post("/v1/agencies", json=NEW_AGENCY, headers=world.auth("admin"))
    assert r.status_code == 201, r.text


async def test_role_claim_decides_not_the_subject(client, world):
    """A token whose subject is named "admin" but whose role is not admin gets no admin rights:
    it names the person `admin`, whose account has another role, so it is not valid at all."""
    r = await client.post("/v1/agencies", json=NEW_AGENCY,
                          headers=world.auth("GP-A", sub="admin"))
    problem(r, 401)
    r = await client.post("/v1/agencies", json=NEW_AGENCY,
                          headers=world.auth("auditor", sub="admin"))
    problem(r, 401)


async def test_register_needs_a_token(client, world, session):
    problem(await client.post("/v1/agencies", json=NEW_AGENCY), 401)
    assert session.get(Agency, "SCHOOL-NEW") is None


# --- trusted extra issuers -------------------------------------------------------------------

IDP = "https://idp.example"


@pytest.fixture
def idp_key(tmp_path):
    """An outside identity provider's key pair and its JWKS file."""
    pem, public = new_rsa_key()
    kid = "idp-key-1"
    path = tmp_path / "idp-jwks.json"
    path.write_text(json.dumps({"keys": [{**public, "kid": kid}]}))
    return kid, pem, path


def _app_with(settings, connection, session, **changes):
    app = create_app(settings.model_copy(update=changes),
                     session_factory=lambda: Session(bind=connection,
                                                     join_transaction_mode="create_savepoint",
                                                     expire_on_commit=False))

    def _test_session():
        yield session

    app.dependency_overrides[get_session] = _test_session
    return app


@pytest.fixture
async def idp_client(settings, connection, session, world, idp_key):
    app = _app_with(settings, connection, session,
                    trusted_issuers=[TrustedIssuer(issuer=IDP, jwks_file=idp_key[2])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://flagshare.test") as c:
        yield c


def _idp_claims(**override) -> dict:
    now = int(time.time())
    claims = {"iss": IDP, "aud": "flagshare", "sub": "practitioner@idp.example", "iat": now,
              "exp": now + 300, "jti": str(uuid.uuid4()), "role": "mash_practitioner",
              "agency": "MASH-A", "area": BIRMINGHAM}
    claims.update(override)
    return {k: v for k, v in claims.items() if v is not ...}


async def test_trusted_issuer_token_is_accepted(idp_client, idp_key):
    kid, pem, _ = idp_key
    token = rs256({"alg": "RS256", "kid": kid}, _idp_claims(), pem)
    r = await idp_client.get(PROTECTED, headers=bearer(token))
    assert r.status_code == 200, r.text


async def test_trusted_issuer_also_keeps_our_own_tokens_working(idp_client, world):
    assert (await idp_client.get(PROTECTED, headers=world.auth("GP-A"))).status_code == 200


async def test_trusted_issuer_setting_parses_from_environment_json(settings, idp_key):
    changed = type(settings)(**{**settings.model_dump(exclude={"trusted_issuers"}),
                                "trusted_issuers": json.dumps(
                                    [{"issuer": IDP, "jwks_file": str(idp_key[2])}])})
    assert changed.trusted_issuers[0].issuer == IDP


@pytest.mark.parametrize("case", [
    "key not in its JWKS, published kid", "key not in its JWKS, unknown kid",
    "untrusted issuer", "our issuer with the idp key", "wrong aud", "expired",
    "missing aud", "HS256 keyed with the idp public PEM",
])
async def test_trusted_issuer_refusals(idp_client, idp_key, own_key, case):
    kid, pem, _ = idp_key
    spki = _public_pem(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
    now = int(time.time())
    token = {
        "key not in its JWKS, published kid":
            rs256({"alg": "RS256", "kid": kid}, _idp_claims(), _other_rsa_pem()),
        "key not in its JWKS, unknown kid":
            rs256({"alg": "RS256", "kid": "idp-key-2"}, _idp_claims(), _other_rsa_pem()),
        "untrusted issuer":
            rs256({"alg": "RS256", "kid": kid}, _idp_claims(iss="https://evil.example"), pem),
        "our issuer with the idp key":
            rs256({"alg": "RS256", "kid": own_key[0]}, _idp_claims(iss="https://flagshare.test"),
                  pem),
        "wrong aud": rs256({"alg": "RS256", "kid": kid}, _idp_claims(aud="idp-portal"), pem),
        "expired": rs256({"alg": "RS256", "kid": kid}, _idp_claims(exp=now - 5), pem),
        "missing aud": rs256({"alg": "RS256", "kid": kid}, _idp_claims(aud=...), pem),
        "HS256 keyed with the idp public PEM":
            hs256({"alg": "HS256", "kid": kid}, _idp_claims(), spki),
    }[case]
    r = await idp_client.get(PROTECTED, headers=bearer(token))
    problem(r, 401)
    # control: a good token from the same issuer passes on the same app
    good = rs256({"alg": "RS256", "kid": kid}, _idp_claims(), pem)
    assert (await idp_client.get(PROTECTED, headers=bearer(good))).status_code == 200


async def test_trusted_keys_load_even_just_after_boot(idp_client, idp_key, monkeypatch):
    """The monotonic clock starts near zero at boot; the first fetch must still happen."""
    import api.auth.keys

    monkeypatch.setattr(api.auth.keys, "time", SimpleNamespace(monotonic=lambda: 3.0))
    kid, pem, _ = idp_key
    token = rs256({"alg": "RS256", "kid": kid}, _idp_claims(), pem)
    assert (await idp_client.get(PROTECTED, headers=bearer(token))).status_code == 200


async def test_token_keys_come_from_memory_unless_must_load_says_so(settings, connection,
                                                                      world, idp_key,
                                                                      monkeypatch):
    """A token is checked on the event loop with `keys_in_memory` when `must_load` is false, so
    `keys_for` must then touch neither the database nor the issuer and return the same keys;
    when it is true, they are read."""
    import api.auth.keys

    ring = KeyRing(settings.model_copy(update={
        "trusted_issuers": [TrustedIssuer(issuer=IDP, jwks_file=idp_key[2])]}),
        _factory(connection))
    ring.ensure_signing_key()
    own_kid = header_of(ring.sign(base_claims(world)))["kid"]
    idp_kid = idp_key[0]
    assert ring.must_load(IDP, idp_kid)  # never fetched
    assert idp_kid in ring.keys_for(IDP, idp_kid)
    loads = []
    monkeypatch.setattr(ring, "reload", lambda: loads.append("database"))
    monkeypatch.setattr(KeyRing, "_fetch", staticmethod(lambda trusted: loads.append(trusted)))
    for issuer, kid in [(settings.issuer, own_kid), (IDP, idp_kid), (IDP, "unknown"),
                        (settings.issuer, "unknown"), ("https://evil.example", None)]:
        assert not ring.must_load(issuer, kid), (issuer, kid)
        assert ring.keys_in_memory(issuer) == ring.keys_for(issuer, kid)
    assert loads == []
    # An hour on, an unknown kid sends both back to their source.
    later = time.monotonic() + 3600
    monkeypatch.setattr(api.auth.keys, "time", SimpleNamespace(monotonic=lambda: later))
    for issuer in (settings.issuer, IDP):
        assert ring.must_load(issuer, "unknown")
        ring.keys_for(issuer, "unknown")
    assert loads[0] == "database" and loads[1].issuer == IDP


async def test_issuer_is_not_trusted_without_configuration(client, world, idp_key):
    kid, pem, _ = idp_key
    token = rs256({"alg": "RS256", "kid": kid}, _idp_claims(), pem)
    problem(await client.get(PROTECTED, headers=bearer(token)), 401)


@pytest.mark.parametrize("content", [
    "not json", "[]", '{"keys": "nope"}', '{"keys": ["nope"]}',
    '{"keys": [{"kid": "idp-key-1", "kty": "RSA", "n": "!!", "e": "AQAB"}]}',
    '{"keys": [{"kid": "idp-key-1", "kty": "oct", "k": "c2VjcmV0"}]}',
])
async def test_broken_trusted_jwks_refuses_instead_of_failing(settings, connection, session,
                                                              world, idp_key, tmp_path, content):
    kid, pem, _ = idp_key
    broken = tmp_path / "broken-jwks.json"
    broken.write_text(content)
    app = _app_with(settings, connection, session,
                    trusted_issuers=[TrustedIssuer(issuer=IDP, jwks_file=broken)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://flagshare.test") as c:
        token = rs256({"alg": "RS256", "kid": kid}, _idp_claims(), pem)
        problem(await c.get(PROTECTED, headers=bearer(token)), 401)
        # our own tokens still work beside a broken outside issuer
        assert (await c.get(PROTECTED, headers=world.auth("GP-A"))).status_code == 200


async def test_missing_trusted_jwks_file_refuses(settings, connection, session, world, idp_key,
                                                 tmp_path):
    kid, pem, _ = idp_key
    app = _app_with(settings, connection, session, trusted_issuers=[
        TrustedIssuer(issuer=IDP, jwks_file=tmp_path / "absent.json")])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://flagshare.test") as c:
        token = rs256({"alg": "RS256", "kid": kid}, _idp_claims(), pem)
        problem(await c.get(PROTECTED, headers=bearer(token)), 401)


# --- keys persist across restarts ------------------------------------------------------------

def _factory(connection):
    return lambda: Session(bind=connection, join_transaction_mode="create_savepoint",
                           expire_on_commit=False)


async def test_two_keyrings_over_one_database_share_the_signing_key(settings, connection,
                                                                    session, world):
    first, second = KeyRing(settings, _factory(connection)), KeyRing(settings, _factory(connection))
    first.ensure_signing_key()
    second.ensure_signing_key()
    kid_first = header_of(first.sign(base_claims(world)))["kid"]
    kid_second = header_of(second.sign(base_claims(world)))["kid"]
    assert kid_first == kid_second
    assert kid_first in {k["kid"] for k in second.jwks()["keys"]}
    # the running app (a third process, in effect) publishes and accepts it too
    assert kid_first == header_of(world.token("GP-A"))["kid"]


async def test_first_start_creates_one_key_and_a_restart_reuses_it(settings, connection,
                                                                   session, world):
    for row in session.exec(select(SigningKey)).all():  # an empty database, inside this test
        session.delete(row)
    session.commit()
    first = KeyRing(settings, _factory(connection))
    first.ensure_signing_key()
    session.expire_all()
    rows = session.exec(select(SigningKey)).all()
    assert len(rows) == 1
    second = KeyRing(settings, _factory(connection))  # "restart"
    second.ensure_signing_key()
    session.expire_all()
    assert [r.kid for r in session.exec(select(SigningKey)).all()] == [rows[0].kid]

    token = first.sign(base_claims(world, iss=settings.issuer))
    assert header_of(token)["kid"] == rows[0].kid
    assert [k["kid"] for k in second.jwks()["keys"]] == [rows[0].kid]
    claims = stock_verify(token, second.jwks(), issuer=settings.issuer)
    assert claims["sub"] == "GP-A"


async def test_a_restarted_app_accepts_tokens_of_the_previous_one(settings, connection, session,
                                                                  world):
    token = world.token("GP-A")  # signed by the fixture's app
    restarted = _app_with(settings, connection, session)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=restarted),
                                 base_url="http://flagshare.test") as c:
        assert (await c.get(PROTECTED, headers=bearer(token))).status_code == 200
        jwks = (await c.get("/.well-known/jwks.json")).json()
        assert header_of(token)["kid"] in {k["kid"] for k in jwks["keys"]}


async def test_private_keys_never_reach_the_jwks(settings, connection, session, world):
    ring = KeyRing(settings, _factory(connection))
    published = json.dumps(ring.jwks())
    rows = session.exec(select(SigningKey)).all()
    assert rows
    for row in rows:
        numbers = _private_key(row.private_pem).private_numbers()
        for secret_part in (numbers.d, numbers.p, numbers.q):
            encoded = b64url(secret_part.to_bytes((secret_part.bit_length() + 7) // 8, "big"))
            assert encoded[:32] not in published
        n = numbers.public_numbers.n
        assert b64url(n.to_bytes((n.bit_length() + 7) // 8, "big")) in published  # control


# --- secrets and passwords -------------------------------------------------------------------

# --- signing keys encrypted where they are stored ------------------------------------------

def _stored(session, kid: str) -> str:
    session.expire_all()
    return session.get(SigningKey, kid).private_pem


async def test_with_a_passphrase_a_new_key_is_stored_encrypted_and_signs(
        settings, connection, session, world, tmp_path):
    claims = base_claims(world)
    sealed = with_passphrase(settings, tmp_path)
    key = KeyRing(sealed, _factory(connection)).rotate()
    stored = _stored(session, key.kid)
    assert stored.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(TypeError):  # not a key without the passphrase
        serialization.load_pem_private_key(stored.encode(), password=None)
    other_process = KeyRing(sealed, _factory(connection))
    token = other_process.sign(claims)
    assert header_of(token)["kid"] == key.kid
    assert stock_verify(token, other_process.jwks(), issuer=settings.issuer)["sub"] == "GP-A"


@pytest.mark.parametrize("passphrase,message", [
    (None, "encrypted: set FLAGSHARE_SIGNING_KEY_PASSPHRASE_FILE"),
    ("a wrong passphrase", "does not decrypt"),
])
async def test_an_encrypted_key_without_its_passphrase_stops_the_process(
        settings, connection, session, tmp_path, passphrase, message):
    key = KeyRing(with_passphrase(settings, tmp_path), _factory(connection)).rotate()
    wrong = settings if passphrase is None else with_passphrase(settings, tmp_path, passphrase)
    ring = KeyRing(wrong, _factory(connection))
    for start in (ring.ensure_signing_key, ring.reload, ring.rotate):
        with pytest.raises(SigningKeyError, match=message):
            start()
    # the refused rotation left the key as it was: still the one signing, still encrypted
    session.expire_all()
    row = session.get(SigningKey, key.kid)
    assert row.retired_at is None and row.private_pem.startswith("-----BEGIN ENCRYPTED")


async def test_a_key_stored_in_the_clear_is_encrypted_in_place_once_a_passphrase_is_set(
        settings, connection, session, world, tmp_path):
    token = world.token("GP-A")  # signed by the key the suite stored in the clear
    kid = header_of(token)["kid"]
    assert _stored(session, kid).startswith("-----BEGIN PRIVATE KEY-----")
    ring = KeyRing(with_passphrase(settings, tmp_path), _factory(connection))
    ring.ensure_signing_key()
    assert _stored(session, kid).startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    # the same key: tokens it signed before still verify, and it goes on signing
    assert stock_verify(token, ring.jwks(), issuer=settings.issuer)["sub"] == "GP-A"
    assert header_of(ring.sign(claims_of(token)))["kid"] == kid


WARNING = ("the signing key is stored in the database in the clear: anyone with a copy of the "
           "database can sign tokens; set FLAGSHARE_SIGNING_KEY_PASSPHRASE_FILE to store it "
           "encrypted")


@pytest.mark.parametrize("environment,passphrase,warned", [
    ("production", False, True), ("production", True, False), ("development", False, False)])
def test_a_production_process_without_a_passphrase_warns_at_start(
        settings, connection, session, tmp_path, caplog, environment, passphrase, warned):
    configured = settings.model_copy(update={"environment": environment})
    if passphrase:
        configured = with_passphrase(configured, tmp_path)
    ring = KeyRing(configured, _factory(connection))
    with caplog.at_level("WARNING", logger="flagshare.keys"):
        ring.ensure_signing_key()
        ring.ensure_signing_key()  # as `serve` does, before and as the app starts
    assert [r.getMessage() for r in caplog.records
            if "in the clear" in r.getMessage()] == ([WARNING] if warned else [])


@pytest.mark.parametrize("content,message", [(None, "cannot read"), ("\n", "is empty")])
def test_an_unreadable_passphrase_file_names_the_setting(tmp_path, content, message):
    secret = tmp_path / "passphrase"
    if content is not None:
        secret.write_text(content)
    with pytest.raises(ValidationError) as err:
        Settings(signing_key_passphrase_file=secret)
    (error,) = err.value.errors()
    assert error["loc"] == ("signing_key_passphrase_file",) and message in error["msg"]


def _gp_is_sent_a_police_flag(server, http: httpx.Client, gp: dict, rx: Receiver,
                              secret: str) -> None:
    """SEAL-GP, its webhook subscribed, works with the child; SEAL-POLICE flags her: the real
    worker's webhook reaches the GP signed with `secret`."""
    assert http.post("/v1/relationships", json=relationship_body("registered_gp"),
                     headers=gp).status_code == 201
    assert http.post("/v1/flags", json=flag_body(),
                     headers=server.token(http, "SEAL-POLICE")).status_code == 201
    wait_until(lambda: rx.requests, 30, "the GP's webhook")
    Webhook(secret).verify(rx.requests[0].body, rx.requests[0].headers)


def test_serve_and_worker_refuse_to_start_without_the_passphrase_of_a_stored_key(
        private_database_url, tmp_path):
    passphrase = tmp_path / "signing_key_passphrase"
    passphrase.write_text("s3cret-for-the-keys\n")
    with running_server(private_database_url, tmp_path,
                        FLAGSHARE_SIGNING_KEY_PASSPHRASE_FILE=str(passphrase)) as server:
        server.add_agency("SEAL-GP", "gp", BIRMINGHAM)
        server.add_agency("SEAL-POLICE", "police", BIRMINGHAM)
        with httpx.Client(base_url=server.url, timeout=30) as http, Receiver() as rx:
            gp = server.token(http, "SEAL-GP")
            assert http.get(PROTECTED, headers=gp).status_code == 200
            # The embedded worker opens the sealed webhook secret to sign with it.
            sub = http.post("/v1/subscriptions", headers=gp,
                            json={"delivery": {"mode": "webhook", "url": rx.url}}).json()
            _gp_is_sent_a_police_flag(server, http, gp, rx, sub["secret"])
        env = {k: v for k, v in server.env.items()
               if k != "FLAGSHARE_SIGNING_KEY_PASSPHRASE_FILE"}
    engine = make_engine(private_database_url)
    try:
        with Session(engine) as s:
            stored = [k.private_pem for k in s.exec(select(SigningKey))]
            [webhook_secret] = s.exec(select(Subscription.secret)).all()
    finally:
        engine.dispose()
    assert stored and all(pem.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
                          for pem in stored)
    assert webhook_secret.startswith(SEALED) and sub["secret"] not in webhook_secret
    for command in (("serve", "--port", str(free_port())), ("worker",), ("keys", "rotate")):
        out = run_cli(env, *command)
        assert out.returncode == 2, (command, out.stderr)
        assert "set FLAGSHARE_SIGNING_KEY_PASSPHRASE_FILE" in out.stderr, (command, out.stderr)


# --- changing the passphrase -------------------------------------------------------------

async def test_a_new_passphrase_re_encrypts_the_signing_key_and_webhook_secrets(
        settings, connection, session, world, client, tmp_path):
    old, new = (with_passphrase(settings, tmp_path, p).signing_key_passphrase
                for p in ("the old passphrase", "the new passphrase"))
    r = await client.post("/v1/subscriptions", headers=world.auth("SCHOOL-A"), json={
        "delivery": {"mode": "webhook", "url": "https://school.example/hooks"}})
    assert r.status_code == 201, r.text
    key = KeyRing(with_passphrase(settings, tmp_path, "the old passphrase"),
                  _factory(connection)).rotate()  # the suite's key retires: no private half
    seal_stored_secrets(session, old)
    assert reseal_signing_keys(session, old, new) == 1
    assert reseal_stored_secrets(session, old, new) == 1
    session.flush()
    stored = session.get(Subscription, r.json()["id"]).secret
    assert unseal(stored, new) == r.json()["secret"]
    with pytest.raises(SealedSecretError, match="does not open"):
        unseal(stored, old)
    with pytest.raises(SigningKeyError, match="does not decrypt"):
        KeyRing(with_passphrase(settings, tmp_path, "the old passphrase"),
                _factory(connection)).reload()
    ring = KeyRing(with_passphrase(settings, tmp_path, "the new passphrase"), _factory(connection))
    token = ring.sign(base_claims(world))
    assert header_of(token)["kid"] == key.kid  # the same key: its tokens and checkpoints hold
    assert stock_verify(token, ring.jwks(), issuer=settings.issuer)["sub"] == "GP-A"
    with pytest.raises(SigningKeyError, match="does not decrypt"):  # opened with `old` only
        reseal_signing_keys(session, b"a wrong passphrase", old)


def test_changing_the_passphrase_is_all_or_nothing_and_the_service_runs_on_the_new_one(
        private_database_url, tmp_path):
    old, new = tmp_path / "old_passphrase", tmp_path / "new_passphrase"
    old.write_text("the old passphrase for the keys\n")
    new.write_text("the new passphrase for the keys\n")
    engine = make_engine(private_database_url)

    def stored() -> tuple[list[str], list[str]]:
        with Session(engine) as s:
            return ([k.private_pem for k in s.exec(select(SigningKey))],
                    list(s.exec(select(Subscription.secret))))

    def store_secret(secret: str) -> None:
        with Session(engine) as s:
            s.get(Subscription, sub["id"]).secret = secret
            s.commit()

    try:
        with Receiver() as rx:
            with running_server(private_database_url, tmp_path,
                                FLAGSHARE_SIGNING_KEY_PASSPHRASE_FILE=str(old)) as server, \
                    httpx.Client(base_url=server.url, timeout=30) as http:
                server.add_agency("SEAL-GP", "gp", BIRMINGHAM)
                server.add_agency("SEAL-POLICE", "police", BIRMINGHAM)
                gp = server.token(http, "SEAL-GP")
                sub = http.post("/v1/subscriptions", headers=gp, json={
                    "delivery": {"mode": "webhook", "url": rx.url}}).json()
                env, secrets = server.env, server.secrets
            before = stored()
            for new_file, message in ((tmp_path / "missing", "--new-file: cannot read"),
                                      (old, "--new-file: that is the passphrase in use")):
                out = run_cli(env, "keys", "passphrase", "--new-file", str(new_file))
                assert out.returncode == 1 and message in out.stderr, out.stderr
            # A secret the current passphrase cannot open: nothing is re-encrypted, not even
            # the key it could open.
            store_secret(seal(sub["secret"], b"some other passphrase"))
            out = run_cli(env, "keys", "passphrase", "--new-file", str(new))
            assert out.returncode == 2 and "does not open" in out.stderr, out.stderr
            assert stored()[0] == before[0]
            store_secret(before[1][0])

            out = run_cli(env, "keys", "passphrase", "--new-file", str(new))
            assert out.returncode == 0, out.stderr
            assert "re-encrypted 1 signing key(s) and 1 webhook secret(s)" in out.stdout
            after = stored()
            assert after[0] != before[0] and after[1] != before[1]
            assert all(pem.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----") for pem in after[0])
            out = run_cli(env, "serve", "--port", str(free_port()))
            assert out.returncode == 2 and "does not decrypt" in out.stderr, out.stderr

            (tmp_path / "new").mkdir()
            with running_server(private_database_url, tmp_path / "new",
                                FLAGSHARE_SIGNING_KEY_PASSPHRASE_FILE=str(new)) as server, \
                    httpx.Client(base_url=server.url, timeout=30) as http:
                server.secrets = secrets
                assert http.get(PROTECTED, headers=gp).status_code == 200  # the same key
                _gp_is_sent_a_police_flag(server, http, gp, rx, sub["secret"])
        with Session(engine) as s:
            assert s.exec(select(AuditEvent.outcome).where(
                AuditEvent.action == "keys.passphrase")).all() == ["changed"]
    finally:
        engine.dispose()


def test_secrets_are_stored_as_argon2_hashes():
    secret = new_client_secret()
    assert len(secret) >= 32 and secret != new_client_secret()
    stored = hash_secret(secret)
    assert stored.startswith("$argon2id$") and secret not in stored
    assert verify_secret(stored, secret)
    assert not verify_secret(stored, secret + "x")
    assert not verify_secret(stored, "")
    assert not verify_secret(None, secret)
    assert not verify_secret("not-a-hash", secret)
    assert hash_secret(secret) != stored  # salted


def test_world_passwords_are_hashed(session, world):
    for user in session.exec(select(User)).all():
        assert user.password_hash.startswith("$argon2") and PASSWORD not in user.password_hash
    for agency_id in AGENCIES:
        assert SECRET not in session.get(Agency, agency_id).client_secret_hash


@pytest.mark.parametrize("agencies", [None, ["MASH-A"]])
async def test_another_issuer_area_is_its_agency_area_never_its_word(
        settings, connection, session, world, idp_key, agencies):
    """Scope is by area: an outside token saying another area, or naming no agency, or an
    agency not registered, must not read that area's children."""
    kid, pem, _ = idp_key
    app = _app_with(settings, connection, session, trusted_issuers=[
        TrustedIssuer(issuer=IDP, jwks_file=idp_key[2], agencies=agencies)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://flagshare.test") as c:
        async def read(nhs: str, **claims) -> httpx.Response:
            token = rs256({"alg": "RS256", "kid": kid}, _idp_claims(**claims), pem)
            return await c.get("/v1/children", headers=bearer(token), params={
                "nhs_number": nhs, "purpose": "mash_triage", "reason": "Referral"})

        for who, nhs in (("GP-A", NHS[0]), ("GP-B", NHS[6])):
            assert (await c.post("/v1/relationships", headers=world.auth(who),
                                 json=relationship_body("registered_gp", nhs))).status_code == 201
        # the agency's own area, claimed or not: read as in scope
        for area in (BIRMINGHAM, ...):
            r = await read(NHS[0], area=area)
            assert r.status_code == 200 and r.json()["access"]["basis"] == "area", r.text
        assert (await read(NHS[6])).status_code == 404  # Sandwell's child: out of scope
        for claims in ({"area": SANDWELL}, {"agency": ..., "area": SANDWELL},
                       {"agency": "MASH-Z", "area": SANDWELL}):
            problem(await read(NHS[6], **claims), 401)
        world.agencies["MASH-A"].disabled = True
        session.add(world.agencies["MASH-A"])
        session.flush()
        problem(await read(NHS[0]), 401)


async def test_another_issuer_subject_is_named_with_its_issuer(idp_client, idp_key, world,
                                                               session):
    """The audit log must not confuse the outside provider's `mash.a` with this service's own
    practitioner of that name; and a subject too long to record is refused, not a 500."""
    kid, pem, _ = idp_key
    assert (await idp_client.post("/v1/relationships", headers=world.auth("GP-A"),
                                  json=relationship_body("registered_gp"))).status_code == 201
    params = {"nhs_number": NHS[0], "purpose": "mash_triage", "reason": "Referral"}
    outside = rs256({"alg": "RS256", "kid": kid}, _idp_claims(sub="mash.a"), pem)
    for headers in (bearer(outside), world.auth("mash.a")):
        r = await idp_client.get("/v1/children", headers=headers, params=params)
        assert r.status_code == 200, r.text
    reads = session.exec(select(AuditEvent.actor).where(AuditEvent.action == "child.read")
                         .order_by(AuditEvent.seq)).all()
    assert reads == [f"{IDP}|mash.a", "mash.a"]
    # the second read shows the first (a read is recorded after its view is taken)
    assert [a["actor"] for a in r.json()["recent_accesses"]] == [f"{IDP}|mash.a"]
    longest = "p" * (200 - len(IDP) - 1)
    for sub, status in ((longest, 200), (longest + "p", 401)):
        token = rs256({"alg": "RS256", "kid": kid}, _idp_claims(sub=sub), pem)
        r = await idp_client.get("/v1/children", headers=bearer(token), params=params)
        assert r.status_code == status, r.text
    assert "sub" in problem(r, 401)["detail"]


def _set_account(session, who: str, **changes) -> None:
    user = session.exec(select(User).where(User.username == who)).one()
    for name, value in changes.items():
        setattr(user, name, value)
    session.add(user)
    session.commit()


async def test_a_disabled_person_tokens_stop_working_at_once(client, world, session):
    """Disabling a person ends their access at once, as for an agency: the tokens they hold are
    refused like any token no longer valid, not honoured until they expire."""
    assert (await client.post("/v1/relationships", json=relationship_body("registered_gp"),
                              headers=world.auth("GP-A"))).status_code == 201
    r = await client.post(TOKEN, data={"grant_type": "password", "username": "mash.a",
                                       "password": PASSWORD})
    practitioner = bearer(r.json()["access_token"])
    auditor = world.auth("auditor")
    child = ("/v1/children", {"nhs_number": NHS[0], "purpose": "mash_triage",
                              "reason": "Referral", "break_glass": "true"})
    assert (await client.get("/v1/suspected-moves", headers=practitioner)).status_code == 200
    assert (await client.get(child[0], params=child[1], headers=practitioner)).status_code == 200
    assert (await client.get("/v1/audit/events", headers=auditor)).status_code == 200

    for username in ("mash.a", "auditor"):
        _set_account(session, username, disabled=True)
    # the child view checks the account before the role, as every route does: 401, not 403
    reads = [await client.get("/v1/suspected-moves", headers=practitioner),
             await client.get(child[0], params=child[1], headers=practitioner),
             await client.get("/v1/audit/events", headers=auditor),
             await client.get(child[0], params=child[1], headers=auditor)]
    for r in reads:
        assert problem(r, 401)["detail"] == "The access token is not valid."
        assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    r = await client.post(TOKEN, data={"grant_type": "password", "username": "mash.a",
                                       "password": PASSWORD})
    assert r.status_code == 401
    # others go on working: the refusal is the account's
    assert (await client.get("/v1/suspected-moves", headers=world.auth("mash.b"))).status_code \
        == 200
    _set_account(session, "mash.a", disabled=False)
    assert (await client.get("/v1/suspected-moves", headers=practitioner)).status_code == 200


async def test_a_disabled_agencys_practitioners_lose_access_at_once(client, world, session):
    """Disabling a MASH ends its practitioners' access as it ends its system's: held tokens
    are refused, and no new one is issued, until it is enabled again."""
    r = await client.post(TOKEN, data={"grant_type": "password", "username": "mash.a",
                                       "password": PASSWORD})
    practitioner = bearer(r.json()["access_token"])
    assert (await client.get("/v1/suspected-moves", headers=practitioner)).status_code == 200
    mash = session.get(Agency, "MASH-A")
    mash.disabled = True
    session.add(mash)
    session.commit()
    for refused in (await client.get("/v1/suspected-moves", headers=practitioner),
                    await client.get("/v1/children", headers=practitioner, params=CHILD_READ)):
        assert problem(refused, 401)["detail"] == "The access token is not valid."
    again = await client.post(TOKEN, data={"grant_type": "password", "username": "mash.a",
                                           "password": PASSWORD})
    assert (again.status_code, again.json()["error"]) == (401, "invalid_grant")
    mash.disabled = False
    session.add(mash)
    session.commit()
    assert (await client.get("/v1/suspected-moves", headers=practitioner)).status_code == 200


@pytest.mark.parametrize("change", [
    {"role": "auditor", "agency_id": None},  # moved to another job
    {"agency_id": "MASH-B"},  # moved to another agency: the token's agency and area are old
    {"username": "mash.a.old"},  # the account is gone (renamed, or removed)
])
async def test_a_person_token_stops_working_when_the_account_changes(client, world, session,
                                                                     change):
    token = world.auth("mash.a")
    assert (await client.get("/v1/suspected-moves", headers=token)).status_code == 200
    _set_account(session, "mash.a", **change)
    # the child view checks the account in its own one thread hand-off: refused there too
    for r in (await client.get("/v1/suspected-moves", headers=token),
              await client.get("/v1/children", headers=token, params=CHILD_READ)):
        assert problem(r, 401)["detail"] == "The access token is not valid."
        assert "invalid_token" in r.headers["www-authenticate"]


async def test_a_person_never_holds_an_agency_systems_role(client, world, session):
    """An agency system signs in with its client secret. A person account holding
    `agency_system` (left from before this was refused) gets no token, and a token issued to it
    earlier is refused: it would pass for the agency, and disabling the person would not
    stop it."""
    stored = session.exec(select(User).where(User.username == "mash.a")).one()
    session.add(User(username="gp.person", role="agency_system", agency_id="GP-A",
                     password_hash=stored.password_hash))
    session.commit()
    r = await client.post(TOKEN, data={"grant_type": "password", "username": "gp.person",
                                       "password": PASSWORD})
    assert (r.status_code, r.json()["error"]) == (401, "invalid_grant")
    earlier = world.auth("GP-A", sub="gp.person")
    assert problem(await client.get("/v1/subscriptions", headers=earlier), 401)["detail"] \
        == "The access token is not valid."
    assert (await client.get("/v1/subscriptions", headers=world.auth("GP-A"))).status_code == 200


@pytest.mark.parametrize("attack,logged", [
    ("unknown kid", "unknown signing key id 'no-such-kid'"),
    ("wrong aud", "Invalid audience"),
    ("expired", "Signature has expired"),
    ("wrong iss", "issuer 'https://evil.example' is not trusted"),
    ("alg none", "algorithm 'none' is not accepted"),
    ("other RSA key with our kid", "Signature verification failed"),
])
async def test_why_a_token_is_refused_is_logged_not_returned(client, world, own_key, caplog,
                                                             attack, logged):
    """jwt.TokenInvalid's messages are safe to log, not to return: a prober would learn which
    of its guesses got further. RFC 6750's header still says invalid_token."""
    token = _attack_tokens(world, *own_key)[attack]()
    with caplog.at_level(logging.INFO, logger="flagshare.auth"):
        r = await client.get(PROTECTED, headers=bearer(token))
    body = problem(r, 401)
    assert body["detail"] == "The access token is not valid."
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert logged.lower() not in r.text.lower()
    [why] = [rec.getMessage() for rec in caplog.records if rec.name == "flagshare.auth"]
    assert why.startswith("access token refused: ") and logged in why


async def test_a_disabled_agency_tokens_stop_working_everywhere(client, world, session):
    await client.post("/v1/relationships", json=relationship_body("registered_gp"),
                      headers=world.auth("GP-A"))
    r = await client.post("/v1/flags", json=flag_body(), headers=world.auth("POLICE-A"))
    flag = f"/v1/flags/{r.json()['id']}"
    issued = world.auth("GP-A")  # before the agency is disabled
    assert (await client.get(flag, headers=issued)).status_code == 200
    world.agencies["GP-A"].disabled = True
    session.add(world.agencies["GP-A"])
    session.flush()
    for path in (flag, "/v1/transfers", "/v1/subscriptions"):
        problem(await client.get(path, headers=issued), 401)
    problem(await client.get("/v1/children", headers=issued, params=CHILD_READ), 401)


@pytest.mark.parametrize("claims", [
    {"role": "admin", "agency": None, "area": None},  # never admin unless listed
    {"role": "agency_system", "agency": "GP-A"},  # not listed: people only by default
])
async def test_trusted_issuer_vouches_only_for_its_roles(idp_client, idp_key, claims):
    kid, pem, _ = idp_key
    token = rs256({"alg": "RS256", "kid": kid}, _idp_claims(**claims), pem)
    problem(await idp_client.get(PROTECTED, headers=bearer(token)), 401)


async def test_trusted_issuer_agency_allow_list(settings, connection, session, world, idp_key):
    kid, pem, jwks = idp_key
    app = _app_with(settings, connection, session, trusted_issuers=[TrustedIssuer(
        issuer=IDP, jwks_file=jwks, roles=["agency_system"], agencies=["GP-A"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://flagshare.test") as c:
        ok = rs256({"alg": "RS256", "kid": kid}, _idp_claims(role="agency_system",
                                                             agency="GP-A"), pem)
        other = rs256({"alg": "RS256", "kid": kid}, _idp_claims(role="agency_system",
                                                                agency="CSC-A"), pem)
        assert (await c.get(PROTECTED, headers=bearer(ok))).status_code == 200
        problem(await c.get(PROTECTED, headers=bearer(other)), 401)


@pytest.mark.parametrize("form", [
    {"grant_type": "client_credentials", "client_id": "GP-A\x00", "client_secret": SECRET},
    {"grant_type": "password", "username": "admin\x00", "password": PASSWORD},
])
async def test_nul_in_credentials_is_an_invalid_request(client, world, session, form):
    r = await client.post(TOKEN, data=form)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    assert "access_token" not in r.json()


# --- signing key rotation --------------------------------------------------------------------

def _retire_long_ago(session, keyring: KeyRing, kid: str, margin: timedelta) -> None:
    """Move a retired key's retirement `margin` past (or, negative, short of) the horizon after
    which its tokens must all have expired, as if that much time had gone by."""
    row = session.get(SigningKey, kid)
    session.refresh(row)
    assert row.retired_at is not None
    row.retired_at = utcnow() - keyring.publication_horizon - margin
    session.add(row)
    session.commit()
    keyring.reload()


async def test_rotation_signs_new_tokens_with_a_new_key_and_old_tokens_still_work(
        client, app, world, session, settings):
    before = world.token("GP-A")
    old_kid = header_of(before)["kid"]
    new = app.state.keyring.rotate()
    after = world.token("GP-A")
    assert header_of(after)["kid"] == new.kid != old_kid
    for token in (before, after):
        assert (await client.get(PROTECTED, headers=bearer(token))).status_code == 200
    jwks = (await client.get("/.well-known/jwks.json")).json()
    assert {old_kid, new.kid} <= {k["kid"] for k in jwks["keys"]}
    stock_verify(before, jwks, issuer=settings.issuer)  # outside verifiers still accept it
    retired = session.get(SigningKey, old_kid)
    session.refresh(retired)
    assert retired.retired_at is not None and retired.private_pem == ""  # signs nothing more


async def test_a_retired_key_is_dropped_once_every_token_it_signed_has_expired(
        client, app, world, session, caplog):
    keyring = app.state.keyring
    # the horizon covers the longest-lived thing the key signs: a console session here
    assert keyring.publication_horizon >= timedelta(
        seconds=max(app.state.settings.token_ttl_seconds,
                    app.state.settings.console_idle_minutes * 60) + 60)
    before = world.token("GP-A")
    old_kid = header_of(before)["kid"]
    keyring.rotate()

    _retire_long_ago(session, keyring, old_kid, -timedelta(seconds=5))  # not quite yet
    published = (await client.get("/.well-known/jwks.json")).json()["keys"]
    assert old_kid in {k["kid"] for k in published}
    assert (await client.get(PROTECTED, headers=bearer(before))).status_code == 200

    _retire_long_ago(session, keyring, old_kid, timedelta(seconds=1))
    jwks = (await client.get("/.well-known/jwks.json")).json()
    assert old_kid not in {k["kid"] for k in jwks["keys"]} and jwks["keys"]
    with caplog.at_level(logging.INFO, logger="flagshare.auth"):
        body = problem(await client.get(PROTECTED, headers=bearer(before)), 401)
    # refused for the key, as the log says; the caller is told only that the token is not valid
    assert any("unknown signing key" in r.getMessage() for r in caplog.records)
    assert body["detail"] == "The access token is not valid."
    assert (await client.get(PROTECTED, headers=world.auth("GP-A"))).status_code == 200


async def test_another_process_accepts_and_then_signs_with_the_rotated_key(
        client, app, world, settings, connection):
    """The app is one process; a second KeyRing over the same database rotates, as
    `flagshare keys rotate` or another API process would."""
    app.state.keyring.reload_seconds = 0.2
    old_kid = header_of(world.token("GP-A"))["kid"]
    elsewhere = KeyRing(settings, _factory(connection))
    new = elsewhere.rotate()
    time.sleep(1.1)  # past the throttles on re-reading keys
    signed_elsewhere = elsewhere.sign(base_claims(world))
    assert header_of(signed_elsewhere)["kid"] == new.kid
    # a token naming a key this process has not read yet makes it read the keys again
    assert (await client.get(PROTECTED, headers=bearer(signed_elsewhere))).status_code == 200
    app.state.keyring.reload_if_stale()
    assert header_of(world.token("GP-A"))["kid"] == new.kid != old_kid


async def test_checkpoints_signed_with_a_retired_key_stay_verifiable(client, app, world,
                                                                     session):
    keyring = app.state.keyring
    r = await client.post(TOKEN, data={"grant_type": "client_credentials", "client_id": "GP-A",
                                       "client_secret": SECRET})  # an event to sign
    assert r.status_code == 200
    r = await client.post("/v1/audit/checkpoints", headers=world.auth("auditor"))
    assert r.status_code == 201, r.text
    checkpoint = Checkpoint.parse(r.json())
    keyring.rotate()
    _retire_long_ago(session, keyring, checkpoint.kid, timedelta(seconds=1))

    jwks = (await client.get("/.well-known/jwks.json")).json()
    assert "unknown signing key" in check_signature(checkpoint, keys_from_jwks(jwks))
    every_key = (await client.get("/v1/audit/keys", headers=world.auth("auditor"))).json()
    assert check_signature(checkpoint, keys_from_jwks(every_key)) is None
    verified = (await client.get("/v1/audit/verify", headers=world.auth("auditor"))).json()
    assert verified["ok"] is True, verified["problems"]
    # the key history is for auditors (and admins), like the rest of the log
    assert (await client.get("/v1/audit/keys", headers=world.auth("GP-A"))).status_code == 403


def test_keys_rotate_command_against_a_running_server(private_database_url, tmp_path):
    with running_server(private_database_url, tmp_path) as server:
        server.add_agency("ROT-GP", "gp", BIRMINGHAM)
        server.add_user("rot.auditor", "auditor")
        with httpx.Client(base_url=server.url, timeout=30) as http:
            before = server.token(http, "ROT-GP")
            old_kid = header_of(before["Authorization"].removeprefix("Bearer "))["kid"]
            out = run_cli(server.env, "keys", "rotate")
            assert out.returncode == 0, out.stderr
            new_kid = re.search(r"signing with new key (\S+);", out.stdout).group(1)
            assert new_kid != old_kid
            assert http.get(PROTECTED, headers=before).status_code == 200
            keys = http.get("/v1/audit/keys",
                            headers=server.user_token(http, "rot.auditor")).json()
            assert {old_kid, new_kid} <= {k["kid"] for k in keys["keys"]}


async def test_the_checkpoint_writer_signs_with_a_key_rotated_elsewhere(
        client, world, settings, connection, monkeypatch):
    monkeypatch.setattr(checkpoints, "EVERY", timedelta(0))  # due whenever there is news
    writer = checkpoints.Checkpointer(
        _factory(connection), KeyRing(settings, _factory(connection), reload_seconds=0),
        check_seconds=0)
    token_request = {"grant_type": "client_credentials", "client_id": "GP-A",
                     "client_secret": SECRET}
    assert (await client.post(TOKEN, data=token_request)).status_code == 200  # an event
    before = writer.run_once()
    new = KeyRing(settings, _factory(connection)).rotate()
    assert (await client.post(TOKEN, data=token_request)).status_code == 200
    after = writer.run_once()
    assert before.kid != new.kid and after.kid == new.kid
