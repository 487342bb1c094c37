"""Small ingestion requests committed together: the application's own group commit.

Every transaction that records usage locks the counter rows it adds to until it commits, so
concurrent single events of one org queue on one row, each paying a commit while holding
it. Here, while a process already has `in_flight` ingestion transactions under way, the
small requests that arrive meanwhile wait, and then go in together as one batch: one
transaction, one lock of each counter, one commit. A request that finds a free slot starts
a transaction at the event loop's next turn, with whatever small requests arrived before
it; at low load that is itself alone, and nothing waits.

Each request is judged as if it came alone after those before it: its own events, each
accepted, a duplicate (a key sent earlier, by it or by a request it went in with) or
refused; its own outcomes and counters in its answer. A transaction that fails fails every
request in it, as a batch's failure fails all of its events; none of them was recorded.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from billing_kernel.usage.rules import UsageBatchResult, UsageReportLike

Record = Callable[[Sequence[UsageReportLike]], Awaitable[UsageBatchResult]]
Waiting = tuple[Sequence[UsageReportLike], "asyncio.Future[UsageBatchResult]"]
"""A request's events, and where its answer goes."""


class Coalescer:
    """Records requests of at most `most_sent` events each through `record`, at most
    `in_flight` transactions at a time, those that wait going in together (up to
    `most_events` events a transaction)."""

    def __init__(self, record: Record, *, in_flight: int, most_sent: int, most_events: int) -> None:
        self._record = record
        self._in_flight = in_flight
        self._most_sent = most_sent
        self._most_events = most_events
        self._waiting: deque[Waiting] = deque()
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def takes(self, reports: Sequence[UsageReportLike]) -> bool:
        """Whether a request of `reports` may go in with others (a larger one goes alone:
        it is a transaction's worth by itself)."""
        return len(reports) <= self._most_sent

    async def record(self, reports: Sequence[UsageReportLike]) -> UsageBatchResult:
        """What `record` answers for `reports`, recorded alone or with others."""
        done: asyncio.Future[UsageBatchResult] = asyncio.get_running_loop().create_future()
        self._waiting.append((reports, done))
        if self._running < self._in_flight:
            self._running += 1
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await done

    async def _drain(self) -> None:
        """Record what waits, a transaction at a time, until nothing does."""
        try:
            while self._waiting:
                taken = self._take()
                try:
                    result = await self._record([r for reports, _ in taken for r in reports])
                except Exception as exc:
                    for _, done in taken:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                start = 0
                for reports, done in taken:
                    part = split(result, start, len(reports))
                    start += len(reports)
                    if not done.done():  # its caller may have gone away
                        done.set_result(part)
        finally:
            self._running -= 1
            if self._waiting and self._running == 0:  # cancelled with requests waiting
                for _, done in self._waiting:
                    if not done.done():
                        done.set_exception(asyncio.CancelledError())
                self._waiting.clear()

    def _take(self) -> list[Waiting]:
        """The waiting requests that go in next, in arrival order: the first, and those after
        it while the events stay at most `most_events`."""
        taken: list[Waiting] = []
        events = 0
        while self._waiting and (
            not taken or events + len(self._waiting[0][0]) <= self._most_events
        ):
            reports, done = self._waiting.popleft()
            taken.append((reports, done))
            events += len(reports)
        return taken


def split(result: UsageBatchResult, start: int, count: int) -> UsageBatchResult:
    """The part of `result` that answers the `count` events sent from position `start`: their
    outcomes, and the totals of the counters they added to."""
    outcomes = result.outcomes[start : start + count]
    touched = {
        (o.event.org_id, o.event.period_start, line.metric)
        for o in outcomes
        if o.event is not None
        for line in o.event.lines
    }
    return UsageBatchResult(
        outcomes, {key: total for key, total in result.totals.items() if key in touched}
    )
