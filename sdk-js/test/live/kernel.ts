/** The kernel the live tests talk to: started by `tests/client/test_sdk_js.py`, named by the environment. */

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";

export const KERNEL_URL = process.env.BILLING_KERNEL_URL ?? "";
/** A key with usage:write, quota:check and billing:admin. */
export const KERNEL_KEY = process.env.BILLING_KERNEL_KEY ?? "";
assert.ok(KERNEL_URL && KERNEL_KEY, "BILLING_KERNEL_URL and BILLING_KERNEL_KEY name the kernel to test against");

export async function api(method: string, path: string, body?: unknown, orgId?: string): Promise<any> {
  const headers: Record<string, string> = { Authorization: `Bearer ${KERNEL_KEY}`, "Content-Type": "application/json" };
  if (orgId !== undefined) headers["X-Org-Id"] = orgId;
  const response = await fetch(`${KERNEL_URL}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
  return JSON.parse(text);
}

/** A new org (on the default plan, in trial), made through the kernel's API. */
export async function newOrg(): Promise<string> {
  const orgId = `sdkjs-${randomUUID().slice(0, 12)}`;
  await api("PUT", `/api/v1/orgs/${orgId}`, {});
  return orgId;
}

/** Make `metric` a hard limit of `included` for the org, without grace. */
export async function hardLimit(orgId: string, metric: string, included: number): Promise<void> {
  await api("PUT", `/api/v1/orgs/${orgId}/limits/${metric}`, {
    included_quantity: included,
    mode: "hard",
    grace_percent: 0,
  });
}

/** What the kernel counted of `metric` for the org this month, by its own API. */
export async function used(orgId: string, metric = "tokens"): Promise<number> {
  const summary = await api("GET", "/api/v1/billing/org/summary", undefined, orgId);
  const line = summary.usage.find((item: { metric: string }) => item.metric === metric);
  assert.ok(line, `no ${metric} in the summary`);
  return Number(line.used);
}
