"""The one error every part of the API raises: ``ApiError`` becomes ``{"ok": false, ...}``."""
from __future__ import annotations

from typing import Optional

#: the error text of an answer whose ApiError (or Tornado HTTPError) gives none
MESSAGES = {400: "bad request", 401: "authentication required", 403: "forbidden", 405: "method not allowed",
            413: "request body too large", 429: "too many requests", 503: "service unavailable"}


class ApiError(Exception):
    """Answer ``status`` with ``{"ok": false, "error": error, **fields}`` (no "error" when None)."""

    def __init__(self, status: int, error: Optional[str] = None, *, headers: Optional[dict] = None, **fields):
        super().__init__(error or str(status))
        self.status, self.error, self.headers, self.fields = status, error, headers or {}, fields

