"""Where tracked events wait for the sender: in memory, or in a spool on disk.

Both keep events in order and let the one sender look at the oldest ones (`peek`) and
remove them once the server has acknowledged them (`ack`), so an event leaves the buffer
only after it was counted (or refused) by the kernel, or was set aside (`set_aside`)
because the kernel fails on it while it takes other events.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Protocol

from billing_kernel_sdk._errors import SpoolBusyError
from billing_kernel_sdk._events import Event, occurred_at

logger = logging.getLogger("billing_kernel_sdk")

MAX_LINE_BYTES = 1024
"""More than a spooled event's line can take (ids of 64 and keys of 255 characters)."""
DEAD_LETTER_FILE = "dead-letter.jsonl"
"""In a spool directory: the events set aside, one JSON object a line (see `set_aside`)."""


class Buffer(Protocol):
    def append(self, event: Event) -> bool:
        """Keep `event`; False when there is no room (the caller counts it as dropped)."""
        ...

    def peek(self, limit: int) -> list[Event]:
        """The oldest `limit` events not yet acknowledged, oldest first, without removing."""
        ...

    def ack(self, count: int) -> None:
        """The oldest `count` events have been settled by the kernel: forget them."""
        ...

    def pending(self) -> int: ...

    def sync(self) -> None:
        """Make what was appended durable (a no-op in memory)."""
        ...

    def set_aside(self, events: list[Event], reason: str) -> None:
        """Keep `events` apart from the queue, durably where the buffer is (they are still
        in the queue until acknowledged)."""
        ...

    def dead_letters(self) -> list[dict[str, object]]:
        """What was set aside: each event as sent, with `error` and `set_aside_at`."""
        ...

    def close(self) -> None: ...


def dead_letter(event: Event, reason: str) -> dict[str, object]:
    """An event set aside, as kept: its wire form, why, and when."""
    return {**event.wire(), "error": reason, "set_aside_at": time.time()}


class MemoryBuffer:
    """A bounded queue in memory: fast, but what it holds is lost if the process dies."""

    def __init__(self, max_events: int) -> None:
        self._events: deque[Event] = deque()
        self._max = max_events
        self._dead: list[dict[str, object]] = []

    def append(self, event: Event) -> bool:
        if len(self._events) >= self._max:
            return False
        self._events.append(event)
        return True

    def peek(self, limit: int) -> list[Event]:
        return list(islice(self._events, limit))

    def ack(self, count: int) -> None:
        for _ in range(count):
            self._events.popleft()

    def pending(self) -> int:
        return len(self._events)

    def sync(self) -> None:
        pass

    def set_aside(self, events: list[Event], reason: str) -> None:
        self._dead.extend(dead_letter(event, reason) for event in events)

    def dead_letters(self) -> list[dict[str, object]]:
        return list(self._dead)

    def close(self) -> None:
        pass


@dataclass
class _Segment:
    number: int
    acked: int  # bytes from the start that are settled
    size: int

    def log(self, directory: Path) -> Path:
        return directory / f"seg-{self.number:08d}.log"

    def ack_file(self, directory: Path) -> Path:
        return directory / f"seg-{self.number:08d}.ack"


@dataclass
class _Peeked:
    event: Event
    segment: int
    end: int  # byte offset just past this event's line


class Spool:
    """An append-only log of events in segment files, one JSON line per event.

    `append` writes the line with one `write(2)` before `track()` returns, so a killed
    process loses nothing; `sync` fsyncs (the sender calls it before each batch, so the
    disk has everything in small groups). Each segment has an `.ack` file holding how many of
    its bytes are settled; a settled segment is deleted. A new spool on the same directory
    resumes from the acknowledged offsets; events whose acknowledgement was lost are sent
    again and counted once by their idempotency keys. One live tracker per directory (a lock
    file enforces it).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int,
        segment_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self._dir = Path(directory)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self._dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise SpoolBusyError(f"another tracker is using the spool {self._dir}") from None
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._segments: deque[_Segment] = deque()
        self._peeked: list[_Peeked] = []
        self._pending = 0
        for path in sorted(self._dir.glob("seg-*.log")):
            number = int(path.stem.removeprefix("seg-"))
            segment = _Segment(number, 0, path.stat().st_size)
            with contextlib.suppress(FileNotFoundError, ValueError):
                segment.acked = int(segment.ack_file(self._dir).read_text() or 0)
            self._segments.append(segment)
            self._pending += self._count_lines(segment)
        self._bytes = sum(s.size for s in self._segments)
        self._dirty = False
        self._writer: _Segment | None = None
        self._write_fd = -1
        self._open_writer()
        if self._pending:
            logger.info("spool %s: resuming %d unsent event(s)", self._dir, self._pending)

    def _open_writer(self) -> None:
        number = self._segments[-1].number + 1 if self._segments else 1
        self._writer = _Segment(number, 0, 0)
        self._segments.append(self._writer)
        self._write_fd = os.open(
            self._writer.log(self._dir), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
        )

    def _count_lines(self, segment: _Segment) -> int:
        with open(segment.log(self._dir), "rb") as file:
            file.seek(segment.acked)
            return file.read().count(b"\n")

    def append(self, event: Event) -> bool:
        line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._bytes + len(line) > self._max_bytes:
                return False
            writer = self._writer
            assert writer is not None
            if writer.size and writer.size + len(line) > self._segment_bytes:
                os.fsync(self._write_fd)
                os.close(self._write_fd)
                self._open_writer()
                writer = self._writer
                assert writer is not None
            os.write(self._write_fd, line)
            writer.size += len(line)
            self._bytes += len(line)
            self._pending += 1
            self._dirty = True
            return True

    def peek(self, limit: int) -> list[Event]:
        if len(self._peeked) < limit:
            self._read_more(limit - len(self._peeked))
        return [p.event for p in self._peeked[:limit]]

    def _read_more(self, wanted: int) -> None:
        with self._lock:
            segments = list(self._segments)
        start_segment, start = (
            (self._peeked[-1].segment, self._peeked[-1].end) if self._peeked else (-1, -1)
        )
        for segment in segments:
            if segment.number < start_segment:
                continue
            offset = start if segment.number == start_segment else segment.acked
            with open(segment.log(self._dir), "rb") as file:
                file.seek(offset)
                data = file.read(wanted * MAX_LINE_BYTES)  # enough for `wanted` lines
            for raw in data.splitlines(keepends=True):
                if not raw.endswith(b"\n"):
                    break  # being written, or torn by a crash: not an event (yet)
                offset += len(raw)
                try:
                    event = Event(*json.loads(raw))
                    occurred_at(event.occurred_us)  # a time no calendar holds cannot be sent
                except (ValueError, TypeError, OverflowError):
                    logger.error("spool %s: skipping a corrupt line", self._dir)
                    self._peeked.append(_Peeked(_SKIP, segment.number, offset))
                    continue
                self._peeked.append(_Peeked(event, segment.number, offset))
                wanted -= 1
                if wanted == 0:
                    return

    def ack(self, count: int) -> None:
        settled, self._peeked = self._peeked[:count], self._peeked[count:]
        if not settled:
            return
        ends: dict[int, int] = {}
        for item in settled:
            ends[item.segment] = item.end
        finished, progressed = [], []
        with self._lock:
            self._pending -= len(settled)
            for segment in list(self._segments):
                if segment.number in ends:
                    segment.acked = ends[segment.number]
                elif segment.number < max(ends):
                    segment.acked = segment.size  # passed over entirely
                else:
                    continue
                if segment is not self._writer and segment.acked >= segment.size:
                    self._segments.remove(segment)
                    self._bytes -= segment.size
                    finished.append(segment)
                else:
                    progressed.append((segment, segment.acked))
        for segment, acked in progressed:  # file work outside the lock that track() takes
            self._write_ack(segment, acked)
        for segment in finished:
            for path in (segment.log(self._dir), segment.ack_file(self._dir)):
                path.unlink(missing_ok=True)

    def _write_ack(self, segment: _Segment, acked: int) -> None:
        path = segment.ack_file(self._dir)
        temporary = path.with_suffix(".ack.tmp")
        temporary.write_text(str(acked))
        os.replace(temporary, path)

    def pending(self) -> int:
        return self._pending

    def sync(self) -> None:
        with self._lock:
            dirty, fd = self._dirty, self._write_fd
            self._dirty = False
        if dirty:  # outside the lock: track() keeps appending while the disk catches up
            os.fsync(fd)

    def set_aside(self, events: list[Event], reason: str) -> None:
        lines = "".join(json.dumps(dead_letter(e, reason)) + "\n" for e in events).encode()
        fd = os.open(self._dir / DEAD_LETTER_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, lines)
            os.fsync(fd)
        finally:
            os.close(fd)

    def dead_letters(self) -> list[dict[str, object]]:
        path = self._dir / DEAD_LETTER_FILE
        if not path.exists():
            return []
        with open(path, "rb") as file:
            return [json.loads(line) for line in file if line.endswith(b"\n")]

    def close(self) -> None:
        with self._lock:
            if self._write_fd >= 0:
                os.fsync(self._write_fd)
                os.close(self._write_fd)
                self._write_fd = -1
            writer = self._writer
            if writer is not None and writer.acked >= writer.size:  # nothing left to send
                self._segments.remove(writer)
                for path in (writer.log(self._dir), writer.ack_file(self._dir)):
                    path.unlink(missing_ok=True)
            os.close(self._lock_fd)


_SKIP = Event("", "", 0, "", 0)
"""Stands in for a corrupt spool line so that acknowledging moves past it."""
