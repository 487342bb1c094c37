// Lago's own JavaScript client (lago-javascript-client) against the kernel: only the base URL and the key change.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";

import { Client } from "lago-javascript-client";

import { events, KEY, newOrg, thrown, URL, used } from "./kernel.mjs";

const lago = (key = KEY) => Client(key, { baseUrl: `${URL}/compat/lago/api/v1` });
const event = (org, value, fields = {}) => ({
  transaction_id: randomUUID(),
  external_subscription_id: org,
  code: "tokens",
  properties: { value, model: "gpt-5" },
  ...fields,
});

test("an event counts once per transaction_id; the answer is Lago's event", async () => {
  const org = await newOrg();
  const sent = event(org, 120, { transaction_id: "tx-1", timestamp: Math.floor(Date.now() / 1000) - 60 });
  const { data } = await lago().events.createEvent({ event: sent });
  assert.equal(data.event.transaction_id, "tx-1");
  assert.equal(data.event.external_subscription_id, org);
  assert.match(data.event.lago_id, /^[0-9a-f-]{36}$/);
  const again = await lago().events.createEvent({ event: sent }); // a retry: answered alike
  assert.equal(again.data.event.timestamp, data.event.timestamp);
  assert.equal(await used(org), 120);
});

test("a batch is recorded whole, and resent counts nothing twice", async () => {
  const org = await newOrg();
  const batch = { events: [1, 20, 300, "4000"].map((value) => event(org, value)) };
  await lago().events.createBatchEvents(batch);
  await lago().events.createBatchEvents(batch);
  assert.equal(await used(org), 4321);
});

test("a bad value, a reused transaction_id and a wrong key raise the client's error, within Lago's statuses", async () => {
  const org = await newOrg();
  const bad = await thrown(lago().events.createEvent({ event: event(org, "twelve") }));
  assert.equal(bad.status, 422);
  assert.deepEqual(Object.keys(bad.error.error_details), ["properties.value"]);
  const batch = await thrown(lago().events.createBatchEvents({ events: [event(org, 5), event(org, 1.5)] }));
  assert.equal(batch.status, 422);
  assert.deepEqual(Object.keys(batch.error.error_details), ["1"]);
  await lago().events.createEvent({ event: event(org, 10, { transaction_id: "tx-a" }) });
  const reused = await thrown(lago().events.createEvent({ event: event(org, 11, { transaction_id: "tx-a" }) }));
  assert.equal(reused.status, 422);
  assert.deepEqual(reused.error.error_details, { transaction_id: ["value_already_exist"] });
  const key = await thrown(lago("bk_wrong").events.createEvent({ event: event(org, 1) }));
  assert.equal(key.status, 401);
  assert.equal(await used(org), 10);
  assert.equal((await events(org)).length, 1);
});

test("an event no metric counts is kept and counted by nothing; current usage is the kernel's", async () => {
  const alias = `sub_${randomUUID().slice(0, 10)}`;
  const org = await newOrg({ aliases: [alias] });
  await lago().events.createEvent({ event: event(alias, 42) });
  const { data: kept } = await lago().events.createEvent({ event: event(alias, 1, { code: "no_such_metric" }) });
  assert.equal(kept.event.code, "no_such_metric");
  const { data } = await lago().customers.findCustomerCurrentUsage(alias, { external_subscription_id: alias });
  const tokens = data.customer_usage.charges_usage.find((charge) => charge.billable_metric.code === "tokens");
  assert.equal(tokens.units, "42");
  assert.equal(tokens.events_count, 1);
  assert.match(tokens.charge.lago_id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  assert.equal(await used(org), 42);
  const unknown = await thrown(lago().customers.findCustomerCurrentUsage("nobody-here", { external_subscription_id: "x" }));
  assert.equal(unknown.status, 404);
  assert.equal(unknown.error.code, "customer_not_found");
});
