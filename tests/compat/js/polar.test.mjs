// Polar's own TypeScript client (@polar-sh/sdk, API 2026-10) against the kernel: only the base URL and the key change.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";

import { createPolar, errors } from "@polar-sh/sdk/2026-10";

import { KEY, newOrg, thrown, URL, used } from "./kernel.mjs";

const polar = (accessToken = KEY) => createPolar({ accessToken, baseUrl: `${URL}/compat/polar` });
const named = (org, value, fields = {}) => ({
  name: "tokens",
  external_customer_id: org,
  external_id: randomUUID(),
  metadata: { value, model: "gpt-5" },
  ...fields,
});

test("events count once per external_id; a changed repeat is a duplicate, as Polar counts it", async () => {
  const org = await newOrg();
  const first = named(org, 300, { external_id: "ext-1" });
  assert.deepEqual(await polar().events.ingest({ events: [first, named(org, 20)] }), { inserted: 2, duplicates: 0 });
  const again = await polar().events.ingest({ events: [first, named(org, 999, { external_id: "ext-1" })] });
  assert.deepEqual(again, { inserted: 0, duplicates: 2 });
  assert.equal(await used(org), 320);
});

test("Polar's customer_id names an org by alias; an unknown one, a bad value and a wrong key raise Polar's errors", async () => {
  const customer = randomUUID();
  const org = await newOrg({ aliases: [customer] });
  await polar().events.ingest({ events: [{ name: "tokens", customer_id: customer, external_id: randomUUID(), metadata: { value: 7 } }] });
  assert.equal(await used(org), 7);
  const unknown = await thrown(
    polar().events.ingest({ events: [{ name: "tokens", customer_id: randomUUID(), metadata: { value: 1 } }] }),
  );
  assert.equal(unknown.statusCode, 422);
  const bad = await thrown(polar().events.ingest({ events: [named(org, "lots")] }));
  assert.ok(bad instanceof errors.HTTPValidationError);
  assert.equal(bad.statusCode, 422);
  const key = await thrown(polar("bk_wrong").events.ingest({ events: [named(org, 1)] }));
  // The ingest call documents 422 only: any other 4xx is the client's PolarClientError, with Polar's body.
  assert.equal(key.name, "PolarClientError");
  assert.equal(key.statusCode, 401);
  assert.equal(JSON.parse(key.error).error, "Unauthorized");
  assert.equal(await used(org), 7);
});
