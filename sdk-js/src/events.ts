/**
 * The SDK's event record: a compact array while queued or spooled (one JSON line per event in
 * the spool, the same layout as the Python SDK's), an object on the wire.
 */

import type { components } from "./openapi.js";

export type WireEvent = components["schemas"]["UsageEventIn"];

/**
 * `[org_id, metric or event name, quantity, idempotency_key, occurred_us, properties, named,
 * observed]`: `occurred_us` is whole microseconds since the Unix epoch; `named` sends it as
 * `event` with its properties (its metrics read them), not as `metric` and `quantity`;
 * `observed` sends the time as `observed_at` (when the tracker saw it, which the kernel does not
 * compare on a repeat).
 */
export type Event = [
  orgId: string,
  metric: string,
  quantity: number,
  idempotencyKey: string,
  occurredUs: number,
  properties: Record<string, unknown> | null,
  named: boolean,
  observed: boolean,
];

/** A microsecond instant as ISO 8601 text in UTC, to the microsecond. */
export function isoMicros(micros: number): string {
  const ms = Math.floor(micros / 1000);
  const rest = micros - ms * 1000;
  return `${new Date(ms).toISOString().slice(0, 23)}${String(rest).padStart(3, "0")}+00:00`;
}

/** The event as `POST /api/v1/usage/events` takes it. */
export function wire(event: Event): WireEvent {
  const [orgId, metric, quantity, key, occurredUs, properties, named, observed] = event;
  const body: WireEvent = { org_id: orgId, idempotency_key: key };
  if (named) body.event = metric;
  else {
    body.metric = metric;
    body.quantity = quantity;
  }
  if (observed) body.observed_at = isoMicros(occurredUs);
  else body.occurred_at = isoMicros(occurredUs);
  if (properties !== null) body.properties = properties;
  return body;
}

/** A spooled line read back as an event, or null if it is not one (a corrupt line). */
export function parseEvent(line: string): Event | null {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return null;
  }
  if (!Array.isArray(value) || value.length < 5) return null;
  const [orgId, metric, quantity, key, occurredUs, properties = null, named = false, observed = false] =
    value as unknown[];
  if (
    typeof orgId !== "string" ||
    typeof metric !== "string" ||
    typeof quantity !== "number" ||
    typeof key !== "string" ||
    typeof occurredUs !== "number" ||
    !Number.isSafeInteger(occurredUs) ||
    (properties !== null && (typeof properties !== "object" || Array.isArray(properties))) ||
    typeof named !== "boolean" ||
    typeof observed !== "boolean"
  ) {
    return null;
  }
  return [orgId, metric, quantity, key, occurredUs, properties as Record<string, unknown> | null, named, observed];
}
