"""Every use of the JWT library is here, so it can be swapped in one place.

python-jose is barely maintained, so this module narrows it: RS256 only, the key picked by
`kid` from the issuer's own key set, and `aud`, `iss`, `exp`, `sub` required to be present as
well as valid (python-jose accepts a token with no `aud` even when an audience is given).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwk, jws, jwt
from jose.backends.base import Key
from jose.exceptions import JOSEError

ALGORITHM = "RS256"
REQUIRED_CLAIMS = ("aud", "iss", "exp", "sub")


class TokenInvalid(Exception):
    """The token is not acceptable; the message says why (safe to log, not to return)."""


def new_rsa_key() -> tuple[str, dict[str, Any]]:
    """A fresh 2048-bit RSA key: PKCS#8 PEM for signing, and its public JWK (without kid)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public = jwk.construct(public_pem, ALGORITHM).to_dict()
    return pem, {"kty": "RSA", "n": public["n"], "e": public["e"], "alg": ALGORITHM, "use": "sig"}


def usable_public_jwk(key: Any) -> bool:
    """Whether an outside JWKS entry is an RSA key with a kid that the library can load."""
    if not isinstance(key, dict) or key.get("kty") != "RSA" or not isinstance(key.get("kid"), str):
        return False
    try:
        jwk.construct(key, ALGORITHM)
    except (JOSEError, ValueError, TypeError, KeyError):
        return False
    return True


@lru_cache(maxsize=256)
def _public_key(n: str, e: str) -> Key:
    """An RSA public key built once from its JWK members: building it cost about as much as
    checking a signature with it (60 against 70 µs here), on every request."""
    return jwk.construct({"kty": "RSA", "n": n, "e": e}, ALGORITHM)


def _verifying_key(key: dict[str, Any]) -> Key:
    """The library's key for a public JWK (raises as the library does for a malformed one)."""
    if key.get("kty") != "RSA":
        raise ValueError("not an RSA key")
    return _public_key(key["n"], key["e"])


def sign(claims: dict[str, Any], private_pem: str, kid: str) -> str:
    return jwt.encode(claims, private_pem, algorithm=ALGORITHM, headers={"kid": kid})


def peek(token: str) -> tuple[str, str | None]:
    """`iss` and `kid` before verification, only to choose which key set to verify with."""
    try:
        claims = jwt.get_unverified_claims(token)
        kid = jwt.get_unverified_header(token).get("kid")
    except JOSEError as exc:
        raise TokenInvalid(f"malformed token: {exc}") from exc
    iss = claims.get("iss")
    if not isinstance(iss, str):
        raise TokenInvalid("token has no iss claim")
    return iss, kid if isinstance(kid, str) else None


def verify(token: str, keys: dict[str, dict[str, Any]], *, issuer: str, audience: str) -> dict:
    """Verify signature and claims against one issuer's keys (kid -> public JWK)."""
    try:
        header = jwt.get_unverified_header(token)
    except JOSEError as exc:
        raise TokenInvalid(f"malformed token header: {exc}") from exc
    if header.get("alg") != ALGORITHM:
        raise TokenInvalid(f"algorithm {header.get('alg')!r} is not accepted; RS256 only")
    kid = header.get("kid")
    key = keys.get(kid) if isinstance(kid, str) else None  # a list or object kid is unhashable
    if key is None:
        raise TokenInvalid(f"unknown signing key id {kid!r}")
    try:  # a key that is not RSA is refused by _verifying_key, as unusable
        claims = jwt.decode(
            token,
            _verifying_key(key),
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            options={f"require_{c}": True for c in REQUIRED_CLAIMS},
        )
    except JOSEError as exc:
        raise TokenInvalid(str(exc)) from exc
    except (ValueError, TypeError, KeyError) as exc:  # the library's errors for a malformed JWK
        raise TokenInvalid(f"signing key {kid!r} is unusable: {exc}") from exc
    missing = [c for c in REQUIRED_CLAIMS if c not in claims]
    if missing:  # belt and braces: never rely on the library's defaults for presence
        raise TokenInvalid(f"token lacks required claims: {', '.join(missing)}")
    for name in ("sub", "iss"):  # present but empty (or NUL, which PostgreSQL text refuses)
        value = claims[name]
        if not isinstance(value, str) or not value.strip() or "\x00" in value:
            raise TokenInvalid(f"{name} must be a non-empty string")
    aud = claims["aud"]
    if aud != audience and not (isinstance(aud, list) and audience in aud):
        raise TokenInvalid("wrong audience")
    return claims


# --- signed statements (not access tokens): RS256 JWS whose payload never expires ----------

def read_statement(token: str) -> tuple[str | None, dict]:
    """`kid` and payload of a signed statement WITHOUT checking the signature."""
    try:
        kid = jws.get_unverified_header(token).get("kid")
        payload = json.loads(jws.get_unverified_claims(token))
    except (JOSEError, ValueError) as exc:
        raise TokenInvalid(f"malformed signed statement: {exc}") from exc
    if not isinstance(payload, dict):
        raise TokenInvalid("signed statement payload is not a JSON object")
    return kid if isinstance(kid, str) else None, payload


def verify_statement(token: str, keys: dict[str, dict[str, Any]]) -> dict:
    """Payload of a signed statement after checking its RS256 signature against the key named
    by its `kid` (no claim checks: an audit checkpoint must stay verifiable for years)."""
    kid, _ = read_statement(token)
    if jws.get_unverified_header(token).get("alg") != ALGORITHM:
        raise TokenInvalid("signed statement is not RS256")
    key = keys.get(kid) if kid else None
    if key is None:
        raise TokenInvalid(f"unknown signing key id {kid!r}")
    try:
        return json.loads(jws.verify(token, _verifying_key(key), algorithms=[ALGORITHM]))
    except JOSEError as exc:
        raise TokenInvalid(f"signature does not verify: {exc}") from exc
    except (ValueError, TypeError, KeyError) as exc:
        raise TokenInvalid(f"signing key {kid!r} is unusable: {exc}") from exc
