// OpenMeter's own JavaScript client (@openmeter/sdk) against the kernel: only the base URL and the key change.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";

import { OpenMeter } from "@openmeter/sdk";

import { events, KEY, newOrg, thrown, URL, used } from "./kernel.mjs";

const openmeter = (apiKey = KEY) => new OpenMeter({ baseUrl: `${URL}/compat/openmeter`, apiKey });
const cloudEvent = (subject, value, fields = {}) => ({
  type: "tokens",
  subject,
  id: randomUUID(),
  source: "llm-gateway",
  data: { value, model: "gpt-5" },
  ...fields,
});

test("single and batched CloudEvents count once per id", async () => {
  const org = await newOrg();
  const one = cloudEvent(org, 100, { id: "evt-1" });
  await openmeter().events.ingest(one);
  await openmeter().events.ingest(one); // a retry: the client stamps a new time, OpenMeter deduplicates by id
  await openmeter().events.ingest({ ...one, data: { value: 999 } }); // still the same id: counted as first sent
  const batch = [cloudEvent(org, 20), cloudEvent(org, 3)];
  await openmeter().events.ingest(batch);
  await openmeter().events.ingest(batch);
  assert.equal(await used(org), 123);
});

test("a bad value and a wrong key raise HTTPError with OpenMeter's problem details, and write nothing", async () => {
  const org = await newOrg();
  const bad = await thrown(openmeter().events.ingest(cloudEvent(org, "lots")));
  assert.equal(bad.name, "HTTPError");
  assert.equal(bad.status, 400);
  assert.match(bad.getField("detail"), /data\.value/);
  assert.match(bad.getField("instance"), /^urn:uuid:/);
  const batch = await thrown(openmeter().events.ingest([cloudEvent(org, 5), cloudEvent(org, 1.5)]));
  assert.equal(batch.status, 400);
  await openmeter().events.ingest(cloudEvent(org, 5));
  const key = await thrown(openmeter("bk_wrong").events.ingest(cloudEvent(org, 1)));
  assert.equal(key.status, 401);
  assert.equal(await used(org), 5);
  assert.equal((await events(org)).length, 1);
});

test("an event type no meter counts is stored; an entitlement's value is the kernel's decision", async () => {
  const org = await newOrg();
  await openmeter().events.ingest([cloudEvent(org, 40), cloudEvent(org, 1, { type: "no_such_meter" })]);
  const value = await openmeter().customers.entitlementsV1.value(org, "tokens");
  assert.equal(value.hasAccess, true);
  assert.equal(value.usage, 40);
  const unknown = await thrown(openmeter().customers.entitlementsV1.value(org, "no_such_feature"));
  assert.equal(unknown.status, 404);
});
