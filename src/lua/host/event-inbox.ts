/**
 * The events of one Lua handle (a socket, a pending listen or connect), queued in the host
 * until a Lua task takes them one at a time. Keeping the queue in JavaScript means a message
 * enters Lua only when the script reads it, as the result of that read: no Lua-side queue to
 * fill and drain, and the host knows at once how far the script has read (flow control).
 */
export class EventInbox {
  /**
   * Queued events as (kind, data, extra) triples from `head` on; null while empty, so an idle
   * connection (the common case) holds no array.
   */
  private queue: Array<number | Buffer | string | null> | null = null;
  private head = 0;
  /** A Lua task found the inbox empty and waits to be woken by the next event. */
  waiting = false;
  /** Data and extra of the event {@link shift} returned last. */
  takenData: Buffer | string | null = null;
  takenExtra: number | null = null;

  /** Queues an event. Returns true when a waiting task must be woken. */
  push(kind: number, data: Buffer | string | null, extra: number | null): boolean {
    if (this.queue === null) this.queue = [kind, data, extra];
    else this.queue.push(kind, data, extra);
    if (!this.waiting) return false;
    this.waiting = false;
    return true;
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
    this.takenData = queue[head + 1] as Buffer | string | null;
    this.takenExtra = queue[head + 2] as number | null;
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
    return kind;
  }
}
