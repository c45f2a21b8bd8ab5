/**
 * The bus over Redis: every node that shares one Redis server is one cluster. See bus.ts for the
 * design (ids, leases, channels, recovery) and redis-scripts.ts for the scripts.
 *
 * Two connections per node (a connection that subscribes cannot run other commands): one for
 * commands and scripts, one subscribed to the cluster channel, this node's channel and the topics
 * it has local subscribers for. Both use the official client `@redis/client` with its offline
 * queue disabled, so nothing piles up while Redis is away: a message that cannot cross is dropped
 * and counted, and the client reconnects by itself with capped exponential backoff.
 *
 * @module
 */

import { createHash, randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { createClient, RESP_TYPES } from "@redis/client";
import type { Logger } from "../observability/logger.js";
import type { Counter, Gauge, MetricsRegistry } from "../observability/metrics.js";
import {
  type Bus,
  BusError,
  type BusMessage,
  type BusNode,
  type BusReceiver,
} from "../server/bus.js";
import { checkNodeId, decodeEnvelope, type Envelope, encodeMessage } from "./bus-envelope.js";
import { ClusterPresence } from "./cluster-presence.js";
import {
  ALLOCATE_SCRIPT,
  LEAVE_SCRIPT,
  PUBLISH_SCRIPT,
  REFRESH_SCRIPT,
  REGISTER_SCRIPT,
  RELEASE_SCRIPT,
} from "./redis-scripts.js";
import { parseRedisUrl, type RedisAddress } from "./redis-url.js";

/** Options of {@link RedisBus}. */
export interface RedisBusOptions {
  /** `redis://[user:pass@]host:port[/db]` or `rediss://…`. */
  readonly url: string;
  /** Where `moonsocket_cluster_up` and `moonsocket_cluster_dropped_messages_total` are registered. */
  readonly metrics: MetricsRegistry;
  /** Where the link's state changes are logged (one line when lost, one when back). */
  readonly logger: Logger;
  /** This node's name, 1-100 of `[A-Za-z0-9._:-]`. Default: host name, PID and a random suffix. */
  readonly nodeId?: string;
  /** Prefix of every key and channel, to share a Redis between clusters. Default `"moonsocket:"`. */
  readonly keyPrefix?: string;
  /**
   * How long, in milliseconds, a node's ids outlive it when it stops without leaving (killed, cut
   * off): its lease, refreshed every third of it. Default 10 000.
   */
  readonly leaseMs?: number;
  /** Messages kept per topic in Redis for {@link RedisBus.history}. Default 0 (off). */
  readonly historyLength?: number;
  /** Longest wait between two reconnection attempts, in milliseconds. Default 2 000. */
  readonly maxBackoffMs?: number;
  /** How long the first connection may take, in milliseconds, before start fails. Default 5 000. */
  readonly connectTimeoutMs?: number;
}

/** The client with the options every link uses (the alias takes its exact generic type). */
function newRedisClient(
  url: string,
  connectTimeout: number,
  reconnectStrategy: (retries: number, cause: Error) => number | Error,
) {
  return createClient({
    url,
    // Nothing piles up while Redis is away: a command then fails at once, and is dropped and counted.
    disableOfflineQueue: true,
    socket: { connectTimeout, reconnectStrategy },
  });
}

type RedisClient = ReturnType<typeof newRedisClient>;

/** A script and its SHA-1, to run it with EVALSHA (EVAL when Redis lost its script cache). */
interface Script {
  readonly source: string;
  readonly sha: string;
}

function script(source: string): Script {
  return { source, sha: createHash("sha1").update(source).digest("hex") };
}

const SCRIPTS = {
  allocate: script(ALLOCATE_SCRIPT),
  release: script(RELEASE_SCRIPT),
  refresh: script(REFRESH_SCRIPT),
  register: script(REGISTER_SCRIPT),
  leave: script(LEAVE_SCRIPT),
  publish: script(PUBLISH_SCRIPT),
} as const;

const BUFFERS = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } } as const;

/**
 * A {@link Bus} over Redis. Construct, then `await start(receiver)`; the URL is checked by the
 * constructor.
 *
 * @example
 * ```ts
 * const bus = new RedisBus({ url: "redis://127.0.0.1:6379", metrics, logger });
 * await bus.start(hub);
 * const id = await bus.acquireId();
 * ```
 */
export class RedisBus implements Bus {
  readonly nodeId: string;
  /** The Redis server, password hidden (for logs and /healthz). */
  readonly address: RedisAddress;
  readonly #prefix: string;
  readonly #leaseMs: number;
  readonly #historyLength: number;
  readonly #maxBackoffMs: number;
  readonly #connectTimeoutMs: number;
  readonly #logger: Logger;
  readonly #upGauge: Gauge;
  readonly #dropped: Counter;
  readonly #startedAt = Date.now();

  #commands: RedisClient | undefined;
  #subscriber: RedisClient | undefined;
  #receiver: BusReceiver | undefined;
  /** Ids of this node's clients. */
  readonly #held = new Set<number>();
  /** Every connected client of the cluster and its node (a mirror, see clients()). */
  readonly #presence = new ClusterPresence();
  /** Topics this node has local subscribers for. */
  readonly #topics = new Set<string>();
  #up = false;
  #everUp = false;
  #stopped = false;
  #leaseTimer: NodeJS.Timeout | undefined;
  /** Allocation and re-registration run one at a time, so a restore never misses a new id. */
  #serial: Promise<unknown> = Promise.resolve();
  #recovering: Promise<void> | undefined;

  /**
   * @throws {BusError} `"bad-url"` for a malformed URL.
   * @throws {RangeError} for a bad node name, lease or history length.
   */
  constructor(options: RedisBusOptions) {
    this.address = parseRedisUrl(options.url);
    this.nodeId = checkNodeId(
      options.nodeId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`,
    );
    this.#prefix = options.keyPrefix ?? "moonsocket:";
    this.#leaseMs = positiveInteger(options.leaseMs ?? 10_000, "leaseMs");
    this.#historyLength = options.historyLength ?? 0;
    if (!Number.isInteger(this.#historyLength) || this.#historyLength < 0) {
      throw new RangeError(
        `historyLength must be a non-negative integer, got ${this.#historyLength}`,
      );
    }
    this.#maxBackoffMs = positiveInteger(options.maxBackoffMs ?? 2_000, "maxBackoffMs");
    this.#connectTimeoutMs = positiveInteger(options.connectTimeoutMs ?? 5_000, "connectTimeoutMs");
    this.#logger = options.logger.child({ node: this.nodeId });
    this.#upGauge = options.metrics.gauge({
      name: "moonsocket_cluster_up",
      help: "1 while this node is connected to the cluster's Redis, else 0.",
    });
    this.#dropped = options.metrics.counter({
      name: "moonsocket_cluster_dropped_messages_total",
      help: "Messages for other nodes dropped because the cluster's Redis was unreachable.",
    });
  }

  get up(): boolean {
    return this.#up;
  }

  /**
   * Connects both links, registers this node and subscribes to its channels.
   * @throws {BusError} `"unreachable"` when Redis cannot be reached within `connectTimeoutMs`.
   */
  async start(receiver: BusReceiver): Promise<void> {
    this.#receiver = receiver;
    this.#commands = this.#createClient("commands");
    this.#subscriber = this.#createClient("subscriber");
    try {
      await Promise.all([this.#commands.connect(), this.#subscriber.connect()]);
      await this.#subscriber.subscribe(
        [`${this.#prefix}all`, `${this.#prefix}node:${this.nodeId}`],
        this.#onMessage,
        true,
      );
      await this.#register("join");
    } catch (error) {
      this.#destroyClients();
      throw new BusError(
        "unreachable",
        `cannot reach Redis at ${this.address.display}: ${describe(error)}`,
        { cause: error },
      );
    }
    this.#everUp = true;
    this.#up = true;
    this.#upGauge.set(1);
    this.#logger.info("joined the cluster", { redis: this.address.display });
    this.#leaseTimer = setInterval(() => this.#refreshLease(), Math.max(1, this.#leaseMs / 3));
    this.#leaseTimer.unref();
  }

  /** Leaves the cluster (its ids are freed at once) and closes both links. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#leaseTimer);
    if (this.#up) {
      try {
        await this.#eval(SCRIPTS.leave, []);
      } catch (error) {
        // The lease expires by itself; nothing is lost but time.
        this.#logger.debug("cluster leave failed", { error: describe(error) });
      }
    }
    this.#setUp(false);
    this.#held.clear();
    this.#presence.clear();
    this.#destroyClients();
  }

  /**
   * The lowest id free across the cluster. While Redis is recovering (restarted empty) it waits
   * up to two leases for the live nodes to restore their ids.
   * @throws {BusError} `"down"` while the link is down, `"stopped"` after stop().
   */
  acquireId(): Promise<number> {
    if (this.#stopped) return Promise.reject(new BusError("stopped", "the bus is stopped"));
    return this.#inSeries(() => this.#allocate());
  }

  releaseId(id: number): void {
    if (!this.#held.delete(id)) return;
    this.#presence.remove(id, this.nodeId);
    if (!this.#up) return; // the next registration forgets it in Redis
    this.#eval(SCRIPTS.release, [String(id)]).catch((error: unknown) => {
      this.#logger.debug("cluster id release failed", { id, error: describe(error) });
    });
  }

  clients(): readonly number[] {
    return this.#presence.ids();
  }

  /**
   * Hands `message` to the node holding `id`. False when no other node holds it as far as this
   * node knows, or when the link is down (the message is then dropped and counted).
   */
  sendTo(id: number, message: BusMessage): boolean {
    const owner = this.#presence.ownerOf(id);
    if (owner === undefined || owner === this.nodeId) return false;
    if (!this.#up) {
      this.#dropped.inc();
      return false;
    }
    this.#publish(`${this.#prefix}node:${owner}`, encodeMessage("T", this.nodeId, message, id));
    return true;
  }

  broadcast(message: BusMessage): void {
    if (!this.#up) {
      this.#dropped.inc();
      return;
    }
    this.#publish(`${this.#prefix}all`, encodeMessage("B", this.nodeId, message));
  }

  publish(topic: string, message: BusMessage): void {
    if (!this.#up) {
      this.#dropped.inc();
      return;
    }
    const envelope = encodeMessage("P", this.nodeId, message);
    if (this.#historyLength === 0) {
      this.#publish(`${this.#prefix}topic:${topic}`, envelope);
      return;
    }
    this.#eval(SCRIPTS.publish, [topic, envelope, String(this.#historyLength)], false).catch(() =>
      this.#dropped.inc(),
    );
  }

  subscribe(topic: string): void {
    if (this.#topics.has(topic)) return;
    this.#topics.add(topic);
    this.#subscribeTopic(topic);
  }

  unsubscribe(topic: string): void {
    if (!this.#topics.delete(topic)) return;
    this.#subscriber
      ?.unsubscribe(`${this.#prefix}topic:${topic}`, this.#onMessage, true)
      .catch((error: unknown) => {
        this.#logger.debug("cluster unsubscribe failed", { topic, error: describe(error) });
      });
  }

  /**
   * The topic's last messages in Redis, oldest first.
   * @throws {BusError} `"down"` while the link is down.
   */
  async history(topic: string): Promise<readonly BusMessage[]> {
    if (this.#historyLength === 0) return [];
    const commands = this.#requireUp();
    const entries = await commands.sendCommand<Buffer[]>(
      ["LRANGE", `${this.#prefix}history:${topic}`, "0", "-1"],
      BUFFERS,
    );
    const messages: BusMessage[] = [];
    for (const entry of entries) {
      const envelope = decodeEnvelope(entry);
      if (envelope?.kind === "topic") messages.push(envelope.message);
    }
    return messages;
  }

  /**
   * The nodes whose lease is alive, with their client counts.
   * @throws {BusError} `"down"` while the link is down.
   */
  async nodes(): Promise<readonly BusNode[]> {
    const commands = this.#requireUp();
    const names = await commands.sendCommand<string[]>(["SMEMBERS", `${this.#prefix}nodes`]);
    const found = await Promise.all(
      names.map(async (id): Promise<BusNode | undefined> => {
        const [info, clients] = await Promise.all([
          commands.sendCommand<string | null>(["GET", `${this.#prefix}lease:${id}`]),
          commands.sendCommand<number>(["SCARD", `${this.#prefix}held:${id}`]),
        ]);
        if (info === null) return undefined;
        const startedAt = Number((JSON.parse(info) as { startedAt?: unknown }).startedAt) || 0;
        return { id, startedAt, clients };
      }),
    );
    return found.filter((node) => node !== undefined).sort((a, b) => a.id.localeCompare(b.id));
  }

  // ---- links ------------------------------------------------------------------------------

  #createClient(role: "commands" | "subscriber"): RedisClient {
    // Before the first success a failure ends start() with a clear error; after it, retry for
    // ever with capped exponential backoff and jitter (nodes must not reconnect in step).
    const client = newRedisClient(this.address.url, this.#connectTimeoutMs, (retries, cause) => {
      if (!this.#everUp || this.#stopped) return cause;
      const backoff = Math.min(this.#maxBackoffMs, 50 * 2 ** Math.min(retries, 16));
      return Math.round(backoff / 2 + (Math.random() * backoff) / 2);
    });
    // Every failed attempt emits "error"; the state change is logged once in #linkChanged.
    client.on("error", (error: unknown) => {
      this.#logger.debug("redis link error", { role, error: describe(error) });
      this.#linkChanged();
    });
    client.on("end", () => this.#linkChanged());
    client.on("reconnecting", () => this.#linkChanged());
    client.on("ready", () => this.#linkChanged());
    return client;
  }

  /** Called on every link event: goes down at once, comes back up after re-registering. */
  #linkChanged(): void {
    if (!this.#everUp || this.#stopped) return;
    const ready = this.#commands?.isReady === true && this.#subscriber?.isReady === true;
    if (!ready) {
      this.#setUp(false);
      return;
    }
    if (this.#up || this.#recovering !== undefined) return;
    this.#recovering = this.#recover().finally(() => {
      this.#recovering = undefined;
    });
  }

  /** The link is back: give Redis our ids, lease and subscriptions again, reload presence. */
  async #recover(): Promise<void> {
    try {
      for (const topic of this.#topics) this.#subscribeTopic(topic);
      await this.#inSeries(() => this.#register("restore"));
      this.#setUp(true);
    } catch (error) {
      // The link dropped again meanwhile; the next "ready" tries again.
      this.#logger.debug("cluster recovery failed", { error: describe(error) });
    }
  }

  /** Records a state change of the link after start: one log line each way, and the gauge. */
  #setUp(up: boolean): void {
    if (up === this.#up) return;
    this.#up = up;
    this.#upGauge.set(up ? 1 : 0);
    if (this.#stopped) return;
    if (up) {
      this.#logger.info("cluster link back", { redis: this.address.display });
    } else {
      this.#logger.warn(
        "cluster link lost: serving local clients only, cross-node messages dropped until it is back",
        { redis: this.address.display },
      );
    }
  }

  #destroyClients(): void {
    for (const client of [this.#commands, this.#subscriber]) {
      if (client === undefined) continue;
      client.removeAllListeners("ready");
      client.removeAllListeners("end");
      client.removeAllListeners("reconnecting");
      // Keep an error listener: a late socket error must not become an uncaught exception.
      client.removeAllListeners("error");
      client.on("error", () => {});
      try {
        client.destroy();
      } catch {
        // Already closed.
      }
    }
  }

  #requireUp(): RedisClient {
    if (!this.#up || this.#commands === undefined) {
      throw new BusError("down", `the cluster link to ${this.address.display} is down`);
    }
    return this.#commands;
  }

  // ---- ids and presence -------------------------------------------------------------------

  async #allocate(): Promise<number> {
    const deadline = Date.now() + 2 * this.#leaseMs;
    for (;;) {
      this.#requireUp();
      const id = await this.#eval<number>(SCRIPTS.allocate, []);
      if (id >= 0) {
        this.#held.add(id);
        this.#presence.add(id, this.nodeId);
        return id;
      }
      if (id === -2) {
        await this.#register("restore");
        continue;
      }
      // -1: Redis came back empty; the live nodes are restoring their ids.
      if (Date.now() > deadline) {
        throw new BusError("down", "the cluster is still recovering its ids; try again later");
      }
      await new Promise((resolve) => setTimeout(resolve, Math.max(5, this.#leaseMs / 10)));
    }
  }

  /** (Re)registers this node with its live ids; revokes those another node holds now. */
  async #register(mode: "join" | "restore"): Promise<void> {
    const info = JSON.stringify({ startedAt: this.#startedAt, pid: process.pid, host: hostname() });
    // Load every script first (Redis may have been restarted and lost them): a NOSCRIPT retry
    // later would let a publication overtake an earlier one of the same node.
    await Promise.all(
      Object.values(SCRIPTS).map((each) =>
        this.#commands!.sendCommand(["SCRIPT", "LOAD", each.source]),
      ),
    );
    const live = [...this.#held].map(String);
    const conflicts = await this.#eval<number[]>(SCRIPTS.register, [
      String(this.#leaseMs),
      info,
      mode,
      ...live,
    ]);
    for (const id of conflicts) {
      this.#held.delete(id);
      this.#logger.warn("client id taken by another node while cut off: closing its client", {
        id,
      });
      this.#callReceiver((receiver) => receiver.revokeId(id));
    }
    await this.#loadPresence();
  }

  async #loadPresence(): Promise<void> {
    // RESP3 answers HGETALL with a map, which the client turns into a plain object.
    const owners = await this.#commands!.sendCommand<Record<string, string>>([
      "HGETALL",
      `${this.#prefix}ids`,
    ]);
    this.#presence.replace(Object.entries(owners).map(([id, node]) => [Number(id), node] as const));
    for (const id of this.#held) this.#presence.add(id, this.nodeId);
  }

  #refreshLease(): void {
    if (!this.#up || this.#stopped) return;
    this.#eval<number>(SCRIPTS.refresh, [String(this.#leaseMs)])
      .then((alive) => {
        if (alive === 0) return this.#inSeries(() => this.#register("restore"));
        return undefined;
      })
      .catch((error: unknown) => {
        this.#logger.debug("cluster lease refresh failed", { error: describe(error) });
      });
  }

  // ---- messages ---------------------------------------------------------------------------

  readonly #onMessage = (bytes: Buffer, channel: Buffer): void => {
    const envelope = decodeEnvelope(bytes);
    if (envelope === undefined) {
      this.#logger.debug("ignored a malformed cluster message", { channel: channel.toString() });
      return;
    }
    if (envelope.origin === this.nodeId) {
      // Our own broadcast or presence echo: the hub delivered it locally already. A purge of
      // ourselves means our lease expired while we were away: register again.
      if (envelope.kind === "purge" && this.#up) {
        this.#inSeries(() => this.#register("restore")).catch(() => {});
      }
      return;
    }
    this.#dispatch(envelope, channel);
  };

  #dispatch(envelope: Envelope, channel: Buffer): void {
    switch (envelope.kind) {
      case "broadcast":
        this.#callReceiver((receiver) => receiver.deliverAll(envelope.message));
        return;
      case "to":
        if (this.#held.has(envelope.id)) {
          this.#callReceiver((receiver) => receiver.deliverTo(envelope.id, envelope.message));
        }
        return;
      case "topic": {
        const topic = channel.toString("utf8", Buffer.byteLength(`${this.#prefix}topic:`));
        if (this.#topics.has(topic)) {
          this.#callReceiver((receiver) => receiver.deliverTopic(topic, envelope.message));
        }
        return;
      }
      case "join":
        this.#presence.add(envelope.id, envelope.origin);
        return;
      case "leave":
        this.#presence.remove(envelope.id, envelope.origin);
        return;
      case "purge":
        this.#presence.removeNode(envelope.origin);
        return;
    }
  }

  #callReceiver(call: (receiver: BusReceiver) => void): void {
    if (this.#receiver === undefined) return;
    try {
      call(this.#receiver);
    } catch (error) {
      this.#logger.error("cluster delivery failed", { error });
    }
  }

  #subscribeTopic(topic: string): void {
    this.#subscriber
      ?.subscribe(`${this.#prefix}topic:${topic}`, this.#onMessage, true)
      .catch((error: unknown) => {
        // Down: the recovery after reconnection subscribes again.
        this.#logger.debug("cluster subscribe failed", { topic, error: describe(error) });
      });
  }

  #publish(channel: string, envelope: Buffer): void {
    this.#commands!.sendCommand(["PUBLISH", channel, envelope]).catch(() => this.#dropped.inc());
  }

  // ---- plumbing ---------------------------------------------------------------------------

  #inSeries<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#serial.then(task);
    this.#serial = result.catch(() => {});
    return result;
  }

  /**
   * Runs a script by its SHA-1, loading it with EVAL when Redis does not know it (first use, or a
   * Redis restarted). ARGV starts with the prefix and node name unless `withNode` is false.
   */
  async #eval<T>(which: Script, args: ReadonlyArray<string | Buffer>, withNode = true): Promise<T> {
    const commands = this.#commands;
    if (commands === undefined) throw new BusError("down", "the bus is not started");
    const argv = withNode ? [this.#prefix, this.nodeId, ...args] : [this.#prefix, ...args];
    try {
      return await commands.sendCommand<T>(["EVALSHA", which.sha, "0", ...argv]);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith("NOSCRIPT")) throw error;
      return await commands.sendCommand<T>(["EVAL", which.source, "0", ...argv]);
    }
  }
}

function positiveInteger(value: number, name: string): number {
  if (!Number.isInteger(value) || value <= 0) {
    throw new RangeError(`${name} must be a positive integer (milliseconds), got ${value}`);
  }
  return value;
}

function describe(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0) return describe(error.errors[0]);
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}
