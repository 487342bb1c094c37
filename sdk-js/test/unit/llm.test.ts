import assert from "node:assert/strict";
import { test } from "node:test";

import { llmCreatedAt, llmTokens, UsageTracker } from "../../src/index.js";
import { FakeKernel, QUIET } from "./fake.js";

test("tokens from OpenAI chat completions, the Responses API and Anthropic messages", () => {
  assert.equal(llmTokens({ usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 } }), 15);
  assert.equal(llmTokens({ usage: { prompt_tokens: 10, completion_tokens: 5 } }), 15);
  assert.equal(llmTokens({ object: "response", usage: { input_tokens: 8, output_tokens: 4, total_tokens: 12 } }), 12);
  assert.equal(llmTokens({ type: "response.completed", response: { usage: { input_tokens: 1, output_tokens: 2, total_tokens: 3 } } }), 3);
  assert.equal(
    llmTokens({ usage: { input_tokens: 7, output_tokens: 3, cache_creation_input_tokens: 4, cache_read_input_tokens: 2 } }),
    16,
  );
  assert.equal(llmTokens({ usage: null }), null);
  assert.equal(llmTokens({ choices: [] }), null);
  assert.equal(llmTokens(null), null);
  assert.equal(llmTokens({ usage: { total_tokens: 1.5 } }), null);
  assert.equal(llmCreatedAt({ created: 1_700_000_000 })?.toISOString(), "2023-11-14T22:13:20.000Z");
  assert.equal(llmCreatedAt({ response: { created_at: 1_700_000_001 } })?.toISOString(), "2023-11-14T22:13:21.000Z");
  assert.equal(llmCreatedAt({ id: "msg_1" }), null);
});

test("a response is keyed by its id and timed by its provider; a stream is tracked from its final chunk", async () => {
  const kernel = new FakeKernel();
  const tracker = new UsageTracker("", "", { maxDelayMs: 5, logger: QUIET, transport: kernel });
  tracker.trackLlmUsage("acme", { id: "chatcmpl-9", created: 1_700_000_000, usage: { total_tokens: 30 } });
  tracker.trackLlmUsage("acme", { id: "msg_2", usage: { input_tokens: 5, output_tokens: 1 } });
  tracker.trackLlmUsage("acme", { id: "chatcmpl-10", usage: null });
  async function* stream() {
    yield { id: "chatcmpl-11", choices: [{ delta: { content: "Hi" } }], usage: null };
    yield { id: "chatcmpl-11", choices: [], usage: { prompt_tokens: 2, completion_tokens: 2, total_tokens: 4 } };
  }
  const chunks = [];
  for await (const chunk of tracker.trackLlmStream("acme", stream())) chunks.push(chunk);
  assert.equal(chunks.length, 2);
  assert.equal(await tracker.flush(), true);
  await tracker.close();
  const sent = kernel.batches.flat();
  assert.deepEqual(
    sent.map((event) => [event.idempotency_key, event.quantity, event.occurred_at ?? "observed"]),
    [
      ["llm:chatcmpl-9", 30, "2023-11-14T22:13:20.000000+00:00"],
      ["llm:msg_2", 6, "observed"],
      ["llm:chatcmpl-11", 4, "observed"],
    ],
  );
  assert.equal(tracker.stats().skipped, 1);
});
