import type { Logger } from "../observability/logger.js";
import { CloseCode } from "../protocol/close-code.js";
import { encodeFrame } from "../protocol/frame.js";
import { Opcode } from "../protocol/opcode.js";
import type { Bus, BusMessage, BusReceiver } from "./bus.js";
import { ClientIds } from "./client-ids.js";
import { SendStatus, type ServerClient } from "./server-client.js";
import { TopicHistory } from "./topic-history.js";
import { TopicRegistry } from "./topics.js";

/** A script-level subscriber of a topic (`moonsocket.subscribe`): called once per publication. */
export type TopicListener = (message: BusMessage, topic: string) => void;

/** Options of {@link Hub}. */
export interface HubOptions {
  /** Where messages sent to clients are counted, once per receiver. Default: not counted. */
  readonly messagesSent?: { inc(n?: number): void };
  /**
   * The cluster under this hub (`ServerOptions.bus`). Default: none, and every delivery stays in
   * this process, exactly as a hub without scale-out.
   */
  readonly bus?: Bus;
  /** Messages kept per topic for {@link Hub.history}. Default 0 (history off). */
  readonly historyLength?: number;
  /** Where deliveries that failed are logged. */
  readonly logger?: Logger;
}

const NOT_COUNTED = { inc(): void {} };

/**
 * Every delivery between clients goes through here: send to an id, broadcast, topic publish and
 * subscribe (by clients and by scripts), topic history, and the list of connected clients with
 * their lowest-free integer ids. The server, its TypeScript API and the Lua styles reach other
 * clients only through the hub.
 *
 * Without a bus everything stays in this process. With one ({@link HubOptions.bus}) the hub
 * delivers to its own clients itself and hands the bus what other nodes must see: a message for
 * an id it does not hold, every broadcast and publication (once, framed once per receiving node),
 * and takes its ids and the cluster-wide client list from the bus. It is the bus's
 * {@link BusReceiver}: what comes from other nodes is framed once for the local receivers.
 */
export class Hub implements BusReceiver {
  /** The cluster under this hub, or null. */
  readonly bus: Bus | null;
  private readonly clients = new Map<number, ServerClient>();
  private readonly ids = new ClientIds();
  /** Local client ids ascending, until the next join or leave (scripts may ask on every message). */
  private sortedIds: readonly number[] | undefined;
  private readonly topics = new TopicRegistry<ServerClient>();
  private readonly listeners = new Map<string, Set<TopicListener>>();
  private readonly historyLength: number;
  private readonly recent: TopicHistory;
  private messagesSent: { inc(n?: number): void };
  private readonly logger: Logger | undefined;
  private starting: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;

  /** @throws {RangeError} if `historyLength` is not a non-negative integer. */
  constructor(options: HubOptions = {}) {
    this.bus = options.bus ?? null;
    this.historyLength = options.historyLength ?? 0;
    this.recent = new TopicHistory(this.historyLength);
    this.messagesSent = options.messagesSent ?? NOT_COUNTED;
    this.logger = options.logger;
  }

  /** Counts deliveries in `counter` from now on, unless the hub was given one. */
  countDeliveriesIn(counter: { inc(n?: number): void }): void {
    if (this.messagesSent === NOT_COUNTED) this.messagesSent = counter;
  }

  /**
   * Joins the cluster (when there is a bus) and loads the topics' history from it. Idempotent:
   * every server sharing this hub may call it.
   * @throws {BusError} `"unreachable"` when the cluster cannot be reached.
   */
  start(): Promise<void> {
    this.starting ??= this.joinCluster();
    return this.starting;
  }

  private async joinCluster(): Promise<void> {
    const bus = this.bus;
    if (bus === null) return;
    await bus.start(this);
    if (this.historyLength === 0 || bus.histories === undefined) return;
    const loaded = await bus.histories();
    for (const [topic, messages] of loaded) this.recent.prepend(topic, messages);
  }

  /** Leaves the cluster (when there is a bus). Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.bus?.stop() ?? Promise.resolve();
    return this.stopping;
  }

  /**
   * True when ids come from a bus: {@link takeId} may then return a promise, and the server takes
   * the id before it answers the upgrade.
   */
  get idsFromBus(): boolean {
    return this.bus !== null;
  }

  /**
   * The lowest client id free (across the cluster with a bus), taken until the client that gets
   * it leaves ({@link leave}) or it is given back ({@link releaseId}).
   * @throws {BusError} `"down"` (or rejects with it) while the cluster link is down.
   */
  takeId(): number | Promise<number> {
    if (this.bus === null) return this.ids.acquire();
    return this.bus.acquireId();
  }

  /** Gives back an id taken with {@link takeId} that no client got (the upgrade failed). */
  releaseId(id: number): void {
    if (this.bus === null) this.ids.release(id);
    else this.bus.releaseId(id);
  }

  /** Registers a connected client under its id. */
  join(client: ServerClient): void {
    this.clients.set(client.id, client);
    this.sortedIds = undefined;
  }

  /** Forgets a client that left: its id becomes free and its subscriptions end. */
  leave(client: ServerClient): void {
    if (this.clients.get(client.id) !== client) return;
    this.clients.delete(client.id);
    this.sortedIds = undefined;
    this.releaseId(client.id);
    if (this.bus === null) {
      this.topics.removeMember(client);
      return;
    }
    const topics = [...this.topics.topicsOf(client)];
    this.topics.removeMember(client);
    for (const topic of topics) this.unsubscribeBusIfUnused(topic);
  }

  /** Number of clients connected to this server (this node). */
  get clientCount(): number {
    return this.clients.size;
  }

  /** Number of topics with at least one local subscribing client. */
  get topicCount(): number {
    return this.topics.size;
  }

  /** The client with `id`, if connected to this node. */
  getClient(id: number): ServerClient | undefined {
    return this.clients.get(id);
  }

  /** Every client connected to this node. */
  allClients(): IterableIterator<ServerClient> {
    return this.clients.values();
  }

  /**
   * The ids of every connected client, ascending: of the whole cluster with a bus (its presence
   * copy, current to a network round trip), else of this server.
   */
  clientIds(): readonly number[] {
    if (this.bus !== null) return this.bus.clients();
    this.sortedIds ??= [...this.clients.keys()].sort((a, b) => a - b);
    return this.sortedIds;
  }

  /**
   * Sends a message to one client by id. A client of this node gets it at once (its send status);
   * an id held by another node is handed to the bus: `Success` when it was handed over (delivery
   * is asynchronous), `Dropped` when no node holds the id or the cluster link is down.
   */
  sendTo(id: number, data: string | Buffer, binary: boolean): SendStatus {
    const client = this.clients.get(id);
    if (client !== undefined) return client.send(data, binary);
    if (this.bus?.sendTo(id, { data, binary })) return SendStatus.Success;
    return SendStatus.Dropped;
  }

  /**
   * Sends one message to every connected client (optionally but one), framed once; with a bus,
   * also to every client of the other nodes (one bus message). Returns the number of receivers
   * on this node.
   */
  broadcast(data: string | Buffer, binary: boolean, except?: ServerClient): number {
    this.bus?.broadcast({ data, binary });
    return this.sendToMany(this.clients.values(), data, binary, except);
  }

  /**
   * Sends one message to every subscriber of `topic` (clients, framed once, and script-level
   * listeners), records it in the topic's history, and with a bus hands it to the other nodes.
   * Returns the number of receivers on this node (clients and listeners).
   */
  publish(topic: string, data: string | Buffer, binary: boolean, except?: ServerClient): number {
    if (this.historyLength > 0) this.recent.append(topic, { data, binary });
    this.bus?.publish(topic, { data, binary });
    return this.deliverLocally(topic, data, binary, except);
  }

  /** Subscribes an open client to `topic`; false when it was subscribed already or is closed. */
  subscribe(client: ServerClient, topic: string): boolean {
    if (!client.open || !this.topics.subscribe(client, topic)) return false;
    this.bus?.subscribe(topic);
    return true;
  }

  /** Ends a subscription; false when there was none. */
  unsubscribe(client: ServerClient, topic: string): boolean {
    if (!this.topics.unsubscribe(client, topic)) return false;
    this.unsubscribeBusIfUnused(topic);
    return true;
  }

  /**
   * Subscribes a script-level listener to `topic` (cluster-wide with a bus): it is called with
   * every message published on it, by this node or another. Returns a function that ends it.
   */
  listen(topic: string, listener: TopicListener): () => void {
    let set = this.listeners.get(topic);
    if (set === undefined) this.listeners.set(topic, (set = new Set()));
    set.add(listener);
    this.bus?.subscribe(topic);
    return () => {
      if (!set.delete(listener)) return;
      if (set.size === 0) this.listeners.delete(topic);
      this.unsubscribeBusIfUnused(topic);
    };
  }

  /** Number of subscribing clients of `topic` on this node. */
  subscriberCount(topic: string): number {
    return this.topics.subscribers(topic).size;
  }

  /** The topics `client` is subscribed to. */
  topicsOf(client: ServerClient): ReadonlySet<string> {
    return this.topics.topicsOf(client);
  }

  /**
   * The last messages published on `topic`, oldest first, at most `historyLength` (empty when
   * history is off). Synchronous: with a bus it is this node's copy, loaded from the cluster at
   * start and kept by every publication since.
   */
  history(topic: string): readonly BusMessage[] {
    return this.recent.get(topic);
  }

  // ---- BusReceiver: what other nodes send -------------------------------------------------

  deliverTo(id: number, message: BusMessage): void {
    this.clients.get(id)?.send(toPayload(message.data), message.binary);
  }

  deliverAll(message: BusMessage): void {
    this.sendToMany(this.clients.values(), toPayload(message.data), message.binary);
  }

  deliverTopic(topic: string, message: BusMessage): void {
    if (this.historyLength > 0) this.recent.append(topic, message);
    this.deliverLocally(topic, toPayload(message.data), message.binary);
  }

  revokeId(id: number): void {
    const client = this.clients.get(id);
    if (client === undefined) return;
    this.logger?.warn("closing a client whose id another node took while this one was cut off", {
      id,
    });
    client.close(CloseCode.ServiceRestart, "client id reassigned; reconnect");
  }

  // ---- local delivery ---------------------------------------------------------------------

  private deliverLocally(
    topic: string,
    data: string | Buffer,
    binary: boolean,
    except?: ServerClient,
  ): number {
    let count = this.sendToMany(this.topics.subscribers(topic).values(), data, binary, except);
    const listeners = this.listeners.get(topic);
    if (listeners === undefined) return count;
    const message: BusMessage = { data, binary };
    for (const listener of [...listeners]) {
      count++;
      try {
        listener(message, topic);
      } catch (error) {
        this.logger?.error("topic listener failed", { topic, err: error });
      }
    }
    return count;
  }

  private unsubscribeBusIfUnused(topic: string): void {
    if (this.bus === null) return;
    if (this.topics.subscribers(topic).size === 0 && !this.listeners.has(topic)) {
      this.bus.unsubscribe(topic);
    }
  }

  private sendToMany(
    targets: Iterable<ServerClient>,
    data: string | Buffer,
    binary: boolean,
    except?: ServerClient,
  ): number {
    const payload = typeof data === "string" ? Buffer.from(data, "utf8") : data;
    let frame: Buffer | null = null;
    let count = 0;
    for (const client of targets) {
      if (client === except || !client.open) continue;
      frame ??= encodeFrame(binary ? Opcode.Binary : Opcode.Text, payload);
      if (client.sendPrebuilt(frame, payload, binary) !== SendStatus.Dropped) count++;
    }
    this.messagesSent.inc(count);
    return count;
  }
}

/** A bus payload as the bytes a frame carries (a view, not a copy). */
function toPayload(data: string | Uint8Array): string | Buffer {
  if (typeof data === "string" || Buffer.isBuffer(data)) return data;
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}
