"""How far a read replica is behind its primary, in seconds, from write-ahead log positions.

Every probe notes where the primary's log is (`pg_current_wal_lsn()`) and how far the
replica has replayed (`pg_last_wal_replay_lsn()`). A replica that has replayed past where
the primary stood at some moment holds every transaction committed before it: its lag is at
most the time since the latest such moment. Unlike the time of the last replayed
transaction, this stays at zero while the primary is idle, and grows while the replica
falls behind or stops receiving.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class ReplicaLag:
    """The primary's log positions over the last `window` seconds, and the lag they give."""

    window: float
    samples: deque[tuple[float, int]] = field(default_factory=deque)
    """(when, the primary's log position then), oldest first."""

    def noted(self, at: float, primary_position: int) -> None:
        """The primary's log stood at `primary_position` at `at` (monotonic seconds)."""
        self.samples.append((at, primary_position))
        while self.samples and self.samples[0][0] < at - self.window:
            self.samples.popleft()

    def behind(self, at: float, replayed: int) -> float | None:
        """Seconds the replica, having replayed up to `replayed`, is behind at `at`: the time
        since the latest noted moment whose position it has reached; None when it has
        reached none of those in the window (further behind than the window)."""
        reached = [when for when, position in self.samples if position <= replayed]
        if not reached:
            return None
        return max(0.0, at - max(reached))
