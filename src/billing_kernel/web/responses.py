"""Responses beyond plain JSON: JSON that can echo what a caller sent, and CSV streamed a
page at a time."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse


class EscapedJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped (`\\u00e9`). A refused id may hold a lone
    UTF-16 surrogate, which UTF-8 cannot encode; a JSON escape carries it back to the
    sender exactly, and costs nothing for ASCII bodies."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet may take a cell beginning with as a formula (OWASP's list)."""


def spreadsheet_safe(value: str) -> str:
    """A CSV value no spreadsheet runs as a formula: one that begins with =, +, -, @, a tab
    or a carriage return (or with a single quote, so that the rule can be undone) gets a
    single quote in front. A reader undoes it by dropping one leading quote."""
    return "'" + value if value.startswith((*FORMULA_STARTS, "'")) else value


def csv_line(fields: Sequence[str]) -> str:
    """One CSV record (RFC 4180: quoted where needed, CRLF-terminated), each value made
    `spreadsheet_safe`."""
    out = io.StringIO()
    csv.writer(out).writerow([spreadsheet_safe(field) for field in fields])
    return out.getvalue()


def attachment(filename: str) -> str:
    """A Content-Disposition for a download named `filename` (RFC 6266): an ASCII name for
    old clients and the exact name, percent-encoded UTF-8, in `filename*`."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in filename)
    exact = quote(filename, safe="", errors="replace")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{exact}"


def csv_response(
    rows: AsyncIterator[str], filename: str, *, next_url: str | None = None
) -> StreamingResponse:
    """`rows` (CSV text, a chunk at a time) streamed as a download named `filename`; with
    `next_url`, a `Link: <next_url>; rel="next"` header says where the export goes on."""
    headers = {"content-disposition": attachment(filename)}
    if next_url is not None:
        headers["link"] = f'<{next_url}>; rel="next"'
    return StreamingResponse(rows, media_type="text/csv; charset=utf-8", headers=headers)


def next_url(request: Request, cursor: str) -> str:
    """The request's own path and query with `cursor` set: where an export goes on."""
    url = request.url.include_query_params(cursor=cursor)
    return f"{url.path}?{url.query}"


CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/csv": {}},
        "description": "CSV with a header row. A value that begins with =, +, -, @, a tab, a "
        "carriage return or a single quote has a single quote put in front (drop it to read "
        "the value). When the export goes on past this answer, a `Link` header names the "
        'next part (`rel="next"`).',
        "headers": {
            "Link": {
                "description": 'The next part of the export (`rel="next"`), when there is one.',
                "schema": {"type": "string"},
            }
        },
    }
}
