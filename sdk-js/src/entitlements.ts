/**
 * An org's entitlements, its features and limits, as the kernel answers them
 * (`GET /api/v1/billing/org/entitlements`), kept for the `cache_seconds` it says.
 */

import { checkId } from "./fields.js";
import type { components } from "./openapi.js";
import { type Call, ENTITLEMENTS_PATH, TransportError } from "./transport.js";

type EntitlementsOut = components["schemas"]["EntitlementsOut"];

/** A feature's value: a switch, a whole number or a short text. */
export type FeatureValue = boolean | number | string;

/** The most orgs' entitlements a tracker keeps; the least recently read go first. */
export const MAX_ORGS_KEPT = 10_000;

/** What an org may use, as its plan and its own terms said when read. */
export class Entitlements {
  constructor(
    readonly orgId: string,
    readonly planSlug: string,
    readonly planVersion: number,
    /** Every feature it has, by key; one not here is not granted. */
    readonly features: Readonly<Record<string, FeatureValue>>,
    /** Each metric's limit (null: unlimited); whether a given use fits is `check()`'s. */
    readonly limits: Readonly<Record<string, number | null>>,
    /** How long the kernel said these may be kept. */
    readonly cacheSeconds: number,
  ) {}

  /** Whether the org has the feature: granted with any value but `false`. */
  hasFeature(key: string): boolean {
    const value = this.features[key];
    return value !== undefined && value !== false;
  }

  /** The feature's value (`5`, `"priority"`, `true`), or `fallback` when not granted. */
  featureValue<T = FeatureValue | undefined>(key: string, fallback?: T): FeatureValue | T {
    const value = this.features[key];
    return value === undefined ? (fallback as T) : value;
  }
}

export function entitlementsCall(orgId: string): Call {
  return { path: ENTITLEMENTS_PATH, body: {}, orgId: checkId(orgId, "orgId"), method: "GET" };
}

/** The kernel's answer as Entitlements; TransportError (retryable) if it is not one. */
export function readEntitlements(answer: Record<string, unknown>): Entitlements {
  const found = answer as Partial<EntitlementsOut>;
  if (
    typeof found.org_id !== "string" ||
    typeof found.plan_slug !== "string" ||
    typeof found.plan_version !== "number" ||
    typeof found.features !== "object" ||
    found.features === null ||
    typeof found.limits !== "object" ||
    found.limits === null ||
    typeof found.cache_seconds !== "number"
  ) {
    throw new TransportError("unreadable entitlements", { retryable: true });
  }
  const limits: Record<string, number | null> = {};
  for (const [metric, terms] of Object.entries(found.limits)) limits[metric] = terms.included_quantity ?? null;
  return new Entitlements(
    found.org_id,
    found.plan_slug,
    found.plan_version,
    { ...found.features },
    limits,
    found.cache_seconds,
  );
}

/** Each org's last entitlements and until when they are fresh (ms on `performance.now()`). */
export class EntitlementsCache {
  private readonly held = new Map<string, { until: number; found: Entitlements }>();

  /** The org's entitlements if read less than their `cacheSeconds` ago. */
  fresh(orgId: string, now: number): Entitlements | null {
    const held = this.held.get(orgId);
    if (held === undefined || now >= held.until) return null;
    this.held.delete(orgId);
    this.held.set(orgId, held);
    return held.found;
  }

  /** The org's last entitlements read, however long ago. */
  last(orgId: string): Entitlements | null {
    return this.held.get(orgId)?.found ?? null;
  }

  keep(found: Entitlements, now: number): void {
    this.held.delete(found.orgId);
    this.held.set(found.orgId, { until: now + found.cacheSeconds * 1000, found });
    while (this.held.size > MAX_ORGS_KEPT) {
      const oldest = this.held.keys().next().value as string;
      this.held.delete(oldest);
    }
  }
}
