"""JSON-ready copies of response and event data."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic_core import to_jsonable_python


def json_ready(value: Any) -> Any:
    """A JSON-ready copy, written as the API's responses are (a UTC time ends in `Z`), so a
    stored answer replayed, an event and a read of the same record spell a time alike.

    The standard library's C encoder walks the dicts, lists and strings; only what it cannot
    encode (datetimes, dates, models) goes to pydantic's encoder. Every publish encodes an
    event for each recipient, so this is paid five times a flag.
    """
    return json.loads(json.dumps(value, default=to_jsonable_python))


def rfc3339(moment: datetime | None) -> str | None:
    """A time as the API's responses write it (UTC with `Z`), for event data built by hand."""
    return None if moment is None else to_jsonable_python(moment)
