"""Logs as operators read them: text for a person at a terminal (the default, `make run`), or
with BILLING_LOG_FORMAT=json one JSON object a line, for a log pipeline: every record with its
time, level, logger and message, and each request's line (`billing_kernel.requests`) with its
request id, method, route, status, duration, and the org and caller where known. Never a
secret: a caller is named by its key id or user id, never by its token."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

REQUEST_LOGGER = "billing_kernel.requests"
"""The logger of one line per answered request (at INFO)."""
FIELDS = ("request_id", "method", "path", "route", "status", "duration_ms", "org_id", "caller")
"""A request line's own fields, besides time, level, logger and message."""


class JsonFormatter(logging.Formatter):
    """One JSON object a record: `time` (UTC, ISO 8601), `level`, `logger`, `message`, the
    request fields a record carries (`extra=`), and `error` with the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(log_format: str, level: str = "INFO") -> None:
    """Send the kernel's logs (and uvicorn's errors) to standard error in `log_format`: `json`
    replaces the root logger's handlers with one JSON handler; `text` leaves logging as the
    process set it up (uvicorn's, or the command's)."""
    if log_format != "json":
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):  # uvicorn's own handlers write text
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # the request lines replace it
