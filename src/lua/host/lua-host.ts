import { basename, dirname, join, resolve } from "node:path";
import type { Logger } from "../../observability/logger.js";
import type { Counter, MetricsRegistry } from "../../observability/metrics.js";
import { Hub } from "../../server/hub.js";
import { createLuaEngine } from "../vm/create-engine.js";
import {
  type LuaEngine,
  type LuaEngineKind,
  type LuaEngineOptions,
  LuaError,
  type LuaRef,
} from "../vm/engine.js";
import { createMoonsocketModule, type HostServices } from "./host-api.js";
import { readRuntimeFile } from "./runtime-files.js";

/** Settings of the Lua side. Durations in milliseconds, sizes in bytes. */
export interface LuaHostOptions {
  /** Path of the script; its folder is where `require` looks. */
  scriptPath: string;
  /** CPU budget per handler run. Default 1000 ms. */
  cpuBudgetMs?: number;
  /** Memory cap of the Lua state. Default 256 MiB. */
  memoryLimitBytes?: number;
  /** Which Lua engine to create (see {@link LuaEngineOptions.engine}). */
  luaEngine?: LuaEngineKind | "auto";
  /**
   * Timers the script may have pending at once (they live outside the Lua state, so its
   * memory cap does not bound them: about 0.9 KB each). Default 250,000.
   */
  maxTimers?: number;
  /**
   * Outgoing WebSocket connections the script may have open at once (`websocket.connect`,
   * `resty.websocket.client`). Default 10,000.
   */
  maxOutgoing?: number;
  /** Topics a callback-style script may subscribe one client to (`_subscribe`). Default 1,000. */
  maxTopics?: number;
  logger: Logger;
  metrics?: MetricsRegistry;
  /** Called with the absolute path of every module file the script `require`s from its folder. */
  onModuleLoaded?: (file: string) => void;
  /**
   * The hub of the script's server(s), for `moonsocket.publish`/`subscribe`/`history`. Default:
   * a hub of its own (topics within the script).
   */
  hub?: Hub;
}

/** The longest delay Node's timers take (2^31 − 1 ms). */
const MAX_TIMER_MS = 2 ** 31 - 1;

export const DEFAULT_MAX_TIMERS = 250_000;
export const DEFAULT_MAX_OUTGOING = 10_000;
export const DEFAULT_MAX_TOPICS = 1_000;

/**
 * One sandboxed Lua state with the library every style shares: pattern matching and the other
 * library calls the CPU budget could not interrupt made budget-safe (`safe-patterns.lua`,
 * `safe-builtins.lua`), `cjson`, `cjson.safe`,
 * LuaJIT's habits (`bit`, `unpack`, `loadstring`, `table.new`, `table.clear`), `print` into
 * the server log, and the `moonsocket` module (log, clock, timers). Lua errors are logged
 * here, with script, line and traceback, and counted.
 */
export class LuaHost implements HostServices {
  readonly engine: LuaEngine;
  readonly logger: Logger;
  readonly scriptPath: string;
  readonly scriptName: string;
  /** Called after every entry into Lua from a host event (timers); styles run their scheduler here. */
  afterEvent: () => void = () => {};
  private readonly errors: Counter | null;
  /**
   * Pending timers by id: the Node timer (null for one that never fires, an infinite delay)
   * and the Lua function it calls, released as soon as the timer is cancelled.
   */
  private readonly timers = new Map<number, { node: NodeJS.Timeout | null; fn: LuaRef }>();
  private nextTimerId = 1;
  readonly maxTimers: number;
  readonly maxOutgoing: number;
  readonly maxTopics: number;
  /** When each throttled limit was last logged (see limitHit). */
  private readonly limitLoggedAt = new Map<string, number>();
  private readonly startedAt = performance.now();
  readonly hub: Hub;
  /** The script's topic subscriptions by id: their topic and how to end each. */
  private readonly subscriptions = new Map<number, { topic: string; end(): void }>();
  private nextSubscriptionId = 1;

  private constructor(engine: LuaEngine, options: LuaHostOptions, errors: Counter | null) {
    this.engine = engine;
    this.logger = options.logger;
    this.scriptPath = resolve(options.scriptPath);
    this.scriptName = basename(options.scriptPath);
    this.errors = errors;
    this.maxTimers = options.maxTimers ?? DEFAULT_MAX_TIMERS;
    this.maxOutgoing = options.maxOutgoing ?? DEFAULT_MAX_OUTGOING;
    this.maxTopics = options.maxTopics ?? DEFAULT_MAX_TOPICS;
    this.hub = options.hub ?? new Hub({ logger: this.logger });
  }

  subscribeScript(topic: string, fn: LuaRef): number {
    const stop = this.hub.listen(topic, (message, from) => {
      if (this.engine.closed) return;
      this.callProtected(`subscription to ${from}`, fn, message.data, from);
      this.afterEvent();
    });
    const id = this.nextSubscriptionId++;
    this.subscriptions.set(id, {
      topic,
      end: () => {
        stop();
        fn.release();
      },
    });
    return id;
  }

  unsubscribeScript(which: string | number): boolean {
    let ended = false;
    for (const [id, subscription] of this.subscriptions) {
      if (id !== which && subscription.topic !== which) continue;
      this.subscriptions.delete(id);
      subscription.end();
      ended = true;
    }
    return ended;
  }

  /** Milliseconds since the script started (the clock of `monotonic` in every style). */
  monotonicMs(): number {
    return performance.now() - this.startedAt;
  }

  /** Timers pending now. */
  get pendingTimers(): number {
    return this.timers.size;
  }

  /** Creates the Lua state and installs the shared library. */
  static async create(options: LuaHostOptions): Promise<LuaHost> {
    const logger = options.logger;
    const scriptDir = dirname(resolve(options.scriptPath));
    const onModuleLoaded = options.onModuleLoaded;
    const engine = await createLuaEngine({
      scriptDir,
      ...(onModuleLoaded !== undefined
        ? { onModuleRead: (relativePath: string) => onModuleLoaded(join(scriptDir, relativePath)) }
        : {}),
      ...(options.cpuBudgetMs !== undefined ? { cpuBudgetMs: options.cpuBudgetMs } : {}),
      ...(options.luaEngine !== undefined ? { engine: options.luaEngine } : {}),
      ...(options.memoryLimitBytes !== undefined
        ? { memoryLimitBytes: options.memoryLimitBytes }
        : {}),
      log: (level, message) => logger[level](message, { source: "lua" }),
    });
    let errors: Counter | null = null;
    if (options.metrics !== undefined) {
      errors =
        (options.metrics.get("moonsocket_lua_errors_total") as Counter | undefined) ??
        options.metrics.counter({
          name: "moonsocket_lua_errors_total",
          help: "Lua errors and limit hits (CPU budget, memory cap, timers, listeners, outgoing connections, topics) in the script.",
        });
    }
    const host = new LuaHost(engine, options, errors);
    if (options.metrics !== undefined) reportResources(options.metrics, host);
    host.installLibrary();
    return host;
  }

  private installLibrary(): void {
    const engine = this.engine;
    // First, before anything captures the library functions they replace: pattern matching and
    // the other library calls whose single C call could outlast the CPU budget.
    engine.run(readRuntimeFile("common/safe-patterns.lua"), "=safe-patterns", {
      cpu_budget_ms: engine.cpuBudgetMs,
    });
    engine.run(readRuntimeFile("common/safe-builtins.lua"), "=safe-builtins", {
      memory_limit_bytes: engine.memoryLimitBytes,
    });
    engine.run(readRuntimeFile("common/luajit-compat.lua"), "=luajit-compat");
    engine.preload("cjson", readRuntimeFile("common/cjson.lua"), "=cjson");
    engine.preload("cjson.safe", "return require('cjson').safe()", "=cjson.safe");
    for (const [name, fn] of Object.entries(createMoonsocketModule(this)))
      engine.registerFunction("__moonsocket", name, fn);
    engine.run(readRuntimeFile("common/moonsocket.lua"), "=moonsocket");
  }

  /**
   * Runs `fn` after `ms` milliseconds (every `ms` when `repeat`); returns the timer id. Delays
   * past Node's limit (2^31 − 1 ms, about 24.8 days, beyond which Node fires after 1 ms) are
   * waited in steps; an infinite one never fires.
   */
  setTimer(ms: number, fn: LuaRef, repeat: boolean): number {
    if (this.timers.size >= this.maxTimers) {
      fn.release();
      throw new Error(this.limitHit(`too many timers: ${this.maxTimers} pending (--max-timers)`));
    }
    const id = this.nextTimerId++;
    const fire = () => {
      if (!repeat) this.timers.delete(id);
      if (this.engine.closed) return;
      this.callProtected(`timer ${id}`, fn);
      if (!repeat) fn.release();
      this.afterEvent();
    };
    if (!repeat) this.armTimer(id, fn, ms, fire);
    else if (ms <= MAX_TIMER_MS)
      this.timers.set(id, { node: setInterval(fire, Math.max(1, ms)), fn });
    else {
      const fireAndRearm = () => {
        fire();
        if (this.timers.has(id)) this.armTimer(id, fn, ms, fireAndRearm);
      };
      this.armTimer(id, fn, ms, fireAndRearm);
    }
    return id;
  }

  /** Runs `fire` once after `ms` as timer `id`, in steps of Node's longest delay if need be. */
  private armTimer(id: number, fn: LuaRef, ms: number, fire: () => void): void {
    if (ms === Number.POSITIVE_INFINITY) this.timers.set(id, { node: null, fn });
    else if (ms > MAX_TIMER_MS) {
      const step = () => this.armTimer(id, fn, ms - MAX_TIMER_MS, fire);
      this.timers.set(id, { node: setTimeout(step, MAX_TIMER_MS), fn });
    } else this.timers.set(id, { node: setTimeout(fire, ms), fn });
  }

  /**
   * Cancels a timer and releases its Lua function at once (a script that sets and cancels
   * timers in a loop must not keep their closures until the JS GC runs); false when it
   * already fired or never existed.
   */
  cancelTimer(id: number): boolean {
    const timer = this.timers.get(id);
    if (timer === undefined) return false;
    if (timer.node !== null) clearTimeout(timer.node);
    this.timers.delete(id);
    timer.fn.release();
    return true;
  }

  /** Calls a Lua function; a Lua error is logged (script, line, traceback) and returned as false. */
  callProtected(
    context: string,
    fn: LuaRef,
    ...args: Parameters<LuaEngine["call"]> extends [LuaRef, ...infer R] ? R : never
  ): boolean {
    try {
      this.engine.call(fn, ...args);
      return true;
    } catch (error) {
      this.reportError(context, error);
      return false;
    }
  }

  /** Logs a Lua error with its position and traceback, and counts it. */
  reportError(context: string, error: unknown, fields: Record<string, unknown> = {}): void {
    this.errors?.inc();
    if (error instanceof LuaError) {
      this.logger.error(`Lua error in ${context}: ${error.message}`, {
        script: this.scriptName,
        kind: error.code,
        ...fields,
        ...(error.traceback ? { traceback: error.traceback } : {}),
      });
    } else {
      this.logger.error(
        `error in ${context}: ${error instanceof Error ? error.message : String(error)}`,
        { script: this.scriptName, ...fields },
      );
    }
  }

  /**
   * Logs and counts a limit hit that the script sees as an error return rather than an error
   * (an ngx.re match stopped at the CPU budget).
   */
  reportLimit(message: string, fields: Record<string, unknown> = {}): void {
    this.countLimit();
    this.logger.warn(message, { script: this.scriptName, ...fields });
  }

  /**
   * Why the script may not open one more outgoing connection, having `open` already; null
   * when it may. A refusal is counted and logged (see limitHit).
   */
  outgoingRefusal(open: number): string | null {
    if (open < this.maxOutgoing) return null;
    return this.limitHit(
      `too many outgoing connections: ${this.maxOutgoing} open (--max-outgoing)`,
    );
  }

  /**
   * A limit hit that a script may repeat in a loop: counted every time, logged at most once a
   * second per message. Returns the message.
   */
  limitHit(message: string): string {
    this.countLimit();
    const now = performance.now();
    if (now - (this.limitLoggedAt.get(message) ?? Number.NEGATIVE_INFINITY) >= 1000) {
      this.limitLoggedAt.set(message, now);
      this.logger.warn(message, { script: this.scriptName });
    }
    return message;
  }

  /** Counts a limit hit without logging it (a caller that throttles its log lines). */
  countLimit(): void {
    this.errors?.inc();
  }

  /** Stops every timer and frees the Lua state. */
  close(): void {
    for (const subscription of this.subscriptions.values()) subscription.end();
    this.subscriptions.clear();
    for (const timer of this.timers.values()) if (timer.node !== null) clearTimeout(timer.node);
    this.timers.clear();
    this.engine.close();
  }
}

/** The host each registry's Lua gauges read (the newest: a reload replaces it). */
const measuredHosts = new WeakMap<MetricsRegistry, { host: LuaHost }>();

/** Exposes the Lua state's memory use and pending timers, with their caps (the limits' metrics). */
function reportResources(metrics: MetricsRegistry, host: LuaHost): void {
  const known = measuredHosts.get(metrics);
  if (known !== undefined) {
    known.host = host;
    return;
  }
  const slot = { host };
  measuredHosts.set(metrics, slot);
  metrics.gauge({
    name: "moonsocket_lua_memory_bytes",
    help: "Memory the script's Lua state uses.",
    collect: () => slot.host.engine.memoryUsedBytes,
  });
  metrics.gauge({
    name: "moonsocket_lua_memory_limit_bytes",
    help: "Cap on the Lua state's memory (--memory-limit).",
    collect: () => slot.host.engine.memoryLimitBytes,
  });
  metrics.gauge({
    name: "moonsocket_lua_timers",
    help: "Timers the script has pending.",
    collect: () => slot.host.pendingTimers,
  });
  metrics.gauge({
    name: "moonsocket_lua_timers_limit",
    help: "Cap on the script's pending timers (--max-timers).",
    collect: () => slot.host.maxTimers,
  });
}
