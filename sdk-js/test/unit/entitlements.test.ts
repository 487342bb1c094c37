import assert from "node:assert/strict";
import { test } from "node:test";

import { type Call, Entitlements, TransportError, UsageTracker } from "../../src/index.js";
import { FakeKernel, QUIET } from "./fake.js";

const FAST = { backoffBaseMs: 1, backoffCapMs: 5, maxDelayMs: 5, decisionTimeoutMs: 120, logger: QUIET };

function kernelWith(features: Record<string, Record<string, boolean | number | string>>, cacheSeconds = 60) {
  const kernel = new FakeKernel();
  kernel.answer = (call: Call) => ({
    org_id: call.orgId,
    plan_slug: "starter",
    plan_version: 1,
    features: { ...(features[call.orgId ?? ""] ?? {}) },
    own_features: [],
    limits: { tokens: { included_quantity: 1000, policy: { mode: "hard", grace_percent: 0, grace_period_hours: null } } },
    cache_seconds: cacheSeconds,
  });
  return kernel;
}

test("one read answers every feature and limit, and is kept for its time", async () => {
  const features = { acme: { sso: true, max_projects: 5, beta: false } };
  const kernel = kernelWith(features);
  const tracker = new UsageTracker("", "", { ...FAST, transport: kernel });
  const found = await tracker.entitlements("acme");
  assert.deepEqual(found, new Entitlements("acme", "starter", 1, { sso: true, max_projects: 5, beta: false }, { tokens: 1000 }, 60));
  assert.equal(await tracker.hasFeature("acme", "sso"), true);
  assert.equal(await tracker.hasFeature("acme", "beta"), false); // granted false
  assert.equal(await tracker.hasFeature("acme", "audit_log"), false); // not granted
  assert.equal(await tracker.featureValue("acme", "max_projects"), 5);
  assert.equal(await tracker.featureValue("acme", "audit_log", "none"), "none");
  assert.equal(kernel.requests.length, 1);
  const call = kernel.requests[0];
  assert.deepEqual([call?.method, call?.orgId, call?.path], ["GET", "acme", "/api/v1/billing/org/entitlements"]);
  features.acme.sso = false;
  assert.equal(await tracker.hasFeature("acme", "sso"), true); // still the kept answer
  assert.equal((await tracker.entitlements("acme", { refresh: true })).hasFeature("sso"), false);
  assert.equal(kernel.requests.length, 2);
  await tracker.close();
});

test("an answer kept no time is read again; while the kernel is out of reach the last one holds", async () => {
  const kernel = kernelWith({ acme: { sso: true } }, 0);
  const tracker = new UsageTracker("", "", { ...FAST, transport: kernel });
  const down = () => new TransportError("could not reach the kernel", { retryable: true });
  kernel.failures = [];
  const answer = kernel.answer;
  kernel.answer = () => {
    throw down();
  };
  await assert.rejects(tracker.entitlements("acme"), TransportError); // nothing read yet
  kernel.answer = answer;
  await tracker.hasFeature("acme", "sso");
  await tracker.hasFeature("acme", "sso");
  const reads = kernel.requests.filter((call) => call.method === "GET").length;
  kernel.answer = () => {
    throw down();
  };
  assert.equal(await tracker.hasFeature("acme", "sso"), true); // the last answer, however old
  kernel.answer = () => {
    throw new TransportError("kernel answered 403: forbidden", { retryable: false, status: 403 });
  };
  await assert.rejects(tracker.entitlements("acme"), /403/); // a refusal is the caller's to fix
  assert.ok(reads >= 3);
  kernel.answer = () => ({ org_id: "acme" });
  await assert.rejects(tracker.entitlements("other"), /unreadable entitlements/);
  await tracker.close();
});

test("the last answer used while the kernel is down is kept its time again", async () => {
  const kernel = kernelWith({ acme: { sso: true } });
  const tracker = new UsageTracker("", "", { ...FAST, transport: kernel });
  const read = await tracker.entitlements("acme");
  // As if read two minutes ago: expired.
  (tracker as unknown as { kept: { keep(found: unknown, now: number): void } }).kept.keep(read, performance.now() - 120_000);
  kernel.answer = () => {
    throw new TransportError("could not reach the kernel", { retryable: true });
  };
  const asked = kernel.requests.length;
  assert.equal(await tracker.hasFeature("acme", "sso"), true); // asked, out of reach: the last answer
  const tried = kernel.requests.length;
  assert.ok(tried > asked);
  assert.equal(await tracker.hasFeature("acme", "sso"), true); // kept again: not asked again
  assert.equal(kernel.requests.length, tried);
  await tracker.close();
});
