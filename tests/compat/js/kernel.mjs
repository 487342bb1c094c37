// The kernel the incumbents' clients talk to: started by tests/compat/test_js_clients.py,
// named by the environment, and read back through the kernel's own API.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";

export const URL = process.env.BILLING_KERNEL_URL ?? "";
/** A key with usage:write, quota:check and billing:admin. */
export const KEY = process.env.BILLING_KERNEL_KEY ?? "";
assert.ok(URL && KEY, "BILLING_KERNEL_URL and BILLING_KERNEL_KEY name the kernel to test against");

async function api(method, path, body, orgId) {
  const headers = { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" };
  if (orgId !== undefined) headers["X-Org-Id"] = orgId;
  const response = await fetch(`${URL}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
  return JSON.parse(text);
}

/** A new org with `aliases` (in trial, unless `paying`). */
export async function newOrg({ aliases = [], paying = false } = {}) {
  const orgId = `compat-js-${randomUUID().slice(0, 12)}`;
  await api("PUT", `/api/v1/orgs/${orgId}`, paying ? { status: "active" } : {});
  if (aliases.length) await api("PUT", `/api/v1/orgs/${orgId}/aliases`, { aliases });
  return orgId;
}

/** What the kernel counted of `metric` for the org this month. */
export async function used(orgId, metric = "tokens") {
  const summary = await api("GET", "/api/v1/billing/org/summary", undefined, orgId);
  const line = summary.usage.find((item) => item.metric === metric);
  assert.ok(line, `no ${metric} in the summary`);
  return Number(line.used);
}

/** The org's events as the kernel keeps them, newest first. */
export async function events(orgId) {
  return (await api("GET", `/api/v1/orgs/${orgId}/events?limit=200`)).data;
}

/** Rejects with what `promise` throws (fails if it does not). */
export async function thrown(promise) {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  assert.fail("expected the client to throw");
}
