/**
 * The primary process's side of the workers' bus (worker-bus.ts): what Redis is to RedisBus. It
 * allocates the client ids of the whole server (lowest free), records which worker holds each,
 * which workers have subscribers of each topic, keeps the topics' history, and relays messages.
 * It runs on the primary's event loop, one message at a time, so every allocation is atomic.
 *
 * @module
 */

import type { BusMessage } from "../server/bus.js";
import { ClientIds } from "../server/client-ids.js";
import { TopicHistory } from "../server/topic-history.js";
import { MessageBatcher } from "./message-batcher.js";
import type { PrimaryToWorker, WorkerToPrimary } from "./worker-messages.js";

/** The primary's end of one worker's IPC channel. */
export interface WorkerPort {
  /** The worker number, 1..N. */
  readonly worker: number;
  /** Sends to the worker (dropped if it is gone). */
  send(message: PrimaryToWorker): void;
}

interface Member {
  readonly port: WorkerPort;
  readonly ids: Set<number>;
  readonly topics: Set<string>;
  readonly startedAt: number;
  /** Said hello: receives presence and broadcasts. */
  ready: boolean;
}

/** Options of {@link WorkerBusBroker}. */
export interface WorkerBusBrokerOptions {
  /** Messages kept per topic for `history()`. Default 0 (off). */
  readonly historyLength?: number;
}

/** Serves the {@link WorkerBus} of every worker of the machine. */
export class WorkerBusBroker {
  readonly #ids = new ClientIds();
  readonly #members = new Map<WorkerPort, Member>();
  readonly #holders = new Map<number, Member>();
  readonly #subscribers = new Map<string, Set<Member>>();
  readonly #history: TopicHistory;
  readonly #historyOn: boolean;
  /** Topics published on at least once, whose history there is. */
  readonly #historyTopics = new Set<string>();

  constructor(options: WorkerBusBrokerOptions = {}) {
    this.#history = new TopicHistory(options.historyLength ?? 0);
    this.#historyOn = (options.historyLength ?? 0) > 0;
  }

  /** Starts serving a worker (call when it is forked). */
  attach(port: WorkerPort): void {
    // What the primary says to a worker leaves once per turn of its event loop, in order.
    const outbox = new MessageBatcher<PrimaryToWorker>((message) => port.send(message));
    this.#members.set(port, {
      port: { worker: port.worker, send: (message) => outbox.send(message) },
      ids: new Set(),
      topics: new Set(),
      startedAt: Date.now(),
      ready: false,
    });
  }

  /**
   * Forgets a worker that exited: its ids are free at once (the others are told) and its
   * subscriptions end.
   */
  detach(port: WorkerPort): void {
    const member = this.#members.get(port);
    if (member === undefined) return;
    this.#members.delete(port);
    for (const topic of member.topics) this.#unsubscribe(member, topic);
    if (member.ids.size === 0) return;
    const ids = [...member.ids];
    for (const id of ids) this.#free(id);
    this.#toOthers(member, { ms: "leave", ids });
  }

  /** The number of clients of the whole server. */
  get clientCount(): number {
    return this.#holders.size;
  }

  /** Handles one message of the bus from `port`'s worker; false if it is not a bus message. */
  handle(port: WorkerPort, message: WorkerToPrimary): boolean {
    const member = this.#members.get(port);
    if (member === undefined) return false;
    switch (message.ms) {
      case "batch":
        for (const item of message.items) this.handle(port, item);
        return true;
      case "hello":
        member.ready = true;
        member.port.send({ ms: "welcome", clients: [...this.#holders.keys()] });
        return true;
      case "acquire": {
        const id = this.#ids.acquire();
        member.ids.add(id);
        this.#holders.set(id, member);
        member.port.send({ ms: "acquired", seq: message.seq, id });
        this.#toOthers(member, { ms: "join", id });
        return true;
      }
      case "release":
        if (this.#holders.get(message.id) !== member) return true; // not its own: ignore
        this.#free(message.id);
        this.#toOthers(member, { ms: "leave", ids: [message.id] });
        return true;
      case "to": {
        const holder = this.#holders.get(message.id);
        if (holder !== undefined && holder !== member) holder.port.send(message);
        return true;
      }
      case "all":
        this.#toOthers(member, message);
        return true;
      case "pub":
        if (this.#historyOn) {
          // Every worker keeps a copy of every topic's history (Bus.histories), so every
          // worker gets every publication, subscribed or not.
          this.#history.append(message.topic, { data: message.data, binary: message.binary });
          this.#historyTopics.add(message.topic);
          this.#toOthers(member, message);
          return true;
        }
        for (const subscriber of this.#subscribers.get(message.topic) ?? []) {
          if (subscriber !== member) subscriber.port.send(message);
        }
        return true;
      case "sub": {
        member.topics.add(message.topic);
        let subscribers = this.#subscribers.get(message.topic);
        if (subscribers === undefined)
          this.#subscribers.set(message.topic, (subscribers = new Set()));
        subscribers.add(member);
        return true;
      }
      case "unsub":
        this.#unsubscribe(member, message.topic);
        return true;
      case "history":
        member.port.send({
          ms: "history-reply",
          seq: message.seq,
          messages: this.#history.get(message.topic).map(toPayload),
        });
        return true;
      case "histories":
        member.port.send({
          ms: "histories-reply",
          seq: message.seq,
          topics: [...this.#historyTopics].map(
            (topic) => [topic, this.#history.get(topic).map(toPayload)] as const,
          ),
        });
        return true;
      case "nodes":
        member.port.send({
          ms: "nodes-reply",
          seq: message.seq,
          nodes: [...this.#members.values()].map((m) => ({
            id: `worker-${m.port.worker}`,
            startedAt: m.startedAt,
            clients: m.ids.size,
          })),
        });
        return true;
      default:
        return false;
    }
  }

  #free(id: number): void {
    const holder = this.#holders.get(id);
    if (holder === undefined) return;
    this.#holders.delete(id);
    holder.ids.delete(id);
    this.#ids.release(id);
  }

  #unsubscribe(member: Member, topic: string): void {
    member.topics.delete(topic);
    const subscribers = this.#subscribers.get(topic);
    if (subscribers === undefined) return;
    subscribers.delete(member);
    if (subscribers.size === 0) this.#subscribers.delete(topic);
  }

  #toOthers(origin: Member, message: PrimaryToWorker): void {
    for (const member of this.#members.values()) {
      if (member !== origin && member.ready) member.port.send(message);
    }
  }
}

function toPayload(message: BusMessage): BusMessage {
  return { data: message.data, binary: message.binary };
}
