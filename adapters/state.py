"""The adapter's memory of which flag each source record became.

Closing or amending a flag needs its flagshare id, which the source system never held; this
small JSON file maps each record's ref to that id and the stage last sent. Losing it is safe:
creation is keyed by the record's own id, so the API replays the original flag.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


class StateError(Exception):
    """The state file exists but cannot be read."""


class State:
    def __init__(self, path: Path):
        self.path = path
        try:
            self.flags: dict[str, dict] = json.loads(path.read_text(encoding="utf-8"))["flags"]
        except FileNotFoundError:
            self.flags = {}
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(f"{path} is not a flagshare-adapter state file: {exc}") from exc

    def get(self, ref: str) -> dict | None:
        return self.flags.get(ref)

    def put(self, ref: str, flag_id: str, stage: str | None) -> None:
        """Remember the flag (and the stage fully sent, None until it is), written at once."""
        self.flags[ref] = {"flag_id": flag_id, "stage": stage}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"flags": self.flags}, indent=1, sort_keys=True),
                       encoding="utf-8")
        os.replace(tmp, self.path)
