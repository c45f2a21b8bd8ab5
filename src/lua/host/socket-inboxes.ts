import type { LuaInput } from "../vm/engine.js";
import { DeadlineHeap } from "./deadline-heap.js";
import { EventInbox } from "./event-inbox.js";

/** Kinds a woken reader may get besides the frame opcodes and the styles' own results. */
export const InboxEvent = {
  /** The connection is gone; `extra` is the close code. Read again, it stays. */
  Closed: -1,
  /** The read's deadline passed (only ever a resume value, never queued). */
  Timeout: -2,
} as const;

/**
 * Flow control: past this many unread data events, or bytes, of one handle the peer is paused
 * (TCP then slows it down) until the script has read down to half. Without it a client could
 * fill the Lua heap, or the host's memory, by sending to a handler that never reads.
 */
const HIGH_WATER_EVENTS = 1024;
const HIGH_WATER_BYTES = 8 * 1024 * 1024;

/** Readers woken in one entry into Lua at most (their events go on Lua's stack). */
const MAX_WAKES_PER_ENTRY = 64;

/** What the inboxes need from their owner (the scheduler bridge). */
export interface SocketInboxesOptions {
  /**
   * Enters Lua once with woken readers as flat arguments `h1, kind1, data1, extra1, h2, …`;
   * each reader resumes with its event as the result of its read.
   */
  wake: (args: LuaInput[]) => void;
  /** Told to stop reading a handle's peer (false) when the script is behind, and to go on (true). */
  onFlow?: ((handle: number, reading: boolean) => void) | undefined;
}

/**
 * The one inbox design of the coroutine styles (silly and OpenResty): every handle's events
 * wait here, in the host, until a Lua task reads them. A read that finds its inbox empty parks
 * the task (with an optional deadline). An event for a parked reader schedules a wake, and
 * every wake of one event-loop turn — whatever socket's data the poll phase read — enters Lua
 * together, once, after the turn (`setImmediate`): the event itself is handed to the reader as
 * its resume values, so a message costs no extra host call, table or yield. Deadlines live in
 * one min-heap behind one Node timer, and flow control is counted here for every style.
 */
export class SocketInboxes {
  private readonly inboxes = new Map<number, EventInbox>();
  private readonly deadlines = new DeadlineHeap<EventInbox>();
  private readonly options: SocketInboxesOptions;
  /** Parked readers with an event (or a timeout) waiting for the next flush. */
  private woken: EventInbox[] = [];
  private flushScheduled = false;
  private timer: NodeJS.Timeout | null = null;
  /** When the armed timer fires (ms, performance.now()). */
  private timerAt = Number.POSITIVE_INFINITY;
  private disposed = false;

  constructor(options: SocketInboxesOptions) {
    this.options = options;
  }

  /** Gives handle `handle` an inbox; events for a handle without one are dropped. */
  open(handle: number): void {
    if (!this.inboxes.has(handle)) this.inboxes.set(handle, new EventInbox(handle));
  }

  /** Parked reads with a deadline. */
  get deadlineCount(): number {
    return this.deadlines.size;
  }

  has(handle: number): boolean {
    return this.inboxes.has(handle);
  }

  /** True once the handle's "connection gone" event was queued, or it has no inbox. */
  isClosed(handle: number): boolean {
    return this.inboxes.get(handle)?.closed ?? true;
  }

  /** Drops the handle's inbox; a reader still parked on it stays parked. */
  forget(handle: number): void {
    const inbox = this.inboxes.get(handle);
    if (inbox === undefined) return;
    this.deadlines.remove(inbox);
    this.inboxes.delete(handle);
  }

  /**
   * The script is done with the handle: a reader still parked on it wakes and reads
   * "connection gone"; then the inbox is dropped.
   */
  close(handle: number): void {
    const inbox = this.inboxes.get(handle);
    if (inbox === undefined) return;
    if (inbox.waiting) this.deliver(handle, InboxEvent.Closed, null, null);
    else this.forget(handle);
  }

  /** Queues an event for the handle, waking its parked reader after this event-loop turn. */
  deliver(
    handle: number,
    kind: number,
    data: Buffer | string | null,
    extra: number | boolean | null,
  ): void {
    const inbox = this.inboxes.get(handle);
    if (inbox === undefined || inbox.closed) return;
    inbox.push(kind, data, extra);
    if (kind === InboxEvent.Closed) inbox.closed = true;
    else if (
      !inbox.paused &&
      (inbox.unread >= HIGH_WATER_EVENTS || inbox.unreadBytes >= HIGH_WATER_BYTES) &&
      this.options.onFlow !== undefined
    ) {
      inbox.paused = true;
      this.options.onFlow(handle, false);
    }
    if (inbox.waiting) this.unpark(inbox);
  }

  /**
   * A Lua read: takes the oldest event and returns the inbox, the event in its `takenKind`,
   * `takenData` and `takenExtra`; or, when there is none, parks the reader (woken by the next
   * event or, with `timeoutMs` > 0, by its deadline) and returns undefined. Undefined as well
   * for a handle without inbox: the caller checks {@link has} first (it reads "gone").
   */
  take(handle: number, timeoutMs: number): EventInbox | undefined {
    const inbox = this.inboxes.get(handle);
    if (inbox === undefined) return undefined;
    if (inbox.shift() !== undefined) {
      this.afterTake(inbox);
      return inbox;
    }
    if (!inbox.waiting) {
      inbox.waiting = true;
      if (timeoutMs > 0 && timeoutMs !== Number.POSITIVE_INFINITY) {
        inbox.deadline = performance.now() + timeoutMs;
        this.deadlines.insert(inbox);
        if (inbox.deadline < this.timerAt) this.armTimer(inbox.deadline);
      }
    }
    return undefined;
  }

  /** Puts back an event Lua could not hand to a reader (it was no longer parked). */
  putBack(
    handle: number,
    kind: number,
    data: Buffer | string | null,
    extra: number | boolean | null,
  ): void {
    if (kind === InboxEvent.Timeout) return;
    const inbox = this.inboxes.get(handle);
    if (inbox === undefined) return;
    inbox.unshift(kind, data, extra);
  }

  /** The script caught up, or must read again whatever it has unread (closing): unpause the peer. */
  resumeFlow(handle: number, force = false): void {
    const inbox = this.inboxes.get(handle);
    if (inbox === undefined || !inbox.paused) return;
    if (
      !force &&
      (inbox.unread > HIGH_WATER_EVENTS / 2 || inbox.unreadBytes > HIGH_WATER_BYTES / 2)
    )
      return;
    inbox.paused = false;
    this.options.onFlow?.(handle, true);
  }

  /** Stops the deadline timer and every pending wake. */
  dispose(): void {
    this.disposed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.woken = [];
  }

  private afterTake(inbox: EventInbox): void {
    if (inbox.takenKind === InboxEvent.Closed) this.inboxes.delete(inbox.handle);
    else if (inbox.paused) this.resumeFlow(inbox.handle);
  }

  /** The parked reader of `inbox` is to be woken in the next flush. */
  private unpark(inbox: EventInbox): void {
    inbox.waiting = false;
    this.deadlines.remove(inbox);
    this.woken.push(inbox);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flush);
    }
  }

  /** One entry into Lua (a few, past {@link MAX_WAKES_PER_ENTRY}) for every reader woken this turn. */
  private readonly flush = (): void => {
    this.flushScheduled = false;
    const woken = this.woken;
    this.woken = [];
    if (this.disposed) return;
    let args: LuaInput[] = [];
    for (const inbox of woken) {
      if (inbox.timedOut) {
        inbox.timedOut = false;
        args.push(inbox.handle, InboxEvent.Timeout, "", null);
      } else {
        const kind = inbox.shift();
        if (kind === undefined) continue;
        args.push(inbox.handle, kind, inbox.takenData ?? "", inbox.takenExtra);
        this.afterTake(inbox);
      }
      if (args.length >= MAX_WAKES_PER_ENTRY * 4) {
        this.options.wake(args);
        args = [];
      }
    }
    if (args.length > 0) this.options.wake(args);
  };

  private armTimer(at: number): void {
    if (this.disposed) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(this.expire, Math.max(0, Math.ceil(at - performance.now())));
  }

  /** The earliest deadline passed: wake every reader whose deadline did. */
  private readonly expire = (): void => {
    this.timer = null;
    this.timerAt = Number.POSITIVE_INFINITY;
    const now = performance.now();
    for (let inbox = this.deadlines.popDue(now); inbox; inbox = this.deadlines.popDue(now)) {
      inbox.timedOut = true;
      this.unpark(inbox);
    }
    const next = this.deadlines.peek();
    if (next !== undefined) this.armTimer(next.deadline);
  };
}
