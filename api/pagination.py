"""Cursor pagination as the contract says: `?limit=&cursor=` -> `{"items", "next_cursor"}`."""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

from api.problems import ProblemError, invalid

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


# A key is an id (text) or a position: a `seq` (an INTEGER column: 32 bits on PostgreSQL) or
# an offset.
MAX_INT_KEY = 2**31 - 1
Key = int | str


class PageParams(BaseModel):
    limit: int
    after: Key | None  # the sort key of the last item already seen, or None

    def after_as(self, kind: type[int] | type[str]) -> Key | None:
        """The key, if it is of the type this list is ordered by; any other is not ours."""
        return None if self.after is None else check_key(self.after, kind)


def encode_cursor(key: Key) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kind: type[int] | type[str] | None = None) -> Key:
    """A cursor's key. Only what `encode_cursor` could have written (of `kind`, if given)
    passes: a forged one is a 422 naming `cursor`, never a database error."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError as exc:
        raise _not_ours() from exc
    return check_key(key, kind)


def check_key(key: Any, kind: type[int] | type[str] | None = None) -> Key:
    if (isinstance(key, bool) or not isinstance(key, kind or (int, str))
            or (isinstance(key, int) and not 0 <= key <= MAX_INT_KEY)
            or (isinstance(key, str) and "\x00" in key)):  # PostgreSQL refuses NUL in text
        raise _not_ours()
    return key


def _not_ours() -> ProblemError:
    return invalid("cursor", "not a cursor returned by this service")


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
