"""A transport that behaves like the kernel (idempotent by key) and can be told to fail."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from billing_kernel_sdk import EventResult, TransportError


class FakeKernel:
    """Counts like the kernel: once per (org, key); a repeated key with the same payload is
    a duplicate, with another payload a conflict."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], dict[str, Any]] = {}
        self.batches: list[int] = []
        self.failures: list[TransportError] = []  # raised, in order, before answering
        self.lose_answers = 0  # count the batch, then fail as if the answer was lost
        self.fails_on: set[str] = set()  # keys whose batch the kernel answers with a 500
        self.malformed: set[str] = set()  # keys whose batch it refuses whole (422)
        self.requests = 0
        self.lock = threading.Lock()

    def totals(self, metric: str = "tokens") -> dict[str, int]:
        totals: dict[str, int] = {}
        for event in self.seen.values():
            if event["metric"] == metric:
                totals[event["org_id"]] = totals.get(event["org_id"], 0) + event["quantity"]
        return totals

    def answer(self, events: Sequence[dict[str, Any]]) -> list[EventResult]:
        with self.lock:
            self.requests += 1
            if self.failures:
                raise self.failures.pop(0)
            keys = {event["idempotency_key"] for event in events}
            if keys & self.fails_on:
                raise TransportError(
                    "kernel answered 500: internal_error", retryable=True, status=500
                )
            if keys & self.malformed:
                raise TransportError("kernel answered 422: malformed", retryable=False, status=422)
            self.batches.append(len(events))
            results = []
            for event in events:
                key = (event["org_id"], event["idempotency_key"])
                if event["metric"] == "refuse-me":
                    results.append(EventResult("refused", "unknown_metric"))
                elif key in self.seen and self.seen[key] != dict(event):
                    results.append(EventResult("refused", "idempotency_conflict"))
                elif key in self.seen:
                    results.append(EventResult("duplicate"))
                else:
                    self.seen[key] = dict(event)
                    results.append(EventResult("accepted"))
            if self.lose_answers:
                self.lose_answers -= 1
                raise TransportError("answer lost", retryable=True)
            return results


class FakeTransport:
    def __init__(self, kernel: FakeKernel) -> None:
        self.kernel = kernel

    def send(self, events: Sequence[dict[str, Any]]) -> list[EventResult]:
        return self.kernel.answer(events)

    def close(self) -> None:
        pass


class FakeAsyncTransport:
    def __init__(self, kernel: FakeKernel) -> None:
        self.kernel = kernel

    async def send(self, events: Sequence[dict[str, Any]]) -> list[EventResult]:
        return self.kernel.answer(events)

    async def aclose(self) -> None:
        pass
