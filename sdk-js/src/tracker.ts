/**
 * `UsageTracker`: reports usage without slowing or failing the product, and without losing or
 * doubling a unit (`track()` returns at once and never throws; a background sender delivers in
 * batches), and asks the kernel for quota decisions (`check`, `consume`, `guard`, `reserve`, `run`).
 */

import { randomBytes } from "node:crypto";

import type { DeadLetter } from "./buffer.js";
import type { Event } from "./events.js";
import {
  checkEventName,
  checkId,
  checkOccurredAt,
  checkProperties,
  checkQuantity,
  FieldError,
  MAX_IDEMPOTENCY_KEY_LENGTH,
} from "./fields.js";
import { Ledger, type Logger, type TrackerStats } from "./ledger.js";
import { llmCreatedAt, llmResponseId, llmTokens } from "./llm.js";
import {
  checkCall,
  type Decision,
  Gate,
  newKey,
  type OnUnavailable,
  QuotaExceeded,
  Reservation,
  reservationCall,
  runKey,
  unreachable,
} from "./quota.js";
import { Sender } from "./sender.js";
import { Entitlements, EntitlementsCache, entitlementsCall, type FeatureValue, readEntitlements } from "./entitlements.js";
import { type Call, HttpTransport, type Transport, TransportError } from "./transport.js";

export const TOKENS = "tokens";
export const PLAYBOOK_RUNS = "playbook_runs";

export interface TrackerOptions {
  /** A directory for the durable spool: a killed process loses nothing. Without it, events wait in memory. */
  spoolDir?: string;
  /** Events per batch (500). */
  maxBatch?: number;
  /** How long an event may wait for a full batch, in ms (1,000). */
  maxDelayMs?: number;
  /** Events kept in memory without a spool (100,000); beyond, new events are dropped. */
  maxQueue?: number;
  /** The spool's disk budget (512 MiB); beyond, new events are dropped. */
  maxSpoolBytes?: number;
  /** Backoff after a failed delivery: the first wait and the longest, in ms (200, 30,000). */
  backoffBaseMs?: number;
  backoffCapMs?: number;
  /** Answers of 500 to one batch before it is delivered in halves to find the events the kernel fails on (3). */
  isolateAfter?: number;
  /** How long a quota call keeps trying to reach the kernel, in ms (5,000). */
  decisionTimeoutMs?: number;
  /** Without the kernel: allow or deny; unset, by the metric's last known enforcement. */
  onUnavailable?: OnUnavailable;
  /** How long the process's natural end waits for unsent events, in ms (5,000). */
  drainOnExitMs?: number;
  /** One HTTP request's timeout, in ms (10,000). */
  timeoutMs?: number;
  /** Instead of HTTP (tests; a kernel reached otherwise). */
  transport?: Transport;
  /** Where problems are logged (warnings and errors; `console` by default). */
  logger?: Logger;
}

export interface TrackOptions {
  /** Names one logical event: tracked again (a retry, a rerun, another process) it counts once. */
  idempotencyKey?: string;
  /** When it happened (default: now). */
  occurredAt?: Date;
  /** What else it carries (`{ model: "gpt-5" }`), to group usage by later. */
  properties?: Record<string, unknown>;
}

export interface DecisionOptions {
  onUnavailable?: OnUnavailable;
}

export interface ConsumeOptions extends DecisionOptions {
  idempotencyKey?: string;
}

export interface GuardOptions extends ConsumeOptions {
  amount?: number;
}

export interface ReserveOptions extends ConsumeOptions {
  /** How long the kernel holds the units if neither committed nor released (its default: 900). */
  ttlSeconds?: number;
}

const QUIET: Logger = {
  debug: () => {},
  info: () => {},
  warn: (...args: unknown[]) => console.warn(...args),
  error: (...args: unknown[]) => console.error(...args),
};

export class UsageTracker {
  private readonly ledger: Ledger;
  private readonly sender: Sender;
  private readonly transport: Transport;
  private readonly gate: Gate;
  private readonly kept = new EntitlementsCache();
  private readonly maxBatch: number;
  private readonly maxDelayMs: number;
  private readonly drainOnExitMs: number;
  private readonly keyPrefix = randomBytes(8).toString("hex");
  private sequence = 0;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Number.POSITIVE_INFINITY;
  private backoffUntil = 0;
  private busy = false;
  private urgent = false;
  private closed = false;
  private waiters: Array<() => void> = [];
  private readonly onExit: () => void;

  constructor(baseUrl: string, apiKey: string, options: TrackerOptions = {}) {
    this.maxBatch = options.maxBatch ?? 500;
    this.maxDelayMs = options.maxDelayMs ?? 1_000;
    this.drainOnExitMs = options.drainOnExitMs ?? 5_000;
    if (!(Number.isInteger(this.maxBatch) && this.maxBatch > 0)) throw new RangeError("maxBatch must be a positive whole number");
    this.transport = options.transport ?? new HttpTransport(baseUrl, apiKey, options.timeoutMs ?? 10_000);
    this.ledger = new Ledger(
      {
        spoolDir: options.spoolDir ?? null,
        maxQueue: options.maxQueue ?? 100_000,
        maxSpoolBytes: options.maxSpoolBytes ?? 512 * 1024 * 1024,
      },
      options.logger ?? QUIET,
    );
    this.sender = new Sender(
      this.ledger,
      this.maxBatch,
      options.backoffBaseMs ?? 200,
      options.backoffCapMs ?? 30_000,
      options.isolateAfter,
    );
    this.gate = new Gate(
      {
        decidedAlone: (chosen, error) => {
          this.ledger.count("unavailable");
          this.ledger.logOnce(
            `unavailable:${chosen}`,
            "warn",
            `quota decisions are made without the kernel (onUnavailable: ${chosen}): ${error.message}`,
          );
        },
        recordLater: (orgId, metric, quantity, key, at) =>
          this.record(orgId, metric, quantity, { idempotencyKey: key, occurredAt: at }, false),
      },
      options.onUnavailable,
      options.decisionTimeoutMs ?? 5_000,
    );
    // The process's natural end (an empty event loop) sends what is left, for up to drainOnExitMs.
    this.onExit = () => {
      if (!this.closed && this.ledger.buffer.pending() > 0) void this.close(this.drainOnExitMs);
    };
    process.on("beforeExit", this.onExit);
    if (this.ledger.buffer.pending() > 0) {
      this.ledger.logger.info(`billing-kernel-sdk: resuming ${this.ledger.buffer.pending()} unsent event(s)`);
      this.wake(0);
    }
  }

  /** Report `quantity` of `metric` for the org. Returns at once; never throws (invalid arguments are counted in `refused`). */
  track(orgId: string, metric: string, quantity = 1, options: TrackOptions = {}): void {
    this.record(orgId, metric, quantity, options, false);
  }

  /** Report a named event: each metric that counts `name` reads what it needs from `properties`. */
  trackEvent(orgId: string, name: string, properties: Record<string, unknown> = {}, options: Omit<TrackOptions, "properties"> = {}): void {
    this.record(orgId, name, 0, { ...options, properties }, true);
  }

  /**
   * Track the tokens of a model response (OpenAI's or Anthropic's Node client). A response with an
   * `id` is keyed `llm:<id>` and timed by the provider (or observed): tracked twice, counted once.
   * A response that reports no usage is skipped (`stats().skipped`).
   */
  trackLlmUsage(orgId: string, response: unknown, options: Omit<TrackOptions, "properties"> = {}): void {
    try {
      const tokens = llmTokens(response);
      if (tokens === null) {
        this.ledger.count("skipped");
        this.ledger.logger.debug(`billing-kernel-sdk: LLM response without usage for org ${JSON.stringify(orgId)}`);
        return;
      }
      let { idempotencyKey, occurredAt } = options;
      const id = llmResponseId(response);
      if (idempotencyKey === undefined && id !== null) {
        idempotencyKey = `llm:${id}`.slice(0, MAX_IDEMPOTENCY_KEY_LENGTH);
        occurredAt ??= llmCreatedAt(response) ?? undefined;
      }
      this.track(orgId, TOKENS, tokens, { idempotencyKey, occurredAt });
    } catch {
      this.ledger.count("skipped"); // reading an odd response must not fail the product
    }
  }

  /** Pass a streamed response through, tracking the usage its final chunk reports (OpenAI: `stream_options: { include_usage: true }`). */
  async *trackLlmStream<T>(orgId: string, chunks: AsyncIterable<T>): AsyncGenerator<T> {
    let last: T | undefined;
    for await (const chunk of chunks) {
      if (llmTokens(chunk) !== null) last = chunk;
      yield chunk;
    }
    if (last !== undefined) this.trackLlmUsage(orgId, last);
  }

  private record(
    orgId: unknown,
    metric: unknown,
    quantity: unknown,
    options: TrackOptions,
    named: boolean,
  ): void {
    let event: Event;
    try {
      event = this.event(orgId, metric, quantity, options, named);
    } catch (error) {
      this.ledger.count("refused");
      const kind = error instanceof FieldError ? error.field : (error as Error).name;
      this.ledger.logOnce(`invalid:${kind}`, "warn", `usage not tracked: ${(error as Error).message}`);
      return;
    }
    if (this.closed) {
      this.ledger.count("dropped");
      this.ledger.logOnce("closed", "error", "usage dropped: the tracker is closed");
      return;
    }
    let kept: boolean;
    try {
      kept = this.ledger.buffer.append(event);
    } catch (error) {
      this.ledger.count("dropped");
      this.ledger.logOnce(`buffer:${(error as Error).name}`, "error", `usage dropped: the buffer failed: ${String(error)}`);
      return;
    }
    if (!kept) {
      this.ledger.count("dropped");
      this.ledger.logOnce("full", "error", "usage dropped: the tracker's buffer is full (see stats().dropped)");
      return;
    }
    this.ledger.count("queued");
    if (this.ledger.spooled) this.ledger.count("spooled");
    this.wake(this.ledger.buffer.pending() >= this.maxBatch ? 0 : this.maxDelayMs);
  }

  private event(orgId: unknown, metric: unknown, quantity: unknown, options: TrackOptions, named: boolean): Event {
    const occurred = options.occurredAt;
    const micros = occurred !== undefined ? checkOccurredAt(occurred, "occurredAt") : Date.now() * 1000;
    let key: string;
    let observed = false;
    if (options.idempotencyKey === undefined) {
      this.sequence += 1;
      key = `${this.keyPrefix}-${this.sequence}`;
    } else {
      key = checkId(options.idempotencyKey, "idempotencyKey", MAX_IDEMPOTENCY_KEY_LENGTH);
      // A key names one logical event: tracked again it must be the same payload, so a time
      // only observed is not part of it.
      observed = occurred === undefined;
    }
    const name = named ? checkEventName(metric, "event") : checkId(metric, "metric");
    const amount = named ? 0 : checkQuantity(quantity);
    const properties = checkProperties(options.properties);
    return [checkId(orgId, "orgId"), name, amount, key, micros, properties && { ...properties }, named, observed];
  }

  /** What the tracker has done since it was made. */
  stats(): TrackerStats {
    return this.ledger.stats();
  }

  /** The events set aside (each as sent, with the kernel's `error` and `set_aside_at`). */
  deadLetters(): DeadLetter[] {
    return this.ledger.buffer.deadLetters();
  }

  // The sender: one delivery at a time, on a timer that never keeps the process alive.

  private wake(delayMs: number, force = false): void {
    if (this.busy || (this.closed && !this.urgent)) return;
    const now = performance.now();
    const at = force ? now + delayMs : Math.max(now + delayMs, this.backoffUntil);
    if (this.timer !== null && this.timerAt <= at) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerAt = Number.POSITIVE_INFINITY;
      void this.pump();
    }, at - now);
    this.timer.unref();
  }

  private async pump(): Promise<void> {
    if (this.busy || this.ledger.buffer.pending() === 0) return this.settled();
    this.busy = true;
    let delay: number | null;
    try {
      delay = await this.sender.deliver((events) => this.transport.send(events));
    } catch (error) {
      this.ledger.logOnce("pump", "error", `usage delivery failed unexpectedly: ${String(error)}`);
      delay = this.sender.retryDelay(0, null);
    } finally {
      this.busy = false;
    }
    this.backoffUntil = delay === null ? 0 : performance.now() + delay;
    this.settled();
    const pending = this.ledger.buffer.pending();
    if (pending === 0) this.urgent = false;
    else this.wake(delay ?? (this.urgent || pending >= this.maxBatch ? 0 : this.maxDelayMs));
  }

  private settled(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }

  /**
   * Send what was tracked so far now, and wait until the kernel has answered for all of it: true
   * then; false when `timeoutMs` (10,000) passes first, or as soon as the kernel refuses the key.
   */
  async flush(timeoutMs = 10_000): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    const refusals = this.ledger.counts.unauthorized;
    let first = true;
    while (this.ledger.buffer.pending() > 0) {
      const left = deadline - performance.now();
      if (left <= 0 || this.ledger.counts.unauthorized > refusals) return false;
      this.urgent = true;
      const settled = new Promise<void>((resolve) => this.waiters.push(resolve));
      if (!this.busy) this.wake(0, first); // the first attempt at once, then the sender's own pace
      first = false;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([settled, new Promise<void>((resolve) => (timer = setTimeout(resolve, left)))]);
      clearTimeout(timer);
    }
    return this.ledger.counts.unauthorized === refusals || this.ledger.buffer.pending() === 0;
  }

  /**
   * Deliver what is left (for up to `timeoutMs`), then stop. With a spool, what could not be sent
   * stays in it for the next tracker; without one, it is counted as dropped.
   */
  async close(timeoutMs = this.drainOnExitMs): Promise<void> {
    if (this.closed) return;
    process.off("beforeExit", this.onExit);
    await this.flush(timeoutMs);
    this.closed = true;
    this.urgent = false;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (!this.ledger.spooled) this.ledger.count("dropped", this.ledger.buffer.pending());
    this.ledger.buffer.close();
    await this.transport.close();
  }

  // Quota decisions: these ask the kernel and wait for its answer.

  /** Whether the org may use `amount` more of `metric` now (nothing is recorded). A refusal is a decision, not an error. */
  async check(orgId: string, metric: string, amount = 1, options: DecisionOptions = {}): Promise<Decision> {
    return this.decide(checkCall(orgId, metric, amount, null), options.onUnavailable, null);
  }

  /**
   * Decide and, if allowed, record `amount` in one atomic step at the kernel: of concurrent
   * consumes only as many as fit are allowed. Retried under its key until the kernel answers.
   */
  async consume(orgId: string, metric: string, amount = 1, options: ConsumeOptions = {}): Promise<Decision> {
    const key = newKey("consume", options.idempotencyKey);
    return this.decide(checkCall(orgId, metric, amount, key), options.onUnavailable, key);
  }

  /**
   * Consume `amount` (1), then run `work`; throw QuotaExceeded instead of running it when refused.
   * What was consumed stays consumed if the work fails: it was attempted.
   */
  async guard<T>(orgId: string, metric: string, work: (decision: Decision) => T | Promise<T>, options: GuardOptions = {}): Promise<T> {
    const decision = await this.consume(orgId, metric, options.amount ?? 1, options);
    if (!decision.allowed) throw new QuotaExceeded(decision);
    return work(decision);
  }

  /**
   * Admit one playbook run: consume one `playbook_runs` keyed `run:<runId>` before `work`, or throw
   * QuotaExceeded instead of running it. The same run again replays its first decision.
   */
  async run<T>(orgId: string, runId: string | undefined, work: (decision: Decision) => T | Promise<T>, options: DecisionOptions = {}): Promise<T> {
    return this.guard(orgId, PLAYBOOK_RUNS, work, { ...options, idempotencyKey: runKey(runId) });
  }

  /**
   * Hold `estimate` units against the limit for work whose size is known only afterwards; throws
   * QuotaExceeded when refused. Then `commit(actual)` or `release()`; an abandoned hold comes back
   * by itself after `ttlSeconds`.
   */
  async reserve(orgId: string, metric: string, estimate: number, options: ReserveOptions = {}): Promise<Reservation> {
    const key = newKey("reserve", options.idempotencyKey);
    const call = reservationCall(orgId, metric, estimate, key, options.ttlSeconds);
    return new Reservation(this.gate, call, options.onUnavailable, (made) => this.post(made)).make();
  }

  /** `reserve()`, run `work` with the reservation, and release it afterwards unless `work` committed it. */
  async withReservation<T>(
    orgId: string,
    metric: string,
    estimate: number,
    work: (reservation: Reservation) => T | Promise<T>,
    options: ReserveOptions = {},
  ): Promise<T> {
    const reservation = await this.reserve(orgId, metric, estimate, options);
    try {
      return await work(reservation);
    } finally {
      await reservation.release();
    }
  }

  /**
   * The org's features and limits in one read, kept for the `cache_seconds` the kernel says (60)
   * and read again after, or now with `refresh`. While the kernel is out of reach, the last ones
   * read for the org are answered however old, and kept as if just read; with none,
   * TransportError. A refusal is thrown.
   */
  async entitlements(orgId: string, options: { refresh?: boolean } = {}): Promise<Entitlements> {
    const now = performance.now();
    const held = options.refresh ? null : this.kept.fresh(orgId, now);
    if (held !== null) return held;
    const call = entitlementsCall(orgId);
    let found: Entitlements;
    try {
      found = readEntitlements(await this.post(call));
    } catch (error) {
      const last = this.kept.last(orgId);
      if (last === null || !(error instanceof TransportError) || !error.retryable) throw error;
      this.kept.keep(last, now); // the calls meanwhile do not each wait for the kernel again
      return last;
    }
    this.kept.keep(found, now);
    return found;
  }

  /** Whether the org has the feature (granted with any value but false); see `entitlements()`. */
  async hasFeature(orgId: string, key: string): Promise<boolean> {
    return (await this.entitlements(orgId)).hasFeature(key);
  }

  /** The org's value of the feature (`5`, `"priority"`, `true`), or `fallback`. */
  async featureValue<T = FeatureValue | undefined>(orgId: string, key: string, fallback?: T): Promise<FeatureValue | T> {
    return (await this.entitlements(orgId)).featureValue(key, fallback);
  }

  private async decide(call: Call, given: OnUnavailable | undefined, consumeKey: string | null): Promise<Decision> {
    try {
      return this.gate.learned(String(call.orgId), await this.post(call));
    } catch (error) {
      return this.gate.unreachable(call, given, unreachable(error), consumeKey);
    }
  }

  /** The kernel's answer to `call`, retried within the decision budget while it is out of reach. */
  private async post(call: Call): Promise<Record<string, unknown>> {
    let last = new TransportError("no time left to ask the kernel", { retryable: true });
    for (const [wait, timeout] of this.gate.schedule()) {
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      try {
        return await this.transport.request(call, timeout);
      } catch (error) {
        last = unreachable(error);
      }
    }
    throw last;
  }
}
