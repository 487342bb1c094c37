import assert from "node:assert/strict";
import { test } from "node:test";

import { type Call, QuotaExceeded, TransportError, UNAVAILABLE, UsageTracker } from "../../src/index.js";
import { FakeKernel, QUIET } from "./fake.js";

const FAST = { backoffBaseMs: 1, backoffCapMs: 5, maxDelayMs: 5, decisionTimeoutMs: 120, logger: QUIET };

function decision(call: Call, allowed: boolean, enforcement: "soft" | "hard") {
  return {
    allowed,
    reason: allowed ? "within_limit" : "limit_reached",
    message: allowed ? "fine" : "Acme has used all 2 runs",
    metric: call.body.metric,
    requested: call.body.amount,
    consumed: allowed && call.body.consume === true,
    used: 2,
    held: 0,
    limit: 2,
    remaining: 0,
    enforcement,
    resets_at: "2026-01-01T00:00:00Z",
    grace_ends_at: null,
    status_blocks_at: null,
    upgrade: null,
  };
}

test("decisions are the kernel's; a refusal is a decision, or QuotaExceeded from guard()", async () => {
  const kernel = new FakeKernel();
  kernel.answer = (call) => decision(call, false, "hard");
  const tracker = new UsageTracker("", "", { ...FAST, transport: kernel });
  const refused = await tracker.check("acme", "playbook_runs");
  assert.deepEqual([refused.allowed, refused.reason, refused.limit], [false, "limit_reached", 2]);
  let ran = false;
  await assert.rejects(
    tracker.guard("acme", "playbook_runs", () => (ran = true)),
    (error: unknown) => error instanceof QuotaExceeded && error.message === "Acme has used all 2 runs",
  );
  assert.equal(ran, false);
  const [check, consume] = kernel.requests;
  assert.deepEqual(check, { path: "/api/v1/billing/org/check", orgId: "acme", body: { metric: "playbook_runs", amount: 1 } });
  assert.equal(consume?.body.consume, true);
  assert.match(String(consume?.body.idempotency_key), /^consume:[0-9a-f]{32}$/);
  await tracker.close();
});

test("unreachable: retried under one key, then allowed (and queued) unless the metric was last known hard", async () => {
  const kernel = new FakeKernel();
  const tracker = new UsageTracker("", "", { ...FAST, transport: kernel });
  const allowed = await tracker.consume("acme", "tokens", 40, { idempotencyKey: "job-9" });
  assert.deepEqual([allowed.allowed, allowed.reason, allowed.consumed, allowed.used], [true, UNAVAILABLE, true, null]);
  assert.ok(kernel.requests.length >= 2, "retried within the budget");
  assert.deepEqual(new Set(kernel.requests.map((call) => call.body.idempotency_key)), new Set(["job-9"]));

  kernel.answer = (call) => decision(call, true, "hard");
  await tracker.check("acme", "playbook_runs"); // the kernel says: hard
  kernel.answer = () => {
    throw new TransportError("kernel answered 503", { retryable: true, status: 503 });
  };
  assert.equal((await tracker.consume("acme", "playbook_runs")).allowed, false);
  assert.equal((await tracker.consume("acme", "playbook_runs", 1, { onUnavailable: "allow" })).allowed, true);
  assert.equal((await tracker.check("acme", "tokens", 1, { onUnavailable: "deny" })).allowed, false);
  kernel.answer = () => {
    throw new TransportError("kernel answered 404: no such metric", { retryable: false, status: 404, code: "unknown_metric" });
  };
  await assert.rejects(tracker.consume("acme", "gpu_hours"), (error: unknown) => error instanceof TransportError && error.code === "unknown_metric");

  assert.equal(await tracker.flush(), true);
  await tracker.close();
  assert.equal(tracker.stats().unavailable, 4);
  const queued = kernel.batches.flat();
  assert.deepEqual(
    queued.map((event) => [event.metric, event.quantity]),
    [["tokens", 40], ["playbook_runs", 1]],
    "what was allowed without the kernel is recorded once it is back, under the consume's key",
  );
  assert.equal(queued[0]?.idempotency_key, "job-9");
});

test("a reservation made without the kernel is local: its commit is queued, its release does nothing", async () => {
  const kernel = new FakeKernel();
  const tracker = new UsageTracker("", "", { ...FAST, transport: kernel });
  const reservation = await tracker.reserve("acme", "tokens", 500, { idempotencyKey: "llm-7" });
  assert.deepEqual([reservation.id, reservation.status, reservation.decision?.reason], [null, "held", UNAVAILABLE]);
  await reservation.commit(620);
  await reservation.commit(620);
  await assert.rejects(reservation.commit(10), /committed reservation/);
  assert.equal(await tracker.flush(), true);
  await tracker.close();
  assert.equal(kernel.total("acme"), 620);
  assert.equal(kernel.batches.flat()[0]?.idempotency_key, "llm-7");
});
