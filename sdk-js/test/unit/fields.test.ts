import assert from "node:assert/strict";
import { test } from "node:test";

import {
  checkEventName,
  checkId,
  checkProperties,
  checkQuantity,
  FieldError,
  MAX_EVENT_QUANTITY,
  wire,
} from "../../src/index.js";

function refused(call: () => unknown, field: string, message: RegExp): void {
  assert.throws(call, (error: unknown) => error instanceof FieldError && error.field === field && message.test(error.message));
}

test("ids: non-empty printable text of at most 64 characters, counted as characters", () => {
  assert.equal(checkId("acme", "orgId"), "acme");
  assert.equal(checkId("a b", "orgId"), "a b");
  assert.equal(checkId("ü".repeat(64), "orgId"), "ü".repeat(64));
  assert.equal(checkId("😀".repeat(64), "orgId"), "😀".repeat(64)); // 128 UTF-16 units, 64 characters
  refused(() => checkId("😀".repeat(65), "orgId"), "orgId", /longer than 64/);
  refused(() => checkId("", "orgId"), "orgId", /non-empty/);
  refused(() => checkId(" acme", "orgId"), "orgId", /leading or trailing/);
  refused(() => checkId("ac\u0001me", "orgId"), "orgId", /control characters/);
  refused(() => checkId("ac\u0085me", "orgId"), "orgId", /control characters/);
  refused(() => checkId("\ufeffacme", "orgId"), "orgId", /leading or trailing|control/);
  refused(() => checkId("a\ud800b", "orgId"), "orgId", /surrogate/);
  refused(() => checkId(42, "orgId"), "orgId", /string/);
});

test("event names: any text of 1 to 255 characters without control characters, kept as sent", () => {
  for (const name of ["llm.completion", "llm call", "トークン", " padded ", "x".repeat(255)]) {
    assert.equal(checkEventName(name), name);
  }
  refused(() => checkEventName(""), "event", /empty/);
  refused(() => checkEventName("x".repeat(256)), "event", /longer than 255/);
  refused(() => checkEventName("a\tb"), "event", /control/);
});

test("quantities: whole numbers from 0 to 10^12", () => {
  assert.equal(checkQuantity(0), 0);
  assert.equal(checkQuantity(MAX_EVENT_QUANTITY), MAX_EVENT_QUANTITY);
  refused(() => checkQuantity(MAX_EVENT_QUANTITY + 1), "quantity", /maximum/);
  refused(() => checkQuantity(-1), "quantity", /negative/);
  refused(() => checkQuantity(1.5), "quantity", /whole/);
  refused(() => checkQuantity(Number.NaN), "quantity", /whole/);
  refused(() => checkQuantity("3"), "quantity", /whole/);
});

test("properties: a JSON object of at most 50 keys and 4,096 characters, JSON values only", () => {
  assert.equal(checkProperties(undefined), null);
  assert.deepEqual(checkProperties({ model: "gpt-5", n: [1, { a: null }] }), { model: "gpt-5", n: [1, { a: null }] });
  refused(() => checkProperties([1]), "properties", /object/);
  refused(() => checkProperties(new Date()), "properties", /object/);
  refused(() => checkProperties(Object.fromEntries(Array.from({ length: 51 }, (_, n) => [`k${n}`, n]))), "properties", /51 keys/);
  refused(() => checkProperties({ text: "x".repeat(4090) }), "properties", /4096/);
  refused(() => checkProperties({ n: Number.POSITIVE_INFINITY }), "properties", /finite/);
  refused(() => checkProperties({ when: new Date() }), "properties", /JSON values/);
  refused(() => checkProperties({ text: "a\u0000b" }), "properties", /NUL/);
  refused(() => checkProperties({ "": 1 }), "a property name", /non-empty/);
});

test("an event on the wire: a metric and quantity, or a named event; the time to the microsecond", () => {
  assert.deepEqual(wire(["acme", "tokens", 5, "k1", 1_700_000_000_123_456, null, false, false]), {
    org_id: "acme",
    idempotency_key: "k1",
    metric: "tokens",
    quantity: 5,
    occurred_at: "2023-11-14T22:13:20.123456+00:00",
  });
  assert.deepEqual(wire(["acme", "llm call", 0, "k2", 1_000_001, { value: 3 }, true, true]), {
    org_id: "acme",
    idempotency_key: "k2",
    event: "llm call",
    observed_at: "1970-01-01T00:00:01.000001+00:00",
    properties: { value: 3 },
  });
});
