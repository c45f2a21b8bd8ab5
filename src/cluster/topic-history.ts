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

  /** `topic`'s messages, oldest first (a copy; empty when none). */
  get(topic: string): readonly BusMessage[] {
    return [...(this.#topics.get(topic) ?? [])];
  }
}
