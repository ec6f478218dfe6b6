"""The pull feed, for agencies that cannot accept inbound calls.

Long-polls `GET /v1/feed`, hands each delivery over, acknowledges it, and only then moves the
persisted cursor past it. A crash between hand-over and cursor leaves those deliveries to be
read again; the inbox recognises them by delivery id, so they are acknowledged, not
duplicated.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from adapters.client import FlagshareClient
from adapters.inbox import Handoff

LONG_POLL_SECONDS = 25
PAGE = 100


def read_cursor(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def write_cursor(path: Path, cursor: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(cursor + "\n", encoding="utf-8")
    os.replace(tmp, path)


def follow(client: FlagshareClient, inbox: Handoff, cursor_path: Path, *, once: bool,
           log: Callable[[str], None] = lambda message: None) -> int:
    """Hand over deliveries until the feed is drained (`once`) or forever; the count handed."""
    handed = 0
    cursor = read_cursor(cursor_path)
    while True:
        wait = 0 if once else LONG_POLL_SECONDS
        params = {"limit": PAGE, "wait": wait, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/feed", params, timeout=wait + 30)
        for item in page["items"]:
            event = item["event"]
            if inbox.accept(item["delivery_id"], event, "feed"):
                handed += 1
                log(f"received {item['delivery_id']} {event['type']}")
            client.ack(item["delivery_id"])
        if page.get("next_cursor") and page["next_cursor"] != cursor:
            cursor = page["next_cursor"]
            write_cursor(cursor_path, cursor)
        if once and not page["items"]:
            return handed
