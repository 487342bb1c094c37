/**
 * The sending half of a tracker: what to send next, what to do with the kernel's answer (count
 * it, forget what was answered), how long to wait after a failure, and finding the events a kernel
 * keeps failing on (`Isolation`) so that they stop holding up the rest. The Python SDK's rules.
 */

import { type Event, type WireEvent, wire } from "./events.js";
import type { Ledger } from "./ledger.js";
import { type EventResult, TransportError } from "./transport.js";

/**
 * Answers of 500 to the same batch before it is split to find the events the kernel fails on.
 * Only a 500 (the kernel answered, and failed on this request) counts: 503, 502, 504, 429 and
 * network errors say the kernel is momentarily unavailable, and are retried as they are.
 */
export const ISOLATE_AFTER = 3;
/** A refused API key is logged at the first refusal, then at most this often. */
const AUTH_LOG_MS = 60_000;

type Send = (events: WireEvent[]) => Promise<EventResult[]>;

/** The oldest batch, which the kernel keeps failing on, delivered in halves to find the events it fails on alone. */
class Isolation {
  /** `[start, end)` ranges of `batch` still to deliver, oldest first. */
  parts: Array<[number, number]>;
  /** Positions in `batch` of events the kernel failed on alone, with its answer. */
  suspects: Array<[number, string]> = [];
  /** The kernel answered some part: it works, so a suspect from now on is the event. */
  answered = false;

  constructor(readonly batch: Event[]) {
    this.parts = [[0, batch.length]];
  }

  current(): Event[] {
    const [start, end] = this.parts[0] as [number, number];
    return this.batch.slice(start, end);
  }

  splitCurrent(answer: string): void {
    const [start, end] = this.parts.shift() as [number, number];
    if (end - start === 1) this.suspects.push([start, answer]);
    else {
      const middle = Math.floor((start + end) / 2);
      this.parts.unshift([start, middle], [middle, end]);
    }
  }

  /** Suspects from before the kernel's first answer are sent alone again: they may have failed with the kernel. */
  currentAnswered(): void {
    this.parts.shift();
    if (!this.answered) {
      this.answered = true;
      for (const [position] of this.suspects) this.parts.push([position, position + 1]);
      this.suspects = [];
    }
  }
}

export class Sender {
  private isolation: Isolation | null = null;
  /** Deliveries failed in a row (the backoff's exponent); 0 after a success. */
  private attempt = 0;
  /** 500 answers in a row to what is being sent now (the batch, or one part of it). */
  private failuresHere = 0;
  private authLoggedAt: number | null = null;

  constructor(
    private readonly ledger: Ledger,
    private readonly maxBatch: number,
    private readonly backoffBaseMs: number,
    private readonly backoffCapMs: number,
    private readonly isolateAfter = ISOLATE_AFTER,
  ) {}

  /** What to send now: the oldest events, or the part of them being isolated. */
  nextBatch(): Event[] {
    return this.isolation !== null ? this.isolation.current() : this.ledger.buffer.peek(this.maxBatch);
  }

  /** Send what is due once. Null when it was settled; else how long to wait (ms) before the next attempt. */
  async deliver(send: Send): Promise<number | null> {
    const batch = this.nextBatch();
    let results: EventResult[];
    try {
      this.ledger.buffer.sync();
      const events = batch.filter((event) => event[3] !== "").map(wire); // a corrupt line is never sent
      results = events.length ? await send(events) : [];
    } catch (error) {
      return this.failed(batch, error);
    }
    this.settle(batch, results);
    return null;
  }

  private settle(batch: Event[], results: EventResult[]): void {
    const counts = this.ledger.counts;
    for (const result of results) {
      if (result.errorCode === "idempotency_conflict" || result.status === "conflict") counts.conflicts += 1;
      else if (result.status === "accepted") counts.accepted += 1;
      else if (result.status === "duplicate") counts.duplicates += 1;
      else counts.refused += 1;
      if (result.status !== "accepted" && result.status !== "duplicate") {
        this.ledger.logOnce(`refused:${result.errorCode}`, "warn", `the kernel refused usage: ${result.errorCode}`);
      }
    }
    counts.dropped += batch.length - results.length; // corrupt spool lines, never sent
    this.ledger.lastError = null;
    this.attempt = this.failuresHere = 0;
    this.authLoggedAt = null;
    this.doneWith(batch);
  }

  private failed(batch: Event[], error: unknown): number | null {
    const transport = error instanceof TransportError ? error : null;
    this.ledger.lastError = error instanceof Error ? error.message || error.name : String(error);
    const status = transport?.status ?? null;
    const final = transport !== null && !transport.retryable;
    if (final && batch.length === 1) {
      this.giveUp(batch, this.ledger.lastError);
      return null;
    }
    this.ledger.count("retried");
    this.attempt += 1;
    if (status === 401 || status === 403) this.refusedCredentials(this.ledger.lastError);
    else {
      this.ledger.logOnce(`send:${status}`, "warn", `usage delivery failed, will retry: ${this.ledger.lastError}`);
    }
    const retryAfterMs = transport?.retryAfterMs ?? null;
    if (final || status === 500) {
      this.failuresHere += 1;
      if (final || this.failuresHere >= this.isolateAfter) {
        this.isolatePart(batch, this.ledger.lastError);
        if (this.isolation !== null) return 0; // the next part, at once
      } else if (this.isolation !== null) {
        return this.retryDelay(this.failuresHere - 1, retryAfterMs); // quick retries while narrowing down
      }
    }
    return this.retryDelay(this.attempt - 1, retryAfterMs);
  }

  private isolatePart(batch: Event[], answer: string): void {
    this.failuresHere = 0;
    if (this.isolation === null) {
      this.isolation = new Isolation(batch);
      this.ledger.logger.warn(
        `billing-kernel-sdk: the kernel keeps failing on a batch of ${batch.length} usage event(s); ` +
          "delivering it in parts to find the events it fails on",
      );
    }
    this.isolation.splitCurrent(answer);
    this.finishIsolation();
  }

  private doneWith(batch: Event[]): void {
    if (this.isolation === null) {
      this.ledger.buffer.ack(batch.length);
      return;
    }
    this.isolation.currentAnswered();
    this.finishIsolation();
  }

  /**
   * Once every part was delivered or suspected: set the suspects aside and forget the batch,
   * unless the kernel answered no part at all. Then it fails on every request, not on these
   * events: they are kept, and the whole batch is retried.
   */
  private finishIsolation(): void {
    const isolation = this.isolation;
    if (isolation === null || isolation.parts.length > 0) return;
    this.isolation = null;
    if (isolation.suspects.length > 0 && !isolation.answered) {
      this.ledger.logOnce(
        "isolation:unanswered",
        "error",
        `the kernel fails on every usage event sent alone; keeping them all and retrying: ${this.ledger.lastError}`,
      );
      return;
    }
    for (const [position, answer] of isolation.suspects) {
      const event = isolation.batch[position] as Event;
      this.ledger.buffer.setAside([event], answer);
      this.ledger.count("dead_lettered");
      this.ledger.logger.error(
        `billing-kernel-sdk: usage event set aside: the kernel failed on it alone while it took others; ` +
          `org ${JSON.stringify(event[0])}, idempotency key ${JSON.stringify(event[3])}, kept in ` +
          `${this.ledger.spooled ? "the spool's dead-letter file" : "deadLetters()"}. Its answer: ${answer}`,
      );
    }
    this.ledger.buffer.ack(isolation.batch.length);
  }

  private refusedCredentials(error: string): void {
    this.ledger.count("unauthorized");
    const now = Date.now();
    if (this.authLoggedAt === null || now - this.authLoggedAt >= AUTH_LOG_MS) {
      this.authLoggedAt = now;
      this.ledger.logger.error(
        "billing-kernel-sdk: the kernel refused the tracker's API key; usage is kept and sent once a " +
          `key works (a service key with usage:write): ${error}`,
      );
    }
  }

  /** The kernel will never take this event as it is: count it as refused. */
  private giveUp(batch: Event[], reason: string): void {
    this.ledger.logger.error(`billing-kernel-sdk: giving up on ${batch.length} usage event(s): ${reason}`);
    this.ledger.count("refused", batch.length);
    this.failuresHere = 0;
    this.doneWith(batch);
  }

  /** Capped exponential backoff with jitter (ms); a server's Retry-After is honoured. */
  retryDelay(attempt: number, retryAfterMs: number | null): number {
    const delay = Math.min(this.backoffCapMs, this.backoffBaseMs * 2 ** attempt) * (0.5 + Math.random() / 2);
    return Math.min(this.backoffCapMs, Math.max(delay, retryAfterMs ?? 0));
  }
}
