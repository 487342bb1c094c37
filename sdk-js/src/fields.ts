/**
 * What each field of a usage event may hold: the kernel's own rules (the Python SDK's
 * `billing_kernel_sdk.fields`), checked by `track()` before an event is queued, so that the
 * tracker never queues an event the kernel would refuse for its form.
 */

export const MAX_EVENT_QUANTITY = 1_000_000_000_000;
/** Org ids, metric keys and property names: the product's own, up to this many characters. */
export const MAX_ID_LENGTH = 64;
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;
export const MAX_EVENT_NAME_LENGTH = 255;
export const MAX_PROPERTIES = 50;
export const MAX_PROPERTIES_LENGTH = 4096;
const MAX_DEPTH = 64;

/** No control characters; no white space (a byte-order mark counted as one) at either end. */
const ID_PATTERN =
  /^[^\s\ufeff\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]*[^\s\ufeff\x00-\x1f\x7f-\x9f])?$/u;
/** Any text without control characters (the length is counted in characters, below). */
const EVENT_NAME_PATTERN = /^[^\x00-\x1f\x7f-\x9f]+$/u;
/** A UTF-16 surrogate on its own: JSON carries one, no database column stores it. */
const LONE_SURROGATE = /\p{Cs}/u;

/** A field's value is not one an event may carry; `field` names it. */
export class FieldError extends TypeError {
  readonly field: string;

  constructor(message: string, field: string) {
    super(message);
    this.name = "FieldError";
    this.field = field;
  }
}

/** Characters (code points), as the kernel counts them; a string's `length` counts UTF-16 units. */
function characters(value: string): number {
  let count = 0;
  for (const _ of value) count += 1;
  return count;
}

function storable(value: string, what: string): string {
  if (LONE_SURROGATE.test(value)) {
    throw new FieldError(`${what} contains a lone UTF-16 surrogate, which is not Unicode text`, what);
  }
  return value;
}

/** A non-empty printable string of at most `maxLength` characters, or FieldError. */
export function checkId(value: unknown, what: string, maxLength: number = MAX_ID_LENGTH): string {
  if (typeof value !== "string") throw new FieldError(`${what} must be a string`, what);
  if (value === "" || value.trim() !== value) {
    throw new FieldError(`${what} must be non-empty, without leading or trailing spaces`, what);
  }
  if (value.length > maxLength && characters(value) > maxLength) {
    throw new FieldError(`${what} is longer than ${maxLength} characters`, what);
  }
  if (!ID_PATTERN.test(value)) throw new FieldError(`${what} contains control characters`, what);
  return storable(value, what);
}

/** An event's name: any text of 1 to 255 characters without control characters, or FieldError. */
export function checkEventName(value: unknown, what = "event"): string {
  if (typeof value !== "string") throw new FieldError(`${what} must be a string`, what);
  if (value === "") throw new FieldError(`${what} must not be empty`, what);
  if (value.length > MAX_EVENT_NAME_LENGTH && characters(value) > MAX_EVENT_NAME_LENGTH) {
    throw new FieldError(`${what} is longer than ${MAX_EVENT_NAME_LENGTH} characters`, what);
  }
  if (!EVENT_NAME_PATTERN.test(value)) {
    throw new FieldError(`${what} contains control characters`, what);
  }
  return storable(value, what);
}

/** A whole number of units from 0 to MAX_EVENT_QUANTITY, or FieldError. */
export function checkQuantity(value: unknown, what = "quantity"): number {
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new FieldError(`${what} must be a whole number`, what);
  }
  if (value < 0) throw new FieldError(`${what} must not be negative`, what);
  if (value > MAX_EVENT_QUANTITY) {
    throw new FieldError(
      `${what} ${value} is above the per-event maximum of ${MAX_EVENT_QUANTITY}`,
      what,
    );
  }
  return value;
}

const YEAR_ONE_MS = Date.parse("0001-01-01T00:00:00Z");
const YEAR_10000_MS = Date.parse("+010000-01-01T00:00:00Z");

/** An event time as whole microseconds since the Unix epoch: a valid Date inside the years 1 to 9999. */
export function checkOccurredAt(value: unknown, what = "occurred_at"): number {
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) {
    throw new FieldError(`${what} must be a valid Date`, what);
  }
  const ms = value.getTime();
  if (ms < YEAR_ONE_MS || ms >= YEAR_10000_MS) {
    throw new FieldError(`${what} is outside the years 1 to 9999 in UTC`, what);
  }
  return ms * 1000;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

function checkJsonValue(value: unknown, depth: number): void {
  const bad = () =>
    new FieldError(
      "properties must hold only JSON values: finite numbers, Unicode text, lists, objects",
      "properties",
    );
  if (depth > MAX_DEPTH) throw bad();
  if (value === null || typeof value === "boolean") return;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw bad();
    return;
  }
  if (typeof value === "string") {
    if (LONE_SURROGATE.test(value)) throw bad();
    if (value.includes("\u0000")) {
      throw new FieldError(
        "properties must not hold a NUL character (\\u0000): no database stores one",
        "properties",
      );
    }
    return;
  }
  if (Array.isArray(value)) {
    for (const item of value) checkJsonValue(item, depth + 1);
    return;
  }
  if (isPlainObject(value)) {
    for (const [name, item] of Object.entries(value)) {
      checkJsonValue(name, depth + 1);
      checkJsonValue(item, depth + 1);
    }
    return;
  }
  throw bad();
}

/**
 * An event's properties: a plain JSON object of at most MAX_PROPERTIES keys, each an id of at
 * most 64 characters, holding JSON values only, at most MAX_PROPERTIES_LENGTH characters as
 * JSON. Null for none; FieldError otherwise.
 */
export function checkProperties(value: unknown): Record<string, unknown> | null {
  if (value === undefined || value === null) return null;
  if (!isPlainObject(value)) throw new FieldError("properties must be a JSON object", "properties");
  const names = Object.keys(value);
  if (names.length > MAX_PROPERTIES) {
    throw new FieldError(`properties has ${names.length} keys; at most ${MAX_PROPERTIES}`, "properties");
  }
  for (const name of names) checkId(name, "a property name");
  checkJsonValue(value, 0);
  if (characters(JSON.stringify(value)) > MAX_PROPERTIES_LENGTH) {
    throw new FieldError(
      `properties are longer than ${MAX_PROPERTIES_LENGTH} characters as JSON`,
      "properties",
    );
  }
  return value;
}
