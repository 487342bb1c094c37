// Stripe's own Node library (stripe) against the kernel: it takes a host, so the kernel answers
// Stripe's paths at its root (/v1/...); only the host and the key change.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";

import Stripe from "stripe";

import { KEY, newOrg, thrown, URL, used } from "./kernel.mjs";

const where = new globalThis.URL(URL);
const stripe = (key = KEY) =>
  new Stripe(key, { host: where.hostname, port: Number(where.port), protocol: "http", maxNetworkRetries: 0 });

test("a meter event counts once per identifier, answered as Stripe's billing.meter_event", async () => {
  const customer = `cus_${randomUUID().slice(0, 14)}`;
  const org = await newOrg({ aliases: [customer] });
  const params = { event_name: "tokens", identifier: "req-1", payload: { stripe_customer_id: customer, value: "25" } };
  const event = await stripe().billing.meterEvents.create(params);
  assert.equal(event.object, "billing.meter_event");
  assert.equal(event.identifier, "req-1");
  await stripe().billing.meterEvents.create(params); // a retry
  await stripe().billing.meterEvents.create({ ...params, identifier: "req-2", payload: { stripe_customer_id: customer, value: "5" } });
  assert.equal(await used(org), 30);
});

test("a bad value, an unknown parameter, an unimplemented call and a wrong key raise Stripe's typed errors", async () => {
  const customer = `cus_${randomUUID().slice(0, 14)}`;
  const org = await newOrg({ aliases: [customer] });
  const bad = await thrown(
    stripe().billing.meterEvents.create({ event_name: "tokens", payload: { stripe_customer_id: customer, value: "lots" } }),
  );
  assert.ok(bad instanceof Stripe.errors.StripeInvalidRequestError);
  assert.equal(bad.param, "payload[value]");
  const unknown = await thrown(
    stripe().billing.meterEvents.create({ event_name: "tokens", colour: "red", payload: { stripe_customer_id: customer, value: "1" } }),
  );
  assert.ok(unknown instanceof Stripe.errors.StripeInvalidRequestError);
  assert.equal(unknown.code, "parameter_unknown");
  const missing = await thrown(stripe().billing.meters.list());
  assert.ok(missing instanceof Stripe.errors.StripeInvalidRequestError);
  assert.equal(missing.statusCode, 404);
  assert.match(missing.message, /Unrecognized request URL/);
  const key = await thrown(
    stripe("bk_wrong").billing.meterEvents.create({ event_name: "tokens", payload: { stripe_customer_id: customer, value: "1" } }),
  );
  assert.ok(key instanceof Stripe.errors.StripeAuthenticationError);
  assert.equal(await used(org), 0);
});
