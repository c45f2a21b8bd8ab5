/**
 * The bus: what a server's hub talks to for everything that crosses a process or a machine.
 * The hub owns this port (it lives in server/), the cluster implements it (cluster/local-bus.ts,
 * redis-bus.ts, worker-bus.ts): dependencies point from cluster to server, never back.
 *
 * ## Design
 *
 * The hub (src/server/hub.ts) delivers to the clients of its own node itself; the bus only carries
 * what another node must see, and keeps the cluster-wide books: client ids, presence, topic
 * subscriptions per node, topic history. A "node" is one server process taking part in the cluster.
 *
 * - **Ids.** A client id is the lowest integer free across the whole cluster. `LocalBus`
 *   keeps them in memory. `RedisBus` allocates them with one atomic Lua script in Redis
 *   (a sorted set of released ids below a high-water counter, the same algorithm as
 *   `ClientIds`), and records `id → node` so a message for an id reaches the node that holds it.
 * - **Leases.** Each Redis node owns a lease key that expires after `leaseMs` and is refreshed every
 *   `leaseMs / 3`. The allocation script first frees the ids of every node whose lease has
 *   expired, so a stopped or SIGKILLed node leaves no ghost ids or presence behind.
 * - **Channels.** One cluster channel carries broadcasts and presence changes (one PUBLISH per
 *   broadcast, framed once per receiving node), one channel per node carries messages for its ids,
 *   one channel per topic carries that topic's publications, subscribed only by nodes that have a
 *   local subscriber. A node ignores what it published itself (the hub delivered it locally).
 * - **Recovery.** While Redis is away a node keeps serving its own clients; cross-node messages are
 *   dropped and counted (no queue), ids cannot be allocated (the caller refuses the connection).
 *   When the link is back, a node whose lease is gone (Redis restarted empty, or it was cut off
 *   longer than its lease) registers its live ids, lease and subscriptions again. A Redis found
 *   empty holds allocation back for one lease period, so every live node restores before a new id
 *   is handed out; an id that another node took meanwhile is revoked on the node that lost it
 *   ({@link BusReceiver.revokeId}), so no id is ever held twice.
 *
 * @module
 */

/** A message carried between nodes: a text message (a string or UTF-8 bytes) or binary bytes. */
export interface BusMessage {
  /** The payload. A string is always text; bytes are text or binary according to `binary`. */
  readonly data: string | Uint8Array;
  /** True for a binary message (opcode 2), false for text (opcode 1). */
  readonly binary: boolean;
}

/**
 * What a bus calls on its hub when a message arrives from another node. Called synchronously from
 * the bus's I/O callbacks; implementations must not throw (a throw is caught and logged).
 */
export interface BusReceiver {
  /** A message for the local client `id`, sent from another node. */
  deliverTo(id: number, message: BusMessage): void;
  /** A broadcast from another node, for every local client (frame it once). */
  deliverAll(message: BusMessage): void;
  /** A publication on `topic` from another node, for the local subscribers (frame it once). */
  deliverTopic(topic: string, message: BusMessage): void;
  /**
   * The local client `id` must go: while this node was cut off from the cluster for longer than
   * its lease, the id was given to a client of another node. Close it (e.g. with 1012).
   */
  revokeId(id: number): void;
}

/** A node of the cluster, as shown on /healthz. */
export interface BusNode {
  /** The node's name, unique in the cluster. */
  readonly id: string;
  /** When the node joined, in milliseconds since the epoch. */
  readonly startedAt: number;
  /** The number of clients it holds. */
  readonly clients: number;
}

/**
 * Thrown (or rejected with) when the bus cannot do what was asked: ids cannot be allocated while
 * the cluster link is down, a URL is malformed, the cluster cannot be reached at start.
 */
export class BusError extends Error {
  override readonly name = "BusError";
  /** A stable code: `"down"`, `"bad-url"`, `"unreachable"`, `"stopped"`. */
  readonly code: "down" | "bad-url" | "unreachable" | "stopped";

  constructor(code: BusError["code"], message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

/**
 * The cluster-facing side of a hub. Methods return synchronously unless their type says
 * otherwise; what they start on the network (a PUBLISH, a script) completes later and never
 * throws at the caller: failures are logged and counted by the implementation.
 */
export interface Bus {
  /** This node's name, unique in the cluster. */
  readonly nodeId: string;

  /**
   * Joins the cluster and starts delivering messages from other nodes to `receiver`.
   * Asynchronous. Call once, before anything else.
   * @throws {BusError} `"unreachable"` when the cluster cannot be reached.
   */
  start(receiver: BusReceiver): Promise<void>;

  /**
   * Leaves the cluster: releases this node's ids and lease, unsubscribes, closes connections.
   * Asynchronous; idempotent.
   */
  stop(): Promise<void>;

  /**
   * True while this node is connected to the rest of the cluster (always true for a local bus).
   * Mirrored by the `moonsocket_cluster_up` gauge.
   */
  readonly up: boolean;

  /**
   * Allocates the lowest client id free across the cluster and records it as held by this node.
   * Synchronous (a number) for a local bus, a promise for a networked one.
   * @throws {BusError} `"down"` while the cluster link is down (refuse the connection).
   */
  acquireId(): number | Promise<number>;

  /**
   * Gives back an id this node held (its client left). The id is no longer listed at once;
   * the networked record is updated asynchronously.
   */
  releaseId(id: number): void;

  /**
   * The ids of every connected client of the cluster, ascending. Synchronous: a networked bus
   * keeps a mirror, updated by presence events (eventually consistent by a network round trip).
   */
  clients(): readonly number[];

  /**
   * Sends `message` to the client `id` held by ANOTHER node (the hub delivers local ids itself).
   * Returns false when no node holds `id` as far as this node knows, true when the message was
   * handed to the network; delivery is asynchronous and is lost if the link fails meanwhile.
   */
  sendTo(id: number, message: BusMessage): boolean;

  /** Sends `message` to every client of every OTHER node (one network message, not one per client). */
  broadcast(message: BusMessage): void;

  /**
   * Publishes `message` on `topic` to the subscribers of every OTHER node (the hub delivers to
   * its own) and appends it to the topic's history when history is on.
   */
  publish(topic: string, message: BusMessage): void;

  /**
   * Says that this node has at least one local subscriber of `topic` (call on 0 → 1): it starts
   * receiving the topic's publications from other nodes. Idempotent.
   */
  subscribe(topic: string): void;

  /** Says that this node has no local subscriber of `topic` any more (call on 1 → 0). Idempotent. */
  unsubscribe(topic: string): void;

  /**
   * The last messages published on `topic`, oldest first, at most the configured history length
   * (0 when history is off). Asynchronous: a networked bus reads them from the network.
   */
  history(topic: string): Promise<readonly BusMessage[]>;

  /** The nodes of the cluster (for /healthz). Asynchronous. */
  nodes(): Promise<readonly BusNode[]>;

  /**
   * Every topic's history, for the copy a hub keeps so that its `history(topic)` is synchronous.
   * A bus that implements it must, while history is on, also deliver every topic's publications
   * from other nodes ({@link BusReceiver.deliverTopic}), subscribed or not, so the copy stays
   * whole. A bus without it (or with history off) leaves the hub with the history of what this
   * node published and received.
   */
  histories?(): Promise<ReadonlyMap<string, readonly BusMessage[]>>;
}
