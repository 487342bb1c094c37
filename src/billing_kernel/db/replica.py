"""Whether a read replica may be read now: how far it is behind its primary, in seconds,
from write-ahead log positions, probed at most once a second.

Every probe notes where the primary's log is (`pg_current_wal_lsn()`) and how far the
replica has replayed (`pg_last_wal_replay_lsn()`). A replica that has replayed past where
the primary stood at some moment holds every transaction committed before it: its lag is at
most the time since the latest such moment. Unlike the time of the last replayed
transaction, this stays at zero while the primary is idle, and grows while the replica
falls behind or stops receiving.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from billing_kernel.errors import DatabaseUnavailable

logger = logging.getLogger(__name__)


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


class ReplicaGate:
    """Whether the replica may be read: at most `max_lag` seconds behind at the last probe.
    A probe runs when the last is older than a second (or a quarter of `max_lag`), one at a
    time (the others take its answer): `primary_position` reads where the primary's log
    stands, then `replica_state` whether the replica is recovering and how far it has
    replayed; either raising DatabaseUnavailable makes it unreadable until the next."""

    def __init__(
        self,
        max_lag: float,
        primary_position: Callable[[], Awaitable[int]],
        replica_state: Callable[[], Awaitable[tuple[bool, int | None]]],
    ) -> None:
        self.max_lag = max_lag
        self._every = min(1.0, max_lag / 4)
        self._lag = ReplicaLag(window=max_lag + 2 * self._every)
        self._primary_position = primary_position
        self._replica_state = replica_state
        self._probed_at = -float("inf")
        self._fresh = False
        self._probing = asyncio.Lock()
        self.lag_seen: Callable[[float | None], None] = lambda _: None
        """Told what each probe found (seconds behind; None when it could not be told)."""

    async def readable(self) -> bool:
        """Whether the replica is fresh enough to read from now."""
        if time.monotonic() - self._probed_at >= self._every:
            async with self._probing:
                if time.monotonic() - self._probed_at >= self._every:
                    fresh = await self._probe()
                    if fresh != self._fresh:
                        logger.warning(
                            "reads that may lag go to the %s",
                            "read replica" if fresh else "primary: the replica is behind or away",
                        )
                    self._fresh = fresh
                    self._probed_at = time.monotonic()
        return self._fresh

    async def _probe(self) -> bool:
        try:
            self._lag.noted(time.monotonic(), await self._primary_position())
            recovering, replayed = await self._replica_state()
        except DatabaseUnavailable:
            self.lag_seen(None)
            return False
        if not recovering:  # not a replica at all (promoted, or the primary itself)
            self.lag_seen(0.0)
            return True
        behind = None if replayed is None else self._lag.behind(time.monotonic(), replayed)
        self.lag_seen(behind)
        return behind is not None and behind <= self.max_lag

    def failed(self) -> None:
        """The replica did not answer: the primary serves until the next probe."""
        if self._fresh:
            logger.warning("reads that may lag go to the primary: the replica did not answer")
        self._fresh = False
        self._probed_at = time.monotonic()
