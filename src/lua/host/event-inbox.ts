import type { Deadlined } from "./deadline-heap.js";

/**
 * The events of one Lua handle (a socket, a pending listen or connect), queued in the host
 * until a Lua task takes them one at a time. Keeping the queue in JavaScript means a message
 * enters Lua only when the script reads it, as the result of that read: no Lua-side queue to
 * fill and drain, and the host knows at once how far the script has read (flow control).
 * {@link SocketInboxes} keeps one per handle.
 */
export class EventInbox implements Deadlined {
  /**
   * Queued events as (kind, data, extra) triples from `head` on; null while empty, so an idle
   * connection (the common case) holds no array.
   */
  private queue: Array<number | Buffer | string | boolean | null> | null = null;
  private head = 0;
  /** A Lua task found the inbox empty and is parked until the next event (or its deadline). */
  waiting = false;
  /** The parked reader's deadline (ms, the inboxes' clock) and its place in the deadline heap. */
  deadline = 0;
  heapIndex = -1;
  /** The parked reader's deadline passed: it is woken with a timeout. */
  timedOut = false;
  /** The "connection gone" event was queued (it may not be read yet). */
  closed = false;
  /** Data events not read yet, their bytes, and whether the peer is paused for them. */
  unread = 0;
  unreadBytes = 0;
  paused = false;
  /** Kind, data and extra of the event {@link shift} took last. */
  takenKind = 0;
  takenData: Buffer | string | null = null;
  takenExtra: number | boolean | null = null;

  constructor(readonly handle: number) {}

  /** Queues an event at the end. */
  push(kind: number, data: Buffer | string | null, extra: number | boolean | null): void {
    if (this.queue === null) this.queue = [kind, data, extra];
    else this.queue.push(kind, data, extra);
    if (Buffer.isBuffer(data) && kind >= 0) {
      this.unread++;
      this.unreadBytes += data.length;
    }
  }

  /** Puts an event taken too early back in front (a wake that found no reader). */
  unshift(kind: number, data: Buffer | string | null, extra: number | boolean | null): void {
    const rest = this.queue === null ? [] : this.queue.slice(this.head);
    this.queue = [kind, data, extra, ...rest];
    this.head = 0;
    if (Buffer.isBuffer(data) && kind >= 0) {
      this.unread++;
      this.unreadBytes += data.length;
    }
  }

  /** Events queued. */
  get size(): number {
    return this.queue === null ? 0 : (this.queue.length - this.head) / 3;
  }

  /**
   * Takes the oldest event: its kind, with `data` and `extra` left in {@link takenData} and
   * {@link takenExtra}; or undefined when the inbox is empty.
   */
  shift(): number | undefined {
    const queue = this.queue;
    if (queue === null) return undefined;
    const head = this.head;
    const kind = queue[head] as number;
    const data = queue[head + 1] as Buffer | string | null;
    this.takenKind = kind;
    this.takenData = data;
    this.takenExtra = queue[head + 2] as number | boolean | null;
    queue[head + 1] = null;
    const next = head + 3;
    if (next === queue.length) {
      // Drained: drop the array.
      this.queue = null;
      this.head = 0;
    } else if (next >= 3072 && next * 2 >= queue.length) {
      // A reader that never catches up: drop the taken half now and then.
      queue.splice(0, next);
      this.head = 0;
    } else {
      this.head = next;
    }
    if (Buffer.isBuffer(data) && kind >= 0) {
      this.unread--;
      this.unreadBytes -= data.length;
    }
    return kind;
  }
}
