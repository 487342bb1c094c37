/**
 * Reading token usage from model responses: the OpenAI Node client's (chat completions, their
 * final streaming chunk, the Responses API and its `response.completed` event) and the Anthropic
 * Node client's (`input_tokens + output_tokens + cache_creation_input_tokens + cache_read_input_tokens`).
 */

const ANTHROPIC_PARTS = ["input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"];
const OPENAI_PARTS = ["prompt_tokens", "completion_tokens"];

function field(source: unknown, name: string): unknown {
  return typeof source === "object" && source !== null ? (source as Record<string, unknown>)[name] : undefined;
}

function whole(value: unknown): number | null {
  return typeof value === "number" && Number.isInteger(value) ? value : null;
}

/** The tokens a model call used, from its response, or null when it reports none. */
export function llmTokens(response: unknown): number | null {
  let usage = field(response, "usage");
  if (usage === undefined || usage === null) usage = field(field(response, "response"), "usage");
  if (usage === undefined || usage === null) return null;
  const total = whole(field(usage, "total_tokens"));
  if (total !== null) return total;
  for (const names of [ANTHROPIC_PARTS, OPENAI_PARTS]) {
    const parts = names.map((name) => whole(field(usage, name)));
    if (parts.some((part) => part !== null)) return parts.reduce<number>((sum, part) => sum + (part ?? 0), 0);
  }
  return null;
}

/** When the provider made the response (OpenAI's `created`, the Responses API's `created_at`, Unix seconds), or null. */
export function llmCreatedAt(response: unknown): Date | null {
  let source = response;
  if (field(response, "created") === undefined && field(response, "response") !== undefined) {
    source = field(response, "response");
  }
  for (const name of ["created", "created_at"]) {
    const value = field(source, name);
    if (typeof value === "number" && Number.isFinite(value) && value > 0) {
      const moment = new Date(value * 1000);
      return Number.isNaN(moment.getTime()) ? null : moment;
    }
  }
  return null;
}

/** The response's id (its idempotency key is `llm:<id>`), or null. */
export function llmResponseId(response: unknown): string | null {
  let id = field(response, "id");
  if (typeof id !== "string" || id === "") id = field(field(response, "response"), "id");
  return typeof id === "string" && id !== "" ? id : null;
}
