/** What a tracker's halves share: the buffer, the counts `stats()` reports, and logging each kind of problem once. */

import { type EventBuffer, MemoryBuffer, Spool } from "./buffer.js";

/** What a tracker has done since it was made (the Python SDK's `TrackerStats`). */
export interface TrackerStats {
  /** `track()` calls taken into the buffer, to be sent. */
  queued: number;
  /** Events the kernel accepted and counted. */
  accepted: number;
  /** Events the kernel already had (a resend after a lost answer): counted once. */
  duplicates: number;
  /** Batch deliveries that failed and were tried again. */
  retried: number;
  /** Events written to the spool. */
  spooled: number;
  /** Events not kept: the buffer or the spool's disk budget was full (or, without a spool, still unsent when the tracker closed). */
  dropped: number;
  /** Events whose key the kernel already had with another payload: the first was counted, these were not. */
  conflicts: number;
  /** Events with invalid arguments, or refused by the kernel; never counted. */
  refused: number;
  /** LLM responses that reported no usage. */
  skipped: number;
  /** Events set aside because the kernel failed on each alone while it took the others (see `deadLetters()`). */
  dead_lettered: number;
  /** Quota decisions the tracker made itself, the kernel being out of reach (`onUnavailable`). */
  unavailable: number;
  /** Deliveries the kernel refused for the API key (401/403); the events wait for a key that works. */
  unauthorized: number;
  /** Events waiting to be sent now. */
  pending: number;
  /** Why the last delivery failed; null once one succeeds. */
  last_error: string | null;
}

export type Count = Exclude<keyof TrackerStats, "pending" | "last_error">;

export type Logger = Pick<Console, "debug" | "info" | "warn" | "error">;

export class Ledger {
  readonly buffer: EventBuffer;
  readonly spooled: boolean;
  lastError: string | null = null;
  readonly counts: Record<Count, number> = {
    queued: 0,
    accepted: 0,
    duplicates: 0,
    retried: 0,
    spooled: 0,
    dropped: 0,
    conflicts: 0,
    refused: 0,
    skipped: 0,
    dead_lettered: 0,
    unavailable: 0,
    unauthorized: 0,
  };
  private readonly logged = new Set<string>();

  constructor(
    options: { spoolDir: string | null; maxQueue: number; maxSpoolBytes: number },
    readonly logger: Logger,
  ) {
    this.spooled = options.spoolDir !== null;
    this.buffer =
      options.spoolDir !== null ? new Spool(options.spoolDir, options.maxSpoolBytes, (message) => logger.error(message)) : new MemoryBuffer(options.maxQueue);
  }

  count(name: Count, amount = 1): void {
    this.counts[name] += amount;
  }

  stats(): TrackerStats {
    return { ...this.counts, pending: this.buffer.pending(), last_error: this.lastError };
  }

  /** Log the first occurrence of each kind of problem only (tracking is hot). */
  logOnce(kind: string, level: "debug" | "warn" | "error", message: string): void {
    if (!this.logged.has(kind) && this.logged.size < 1000) {
      this.logged.add(kind);
      this.logger[level](`billing-kernel-sdk: ${message}`);
    }
  }
}
