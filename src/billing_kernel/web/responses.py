"""The JSON response the API sends when a body can echo what a caller sent."""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse


class EscapedJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped (`\\u00e9`). A refused id may hold a lone
    UTF-16 surrogate, which UTF-8 cannot encode; a JSON escape carries it back to the
    sender exactly, and costs nothing for ASCII bodies."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")
