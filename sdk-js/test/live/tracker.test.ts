/** The TypeScript SDK against a real kernel: tracking exactly once (a SIGKILLed process too), and quota decisions under concurrency. */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { QuotaExceeded, TransportError, UsageTracker } from "../../src/index.js";
import { api, hardLimit, KERNEL_KEY, KERNEL_URL, newOrg, used } from "./kernel.js";

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), "spool-child.js");
const PATIENT = { decisionTimeoutMs: 60_000, onUnavailable: "deny" as const };

test("tracked usage is counted once: keys, duplicates, named events, a refused event", async () => {
  const org = await newOrg();
  const tracker = new UsageTracker(KERNEL_URL, KERNEL_KEY);
  tracker.track(org, "tokens", 1200);
  tracker.track(org, "tokens", 300, { idempotencyKey: "job-1:tokens" });
  tracker.track(org, "tokens", 300, { idempotencyKey: "job-1:tokens" }); // a retried job
  tracker.trackEvent(org, "tokens", { value: 25, model: "gpt-5" });
  tracker.track(org, "gpu_hours", 1); // no such metric: the kernel refuses it
  tracker.track("", "tokens", 5); // refused by the tracker, never sent
  assert.equal(await tracker.flush(), true);
  const stats = tracker.stats();
  await tracker.close();
  assert.equal(await used(org), 1525);
  assert.deepEqual(
    [stats.queued, stats.accepted, stats.duplicates, stats.refused, stats.pending],
    [5, 3, 1, 2, 0],
  );
  const events = await api("GET", `/api/v1/orgs/${org}/events?limit=50`);
  const keyed = events.data.filter((event: { idempotency_key: string }) => event.idempotency_key === "job-1:tokens");
  assert.equal(keyed.length, 1);
});

test("LLM responses from the OpenAI and Anthropic Node clients count their tokens, once per response", async () => {
  const org = await newOrg();
  const tracker = new UsageTracker(KERNEL_URL, KERNEL_KEY);
  const chat = { id: "chatcmpl-1", created: Math.floor(Date.now() / 1000), usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 } };
  const message = { id: "msg_1", type: "message", usage: { input_tokens: 7, output_tokens: 3, cache_read_input_tokens: 2 } };
  tracker.trackLlmUsage(org, chat);
  tracker.trackLlmUsage(org, chat); // the same response again: one count
  tracker.trackLlmUsage(org, message);
  tracker.trackLlmUsage(org, { id: "chatcmpl-2", usage: null }); // a stream without usage: skipped
  assert.equal(await tracker.flush(), true);
  const stats = tracker.stats();
  await tracker.close();
  assert.equal(await used(org), 27);
  assert.deepEqual([stats.accepted, stats.duplicates, stats.skipped], [2, 1, 1]);
});

test("a process SIGKILLed after track() returns loses nothing: restarted, every event counts exactly once", async () => {
  const org = await newOrg();
  const spool = mkdtempSync(path.join(tmpdir(), "bk-spool-"));
  const events = 2_000;
  try {
    const child = spawn(process.execPath, [CHILD, "track", spool, org, String(events)], { stdio: ["ignore", "pipe", "inherit"] });
    const lines = createInterface({ input: child.stdout });
    const [line] = (await once(lines, "line")) as [string];
    assert.match(line, /^tracked /);
    assert.equal(JSON.parse(line.slice(8)).spooled, events);
    child.kill("SIGKILL"); // while it sends: some batches answered, some not, some acknowledgements lost
    const [, signal] = await once(child, "exit");
    assert.equal(signal, "SIGKILL");
    const before = await used(org);
    assert.ok(before <= events);

    const drain = spawn(process.execPath, [CHILD, "drain", spool, org, "0"], { stdio: ["ignore", "pipe", "inherit"] });
    const [report] = (await once(createInterface({ input: drain.stdout }), "line")) as [string];
    const stats = JSON.parse(report);
    assert.equal(stats.flushed, true);
    assert.equal(stats.pending, 0);
    assert.equal(await used(org), events); // none lost, none twice
    assert.ok(before + stats.resumed >= events, "what the kernel had not counted was in the spool");
    assert.equal(stats.accepted + stats.duplicates, stats.resumed); // each answered once
    assert.equal(stats.refused + stats.conflicts + stats.dropped, 0);
  } finally {
    rmSync(spool, { recursive: true, force: true });
  }
});

test("200 concurrent guard() calls on a hard limit of 10 allow exactly 10", async () => {
  const org = await newOrg();
  await hardLimit(org, "playbook_runs", 10);
  const tracker = new UsageTracker(KERNEL_URL, KERNEL_KEY, PATIENT);
  let ran = 0;
  const outcomes = await Promise.allSettled(
    Array.from({ length: 200 }, () => tracker.guard(org, "playbook_runs", () => (ran += 1))),
  );
  await tracker.close();
  const refused = outcomes.filter((outcome) => outcome.status === "rejected");
  assert.equal(ran, 10);
  assert.equal(refused.length, 190);
  for (const outcome of refused) {
    assert.ok(outcome.reason instanceof QuotaExceeded);
    assert.equal(outcome.reason.decision.reason, "limit_reached");
  }
  assert.equal(await used(org, "playbook_runs"), 10);
  assert.equal(tracker.stats().unavailable, 0);
});

test("check, consume, run, reserve: the kernel's decisions, replayed by key, refusals raised as QuotaExceeded", async () => {
  const org = await newOrg();
  await hardLimit(org, "playbook_runs", 2);
  await hardLimit(org, "tokens", 1_000);
  const tracker = new UsageTracker(KERNEL_URL, KERNEL_KEY, PATIENT);
  const first = await tracker.run(org, "run-0", (decision) => decision);
  assert.deepEqual([first.allowed, first.consumed, first.reason], [true, true, "within_limit"]);
  await tracker.run(org, "run-0", () => undefined); // the same run again: admitted, not counted
  const second = await tracker.consume(org, "playbook_runs", 1, { idempotencyKey: "export-1" });
  assert.deepEqual([second.allowed, second.used, second.remaining], [true, 1, 1]); // as it stood before
  await assert.rejects(
    tracker.guard(org, "playbook_runs", () => assert.fail("the guarded work must not run")),
    (error: unknown) => error instanceof QuotaExceeded && error.decision.limit === 2 && /2/.test(error.message),
  );
  const check = await tracker.check(org, "playbook_runs");
  assert.deepEqual([check.allowed, check.reason, check.consumed], [false, "limit_reached", false]);

  const held = await tracker.reserve(org, "tokens", 600, { idempotencyKey: "llm-1" });
  assert.equal(held.status, "held");
  assert.equal((await tracker.check(org, "tokens")).held, 600);
  await held.commit(750); // more than estimated: counted in full
  await held.commit(750); // the same commit again: nothing more
  const again = await tracker.reserve(org, "tokens", 600, { idempotencyKey: "llm-1" });
  assert.deepEqual([again.id, again.status, again.committedQuantity], [held.id, "committed", 750]);
  await assert.rejects(tracker.reserve(org, "tokens", 251), QuotaExceeded);
  const released = await tracker.withReservation(org, "tokens", 200, (reservation) => reservation.status);
  assert.equal(released, "held");
  assert.equal((await tracker.check(org, "tokens")).held, 0); // given back on the way out
  await assert.rejects(tracker.consume(org, "gpu_hours"), (error: unknown) =>
    error instanceof TransportError && error.status === 404 && error.code === "unknown_metric" && !error.retryable,
  );
  await tracker.close();
  assert.equal(await used(org, "playbook_runs"), 2);
  assert.equal(await used(org), 750);
});

test("an org's entitlements: its plan's features after its own values, and its limits, in one kept read", async () => {
  const org = await newOrg(); // on the default plan, internal-dev
  await api("PUT", `/api/v1/orgs/${org}/features/max_projects`, { value: 7 });
  const tracker = new UsageTracker(KERNEL_URL, KERNEL_KEY, PATIENT);
  assert.equal(await tracker.hasFeature(org, "sso"), true);
  assert.equal(await tracker.featureValue(org, "max_projects"), 7); // its own
  assert.equal(await tracker.featureValue(org, "audit_log", "none"), "none");
  const found = await tracker.entitlements(org);
  assert.deepEqual([found.planSlug, found.limits.tokens, found.cacheSeconds], ["internal-dev", 10_000_000, 60]);
  await tracker.close();
});
