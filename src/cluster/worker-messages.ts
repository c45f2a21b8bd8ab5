/**
 * The messages between the primary process and its workers under `--workers N`, carried by
 * node:cluster's IPC channel with the "advanced" serialization (so payload bytes cross as
 * Buffers, not as JSON). Every message has an `ms` field naming its kind; node:cluster's own
 * messages never do, so they are told apart at a glance.
 *
 * @module
 */

/** A message payload: text (a string or its UTF-8 bytes) or binary bytes. */
interface Payload {
  readonly data: string | Uint8Array;
  readonly binary: boolean;
}

/** What one worker reports about itself for /healthz. */
export interface WorkerHealth {
  /** The worker number, 1..N. */
  readonly worker: number;
  readonly pid: number;
  /** Its connected clients. */
  readonly connections: number;
  /** `"ok"`, or `"stopping"` once it is shutting down. */
  readonly status: string;
}

/** A worker's messages to the primary. */
export type WorkerToPrimary =
  // ---- the bus (worker-bus.ts) ----
  /** The bus messages of one turn of the event loop, in order (message-batcher.ts). */
  | { readonly ms: "batch"; readonly items: readonly WorkerToPrimary[] }
  | { readonly ms: "hello" }
  | { readonly ms: "acquire"; readonly seq: number }
  | { readonly ms: "release"; readonly id: number }
  | ({ readonly ms: "to"; readonly id: number } & Payload)
  | ({ readonly ms: "all" } & Payload)
  | ({ readonly ms: "pub"; readonly topic: string } & Payload)
  | { readonly ms: "sub" | "unsub"; readonly topic: string }
  | { readonly ms: "history"; readonly seq: number; readonly topic: string }
  | { readonly ms: "nodes"; readonly seq: number }
  | { readonly ms: "histories"; readonly seq: number }
  // ---- the supervisor (workers.ts, worker-process.ts) ----
  | { readonly ms: "listening"; readonly banners: readonly string[] }
  | { readonly ms: "scrape"; readonly seq: number }
  | {
      readonly ms: "stats";
      readonly seq: number;
      readonly metrics: string;
      readonly health: WorkerHealth;
    };

/** The primary's messages to a worker. */
export type PrimaryToWorker =
  // ---- the bus ----
  /** The bus messages of one turn of the primary's event loop for this worker, in order. */
  | { readonly ms: "batch"; readonly items: readonly PrimaryToWorker[] }
  | { readonly ms: "welcome"; readonly clients: readonly number[] }
  | { readonly ms: "acquired"; readonly seq: number; readonly id: number }
  | { readonly ms: "join"; readonly id: number }
  | { readonly ms: "leave"; readonly ids: readonly number[] }
  | ({ readonly ms: "to"; readonly id: number } & Payload)
  | ({ readonly ms: "all" } & Payload)
  | ({ readonly ms: "pub"; readonly topic: string } & Payload)
  | { readonly ms: "history-reply"; readonly seq: number; readonly messages: readonly Payload[] }
  | {
      readonly ms: "histories-reply";
      readonly seq: number;
      readonly topics: readonly (readonly [string, readonly Payload[]])[];
    }
  | {
      readonly ms: "nodes-reply";
      readonly seq: number;
      readonly nodes: readonly { id: string; startedAt: number; clients: number }[];
    }
  // ---- the supervisor ----
  | { readonly ms: "collect"; readonly seq: number }
  | {
      readonly ms: "scrape-reply";
      readonly seq: number;
      readonly metrics: string;
      readonly health: WorkerHealth[];
    }
  | { readonly ms: "shutdown" };

/** True for a message of ours (node:cluster's internal messages have no `ms`). */
export function isWorkerMessage(message: unknown): message is { readonly ms: string } {
  return (
    typeof message === "object" &&
    message !== null &&
    typeof (message as { ms?: unknown }).ms === "string"
  );
}

/** A worker's end of the IPC channel to the primary. */
export interface PrimaryChannel {
  /** Sends to the primary; dropped silently once the channel is closed. */
  send(message: WorkerToPrimary): void;
  /** Calls `listener` with every message of ours from the primary. */
  onMessage(listener: (message: PrimaryToWorker) => void): void;
  /** Calls `listener` once the channel closes (the primary is gone or let this worker go). */
  onDisconnect(listener: () => void): void;
}

/** The channel of this process, a node:cluster worker. */
export function processChannel(): PrimaryChannel {
  return {
    send(message) {
      // process.send throws once the channel is closed; the primary is gone, nobody to tell.
      if (process.connected) process.send?.(message);
    },
    onMessage(listener) {
      process.on("message", (message: unknown) => {
        if (isWorkerMessage(message)) listener(message as PrimaryToWorker);
      });
    },
    onDisconnect(listener) {
      process.once("disconnect", listener);
    },
  };
}
