/** A kernel in memory for the unit tests: counts each key once per org, and fails as told. */

import type { Call, EventResult, Transport, WireEvent } from "../../src/index.js";
import { TransportError } from "../../src/index.js";

export class FakeKernel implements Transport {
  readonly counted = new Map<string, WireEvent>();
  batches: WireEvent[][] = [];
  /** Answers to give before answering normally: an error to throw per call. */
  failures: TransportError[] = [];
  /** Events the kernel fails on (500) whenever a batch holds one, by key. */
  poison = new Set<string>();
  /** Metrics the kernel knows; others are refused `unknown_metric`. */
  metrics = new Set(["tokens", "playbook_runs"]);
  requests: Call[] = [];
  answer: (call: Call) => Record<string, unknown> = () => {
    throw new TransportError("no quota answers here", { retryable: true });
  };

  async send(events: WireEvent[]): Promise<EventResult[]> {
    this.batches.push(events);
    const failure = this.failures.shift();
    if (failure) throw failure;
    if (events.some((event) => this.poison.has(event.idempotency_key))) {
      throw new TransportError("kernel answered 500: internal", { retryable: true, status: 500 });
    }
    return events.map((event) => {
      const metric = event.metric ?? event.event ?? "";
      if (!this.metrics.has(metric)) return { status: "refused", errorCode: "unknown_metric" };
      const key = `${event.org_id}/${event.idempotency_key}`;
      const first = this.counted.get(key);
      if (first === undefined) {
        this.counted.set(key, event);
        return { status: "accepted", errorCode: null };
      }
      return first.quantity === event.quantity
        ? { status: "duplicate", errorCode: null }
        : { status: "conflict", errorCode: "idempotency_conflict" };
    });
  }

  async request(call: Call): Promise<Record<string, unknown>> {
    this.requests.push(call);
    return this.answer(call);
  }

  async close(): Promise<void> {}

  total(orgId: string): number {
    let sum = 0;
    for (const event of this.counted.values()) if (event.org_id === orgId) sum += event.quantity ?? 0;
    return sum;
  }
}

export const QUIET = { debug() {}, info() {}, warn() {}, error() {} };
