"""Cursor pagination as the contract says: `?limit=&cursor=` -> `{"items", "next_cursor"}`."""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

from api.problems import invalid

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


class PageParams(BaseModel):
    limit: int
    after: Any  # the sort key of the last item already seen, or None


def encode_cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError as exc:
        raise invalid("cursor", "not a cursor returned by this service") from exc


async def _page_params(
    limit: Annotated[int, Query(ge=1, le=500, description="Items per page (max 500)")] = 50,
    cursor: Annotated[str | None, Query(max_length=500, description="next_cursor of the previous page")] = None,
) -> PageParams:
    return PageParams(limit=limit, after=decode_cursor(cursor) if cursor else None)


PageDep = Annotated[PageParams, Depends(_page_params)]


def page_of(rows: list[Any], params: PageParams, key, to_item) -> dict:
    """Rows fetched with limit+1; the extra row only says whether there is a next page."""
    more = len(rows) > params.limit
    rows = rows[: params.limit]
    return {
        "items": [to_item(r) for r in rows],
        "next_cursor": encode_cursor(key(rows[-1])) if more and rows else None,
    }
