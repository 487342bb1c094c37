"""A transport that behaves like the kernel (idempotent by key) and can be told to fail: it
takes batches, and answers checks, consumes and reservations against hard limits (the
real kernel's decisions are tested against it in the kernel's own tests)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from billing_kernel_sdk import EventResult, TransportError
from billing_kernel_sdk.transport import ENTITLEMENTS_PATH, Request


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
        self.limits: dict[str, int] = {}  # hard limits by metric; others are soft
        self.decisions: dict[tuple[str, str], dict[str, Any]] = {}
        self.holds: dict[str, dict[str, Any]] = {}
        self.calls: list[Request] = []
        self.lose_request_answers = 0  # answer a quota call, then fail as if the answer was lost
        self.features: dict[str, dict[str, Any]] = {}  # each org's entitlements' features
        self.cache_seconds = 60

    def totals(self, metric: str = "tokens") -> dict[str, int]:
        totals: dict[str, int] = {}
        for event in self.seen.values():
            if event.get("metric") == metric:
                totals[event["org_id"]] = totals.get(event["org_id"], 0) + event["quantity"]
            elif event.get("event") == metric:  # as the kernel's metric of that key counts it
                amount = event["properties"]["value"]
                totals[event["org_id"]] = totals.get(event["org_id"], 0) + amount
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
                if event.get("metric", event.get("event")) == "refuse-me":
                    results.append(EventResult("refused", "unknown_metric"))
                elif key in self.seen and not _repeats(dict(event), self.seen[key]):
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

    def request(self, call: Request) -> dict[str, Any]:
        answer = self._request(call)
        if self.lose_request_answers:
            self.lose_request_answers -= 1
            raise TransportError("answer lost", retryable=True)
        return answer

    def _request(self, call: Request) -> dict[str, Any]:
        with self.lock:
            self.requests += 1
            self.calls.append(call)
            if self.failures:
                raise self.failures.pop(0)
            if call.path == ENTITLEMENTS_PATH:
                assert call.method == "GET"
                assert call.org_id is not None
                return {
                    "org_id": call.org_id,
                    "plan_slug": "starter",
                    "plan_version": 1,
                    "features": dict(self.features.get(call.org_id, {})),
                    "own_features": [],
                    "limits": {
                        metric: {"included_quantity": limit, "policy": {"mode": "hard"}}
                        for metric, limit in self.limits.items()
                    },
                    "cache_seconds": self.cache_seconds,
                }
            if call.path.endswith("/commit"):
                hold = self.holds[call.path.split("/")[-2]]
                self._record(hold["org_id"], hold["metric"], call.body["quantity"], hold["key"])
                hold["status"], hold["committed_quantity"] = "committed", call.body["quantity"]
                return {"id": hold["id"], "status": "committed"}
            if call.path.endswith("/release"):
                hold = self.holds[call.path.split("/")[-2]]
                hold["status"] = "released"
                return {"id": hold["id"], "status": "released"}
            body = call.body
            org_id = call.org_id or body["org_id"]
            amount = body.get("amount", body.get("estimate"))
            key = body.get("idempotency_key")
            if key is not None and (org_id, key) in self.decisions:
                replayed = self.decisions[(org_id, key)]
                if "estimate" in body:  # a reservation answers in its state now
                    hold = self.holds[replayed["id"]]
                    return {**replayed, "status": hold["status"], **_committed(hold)}
                return replayed
            decision = self._decide(org_id, body["metric"], amount)
            if "estimate" in body:
                answer = {"id": f"rsv_{len(self.holds)}", "decision": decision}
                answer["status"] = "held" if decision["allowed"] else "refused"
                self.holds[answer["id"]] = {**body, "key": key, **answer}
            elif key is not None:
                decision["consumed"] = decision["allowed"]
                if decision["allowed"]:
                    self._record(org_id, body["metric"], amount, key)
                answer = decision
            else:
                return decision
            self.decisions[(org_id, key)] = answer
            return answer

    def _decide(self, org_id: str, metric: str, amount: int) -> dict[str, Any]:
        used = self.totals(metric).get(org_id, 0)
        held = sum(
            h["estimate"]
            for h in self.holds.values()
            if (h["org_id"], h["metric"], h["status"]) == (org_id, metric, "held")
        )
        limit = self.limits.get(metric)
        allowed = limit is None or used + held + amount <= limit
        return {
            "allowed": allowed,
            "reason": "within_limit" if allowed else "limit_reached",
            "message": f"{org_id} has used {used} of {limit} {metric}.",
            "metric": metric,
            "requested": amount,
            "used": used,
            "held": held,
            "limit": limit,
            "remaining": None if limit is None else max(0, limit - used - held),
            "enforcement": "soft" if limit is None else "hard",
            "resets_at": "2026-12-01T00:00:00Z",
            "grace_ends_at": None,
            "status_blocks_at": None,
            "upgrade": None,
            "consumed": False,
        }

    def _record(self, org_id: str, metric: str, quantity: int, key: str) -> None:
        """Usage a consume or commit records: an event the kernel timed itself."""
        self.seen[(org_id, key)] = {
            "org_id": org_id,
            "metric": metric,
            "quantity": quantity,
            "idempotency_key": key,
        }


def _repeats(event: dict[str, Any], stored: dict[str, Any]) -> bool:
    """The kernel's rule: the same payload, the time compared only when both gave one (an
    event a consume or commit recorded has the kernel's time, not the sender's; an
    `observed_at` is not a time given)."""
    timed = "occurred_at" in event and "occurred_at" in stored
    fields = ("org_id", "metric", "quantity", "event", "properties", "idempotency_key")
    return all(event.get(name) == stored.get(name) for name in fields) and (
        not timed or event["occurred_at"] == stored["occurred_at"]
    )


def _committed(hold: dict[str, Any]) -> dict[str, Any]:
    return {"committed_quantity": hold.get("committed_quantity")}


class FakeTransport:
    def __init__(self, kernel: FakeKernel) -> None:
        self.kernel = kernel

    def send(self, events: Sequence[dict[str, Any]]) -> list[EventResult]:
        return self.kernel.answer(events)

    def request(self, call: Request, timeout: float) -> dict[str, Any]:
        return self.kernel.request(call)

    def close(self) -> None:
        pass


class FakeAsyncTransport:
    def __init__(self, kernel: FakeKernel) -> None:
        self.kernel = kernel

    async def send(self, events: Sequence[dict[str, Any]]) -> list[EventResult]:
        return self.kernel.answer(events)

    async def request(self, call: Request, timeout: float) -> dict[str, Any]:
        return self.kernel.request(call)

    async def aclose(self) -> None:
        pass
