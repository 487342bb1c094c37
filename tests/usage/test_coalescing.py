"""Requests that go in together: how waiting requests are grouped and answered (with a
recorder that only notes what it was given), and concurrent single events of one org over a
real database, answered exactly as if each had come alone after those before it."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import pytest
from sqlalchemy import event

from billing_kernel.db.database import Database
from billing_kernel.errors import DatabaseUnavailable, IdempotencyConflict
from billing_kernel.kernel import Kernel
from billing_kernel.usage.coalescing import Coalescer
from billing_kernel.usage.rules import (
    RecordStatus,
    UsageBatchResult,
    UsageOutcome,
    UsageReport,
    UsageReportLike,
)
from tests.conftest import new_id

pytestmark = pytest.mark.anyio


def report(key: str, quantity: int = 1, org_id: str = "o") -> UsageReport:
    return UsageReport(org_id, "tokens", quantity, key, None)


class Recorder:
    """Notes each transaction's events; answers each event accepted (None: not judged),
    or fails the transaction when told to; waits on `gate` while it is closed."""

    def __init__(self) -> None:
        self.transactions: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_with: Exception | None = None

    async def record(self, reports: Sequence[UsageReportLike]) -> UsageBatchResult:
        self.transactions.append([str(r.idempotency_key) for r in reports])
        await self.gate.wait()
        if self.fail_with is not None:
            failure, self.fail_with = self.fail_with, None
            raise failure
        return UsageBatchResult(
            tuple(UsageOutcome(RecordStatus.ACCEPTED, None) for _ in reports), {}
        )


async def holding_the_slot(together: Coalescer, recorder: Recorder) -> asyncio.Task[object]:
    """A request for "a" under way, held in its transaction until the gate opens."""
    recorder.gate.clear()
    first: asyncio.Task[object] = asyncio.create_task(together.record([report("a")]))
    await asyncio.sleep(0.01)
    return first


async def test_a_request_that_finds_a_free_slot_is_recorded_at_once_and_alone() -> None:
    recorder = Recorder()
    together = Coalescer(recorder.record, in_flight=2, most_sent=2, most_events=10)
    answer = await together.record([report("a"), report("b")])
    assert recorder.transactions == [["a", "b"]]
    assert [o.status for o in answer.outcomes] == [RecordStatus.ACCEPTED] * 2
    assert together.takes([report("c"), report("d")])
    assert not together.takes([report("c"), report("d"), report("e")])  # goes alone


async def test_requests_that_wait_go_in_together_in_arrival_order_up_to_the_most_events() -> None:
    recorder = Recorder()
    together = Coalescer(recorder.record, in_flight=1, most_sent=4, most_events=4)
    first = await holding_the_slot(together, recorder)
    waiting = [
        asyncio.create_task(together.record([report(key) for key in keys]))
        for keys in (["b", "c"], ["d"], ["e", "f"], ["g"])
    ]
    await asyncio.sleep(0.01)
    assert recorder.transactions == [["a"]]
    recorder.gate.set()
    answers = await asyncio.gather(first, *waiting)
    assert recorder.transactions == [["a"], ["b", "c", "d"], ["e", "f", "g"]]
    assert [len(answer.outcomes) for answer in answers] == [1, 2, 1, 2, 1]


async def test_a_failed_transaction_fails_each_request_in_it_and_no_other() -> None:
    recorder = Recorder()
    together = Coalescer(recorder.record, in_flight=1, most_sent=2, most_events=2)
    first = await holding_the_slot(together, recorder)
    recorder.fail_with = DatabaseUnavailable("down")
    later = [asyncio.create_task(together.record([report(key)])) for key in "bcd"]
    await asyncio.sleep(0.01)
    recorder.gate.set()
    answers = await asyncio.gather(first, *later, return_exceptions=True)
    assert isinstance(answers[0], DatabaseUnavailable)  # the transaction it was in failed
    assert [type(a) for a in answers[1:]] == [UsageBatchResult] * 3
    assert recorder.transactions == [["a"], ["b", "c"], ["d"]]


async def test_a_caller_that_goes_away_leaves_the_others_answered() -> None:
    recorder = Recorder()
    together = Coalescer(recorder.record, in_flight=1, most_sent=10, most_events=10)
    first = await holding_the_slot(together, recorder)
    gone = asyncio.create_task(together.record([report("b")]))
    stays = asyncio.create_task(together.record([report("c")]))
    await asyncio.sleep(0.01)
    gone.cancel()
    recorder.gate.set()
    assert len((await stays).outcomes) == 1
    await first
    assert recorder.transactions == [["a"], ["b", "c"]]  # recorded all the same: a retry
    assert gone.cancelled()  # of it is a duplicate


async def test_concurrent_single_events_of_one_org_are_answered_as_if_sent_one_by_one(
    kernel: Kernel, database: Database
) -> None:
    org_id = new_id()
    await kernel.usage.record_batch([UsageReport(org_id, "tokens", 0, "first", None)])
    sent = [report(f"k{n % 40}", 1 + n % 40, org_id) for n in range(60)]  # 20 keys twice
    sent.append(report("k3", 999, org_id))  # a key reused with another quantity
    random.Random(5).shuffle(sent)
    commits = 0

    def committed(_: object) -> None:
        nonlocal commits
        commits += 1

    event.listen(database.engine.sync_engine, "commit", committed)
    try:
        answers = await asyncio.gather(*(kernel.usage.record_request([s]) for s in sent))
    finally:
        event.remove(database.engine.sync_engine, "commit", committed)
    assert 1 <= commits <= len(sent) // 4  # they went in together, a few transactions
    sends: dict[str, list[tuple[int, UsageOutcome]]] = {}
    for s, answer in zip(sent, answers, strict=True):
        [outcome] = answer.outcomes
        sends.setdefault(str(s.idempotency_key), []).append((int(str(s.quantity)), outcome))
        if outcome.status is RecordStatus.ACCEPTED:  # its own counter, as its write left it
            assert outcome.event is not None
            assert list(answer.totals) == [(org_id, outcome.event.period_start, "tokens")]
    stored: dict[str, int] = {}
    async for page in kernel.usage_reader.all_events(org_id):
        stored |= {e.idempotency_key: e.quantity for e in page}
    assert sorted(stored) == sorted({"first", *sends})
    for key, outcomes in sends.items():
        [counted] = [q for q, o in outcomes if o.status is RecordStatus.ACCEPTED]  # once
        assert stored[key] == counted
        for quantity, outcome in outcomes:  # every other send, judged against that one
            if outcome.status is not RecordStatus.ACCEPTED:
                same = quantity == counted
                assert outcome.status is (
                    RecordStatus.DUPLICATE if same else RecordStatus.REFUSED
                ), key
                assert same or isinstance(outcome.error, IdempotencyConflict)
    assert len(sends["k3"]) == 3
    total = (await kernel.summary.period_usage(org_id)).used["tokens"]
    assert total == sum(stored.values())
