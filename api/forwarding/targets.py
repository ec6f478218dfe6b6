"""Webhook URL checks: the SSRF guard, applied when subscribing and again before each send."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from api.settings import Settings


UNRESOLVED = "host does not resolve"


class TargetRefused(ValueError):
    pass


def check_url(url: str, settings: Settings, *, resolve: bool) -> None:
    """Refuse what a production webhook must not be: not https, or a private/loopback host.

    `resolve=True` also checks the addresses the name resolves to now (DNS can change after
    the subscription was accepted).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise TargetRefused("must be an absolute http(s) URL with a host")
    if parts.username or parts.password:
        raise TargetRefused("must not carry credentials")
    if settings.is_development:
        return
    if parts.scheme != "https":
        raise TargetRefused("must use https outside development")
    if settings.webhook_allow_private:
        return
    for address in _addresses(parts.hostname, resolve):
        if not address.is_global:
            raise TargetRefused(f"resolves to a non-public address ({address})")


def _addresses(host: str, resolve: bool):
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return [ipaddress.ip_address("127.0.0.1")]
    if not resolve:
        return []
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        raise TargetRefused(f"{UNRESOLVED}: {exc}") from exc
    return [ipaddress.ip_address(info[4][0]) for info in infos]
