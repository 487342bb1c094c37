/**
 * How batches and quota calls reach the kernel: over HTTP with Node's own `fetch`. Tests (and
 * products with a transport of their own) may pass anything with the same two methods.
 */

import type { components } from "./openapi.js";
import type { WireEvent } from "./events.js";

export const EVENTS_PATH = "/api/v1/usage/events";
export const CHECK_PATH = "/api/v1/billing/org/check";
export const RESERVATIONS_PATH = "/api/v1/usage/reservations";
export const ENTITLEMENTS_PATH = "/api/v1/billing/org/entitlements";

type EventResultOut = components["schemas"]["EventResultOut"];
type Problem = components["schemas"]["Problem"];

/** The kernel's answer for one event of a batch. */
export interface EventResult {
  status: EventResultOut["status"];
  /** The kernel's error code for a refused event (or `idempotency_conflict`). */
  errorCode: string | null;
}

/** One quota call: `POST path` with a JSON body (or a `GET`, without one), for the org in `orgId` when the path does not name it. */
export interface Call {
  path: string;
  body: Record<string, unknown>;
  orgId?: string;
  method?: "GET" | "POST";
}

export interface Transport {
  /** One result per event, in order; or TransportError. */
  send(events: WireEvent[]): Promise<EventResult[]>;
  /** The kernel's JSON answer to a quota call; or TransportError. */
  request(call: Call, timeoutMs: number): Promise<Record<string, unknown>>;
  close(): Promise<void>;
}

/**
 * The kernel could not be reached, or answered with an error. `retryable`: the same request may
 * succeed later (a network error, a timeout, 429, 5xx; for batches also 401/403, whose key may be
 * fixed); otherwise it names what is wrong (`status`, the kernel's `code`).
 */
export class TransportError extends Error {
  readonly retryable: boolean;
  readonly status: number | null;
  readonly code: string | null;
  readonly retryAfterMs: number | null;

  constructor(
    message: string,
    options: { retryable: boolean; status?: number | null; code?: string | null; retryAfterMs?: number | null },
  ) {
    super(message);
    this.name = "TransportError";
    this.retryable = options.retryable;
    this.status = options.status ?? null;
    this.code = options.code ?? null;
    this.retryAfterMs = options.retryAfterMs ?? null;
  }
}

async function problemOf(response: Response): Promise<{ detail: string; code: string | null }> {
  const text = await response.text().catch(() => "");
  try {
    const problem = JSON.parse(text) as Partial<Problem>;
    return {
      detail: typeof problem.detail === "string" ? problem.detail : text.slice(0, 300),
      code: typeof problem.code === "string" ? problem.code : null,
    };
  } catch {
    return { detail: text.slice(0, 300), code: null };
  }
}

function retryAfter(response: Response): number | null {
  const value = Number(response.headers.get("retry-after"));
  return response.headers.has("retry-after") && Number.isFinite(value) && value >= 0 ? value * 1000 : null;
}

/** Sends to a kernel with a service API key: batches to `POST /api/v1/usage/events`, quota calls to theirs. */
export class HttpTransport implements Transport {
  private readonly baseUrl: string;
  private readonly headers: Record<string, string>;

  constructor(
    baseUrl: string,
    apiKey: string,
    private readonly timeoutMs = 10_000,
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.headers = {
      Authorization: `Bearer ${apiKey}`,
      "Content-Type": "application/json",
      "User-Agent": "billing-kernel-sdk-js",
    };
  }

  private async post(
    path: string,
    body: unknown,
    timeoutMs: number,
    orgId?: string,
    method: "GET" | "POST" = "POST",
  ): Promise<Response> {
    const headers = orgId === undefined ? this.headers : { ...this.headers, "X-Org-Id": orgId };
    try {
      return await fetch(`${this.baseUrl}${path}`, {
        method,
        headers,
        body: method === "GET" ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(Math.max(1, Math.ceil(timeoutMs))),
      });
    } catch (error) {
      const cause = (error as { cause?: unknown }).cause;
      throw new TransportError(`could not reach the kernel: ${String(cause ?? error)}`, { retryable: true });
    }
  }

  async send(events: WireEvent[]): Promise<EventResult[]> {
    const response = await this.post(EVENTS_PATH, { events }, this.timeoutMs);
    const status = response.status;
    if (status === 200) {
      let results: EventResult[];
      try {
        const answer = (await response.json()) as components["schemas"]["UsageBatchOut"];
        results = answer.results.map((result) => ({
          status: result.status,
          errorCode: result.error?.code ?? null,
        }));
      } catch (error) {
        throw new TransportError(`unreadable answer from the kernel: ${String(error)}`, { retryable: true });
      }
      if (results.length !== events.length) {
        throw new TransportError("the kernel answered for a different number of events", { retryable: true });
      }
      return results;
    }
    const { detail, code } = await problemOf(response);
    // 401/403 are retried: the key may be fixed or the kernel restored; the events must wait.
    const retryable = [401, 403, 408, 409, 425, 429].includes(status) || status >= 500;
    throw new TransportError(`kernel answered ${status}: ${detail}`, {
      retryable,
      status,
      code,
      retryAfterMs: retryAfter(response),
    });
  }

  async request(call: Call, timeoutMs: number): Promise<Record<string, unknown>> {
    const response = await this.post(call.path, call.body, timeoutMs, call.orgId, call.method);
    const status = response.status;
    if (status >= 200 && status < 300) {
      let answer: unknown;
      try {
        answer = await response.json();
      } catch {
        answer = null;
      }
      if (typeof answer !== "object" || answer === null || Array.isArray(answer)) {
        throw new TransportError("unreadable answer from the kernel", { retryable: true, status });
      }
      return answer as Record<string, unknown>;
    }
    const { detail, code } = await problemOf(response);
    throw new TransportError(`kernel answered ${status}: ${detail}`, {
      retryable: [408, 425, 429].includes(status) || status >= 500,
      status,
      code,
      retryAfterMs: retryAfter(response),
    });
  }

  async close(): Promise<void> {}
}
