/**
 * Quota decisions from the kernel: what `check()`, `consume()`, `guard()`, `reserve()` and
 * `run()` ask, how an answer reads, and what to decide when the kernel cannot be reached (the
 * Python SDK's rules).
 */

import { checkId, checkQuantity, MAX_IDEMPOTENCY_KEY_LENGTH } from "./fields.js";
import type { components } from "./openapi.js";
import { type Call, CHECK_PATH, RESERVATIONS_PATH, TransportError } from "./transport.js";

type CheckOut = components["schemas"]["CheckOut"];
type ReservationOut = components["schemas"]["ReservationOut"];

export type OnUnavailable = "allow" | "deny";
/** The `reason` of a decision the tracker made itself, the kernel being unreachable. */
export const UNAVAILABLE = "kernel_unavailable";
const REMEMBERED_POLICIES = 10_000;
/** Milliseconds before the second attempt at a decision; each further wait doubles. */
const FIRST_RETRY_MS = 50;

/**
 * The kernel's answer to a quota question (`POST /api/v1/billing/org/check`, fields as the kernel
 * names them), or the tracker's own when the kernel could not be reached (`reason`
 * `kernel_unavailable`: the figures are then null).
 */
export interface Decision {
  allowed: boolean;
  reason: CheckOut["reason"] | typeof UNAVAILABLE;
  /** The decision in plain words, for the person using the product. */
  message: string;
  metric: string;
  requested: number;
  /** The amount was recorded as usage: by the kernel, or (the kernel unreachable, allowed) queued to be. */
  consumed: boolean;
  used: number | null;
  held: number | null;
  limit: number | null;
  remaining: number | null;
  enforcement: CheckOut["enforcement"] | null;
  resets_at: string | null;
  grace_ends_at: string | null;
  status_blocks_at: string | null;
  upgrade: CheckOut["upgrade"];
}

/** The decision in a kernel's answer (a check's, or a reservation's `decision`). */
export function decisionOf(answer: Record<string, unknown>): Decision {
  const out = answer as unknown as CheckOut;
  if (typeof out.allowed !== "boolean" || typeof out.reason !== "string" || typeof out.metric !== "string") {
    throw new TransportError("unreadable decision from the kernel", { retryable: false });
  }
  return {
    allowed: out.allowed,
    reason: out.reason,
    message: String(out.message),
    metric: out.metric,
    requested: Number(out.requested),
    consumed: Boolean(out.consumed),
    used: out.used ?? null,
    held: out.held ?? null,
    limit: out.limit ?? null,
    remaining: out.remaining ?? null,
    enforcement: out.enforcement ?? null,
    resets_at: out.resets_at ?? null,
    grace_ends_at: out.grace_ends_at ?? null,
    status_blocks_at: out.status_blocks_at ?? null,
    upgrade: out.upgrade ?? null,
  };
}

/** The org may not do this now: `guard()`, `reserve()` and `run()` throw it when the decision refuses. */
export class QuotaExceeded extends Error {
  readonly decision: Decision;

  constructor(decision: Decision) {
    super(decision.message);
    this.name = "QuotaExceeded";
    this.decision = decision;
  }
}

/** A reservation settled out of turn: committed again with another quantity, or after it was released. */
export class ReservationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ReservationError";
  }
}

function newId(): string {
  return globalThis.crypto.randomUUID().replaceAll("-", "");
}

/** The idempotency key of one consume or reservation: the caller's, or a new one. */
export function newKey(kind: string, given: string | undefined): string {
  return given === undefined ? `${kind}:${newId()}` : checkId(given, "idempotencyKey", MAX_IDEMPOTENCY_KEY_LENGTH);
}

/** A run's key: `run:<runId>`, so a retried run is the same consume. */
export function runKey(runId: string | undefined): string {
  return (runId === undefined ? `run:${newId()}` : `run:${runId}`).slice(0, MAX_IDEMPOTENCY_KEY_LENGTH);
}

export function checkCall(orgId: string, metric: string, amount: number, consumeKey: string | null): Call {
  const body: Record<string, unknown> = {
    metric: checkId(metric, "metric"),
    amount: checkQuantity(amount, "amount"),
  };
  if (consumeKey !== null) Object.assign(body, { consume: true, idempotency_key: consumeKey });
  return { path: CHECK_PATH, body, orgId: checkId(orgId, "orgId") };
}

export function reservationCall(
  orgId: string,
  metric: string,
  estimate: number,
  key: string,
  ttlSeconds: number | undefined,
): Call {
  const body: Record<string, unknown> = {
    org_id: checkId(orgId, "orgId"),
    metric: checkId(metric, "metric"),
    estimate: checkQuantity(estimate, "estimate"),
    idempotency_key: key,
  };
  if (ttlSeconds !== undefined) body.ttl_seconds = ttlSeconds;
  return { path: RESERVATIONS_PATH, body };
}

/** `error` if it says the kernel is out of reach for now (retryable); else throw it: the caller's to fix. */
export function unreachable(error: unknown): TransportError {
  if (error instanceof TransportError && error.retryable) return error;
  throw error;
}

function choice(value: unknown): OnUnavailable | null {
  if (value === undefined || value === null) return null;
  if (value === "allow" || value === "deny") return value;
  throw new TypeError(`onUnavailable must be "allow" or "deny", not ${JSON.stringify(value)}`);
}

export interface GateHost {
  /** Count a decision made without the kernel and log it once. */
  decidedAlone(chosen: OnUnavailable, error: TransportError): void;
  /** Queue usage decided without the kernel as an event under `key`, timed `at`. */
  recordLater(orgId: string, metric: string, quantity: number, key: string, at: Date): void;
}

/**
 * What a tracker remembers and decides around quota calls: how long to keep trying, each
 * (org, metric)'s last known enforcement, and the decision when the kernel cannot be reached.
 */
export class Gate {
  readonly onUnavailable: OnUnavailable | null;
  private readonly enforcement = new Map<string, string>();

  constructor(
    private readonly host: GateHost,
    onUnavailable: OnUnavailable | undefined,
    readonly budgetMs: number,
  ) {
    this.onUnavailable = choice(onUnavailable);
    if (!(budgetMs > 0)) throw new RangeError("decisionTimeoutMs must be a positive number of milliseconds");
  }

  /** [wait, timeout] (ms) for each attempt at one call, inside the budget: at once, then after 50, 100, 200 ms, ... */
  *schedule(): Generator<[number, number]> {
    const deadline = performance.now() + this.budgetMs;
    let wait = 0;
    for (;;) {
      const left = deadline - performance.now() - wait;
      if (left <= 0) return;
      yield [wait, left];
      wait = wait === 0 ? FIRST_RETRY_MS : wait * 2;
    }
  }

  /** Queue usage decided without the kernel (see `GateHost.recordLater`). */
  recordLater(orgId: string, metric: string, quantity: number, key: string, at: Date): void {
    this.host.recordLater(orgId, metric, quantity, key, at);
  }

  /** The decision in a kernel's answer; its metric's enforcement is remembered. */
  learned(orgId: string, answer: Record<string, unknown>): Decision {
    const decision = decisionOf(answer);
    if (decision.enforcement !== null) {
      const key = JSON.stringify([orgId, decision.metric]);
      this.enforcement.delete(key);
      this.enforcement.set(key, decision.enforcement);
      if (this.enforcement.size > REMEMBERED_POLICIES) {
        const oldest = this.enforcement.keys().next().value;
        if (oldest !== undefined) this.enforcement.delete(oldest);
      }
    }
    return decision;
  }

  /**
   * The decision without the kernel: the call's `onUnavailable`, else the tracker's, else by the
   * metric's last known enforcement (allow a soft metric, deny a hard one; allow one never
   * decided). An allowed consume's usage is queued under its key.
   */
  unreachable(call: Call, given: OnUnavailable | undefined, error: TransportError, consumeKey: string | null): Decision {
    const orgId = String(call.orgId ?? call.body.org_id);
    const metric = String(call.body.metric);
    const amount = Number(call.body.amount ?? call.body.estimate ?? 0);
    let chosen = choice(given) ?? this.onUnavailable;
    if (chosen === null) {
      chosen = this.enforcement.get(JSON.stringify([orgId, metric])) === "hard" ? "deny" : "allow";
    }
    const allowed = chosen === "allow";
    this.host.decidedAlone(chosen, error);
    if (allowed && consumeKey !== null) this.host.recordLater(orgId, metric, amount, consumeKey, new Date());
    return {
      allowed,
      reason: UNAVAILABLE,
      message: `The usage limit could not be checked just now; ${allowed ? "going ahead." : "please try again in a moment."}`,
      metric,
      requested: amount,
      consumed: allowed && consumeKey !== null,
      used: null,
      held: null,
      limit: null,
      remaining: null,
      enforcement: null,
      resets_at: null,
      grace_ends_at: null,
      status_blocks_at: null,
      upgrade: null,
    };
  }
}

export type Post = (call: Call) => Promise<Record<string, unknown>>;

/**
 * Units held against the org's limit while work of unknown size runs: `commit(actual)` records
 * what it used (even beyond the estimate) and gives the rest back; `release()` gives everything
 * back. Made by `UsageTracker.reserve()`.
 */
export class Reservation {
  /** The kernel's id (`rsv_...`); null when it was made without the kernel. */
  id: string | null = null;
  decision: Decision | null = null;
  /** `held`, `committed`, `released`, or `expired` (its TTL ended before it was settled; it can still be committed). */
  status = "new";
  committedQuantity: number | null = null;
  private readonly madeAt = new Date();

  constructor(
    private readonly gate: Gate,
    private readonly call: Call,
    private readonly given: OnUnavailable | undefined,
    private readonly post: Post,
  ) {}

  get orgId(): string {
    return String(this.call.body.org_id);
  }

  get metric(): string {
    return String(this.call.body.metric);
  }

  get idempotencyKey(): string {
    return String(this.call.body.idempotency_key);
  }

  /** Ask the kernel for the hold; QuotaExceeded when refused. */
  async make(): Promise<this> {
    try {
      const answer = (await this.post(this.call)) as unknown as ReservationOut;
      this.decision = this.gate.learned(this.orgId, answer.decision as unknown as Record<string, unknown>);
      this.id = answer.id;
      this.status = answer.status; // a retried key: its state now
      this.committedQuantity = answer.committed_quantity;
    } catch (error) {
      this.decision = this.gate.unreachable(this.call, this.given, unreachable(error), null);
      this.status = this.decision.allowed ? "held" : "refused";
    }
    if (this.status === "refused") throw new QuotaExceeded(this.decision);
    return this;
  }

  /**
   * Record `quantity` as the work's usage (counted in full) and release the hold. With the kernel
   * unreachable, the usage is queued and recorded once it is back.
   */
  async commit(quantity: number): Promise<void> {
    const checked = checkQuantity(quantity);
    if (this.status === "committed" && this.committedQuantity === checked) return; // a repeat: the same
    if (this.status !== "held" && this.status !== "expired") {
      throw new ReservationError(`a ${this.status} reservation cannot be committed`);
    }
    let queued = this.id === null;
    if (this.id !== null) {
      try {
        await this.post({ path: `${RESERVATIONS_PATH}/${this.id}/commit`, body: { quantity: checked } });
      } catch (error) {
        unreachable(error);
        queued = true;
      }
    }
    if (queued) {
      // Dated as the kernel dates a commit: when reserved.
      this.gate.recordLater(this.orgId, this.metric, checked, this.idempotencyKey, this.madeAt);
    }
    this.status = "committed";
    this.committedQuantity = checked;
  }

  /** Give the held units back (the kernel unreachable: they come back by the TTL). */
  async release(): Promise<void> {
    if (this.status !== "held") return;
    this.status = "released";
    if (this.id === null) return;
    try {
      await this.post({ path: `${RESERVATIONS_PATH}/${this.id}/release`, body: {} });
    } catch (error) {
      if (!(error instanceof TransportError)) throw error;
    }
  }
}
