"""What the sync and async trackers share, in two halves over one buffer and one ledger:
recording (`_recording.py`: validation, keys, queueing) and sending (`_sending.py`: batches,
answers, retries, isolating events the kernel fails on). The trackers add only a sender
loop around them."""

from __future__ import annotations

from pathlib import Path

from billing_kernel_sdk._ledger import Ledger, TrackerStats
from billing_kernel_sdk._recording import Recorder
from billing_kernel_sdk._sending import ISOLATE_AFTER, Sender, wire

__all__ = ["Delivery", "TrackerStats", "wire"]


class Delivery:
    """A tracker's recording half and sending half, and the ledger both write to."""

    def __init__(
        self,
        *,
        spool_dir: str | Path | None,
        max_batch: int,
        max_queue: int,
        max_spool_bytes: int,
        backoff_base: float,
        backoff_cap: float,
        isolate_after: int = ISOLATE_AFTER,
    ) -> None:
        self.ledger = Ledger(
            spool_dir=spool_dir,
            max_batch=max_batch,
            max_queue=max_queue,
            max_spool_bytes=max_spool_bytes,
        )
        self.recorder = Recorder(self.ledger)
        self.sender = Sender(
            self.ledger,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            isolate_after=isolate_after,
        )
