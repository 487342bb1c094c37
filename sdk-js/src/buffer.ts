/**
 * Where tracked events wait for the sender: in memory, or in a spool on disk.
 *
 * Both keep events in order and let the one sender look at the oldest (`peek`) and remove them
 * once the kernel has answered for them (`ack`): an event leaves the buffer only after it was
 * counted (or refused) by the kernel, or set aside (`setAside`) because the kernel fails on it
 * alone while it takes the others.
 */

import * as fs from "node:fs";
import * as path from "node:path";

import { type Event, parseEvent, wire } from "./events.js";

/** An event set aside, as kept: its wire form, the kernel's answer, and when (Unix seconds). */
export type DeadLetter = Record<string, unknown> & { error: string; set_aside_at: number };

export interface EventBuffer {
  /** Keep `event`; false when there is no room (the caller counts it as dropped). */
  append(event: Event): boolean;
  /** The oldest `limit` events not yet acknowledged, oldest first, without removing them. */
  peek(limit: number): Event[];
  /** The oldest `count` events were settled by the kernel: forget them. */
  ack(count: number): void;
  pending(): number;
  /** Make what was appended durable (nothing to do in memory). */
  sync(): void;
  setAside(events: Event[], reason: string): void;
  deadLetters(): DeadLetter[];
  close(): void;
}

/** The spool directory is used by another live tracker. */
export class SpoolBusyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SpoolBusyError";
  }
}

export const DEAD_LETTER_FILE = "dead-letter.jsonl";
/** More than a spooled event's line can take (ids of 64 and keys of 255 characters, properties of 4,096). */
const MAX_LINE_BYTES = 20 * 1024;

function deadLetter(event: Event, reason: string): DeadLetter {
  return { ...wire(event), error: reason, set_aside_at: Date.now() / 1000 };
}

/** A bounded queue in memory: fast, but what it holds is lost if the process dies. */
export class MemoryBuffer implements EventBuffer {
  private events: Event[] = [];
  private head = 0;
  private dead: DeadLetter[] = [];

  constructor(private readonly maxEvents: number) {}

  append(event: Event): boolean {
    if (this.pending() >= this.maxEvents) return false;
    this.events.push(event);
    return true;
  }

  peek(limit: number): Event[] {
    return this.events.slice(this.head, this.head + limit);
  }

  ack(count: number): void {
    this.head += count;
    if (this.head > 1024 && this.head * 2 > this.events.length) {
      this.events = this.events.slice(this.head);
      this.head = 0;
    }
  }

  pending(): number {
    return this.events.length - this.head;
  }

  sync(): void {}

  setAside(events: Event[], reason: string): void {
    for (const event of events) this.dead.push(deadLetter(event, reason));
  }

  deadLetters(): DeadLetter[] {
    return [...this.dead];
  }

  close(): void {}
}

interface Segment {
  number: number;
  /** Bytes from the start that are settled. */
  acked: number;
  size: number;
}

interface Peeked {
  event: Event | null; // null: a corrupt line, passed over when acknowledged
  segment: number;
  /** The byte offset just past this event's line. */
  end: number;
}

function segmentName(number: number, suffix: "log" | "ack"): string {
  return `seg-${String(number).padStart(8, "0")}.${suffix}`;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * An append-only log of events in segment files, one JSON line per event (the Python SDK's
 * layout: `seg-00000001.log`, its `.ack` holding how many of its bytes are settled).
 *
 * `append` writes the line with one `write(2)` before `track()` returns, so a killed process
 * loses nothing; `sync` fsyncs (the sender calls it before each batch). A settled segment is
 * deleted. A new spool on the same directory resumes from the acknowledged offsets; events
 * whose acknowledgement was lost are sent again and counted once by their idempotency keys.
 * One live tracker per directory: `lock.pid` holds its process id (a lock left by a process
 * that is gone is taken over).
 */
export class Spool implements EventBuffer {
  private readonly dir: string;
  private readonly lockPath: string;
  private segments: Segment[] = [];
  private peeked: Peeked[] = [];
  private pendingCount = 0;
  private bytes = 0;
  private dirty = false;
  private writer: Segment;
  private writeFd = -1;

  constructor(
    directory: string,
    private readonly maxBytes: number,
    private readonly warn: (message: string) => void = () => {},
    private readonly segmentBytes = 4 * 1024 * 1024,
  ) {
    this.dir = path.resolve(directory);
    fs.mkdirSync(this.dir, { recursive: true });
    this.lockPath = path.join(this.dir, "lock.pid");
    this.lock();
    const logs = fs
      .readdirSync(this.dir)
      .filter((name) => /^seg-\d{8}\.log$/.test(name))
      .sort();
    for (const name of logs) {
      const number = Number(name.slice(4, 12));
      const segment: Segment = { number, acked: 0, size: fs.statSync(this.file(number, "log")).size };
      try {
        segment.acked = Number(fs.readFileSync(this.file(number, "ack"), "utf8")) || 0;
      } catch {
        segment.acked = 0;
      }
      this.segments.push(segment);
      this.pendingCount += this.countLines(segment);
      this.bytes += segment.size;
    }
    this.writer = this.openWriter();
  }

  private lock(): void {
    for (let attempt = 0; attempt < 2; attempt += 1) {
      try {
        fs.writeFileSync(this.lockPath, String(process.pid), { flag: "wx", mode: 0o600 });
        return;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      }
      const holder = Number(fs.readFileSync(this.lockPath, "utf8"));
      if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && alive(holder)) {
        throw new SpoolBusyError(`another tracker (process ${holder}) is using the spool ${this.dir}`);
      }
      if (holder === process.pid) {
        throw new SpoolBusyError(`another tracker in this process is using the spool ${this.dir}`);
      }
      fs.rmSync(this.lockPath, { force: true }); // its process is gone
    }
    throw new SpoolBusyError(`could not take the spool ${this.dir}`);
  }

  private file(number: number, suffix: "log" | "ack"): string {
    return path.join(this.dir, segmentName(number, suffix));
  }

  private openWriter(): Segment {
    const last = this.segments[this.segments.length - 1];
    const segment: Segment = { number: last ? last.number + 1 : 1, acked: 0, size: 0 };
    this.segments.push(segment);
    this.writeFd = fs.openSync(this.file(segment.number, "log"), "a", 0o600);
    return segment;
  }

  private countLines(segment: Segment): number {
    const data = fs.readFileSync(this.file(segment.number, "log"));
    let lines = 0;
    for (let index = data.indexOf(10, segment.acked); index !== -1; index = data.indexOf(10, index + 1)) {
      lines += 1;
    }
    return lines;
  }

  append(event: Event): boolean {
    const line = Buffer.from(`${JSON.stringify(event)}\n`);
    if (this.bytes + line.length > this.maxBytes) return false;
    if (this.writer.size && this.writer.size + line.length > this.segmentBytes) {
      fs.fsyncSync(this.writeFd);
      fs.closeSync(this.writeFd);
      this.writer = this.openWriter();
    }
    fs.writeSync(this.writeFd, line);
    this.writer.size += line.length;
    this.bytes += line.length;
    this.pendingCount += 1;
    this.dirty = true;
    return true;
  }

  peek(limit: number): Event[] {
    if (this.peeked.length < limit) this.readMore(limit - this.peeked.length);
    return this.peeked
      .slice(0, limit)
      .map((item) => item.event ?? SKIP);
  }

  private readMore(wanted: number): void {
    const last = this.peeked[this.peeked.length - 1];
    for (const segment of this.segments) {
      if (last && segment.number < last.segment) continue;
      let offset = last && segment.number === last.segment ? last.end : segment.acked;
      const room = Math.max(0, Math.min(wanted * MAX_LINE_BYTES, segment.size - offset));
      if (room === 0) continue;
      const data = Buffer.alloc(room);
      const fd = fs.openSync(this.file(segment.number, "log"), "r");
      let read: number;
      try {
        read = fs.readSync(fd, data, 0, room, offset);
      } finally {
        fs.closeSync(fd);
      }
      let start = 0;
      for (let newline = data.indexOf(10); newline !== -1 && newline < read; newline = data.indexOf(10, start)) {
        const raw = data.subarray(start, newline).toString("utf8");
        offset += newline + 1 - start;
        start = newline + 1;
        const event = parseEvent(raw);
        if (event === null) this.warn(`billing-kernel-sdk: spool ${this.dir}: skipping a corrupt line`);
        this.peeked.push({ event, segment: segment.number, end: offset });
        wanted -= 1;
        if (wanted === 0) return;
      }
    }
  }

  ack(count: number): void {
    const settled = this.peeked.slice(0, count);
    this.peeked = this.peeked.slice(count);
    if (settled.length === 0) return;
    const ends = new Map<number, number>();
    for (const item of settled) ends.set(item.segment, item.end);
    const highest = Math.max(...ends.keys());
    this.pendingCount -= settled.length;
    for (const segment of [...this.segments]) {
      const end = ends.get(segment.number);
      if (end !== undefined) segment.acked = end;
      else if (segment.number < highest) segment.acked = segment.size; // passed over entirely
      else continue;
      if (segment !== this.writer && segment.acked >= segment.size) {
        this.segments = this.segments.filter((kept) => kept !== segment);
        this.bytes -= segment.size;
        fs.rmSync(this.file(segment.number, "log"), { force: true });
        fs.rmSync(this.file(segment.number, "ack"), { force: true });
      } else {
        const ackPath = this.file(segment.number, "ack");
        fs.writeFileSync(`${ackPath}.tmp`, String(segment.acked));
        fs.renameSync(`${ackPath}.tmp`, ackPath);
      }
    }
  }

  pending(): number {
    return this.pendingCount;
  }

  sync(): void {
    if (this.dirty && this.writeFd >= 0) {
      this.dirty = false;
      fs.fsyncSync(this.writeFd);
    }
  }

  setAside(events: Event[], reason: string): void {
    const lines = events.map((event) => `${JSON.stringify(deadLetter(event, reason))}\n`).join("");
    const fd = fs.openSync(path.join(this.dir, DEAD_LETTER_FILE), "a", 0o600);
    try {
      fs.writeSync(fd, lines);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }

  deadLetters(): DeadLetter[] {
    let text: string;
    try {
      text = fs.readFileSync(path.join(this.dir, DEAD_LETTER_FILE), "utf8");
    } catch {
      return [];
    }
    return text
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => JSON.parse(line) as DeadLetter);
  }

  close(): void {
    if (this.writeFd < 0) return;
    fs.fsyncSync(this.writeFd);
    fs.closeSync(this.writeFd);
    this.writeFd = -1;
    if (this.writer.acked >= this.writer.size) {
      fs.rmSync(this.file(this.writer.number, "log"), { force: true });
      fs.rmSync(this.file(this.writer.number, "ack"), { force: true });
    }
    fs.rmSync(this.lockPath, { force: true });
  }
}

/** Stands in for a corrupt spool line, so that acknowledging moves past it; never sent. */
export const SKIP: Event = ["", "", 0, "", 0, null, false, false];
