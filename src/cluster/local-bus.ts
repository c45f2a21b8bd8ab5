/**
 * The bus of a server that is one process: there is no other node, so nothing is sent anywhere.
 * It keeps the books (ids, presence, topic history) in memory, synchronously, at the cost of a
 * method call.
 *
 * @module
 */

import { type Bus, BusError, type BusMessage, type BusNode } from "../server/bus.js";
import { ClientIds } from "../server/client-ids.js";
import { TopicHistory } from "../server/topic-history.js";

/** Options of {@link LocalBus}. */
export interface LocalBusOptions {
  /** Messages kept per topic for {@link LocalBus.history}. Default 0 (history off). */
  readonly historyLength?: number;
  /** This node's name. Default `"local"`. */
  readonly nodeId?: string;
}

/** The in-process {@link Bus}: ids, presence and history in memory; sending to others is a no-op. */
export class LocalBus implements Bus {
  readonly nodeId: string;
  readonly up = true;
  readonly #ids = new ClientIds();
  readonly #held = new Set<number>();
  /** clients() sorted, until the next change (scripts may call it on every message). */
  #sorted: readonly number[] | undefined;
  readonly #history: TopicHistory;
  readonly #startedAt = Date.now();
  #stopped = false;

  constructor(options: LocalBusOptions = {}) {
    this.nodeId = options.nodeId ?? "local";
    this.#history = new TopicHistory(options.historyLength ?? 0);
  }

  /** Nothing to join; resolves at once. */
  async start(): Promise<void> {}

  /** Forgets every id. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const id of this.#held) this.#ids.release(id);
    this.#held.clear();
    this.#sorted = undefined;
  }

  /**
   * The lowest free id, synchronously.
   * @throws {BusError} `"stopped"` after {@link LocalBus.stop}.
   */
  acquireId(): number {
    if (this.#stopped) throw new BusError("stopped", "the bus is stopped");
    const id = this.#ids.acquire();
    this.#held.add(id);
    this.#sorted = undefined;
    return id;
  }

  /** Frees `id`; an id not held is ignored (a double release must not corrupt the pool). */
  releaseId(id: number): void {
    if (!this.#held.delete(id)) return;
    this.#ids.release(id);
    this.#sorted = undefined;
  }

  clients(): readonly number[] {
    this.#sorted ??= [...this.#held].sort((a, b) => a - b);
    return this.#sorted;
  }

  /** There is no other node: always false. */
  sendTo(_id: number, _message: BusMessage): boolean {
    return false;
  }

  /** There is no other node: nothing to do. */
  broadcast(_message: BusMessage): void {}

  /** Records the message in the topic's history; there is no other node to send it to. */
  publish(topic: string, message: BusMessage): void {
    this.#history.append(topic, message);
  }

  subscribe(_topic: string): void {}

  unsubscribe(_topic: string): void {}

  /** The topic's recent messages; the promise is already settled. See {@link LocalBus.historyNow}. */
  async history(topic: string): Promise<readonly BusMessage[]> {
    return this.historyNow(topic);
  }

  /** The topic's recent messages, oldest first, synchronously (a copy). */
  historyNow(topic: string): readonly BusMessage[] {
    return this.#history.get(topic);
  }

  async nodes(): Promise<readonly BusNode[]> {
    return [{ id: this.nodeId, startedAt: this.#startedAt, clients: this.#held.size }];
  }
}
