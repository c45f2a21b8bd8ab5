import type { Logger } from "../../observability/logger.js";
import { isValidUtf8 } from "../../protocol/utf8.js";
import type { Hub } from "../../server/hub.js";
import type { HostFunction, LuaRef } from "../vm/engine.js";

/** What the host API is built on (a LuaHost): the log, the script's name and its timers. */
export interface HostServices {
  readonly logger: Logger;
  readonly scriptName: string;
  /** Milliseconds since the script started. */
  monotonicMs(): number;
  setTimer(ms: number, fn: LuaRef, repeat: boolean): number;
  cancelTimer(id: number): boolean;
  /** Where the script's `publish`, `subscribe` and `history` go (every style shares one). */
  readonly hub: Hub;
  /**
   * Calls `fn(message, topic)` for every publication on `topic`, until it is ended or the script
   * goes. Returns the subscription's id.
   */
  subscribeScript(topic: string, fn: LuaRef): number;
  /** Ends one subscription (by id) or every one of a topic (by name); false when none was found. */
  unsubscribeScript(which: string | number): boolean;
}

type Level = "debug" | "info" | "warn" | "error";

const LOG_LEVELS: ReadonlySet<string> = new Set<Level>(["debug", "info", "warn", "error"]);

/**
 * The host primitives every style's Lua runtime builds on, written once: logging, clocks,
 * timers and the process id. Durations and clocks in milliseconds. A style spreads this table
 * into the primitives of its runtime and adds only what is its own (sockets, requests…).
 */
export interface HostApi {
  /** `log(level, message [, at [, handle]])`: into the server log, from the script; an unknown level is ignored. */
  readonly log: HostFunction;
  /** `now()`: wall-clock milliseconds since the epoch. */
  readonly now: HostFunction;
  /** `monotonic()`: milliseconds since the script started, never going back. */
  readonly monotonic: HostFunction;
  /** `set_timer(ms, fn, repeat)`: a timer id; a negative delay is 0 (see LuaHost.setTimer). */
  readonly set_timer: HostFunction;
  /** `cancel_timer(id)`: false when it fired already. */
  readonly cancel_timer: HostFunction;
  /** `pid()`: the server's process id. */
  readonly pid: HostFunction;
}

/**
 * The host API of `host`. `clientOf`, when given, names the client a log line's `handle`
 * (4th argument) belongs to, for the log's `client` field.
 */
export function createHostApi(
  host: HostServices,
  clientOf?: (handle: number) => number | undefined,
): HostApi {
  return {
    log: (args) => {
      const level = args.string(1);
      if (!LOG_LEVELS.has(level)) return;
      const fields: Record<string, unknown> = { source: host.scriptName };
      const at = args.optString(3);
      if (at !== undefined) fields.at = at;
      const handle = args.optInteger(4);
      const client = handle === undefined ? undefined : clientOf?.(handle);
      if (client !== undefined) fields.client = client;
      host.logger[level as Level](args.string(2), fields);
    },
    now: () => Date.now(),
    monotonic: () => host.monotonicMs(),
    set_timer: (args) => host.setTimer(Math.max(0, args.number(1)), args.ref(2), args.boolean(3)),
    cancel_timer: (args) => host.cancelTimer(args.integer(1)),
    pid: () => process.pid,
  };
}

/**
 * The functions behind `require "moonsocket"` (the same log, clocks and timers, with the
 * argument checks a script's own calls need): one host function each, no Lua wrapper, so an
 * error, a bad delay or the timer limit is reported at the script's line. `now` in seconds.
 */
export function createMoonsocketModule(host: HostServices): Record<string, HostFunction> {
  const timerFunction =
    (repeat: boolean): HostFunction =>
    (args) => {
      const ms = args.number(1);
      if (!(ms >= 0)) args.argError(1, "delay must be a number of milliseconds >= 0");
      return host.setTimer(ms, args.ref(2), repeat);
    };
  return {
    log: (args) => {
      const level = args.string(1);
      if (!LOG_LEVELS.has(level)) args.argError(1, "log level must be debug, info, warn or error");
      const parts: string[] = [];
      for (let i = 2; i <= args.count; i++) parts.push(args.string(i));
      host.logger[level as Level](parts.join(""), { source: host.scriptName });
      return undefined;
    },
    now: () => Date.now() / 1000,
    monotonic: () => host.monotonicMs(),
    set_timeout: timerFunction(false),
    set_interval: timerFunction(true),
    cancel_timer: (args) => host.cancelTimer(args.integer(1)),
    ...createTopicFunctions(host),
  };
}

/**
 * `publish(topic, msg [, binary])`, `subscribe(topic, fn)`, `unsubscribe(topic)` and
 * `history(topic)`: topics for the whole script, cluster-wide when the server is a node of one.
 * A message is text when it is valid UTF-8 (as `_publish`), unless `binary` says otherwise.
 */
function createTopicFunctions(host: HostServices): Record<string, HostFunction> {
  return {
    publish: (args) => {
      const topic = args.string(1);
      const data = args.bytes(2);
      const binary = args.isNil(3) ? !isValidUtf8(data) : args.boolean(3);
      return host.hub.publish(topic, data, binary);
    },
    subscribe: (args) => host.subscribeScript(args.string(1), args.ref(2)),
    unsubscribe: (args) =>
      host.unsubscribeScript(args.type(1) === "number" ? args.integer(1) : args.string(1)),
    history: (args) => host.hub.history(args.string(1)).map((message) => toBytes(message.data)),
  };
}

function toBytes(data: string | Uint8Array): Buffer {
  if (typeof data === "string") return Buffer.from(data, "utf8");
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}
