/**
 * The bus between the workers of one machine (`--workers N`), over node:cluster's IPC channel.
 * The primary process plays the part Redis plays for RedisBus (see worker-bus-broker.ts): it hands
 * out the client ids, knows which worker holds which id and which workers have subscribers of a
 * topic, and relays what one worker sends to the others.
 *
 * - **Ids** are the lowest free across every worker: the primary allocates them, so acquiring one
 *   is a round trip (an upgrade waits for it, a fraction of a millisecond).
 * - **Presence.** The primary tells every worker when an id is taken or freed; each worker keeps
 *   the list of the server's clients, so `clients()` stays synchronous.
 * - **Delivery.** A message for a client of another worker crosses IPC twice (worker → primary →
 *   worker); a broadcast or a publication crosses once to the primary and once to each other
 *   worker concerned, where the hub frames it once for all its clients.
 * - **A dead worker's ids** are freed by the primary at once, and the others are told.
 *
 * @module
 */

import {
  type Bus,
  BusError,
  type BusMessage,
  type BusNode,
  type BusReceiver,
} from "../server/bus.js";
import { MessageBatcher } from "./message-batcher.js";
import type { PrimaryChannel, PrimaryToWorker, WorkerToPrimary } from "./worker-messages.js";

interface Pending<T> {
  resolve(value: T): void;
  reject(error: Error): void;
}

/** The {@link Bus} of one worker process of `--workers N`. */
export class WorkerBus implements Bus {
  readonly nodeId: string;
  readonly #channel: PrimaryChannel;
  #receiver: BusReceiver | null = null;
  #up = false;
  #stopped = false;
  /** Every client id of the server (all workers), as the primary last told. */
  readonly #clients = new Set<number>();
  /** clients() sorted, until the next change (scripts may call it on every message). */
  #sorted: readonly number[] | undefined;
  /** The ids this worker holds. */
  readonly #held = new Set<number>();
  /** Topics the primary knows this worker subscribes to (subscribe() is idempotent). */
  readonly #topics = new Set<string>();
  readonly #pending = new Map<number, Pending<unknown>>();
  #seq = 0;
  #welcomed: (() => void) | null = null;
  /** What this worker says to the primary, one IPC message per turn of the event loop. */
  readonly #outbox: MessageBatcher<WorkerToPrimary>;

  /**
   * @param worker This worker's number, 1..N (the node id is `worker-N`).
   * @param channel The IPC channel to the primary.
   */
  constructor(worker: number, channel: PrimaryChannel) {
    this.nodeId = `worker-${worker}`;
    this.#channel = channel;
    this.#outbox = new MessageBatcher((message) => channel.send(message));
  }

  get up(): boolean {
    return this.#up;
  }

  /** Says hello to the primary and resolves once it sent the server's client list. */
  start(receiver: BusReceiver): Promise<void> {
    this.#receiver = receiver;
    this.#channel.onMessage((message) => this.#onMessage(message));
    this.#channel.onDisconnect(() => this.#lost());
    const welcomed = new Promise<void>((resolve) => (this.#welcomed = resolve));
    this.#outbox.send({ ms: "hello" });
    return welcomed;
  }

  /** Gives back every id this worker holds; later calls do nothing. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const id of this.#held) this.#outbox.send({ ms: "release", id });
    this.#outbox.flush(); // before the process may end
    this.#held.clear();
    this.#lost();
  }

  /**
   * Asks the primary for the lowest id free on the whole server.
   * @throws {BusError} (rejects) `"down"` once the primary is gone, `"stopped"` after stop().
   */
  acquireId(): Promise<number> {
    if (this.#stopped) return Promise.reject(new BusError("stopped", "the bus is stopped"));
    return this.#request<number>((seq) => ({ ms: "acquire", seq }));
  }

  releaseId(id: number): void {
    if (!this.#held.delete(id)) return;
    this.#forget(id);
    this.#outbox.send({ ms: "release", id });
  }

  clients(): readonly number[] {
    this.#sorted ??= [...this.#clients].sort((a, b) => a - b);
    return this.#sorted;
  }

  /** Relays to the worker that holds `id`; false when no other worker does. */
  sendTo(id: number, message: BusMessage): boolean {
    if (!this.#up || this.#held.has(id) || !this.#clients.has(id)) return false;
    this.#outbox.send({ ms: "to", id, data: message.data, binary: message.binary });
    return true;
  }

  broadcast(message: BusMessage): void {
    if (this.#up) this.#outbox.send({ ms: "all", data: message.data, binary: message.binary });
  }

  publish(topic: string, message: BusMessage): void {
    if (this.#up) {
      this.#outbox.send({ ms: "pub", topic, data: message.data, binary: message.binary });
    }
  }

  subscribe(topic: string): void {
    if (this.#topics.has(topic)) return;
    this.#topics.add(topic);
    this.#outbox.send({ ms: "sub", topic });
  }

  unsubscribe(topic: string): void {
    if (this.#topics.delete(topic)) this.#outbox.send({ ms: "unsub", topic });
  }

  /** The topic's history, kept by the primary for the whole server. */
  history(topic: string): Promise<readonly BusMessage[]> {
    return this.#request<readonly BusMessage[]>((seq) => ({ ms: "history", seq, topic }));
  }

  /**
   * Every topic's history, kept by the primary; while history is on, the primary sends this
   * worker every publication, subscribed or not, so the hub's copy stays whole.
   */
  async histories(): Promise<ReadonlyMap<string, readonly BusMessage[]>> {
    const topics = await this.#request<readonly (readonly [string, readonly BusMessage[]])[]>(
      (seq) => ({ ms: "histories", seq }),
    );
    return new Map(topics);
  }

  /** The workers, as nodes (`worker-1`…). */
  nodes(): Promise<readonly BusNode[]> {
    return this.#request<readonly BusNode[]>((seq) => ({ ms: "nodes", seq }));
  }

  #request<T>(build: (seq: number) => Parameters<PrimaryChannel["send"]>[0]): Promise<T> {
    if (!this.#up) return Promise.reject(new BusError("down", "the primary process is gone"));
    const seq = ++this.#seq;
    const reply = new Promise<T>((resolve, reject) => {
      this.#pending.set(seq, { resolve: resolve as (value: unknown) => void, reject });
    });
    this.#outbox.send(build(seq));
    return reply;
  }

  #settle(seq: number, value: unknown): void {
    const pending = this.#pending.get(seq);
    this.#pending.delete(seq);
    pending?.resolve(value);
  }

  #onMessage(message: PrimaryToWorker): void {
    const receiver = this.#receiver;
    if (receiver === null) return;
    switch (message.ms) {
      case "batch":
        for (const item of message.items) this.#onMessage(item);
        return;
      case "welcome":
        for (const id of message.clients) this.#clients.add(id);
        this.#sorted = undefined;
        this.#up = !this.#stopped;
        this.#welcomed?.();
        this.#welcomed = null;
        return;
      case "acquired":
        this.#held.add(message.id);
        this.#clients.add(message.id);
        this.#sorted = undefined;
        this.#settle(message.seq, message.id);
        return;
      case "join":
        this.#clients.add(message.id);
        this.#sorted = undefined;
        return;
      case "leave":
        for (const id of message.ids) this.#forget(id);
        return;
      case "to":
        receiver.deliverTo(message.id, message);
        return;
      case "all":
        receiver.deliverAll(message);
        return;
      case "pub":
        receiver.deliverTopic(message.topic, message);
        return;
      case "history-reply":
        this.#settle(message.seq, message.messages);
        return;
      case "nodes-reply":
        this.#settle(message.seq, message.nodes);
        return;
      case "histories-reply":
        this.#settle(message.seq, message.topics);
        return;
      default:
        return; // the supervisor's messages (worker-process.ts)
    }
  }

  #forget(id: number): void {
    if (this.#clients.delete(id)) this.#sorted = undefined;
  }

  /** The primary is gone (or this bus stopped): nothing crosses any more. */
  #lost(): void {
    this.#up = false;
    this.#welcomed?.();
    this.#welcomed = null;
    for (const pending of this.#pending.values()) {
      pending.reject(new BusError("down", "the primary process is gone"));
    }
    this.#pending.clear();
  }
}
