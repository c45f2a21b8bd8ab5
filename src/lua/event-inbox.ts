/**
 * The events of one Lua handle (a socket, a pending listen or connect), queued in the host
 * until a Lua task takes them one at a time. Keeping the queue in JavaScript means a message
 * enters Lua only when the script reads it, as the result of that read: no Lua-side queue to
 * fill and drain, and the host knows at once how far the script has read (flow control).
 */
export class EventInbox {
  private kinds: number[] = [];
  private datas: Array<Buffer | string | null> = [];
  private extras: Array<number | null> = [];
  private head = 0;
  /** A Lua task found the inbox empty and waits to be woken by the next event. */
  waiting = false;

  /** Queues an event. Returns true when a waiting task must be woken. */
  push(kind: number, data: Buffer | string | null, extra: number | null): boolean {
    this.kinds.push(kind);
    this.datas.push(data);
    this.extras.push(extra);
    if (!this.waiting) return false;
    this.waiting = false;
    return true;
  }

  get size(): number {
    return this.kinds.length - this.head;
  }

  /**
   * Takes the oldest event: its kind, with `data` and `extra` left in {@link taken}; or
   * undefined when the inbox is empty.
   */
  shift(): number | undefined {
    const head = this.head;
    if (head >= this.kinds.length) return undefined;
    const kind = this.kinds[head]!;
    this.takenData = this.datas[head]!;
    this.takenExtra = this.extras[head]!;
    this.datas[head] = null;
    if (head + 1 === this.kinds.length) {
      // Drained: start over, so the arrays do not grow for ever.
      this.kinds.length = 0;
      this.datas.length = 0;
      this.extras.length = 0;
      this.head = 0;
    } else if (head >= 1024 && head * 2 >= this.kinds.length) {
      // A reader that never catches up: drop the taken half now and then.
      this.kinds.splice(0, head + 1);
      this.datas.splice(0, head + 1);
      this.extras.splice(0, head + 1);
      this.head = 0;
    } else {
      this.head = head + 1;
    }
    return kind;
  }

  /** Data and extra of the event {@link shift} returned last. */
  takenData: Buffer | string | null = null;
  takenExtra: number | null = null;
}
