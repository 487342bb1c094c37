/**
 * billing-kernel's SDK for Node: report usage (`track()` never blocks or throws, a spool on disk
 * survives a killed process, the kernel counts each event exactly once) and ask for quota
 * decisions (`check`, `consume`, `guard`, `reserve`, `run`), and an org's features and limits
 * (`entitlements`, `hasFeature`, `featureValue`), kept for the time the kernel says.
 */

export { type DeadLetter, type EventBuffer, MemoryBuffer, Spool, SpoolBusyError } from "./buffer.js";
export { Entitlements, type FeatureValue } from "./entitlements.js";
export { type Event, type WireEvent, wire } from "./events.js";
export {
  checkEventName,
  checkId,
  checkProperties,
  checkQuantity,
  FieldError,
  MAX_EVENT_NAME_LENGTH,
  MAX_EVENT_QUANTITY,
  MAX_ID_LENGTH,
  MAX_IDEMPOTENCY_KEY_LENGTH,
  MAX_PROPERTIES,
  MAX_PROPERTIES_LENGTH,
} from "./fields.js";
export type { Logger, TrackerStats } from "./ledger.js";
export { llmCreatedAt, llmTokens } from "./llm.js";
export type { components, operations, paths } from "./openapi.js";
export { type Decision, type OnUnavailable, QuotaExceeded, Reservation, ReservationError, UNAVAILABLE } from "./quota.js";
export {
  type ConsumeOptions,
  type DecisionOptions,
  type GuardOptions,
  PLAYBOOK_RUNS,
  type ReserveOptions,
  TOKENS,
  type TrackerOptions,
  type TrackOptions,
  UsageTracker,
} from "./tracker.js";
export {
  type Call,
  CHECK_PATH,
  ENTITLEMENTS_PATH,
  type EventResult,
  EVENTS_PATH,
  HttpTransport,
  RESERVATIONS_PATH,
  type Transport,
  TransportError,
} from "./transport.js";
