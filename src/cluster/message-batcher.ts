/**
 * Sends the bus messages of one turn of the event loop as one IPC message. A client that
 * pipelines 16 messages, each broadcast to the whole server, then costs one IPC message to the
 * primary and one to each other worker instead of 16 each, and each worker delivers the 16
 * together, so they leave in one socket write per receiver, as in a single process.
 *
 * @module
 */

/** A message of the workers' IPC protocol (worker-messages.ts). */
interface Message {
  readonly ms: string;
}

/** Queues messages and sends them at the end of the current turn, in order. */
export class MessageBatcher<M extends Message> {
  #queue: M[] = [];
  readonly #sendOne: (message: M | { readonly ms: "batch"; readonly items: readonly M[] }) => void;

  /** @param sendOne sends one message, or a batch of them, over the channel. */
  constructor(
    sendOne: (message: M | { readonly ms: "batch"; readonly items: readonly M[] }) => void,
  ) {
    this.#sendOne = sendOne;
  }

  /** Queues `message`; it leaves with the others of this turn (a microtask later). */
  send(message: M): void {
    if (this.#queue.push(message) === 1) queueMicrotask(this.flush);
  }

  /** Sends what is queued now (before the process may end). */
  readonly flush = (): void => {
    const queue = this.#queue;
    if (queue.length === 0) return;
    this.#queue = [];
    this.#sendOne(queue.length === 1 ? queue[0]! : { ms: "batch", items: queue });
  };
}
