"""Exceptions of the usage-tracking SDK. `track()` never raises any of them; they come from
constructing a tracker or from transports."""

from __future__ import annotations


class TrackerError(Exception):
    """Base of every exception the SDK defines."""


class SpoolBusyError(TrackerError):
    """Another live tracker holds the spool directory (one tracker per spool at a time)."""


class TransportError(TrackerError):
    """A batch could not be delivered.

    `retryable` batches are sent again later (network errors, timeouts, 429, 5xx, 401/403
    while credentials are fixed); others are given up and their events counted as refused.
    `status` is the kernel's HTTP status when it answered (None when it could not be reached),
    and `code` the stable code of its problem answer (e.g. `idempotency_conflict`).
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        self.code = code
