"""The one way the API pages through a list: a cursor and a limit.

A list answers `{"data": [...], "next_cursor": "..."}`; the caller passes `next_cursor` back
as `?cursor=` until it is null. A cursor names the position of the last item of its page
(its sort key: an org id, a day), and the next page starts after it. Items added or removed
meanwhile therefore never make a page repeat an item, or skip one that was there all along,
as offsets would. Any cursor is a position, so none is refused."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field

T = TypeVar("T")
Item = TypeVar("Item")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Items per page, 1 to {MAX_LIMIT}.")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=300,
        pattern=r"^[^\x00-\x1f\x7f]*$",
        description="`next_cursor` of the previous page, as it was; leave out for the first page.",
    ),
]


SequenceCursor = Annotated[
    str | None,
    Query(
        pattern=r"^[0-9]{1,18}$",
        description="`next_cursor` of the previous page; leave out for the first page.",
    ),
]
"""The cursor of a list ordered by a number (an event's or an invoice's sequence)."""


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


def page_of(
    rows: Sequence[Item], limit: int, key: Callable[[Item], str]
) -> tuple[list[Item], str | None]:
    """`rows` fetched with `limit + 1`: the page, and the cursor of the next one if any."""
    items = list(rows[:limit])
    return items, (key(items[-1]) if len(rows) > limit else None)
