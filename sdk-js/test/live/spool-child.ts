/**
 * A product process for the kill test. `track`: tracks N tokens to the spool and says `tracked`
 * once every track() has returned, then keeps sending until it is killed. `drain`: a new tracker
 * on the same spool sends what was left and prints its stats.
 */

import { UsageTracker } from "../../src/index.js";

const [mode, spoolDir, orgId, count] = process.argv.slice(2) as [string, string, string, string];
const url = process.env.BILLING_KERNEL_URL ?? "";
const key = process.env.BILLING_KERNEL_KEY ?? "";

if (mode === "track") {
  const tracker = new UsageTracker(url, key, { spoolDir, maxBatch: 40, maxDelayMs: 2 });
  for (let n = 0; n < Number(count); n += 1) tracker.track(orgId, "tokens", 1, { properties: { n } });
  process.stdout.write(`tracked ${JSON.stringify(tracker.stats())}\n`);
  setInterval(() => {}, 1000); // alive, sending, until killed
} else {
  const tracker = new UsageTracker(url, key, { spoolDir });
  const resumed = tracker.stats().pending;
  const flushed = await tracker.flush(60_000);
  const stats = tracker.stats();
  await tracker.close();
  process.stdout.write(`${JSON.stringify({ flushed, resumed, ...stats })}\n`);
}
