/**
 * The LLM hooks read what the real OpenAI and Anthropic Node clients return: each client talks
 * to a local server answering as the providers document (a chat completion, a streamed one
 * with usage in its last chunk, a Responses API answer, a message).
 */

import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";

import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";

import { UsageTracker } from "../../src/index.js";
import { FakeKernel, QUIET } from "./fake.js";

const CREATED = 1_700_000_000;
const CHAT = {
  id: "chatcmpl-abc",
  object: "chat.completion",
  created: CREATED,
  model: "gpt-5",
  choices: [{ index: 0, message: { role: "assistant", content: "Hi" }, finish_reason: "stop" }],
  usage: { prompt_tokens: 12, completion_tokens: 30, total_tokens: 42 },
};
const RESPONSE = {
  id: "resp_abc",
  object: "response",
  created_at: CREATED + 1,
  model: "gpt-5",
  status: "completed",
  output: [],
  usage: { input_tokens: 8, output_tokens: 9, total_tokens: 17 },
};
const MESSAGE = {
  id: "msg_abc",
  type: "message",
  role: "assistant",
  model: "claude-sonnet-4-5",
  content: [{ type: "text", text: "Hi" }],
  stop_reason: "end_turn",
  usage: { input_tokens: 20, output_tokens: 5, cache_creation_input_tokens: 3, cache_read_input_tokens: 2 },
};
const CHUNKS = [
  { id: "chatcmpl-s", object: "chat.completion.chunk", created: CREATED, model: "gpt-5", choices: [{ index: 0, delta: { content: "Hi" } }], usage: null },
  { id: "chatcmpl-s", object: "chat.completion.chunk", created: CREATED, model: "gpt-5", choices: [], usage: { prompt_tokens: 4, completion_tokens: 3, total_tokens: 7 } },
];

function answer(request: IncomingMessage, response: ServerResponse): void {
  let body = "";
  request.on("data", (chunk) => (body += chunk));
  request.on("end", () => {
    const sent = JSON.parse(body || "{}");
    if (request.url === "/v1/chat/completions" && sent.stream) {
      response.writeHead(200, { "Content-Type": "text/event-stream" });
      for (const chunk of CHUNKS) response.write(`data: ${JSON.stringify(chunk)}\n\n`);
      response.end("data: [DONE]\n\n");
      return;
    }
    const canned = { "/v1/chat/completions": CHAT, "/v1/responses": RESPONSE, "/v1/messages": MESSAGE }[request.url ?? ""];
    response.writeHead(canned ? 200 : 404, { "Content-Type": "application/json" });
    response.end(JSON.stringify(canned ?? { error: { message: "not here" } }));
  });
}

const server = createServer(answer);
let base = "";

before(async () => {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(() => server.close());

test("tokens from the OpenAI and Anthropic Node clients' answers, keyed by their ids, timed by the provider", async () => {
  const openai = new OpenAI({ apiKey: "sk-test", baseURL: `${base}/v1`, maxRetries: 0 });
  const anthropic = new Anthropic({ apiKey: "sk-ant-test", baseURL: base, maxRetries: 0 });
  const kernel = new FakeKernel();
  const tracker = new UsageTracker("", "", { maxDelayMs: 5, logger: QUIET, transport: kernel });

  const chat = await openai.chat.completions.create({ model: "gpt-5", messages: [{ role: "user", content: "Hi" }] });
  tracker.trackLlmUsage("acme", chat);
  tracker.trackLlmUsage("acme", chat); // the same answer again: the kernel counts it once
  tracker.trackLlmUsage("acme", await openai.responses.create({ model: "gpt-5", input: "Hi" }));
  const message = await anthropic.messages.create({
    model: "claude-sonnet-4-5",
    max_tokens: 64,
    messages: [{ role: "user", content: "Hi" }],
  });
  tracker.trackLlmUsage("acme", message);
  const stream = await openai.chat.completions.create({
    model: "gpt-5",
    messages: [{ role: "user", content: "Hi" }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  for await (const chunk of tracker.trackLlmStream("acme", stream)) text += chunk.choices[0]?.delta.content ?? "";
  assert.equal(text, "Hi");

  assert.equal(await tracker.flush(), true);
  await tracker.close();
  assert.deepEqual(
    kernel.batches.flat().map((event) => [event.idempotency_key, event.quantity, event.occurred_at ?? "observed"]),
    [
      ["llm:chatcmpl-abc", 42, "2023-11-14T22:13:20.000000+00:00"],
      ["llm:chatcmpl-abc", 42, "2023-11-14T22:13:20.000000+00:00"],
      ["llm:resp_abc", 17, "2023-11-14T22:13:21.000000+00:00"],
      ["llm:msg_abc", 30, "observed"],
      ["llm:chatcmpl-s", 7, "2023-11-14T22:13:20.000000+00:00"],
    ],
  );
  assert.equal(kernel.total("acme"), 42 + 17 + 30 + 7);
  assert.deepEqual([tracker.stats().accepted, tracker.stats().duplicates], [4, 1]);
});
