"""Webhook URL checks: the SSRF guard, applied when subscribing and again before each send."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit

from api.settings import Settings


UNRESOLVED = "host does not resolve"


class TargetRefused(ValueError):
    pass


def check_url(url: str, settings: Settings, *, resolve: bool) -> str | None:
    """Refuse what a production webhook must not be: not https, or a private/loopback host.

    `resolve=True` also checks the addresses the name resolves to now (DNS can change after
    the subscription was accepted), and returns the one to connect to (see `pinned`): a
    sender that looked the name up again could be given an address never checked (DNS
    rebinding). None: connect by the URL as it stands.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise TargetRefused("must be an absolute http(s) URL with a host")
    if parts.username or parts.password:
        raise TargetRefused("must not carry credentials")
    if settings.is_development:
        return None
    if parts.scheme != "https":
        raise TargetRefused("must use https outside development")
    if settings.webhook_allow_private:
        return None
    addresses, looked_up = _addresses(parts.hostname, resolve)
    for address in addresses:
        if not address.is_global:
            raise TargetRefused(f"resolves to a non-public address ({address})")
    return str(addresses[0]) if looked_up else None


def _addresses(host: str, resolve: bool) -> tuple[list, bool]:
    """The host's addresses, and whether they were looked up by name."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))], False
    except ValueError:
        pass
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return [ipaddress.ip_address("127.0.0.1")], False
    if not resolve:
        return [], False
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        raise TargetRefused(f"{UNRESOLVED}: {exc}") from exc
    return [ipaddress.ip_address(info[4][0]) for info in infos], True


def pinned(url: str, address: str | None) -> tuple[str, dict[str, str], dict[str, str]]:
    """The URL to send to, on the address `check_url` judged, with the header and request
    extension that keep the name: `Host`, and the TLS server name (SNI, and the name the
    certificate is checked against)."""
    if address is None:
        return url, {}, {}
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return (urlunsplit(parts._replace(netloc=netloc)), {"host": parts.netloc},
            {"sni_hostname": parts.hostname})
