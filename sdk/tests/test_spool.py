"""The spool on its own: order, segment roll-over, resuming, and torn or corrupt lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from billing_kernel_sdk._buffer import Spool
from billing_kernel_sdk._events import Event


def event(n: int) -> Event:
    return Event("acme", "tokens", n, f"key-{n}", 1_790_000_000_000_000 + n)


def drain(spool: Spool, batch: int) -> list[int]:
    seen: list[int] = []
    for _ in range(10_000):  # bounded: a broken reader fails here instead of hanging
        if not spool.pending():
            return seen
        peeked = spool.peek(batch)
        seen += [e.quantity for e in peeked if e.idempotency_key]
        spool.ack(len(peeked))
    raise AssertionError(f"the spool did not drain: {spool.pending()} pending")


@pytest.mark.parametrize(
    ("segment_bytes", "batch"),
    [(2_000, 64), (2_000, 1), (4 * 1024 * 1024, 3), (4 * 1024 * 1024, 500)],
)
def test_events_come_back_in_order_across_segments_and_partial_reads(
    tmp_path: Path, segment_bytes: int, batch: int
) -> None:
    # Small batches in a large segment read a bounded chunk that ends mid-line.
    spool = Spool(tmp_path, max_bytes=10**7, segment_bytes=segment_bytes)
    for n in range(1_000):
        assert spool.append(event(n))
    assert (len(list(tmp_path.glob("seg-*.log"))) > 20) == (segment_bytes == 2_000)
    assert drain(spool, batch) == list(range(1_000))
    spool.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lock"]


def test_a_new_spool_resumes_after_the_acknowledged_offset(tmp_path: Path) -> None:
    first = Spool(tmp_path, max_bytes=10**7, segment_bytes=3_000)
    for n in range(300):
        first.append(event(n))
    first.ack(len(first.peek(120)))
    first.close()  # as if the process stopped here
    second = Spool(tmp_path, max_bytes=10**7)
    assert second.pending() == 180
    for n in range(300, 310):
        second.append(event(n))
    assert drain(second, 50) == list(range(120, 310))
    second.close()


def test_a_torn_last_line_is_not_an_event_and_a_corrupt_one_is_skipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**7)
    spool.append(event(1))
    spool.close()
    segment = next(tmp_path.glob("seg-*.log"))
    with open(segment, "ab") as file:
        file.write(b"not json\n")
        file.write(b'["acme","tokens",2,"key-2",1')  # torn: no end of line
    resumed = Spool(tmp_path, max_bytes=10**7)
    assert drain(resumed, 10) == [1]
    resumed.close()


def test_a_line_whose_time_no_calendar_holds_is_skipped_not_sent_for_ever(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, max_bytes=10**7)
    spool.append(event(1))
    spool.append(Event("acme", "tokens", 2, "key-2", -62_135_600_400_000_000))  # year 0 in UTC
    spool.append(event(3))
    assert drain(spool, 10) == [1, 3]
    spool.close()


def test_events_set_aside_are_kept_in_the_spool_directory_across_restarts(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, max_bytes=10**7)
    spool.set_aside([event(4)], "kernel answered 500")
    spool.close()
    resumed = Spool(tmp_path, max_bytes=10**7)
    [kept] = resumed.dead_letters()
    assert (kept["idempotency_key"], kept["quantity"], kept["error"]) == (
        "key-4",
        4,
        "kernel answered 500",
    )
    assert resumed.pending() == 0  # set aside is not queued: nothing is sent again by itself
    resumed.close()


def test_named_events_and_their_properties_come_back_and_old_lines_still_read(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, max_bytes=10**7)
    named = Event("acme", "llm.completion", 0, "k1", 1_790_000_000_000_000, {"tokens": 9}, True)
    assert spool.append(named)
    assert spool.append(event(2))
    spool.close()
    segment = next(tmp_path.glob("seg-*.log"))
    with segment.open("ab") as file:  # as a tracker before named events wrote it
        file.write(b'["acme","tokens",3,"key-3",1790000000000003]\n')
    again = Spool(tmp_path, max_bytes=10**7)
    read = again.peek(10)
    assert read == [named, event(2), event(3)]
    assert read[0].wire() == {
        "org_id": "acme",
        "event": "llm.completion",
        "idempotency_key": "k1",
        "occurred_at": "2026-09-21T14:13:20+00:00",
        "properties": {"tokens": 9},
    }
    assert read[2].wire()["metric"] == "tokens"
    assert "properties" not in read[2].wire()
    again.close()
