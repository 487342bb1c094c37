"""Responses beyond plain JSON: JSON that can echo what a caller sent, and CSV streamed a
page at a time."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi.responses import JSONResponse, StreamingResponse


class EscapedJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped (`\\u00e9`). A refused id may hold a lone
    UTF-16 surrogate, which UTF-8 cannot encode; a JSON escape carries it back to the
    sender exactly, and costs nothing for ASCII bodies."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


def csv_line(fields: Sequence[str]) -> str:
    """One CSV record (RFC 4180: quoted where needed, CRLF-terminated)."""
    out = io.StringIO()
    csv.writer(out).writerow(fields)
    return out.getvalue()


def csv_response(rows: AsyncIterator[str], filename: str) -> StreamingResponse:
    """`rows` (CSV text, a chunk at a time) streamed as a download named `filename`."""
    return StreamingResponse(
        rows,
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}, "description": "CSV with a header row."}
}
