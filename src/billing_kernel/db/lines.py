"""What the repositories that read usage lines share: which line of a group is its last
(a latest metric's usage), ordered as `take_last` in `usage/repository/counter_sql.py` and
`Tally.plus` compare them: by event time, then idempotency key by code point."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, func

from billing_kernel.db.database import in_code_point_order
from billing_kernel.db.tables import usage_lines


def rank_last_first(partition_by: Sequence[Any], dialect_name: str) -> ColumnElement[int]:
    """Each usage line's rank in its group of `partition_by`: 1 for the last line."""
    lines = usage_lines.c
    return func.row_number().over(
        partition_by=list(partition_by),
        order_by=(
            lines.occurred_at.desc(),
            in_code_point_order(lines.idempotency_key, dialect_name).desc(),
        ),
    )
