import { encodeFrame } from "../protocol/frame.js";
import { Opcode } from "../protocol/opcode.js";
import { ClientIds } from "./client-ids.js";
import { SendStatus, type ServerClient } from "./server-client.js";
import { TopicRegistry } from "./topics.js";

/**
 * Every delivery between clients of one server goes through here: send to an id, broadcast,
 * topic publish and subscribe, and the list of connected clients (with their lowest-free
 * integer ids). The server, its TypeScript API and the Lua styles reach other clients only
 * through the hub, so that scale-out can put a bus under it without touching them.
 */
export class Hub {
  private readonly clients = new Map<number, ServerClient>();
  private readonly ids = new ClientIds();
  private readonly topics = new TopicRegistry<ServerClient>();
  /** Where messages sent to many are counted, once per receiver. */
  private readonly messagesSent: { inc(n?: number): void };

  constructor(messagesSent: { inc(n?: number): void }) {
    this.messagesSent = messagesSent;
  }

  /** The lowest free client id, taken until {@link leave} gives it back. */
  takeId(): number {
    return this.ids.acquire();
  }

  /** Registers a connected client under its id. */
  join(client: ServerClient): void {
    this.clients.set(client.id, client);
  }

  /** Forgets a client that left: its id becomes free and its subscriptions end. */
  leave(client: ServerClient): void {
    this.clients.delete(client.id);
    this.ids.release(client.id);
    this.topics.removeMember(client);
  }

  /** Number of connected clients. */
  get clientCount(): number {
    return this.clients.size;
  }

  /** Number of topics with at least one subscriber. */
  get topicCount(): number {
    return this.topics.size;
  }

  /** The client with `id`, if connected. */
  getClient(id: number): ServerClient | undefined {
    return this.clients.get(id);
  }

  /** Every connected client. */
  allClients(): IterableIterator<ServerClient> {
    return this.clients.values();
  }

  /** Sends a message to one client by id; Dropped when there is no such client. */
  sendTo(id: number, data: string | Buffer, binary: boolean): SendStatus {
    const client = this.clients.get(id);
    return client === undefined ? SendStatus.Dropped : client.send(data, binary);
  }

  /** Sends one message to every connected client (optionally but one), framed once. Returns the number of receivers. */
  broadcast(data: string | Buffer, binary: boolean, except?: ServerClient): number {
    return this.sendToMany(this.clients.values(), data, binary, except);
  }

  /** Sends one message to every subscriber of `topic`, framed once. Returns the number of receivers. */
  publish(topic: string, data: string | Buffer, binary: boolean, except?: ServerClient): number {
    return this.sendToMany(this.topics.subscribers(topic).values(), data, binary, except);
  }

  /** Subscribes an open client to `topic`; false when it was subscribed already or is closed. */
  subscribe(client: ServerClient, topic: string): boolean {
    return client.open && this.topics.subscribe(client, topic);
  }

  /** Ends a subscription; false when there was none. */
  unsubscribe(client: ServerClient, topic: string): boolean {
    return this.topics.unsubscribe(client, topic);
  }

  /** Number of subscribers of `topic`. */
  subscriberCount(topic: string): number {
    return this.topics.subscribers(topic).size;
  }

  /** The topics `client` is subscribed to. */
  topicsOf(client: ServerClient): ReadonlySet<string> {
    return this.topics.topicsOf(client);
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
