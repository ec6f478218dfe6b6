"""Where received events are handed to the agency's own system: a directory it imports.

Each delivery is appended once to `events.jsonl` (one JSON object a line: delivery id, when
and how it arrived, the event) and flushed to disk before it is acknowledged. The file itself
is the record of what was handed over, so a redelivery after a crash or a retry is recognised
by its delivery id and not handed over twice.

Anything with the same `accept(delivery_id, event, via) -> bool` can stand in for it, for an
agency system that takes events through a callback instead.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol


class Handoff(Protocol):
    def accept(self, delivery_id: str, event: dict, via: str) -> bool:
        """Hand the event over; False if this delivery was already handed over."""


class Inbox:
    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "events.jsonl"
        self._lock = threading.Lock()
        self._seen = set()
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    self._seen.add(json.loads(line)["delivery_id"])

    def accept(self, delivery_id: str, event: dict, via: str) -> bool:
        with self._lock:
            if delivery_id in self._seen:
                return False
            line = json.dumps({"delivery_id": delivery_id, "via": via,
                               "received_at": datetime.now(timezone.utc).isoformat(),
                               "event": event}, ensure_ascii=False)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
            self._seen.add(delivery_id)
            return True

    def events(self) -> list[dict]:
        """Everything handed over so far, oldest first."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines()
                if line.strip()]
