/**
 * The last N messages of each topic, in memory (`--history N` without Redis).
 *
 * @module
 */

import type { BusMessage } from "./bus.js";

/** Keeps at most `length` messages per topic, dropping the oldest. */
export class TopicHistory {
  readonly #length: number;
  readonly #topics = new Map<string, BusMessage[]>();

  /**
   * @param length Messages kept per topic; 0 keeps nothing.
   * @throws {RangeError} if `length` is not a non-negative integer.
   */
  constructor(length: number) {
    if (!Number.isInteger(length) || length < 0) {
      throw new RangeError(`history length must be a non-negative integer, got ${length}`);
    }
    this.#length = length;
  }

  /** Appends `message` to `topic`'s history, dropping the oldest past the length. */
  append(topic: string, message: BusMessage): void {
    if (this.#length === 0) return;
    let messages = this.#topics.get(topic);
    if (messages === undefined) this.#topics.set(topic, (messages = []));
    messages.push(message);
    // One shift per append keeps the array at `length`; topics are short (tens to hundreds).
    if (messages.length > this.#length) messages.shift();
  }

  /**
   * Puts `earlier` (a topic's history loaded from the cluster) before what was appended since.
   * The load and the live publications overlap by a few messages at most (those published while
   * it was read): the longest run of messages at the end of `earlier` that starts the current
   * list, byte for byte, is kept once.
   */
  prepend(topic: string, earlier: readonly BusMessage[]): void {
    if (this.#length === 0 || earlier.length === 0) return;
    const since = this.#topics.get(topic) ?? [];
    let overlap = Math.min(earlier.length, since.length);
    while (overlap > 0 && !startsWithTail(since, earlier, overlap)) overlap--;
    const merged = [...earlier, ...since.slice(overlap)];
    this.#topics.set(topic, merged.slice(-this.#length));
  }

  /** `topic`'s messages, oldest first (a copy; empty when none). */
  get(topic: string): readonly BusMessage[] {
    return [...(this.#topics.get(topic) ?? [])];
  }
}

/** True when the first `count` of `since` are the last `count` of `earlier`. */
function startsWithTail(
  since: readonly BusMessage[],
  earlier: readonly BusMessage[],
  count: number,
): boolean {
  for (let i = 0; i < count; i++) {
    if (!sameMessage(since[i]!, earlier[earlier.length - count + i]!)) return false;
  }
  return true;
}

function sameMessage(a: BusMessage, b: BusMessage): boolean {
  return a.binary === b.binary && Buffer.from(a.data).equals(Buffer.from(b.data));
}
