"""What a tracker's two halves share: the buffer, the counts `stats()` reports, the last
delivery error, and logging each kind of problem once."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from billing_kernel_sdk._buffer import Buffer, MemoryBuffer, Spool

logger = logging.getLogger("billing_kernel_sdk")


@dataclass(frozen=True, slots=True)
class TrackerStats:
    """What a tracker has done since it was created."""

    queued: int
    """`track()` calls taken into the buffer, to be sent."""
    accepted: int
    """Events the kernel accepted and counted."""
    duplicates: int
    """Events the kernel already had (a resend after a lost answer): counted once."""
    retried: int
    """Batch deliveries that failed and were tried again."""
    spooled: int
    """Events written to the spool."""
    dropped: int
    """Events not kept: the buffer or the spool's disk budget was full (or, without a spool,
    still unsent when the tracker closed)."""
    conflicts: int
    """Events whose key the kernel already had with another payload (often another time:
    a retried run tracked later). The first was counted; these were not."""
    refused: int
    """Events with invalid arguments, or refused by the kernel; never counted."""
    skipped: int
    """LLM responses that reported no usage (nothing to count; logged at debug)."""
    dead_lettered: int
    """Events set aside because the kernel failed on each of them alone while it took the
    others (see `dead_letters()`); they no longer hold up the queue."""
    unavailable: int
    """Quota decisions the tracker made itself, the kernel being out of reach
    (`on_unavailable`); what they allowed to be consumed is queued like tracked usage."""
    unauthorized: int
    """Deliveries the kernel refused for the API key (401/403). The events wait for a
    key that works; `last_error` says what the kernel answered."""
    pending: int
    """Events waiting to be sent now."""
    last_error: str | None
    """Why the last delivery failed; None once one succeeds."""


STAT_NAMES = (
    "queued",
    "accepted",
    "duplicates",
    "retried",
    "spooled",
    "dropped",
    "conflicts",
    "refused",
    "skipped",
    "dead_lettered",
    "unavailable",
    "unauthorized",
)


class Ledger:
    def __init__(
        self, *, spool_dir: str | Path | None, max_batch: int, max_queue: int, max_spool_bytes: int
    ) -> None:
        self.buffer: Buffer = (
            Spool(spool_dir, max_bytes=max_spool_bytes)
            if spool_dir is not None
            else MemoryBuffer(max_queue)
        )
        self.spooled = spool_dir is not None
        self.max_batch = max_batch
        self.lock = threading.Lock()
        self.counts = dict.fromkeys(STAT_NAMES, 0)
        self.last_error: str | None = None
        self._logged: set[str] = set()

    def count(self, name: str, amount: int = 1) -> None:
        with self.lock:
            self.counts[name] += amount

    def stats(self) -> TrackerStats:
        with self.lock:
            return TrackerStats(
                **self.counts, pending=self.buffer.pending(), last_error=self.last_error
            )

    def log_once(self, kind: str, level: int, message: str, *args: object) -> None:
        """Log the first occurrence of each kind of problem only (tracking is hot)."""
        if kind not in self._logged and len(self._logged) < 1000:
            self._logged.add(kind)
            logger.log(level, message, *args)

    @property
    def refusals(self) -> int:
        """Deliveries refused for the API key so far (stats().unauthorized)."""
        return self.counts["unauthorized"]
