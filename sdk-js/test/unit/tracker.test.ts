import assert from "node:assert/strict";
import { appendFileSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, test } from "node:test";

import { SpoolBusyError, TransportError, UsageTracker } from "../../src/index.js";
import { FakeKernel, QUIET } from "./fake.js";

const FAST = { backoffBaseMs: 1, backoffCapMs: 5, maxDelayMs: 5, logger: QUIET };
const dirs: string[] = [];

function spoolDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), "bk-unit-"));
  dirs.push(dir);
  return dir;
}

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

test("track() never throws: what the kernel would refuse for its form is counted, never sent", async () => {
  const kernel = new FakeKernel();
  const tracker = new UsageTracker("", "", { ...FAST, transport: kernel });
  tracker.track("acme", "tokens", 5);
  tracker.track("acme", "tokens", -1);
  tracker.track("acme", "tokens", 1.5);
  tracker.track("", "tokens", 1);
  tracker.track("acme", "to\u0000kens", 1);
  tracker.track("acme", "tokens", 1, { occurredAt: new Date(Number.NaN) });
  tracker.track("acme", "tokens", 1, { properties: { bad: Number.NaN } });
  tracker.track(undefined as unknown as string, "tokens", 1);
  assert.equal(await tracker.flush(), true);
  await tracker.close();
  assert.deepEqual([tracker.stats().queued, tracker.stats().refused, tracker.stats().accepted], [1, 7, 1]);
  assert.equal(kernel.total("acme"), 5);
});

test("events go in batches of maxBatch; a key counts once; the kernel's refusals and conflicts are counted", async () => {
  const kernel = new FakeKernel();
  const tracker = new UsageTracker("", "", { ...FAST, maxBatch: 4, transport: kernel });
  for (let n = 0; n < 10; n += 1) tracker.track("acme", "tokens", 1);
  tracker.track("acme", "tokens", 7, { idempotencyKey: "job-1" });
  tracker.track("acme", "tokens", 7, { idempotencyKey: "job-1" });
  tracker.track("acme", "tokens", 8, { idempotencyKey: "job-1" });
  tracker.track("acme", "gpu_hours", 1);
  assert.equal(await tracker.flush(), true);
  await tracker.close();
  assert.ok(kernel.batches.every((batch) => batch.length <= 4));
  const stats = tracker.stats();
  assert.deepEqual(
    [stats.accepted, stats.duplicates, stats.conflicts, stats.refused, stats.pending],
    [11, 1, 1, 1, 0],
  );
  assert.equal(kernel.total("acme"), 17);
  const keyed = kernel.batches.flat().find((event) => event.idempotency_key === "job-1");
  assert.ok(keyed?.observed_at && keyed.occurred_at === undefined, "a keyed event's time is observed");
});

test("an unavailable kernel is retried with the same keys; nothing is lost or counted twice", async () => {
  const kernel = new FakeKernel();
  kernel.failures = [
    new TransportError("could not reach the kernel", { retryable: true }),
    new TransportError("kernel answered 503", { retryable: true, status: 503 }),
    new TransportError("kernel answered 429", { retryable: true, status: 429, retryAfterMs: 1 }),
  ];
  const tracker = new UsageTracker("", "", { ...FAST, transport: kernel });
  for (let n = 0; n < 5; n += 1) tracker.track("acme", "tokens", 2);
  assert.equal(await tracker.flush(), true);
  await tracker.close();
  assert.deepEqual([tracker.stats().retried, tracker.stats().accepted, tracker.stats().last_error], [3, 5, null]);
  assert.equal(kernel.total("acme"), 10);
  assert.equal(new Set(kernel.batches.map((batch) => batch.map((e) => e.idempotency_key).join())).size, 1);
});

test("a refused key: flush() says so at once, the events wait for a key that works", async () => {
  const kernel = new FakeKernel();
  kernel.failures = Array.from({ length: 3 }, () => new TransportError("kernel answered 401", { retryable: true, status: 401 }));
  const tracker = new UsageTracker("", "", { ...FAST, transport: kernel });
  tracker.track("acme", "tokens", 3);
  assert.equal(await tracker.flush(30_000), false);
  assert.equal(tracker.stats().unauthorized, 1);
  assert.equal(tracker.stats().pending, 1);
  assert.match(tracker.stats().last_error ?? "", /401/);
  kernel.failures = [];
  assert.equal(await tracker.flush(), true);
  await tracker.close();
  assert.equal(kernel.total("acme"), 3);
});

test("an event the kernel fails on alone is set aside; the rest of its batch is delivered", async () => {
  const kernel = new FakeKernel();
  kernel.poison.add("bad");
  const tracker = new UsageTracker("", "", { ...FAST, transport: kernel });
  for (let n = 0; n < 7; n += 1) tracker.track("acme", "tokens", 1, { idempotencyKey: `good-${n}` });
  tracker.track("acme", "tokens", 100, { idempotencyKey: "bad" });
  tracker.track("acme", "tokens", 1, { idempotencyKey: "after" });
  assert.equal(await tracker.flush(), true);
  await tracker.close();
  assert.equal(kernel.total("acme"), 8);
  assert.equal(tracker.stats().dead_lettered, 1);
  const [letter] = tracker.deadLetters();
  assert.equal(letter?.idempotency_key, "bad");
  assert.match(letter?.error ?? "", /500/);
});

test("with a spool, what could not be sent waits on disk for the next tracker, in the Python SDK's layout", async () => {
  const dir = spoolDir();
  const down = new FakeKernel();
  down.failures = Array.from({ length: 1000 }, () => new TransportError("kernel answered 503", { retryable: true, status: 503 }));
  const first = new UsageTracker("", "", { ...FAST, spoolDir: dir, transport: down });
  for (let n = 0; n < 10; n += 1) first.track("acme", "tokens", 1, { properties: { n } });
  assert.equal(first.stats().spooled, 10);
  assert.throws(() => new UsageTracker("", "", { ...FAST, spoolDir: dir, transport: down }), SpoolBusyError);
  await first.close(20);
  assert.equal(first.stats().dropped, 0, "a spooled event is kept, not dropped");
  const [segment] = readdirSync(dir).filter((name) => name.endsWith(".log"));
  assert.ok(segment);
  // A line written by the Python SDK, and a torn one: the first is sent, the second passed over.
  appendFileSync(path.join(dir, segment), '["acme","tokens",5,"from-python",1700000000000000,null,false,false]\n{"torn\n');
  writeFileSync(path.join(dir, "lock.pid"), "999999999"); // left by a process that is gone

  const up = new FakeKernel();
  const second = new UsageTracker("", "", { ...FAST, spoolDir: dir, transport: up });
  assert.equal(second.stats().pending, 12);
  assert.equal(await second.flush(), true);
  await second.close();
  assert.equal(up.total("acme"), 15);
  assert.deepEqual([second.stats().accepted, second.stats().dropped], [11, 1]);
  assert.deepEqual(readdirSync(dir).filter((name) => name.startsWith("seg-")), [], "settled segments are removed");
});

test("without a spool, closing before the kernel answered counts what was left as dropped", async () => {
  const down = new FakeKernel();
  down.failures = Array.from({ length: 1000 }, () => new TransportError("down", { retryable: true }));
  const tracker = new UsageTracker("", "", { ...FAST, maxQueue: 3, transport: down });
  for (let n = 0; n < 5; n += 1) tracker.track("acme", "tokens", 1);
  await tracker.close(10);
  tracker.track("acme", "tokens", 1); // after close
  assert.deepEqual([tracker.stats().queued, tracker.stats().dropped], [3, 6]);
});
