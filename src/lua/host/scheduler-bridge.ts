import {
  type HostFunction,
  LuaError,
  type LuaInput,
  type LuaRef,
  type LuaValue,
  luaMulti,
} from "../vm/engine.js";
import { createHostApi } from "./host-api.js";
import type { LuaHost } from "./lua-host.js";
import { readRuntimeFile } from "./runtime-files.js";
import { InboxEvent, SocketInboxes } from "./socket-inboxes.js";

/** Event kinds delivered to a Lua socket inbox (frame opcodes, plus "closed"). */
export const SocketEvent = {
  Continuation: 0,
  Text: 1,
  Binary: 2,
  Close: 8,
  Ping: 9,
  Pong: 10,
  /** The connection is gone; `extra` is the close code. */
  Closed: InboxEvent.Closed,
} as const;

/** Who a failed coroutine belonged to, as the style set it with `spawn(fn, context)`. */
export type FailureHandler = (context: LuaValue, message: string, traceback: string) => void;

/** How a style plugs into the bridge. */
export interface SchedulerBridgeOptions {
  /**
   * Told to stop reading a socket's peer (false) when the script has too much of it unread,
   * and to read again (true) once it caught up.
   */
  onFlow?: (handle: number, reading: boolean) => void;
  /** Runs an entry into Lua the host starts by itself (a wake); default: at once. */
  enter?: (work: () => void) => void;
}

/**
 * The host side of `runtime/common/scheduler.lua`: owns the socket inboxes (one design for
 * every coroutine style, see {@link SocketInboxes}), wakes their readers, and runs the
 * cooperative scheduler so coroutines waiting in `read`, `sleep` or `wait` continue. A
 * coroutine that fails (a Lua error, or a CPU budget or memory limit hit) is reported to
 * `onFailure` with its context, so the style can close the connection concerned.
 */
export class SchedulerBridge {
  private readonly host: LuaHost;
  private readonly runEntryFn: LuaRef;
  private readonly wakeFn: LuaRef;
  private readonly wakeProgressFn: LuaRef;
  private readonly currentContextFn: LuaRef;
  private readonly onFailure: FailureHandler;
  /** Every socket's events until the script reads them. */
  readonly inboxes: SocketInboxes;

  constructor(host: LuaHost, onFailure: FailureHandler, options: SchedulerBridgeOptions = {}) {
    this.host = host;
    this.onFailure = onFailure;
    const engine = host.engine;
    const enter = options.enter ?? ((work: () => void) => work());
    const inboxes = new SocketInboxes({
      wake: (args) => enter(() => this.run(this.wakeFn, args)),
      onFlow: options.onFlow,
    });
    this.inboxes = inboxes;
    const api = createHostApi(host);
    const fn = (f: HostFunction) => engine.createRef(f);
    const primitives = {
      set_timer: engine.createRef(api.set_timer),
      cancel_timer: engine.createRef(api.cancel_timer),
      failed: fn((args) => {
        const message = args.string(2);
        const traceback = args.optString(3) ?? "";
        host.reportError("a coroutine", new LuaError("ERR_LUA_RUNTIME", message, traceback));
        onFailure(args.value(1), message, traceback);
        return undefined;
      }),
      epoch: engine.budgetEpoch(),
      inbox_take: fn((args) => {
        const handle = args.integer(1);
        if (!inboxes.has(handle)) return SocketEvent.Closed;
        const inbox = inboxes.take(handle, args.optNumber(2) ?? 0);
        if (inbox === undefined) return undefined;
        return luaMulti(inbox.takenKind, inbox.takenData ?? "", inbox.takenExtra);
      }),
      inbox_put_back: fn((args) => {
        const data = args.value(3);
        const extra = args.value(4);
        inboxes.putBack(
          args.integer(1),
          args.integer(2),
          Buffer.isBuffer(data) ? data : null,
          typeof extra === "number" || typeof extra === "boolean" ? extra : null,
        );
        return undefined;
      }),
      inbox_open: fn((args) => {
        inboxes.open(args.integer(1));
        return undefined;
      }),
      inbox_forget: fn((args) => {
        inboxes.forget(args.integer(1));
        return undefined;
      }),
      inbox_closed: fn((args) => inboxes.isClosed(args.integer(1))),
    };
    const [module] = engine.run(readRuntimeFile("common/scheduler.lua"), "=scheduler", primitives);
    const table = module as Record<string, LuaValue>;
    this.runEntryFn = table.run_entry as LuaRef;
    this.wakeFn = table.wake_readers as LuaRef;
    this.wakeProgressFn = table.wake_progress as LuaRef;
    this.currentContextFn = engine.load(
      "return require('moonsocket.scheduler').current_context",
      "=scheduler-context",
    );
    host.afterEvent = () => this.run();
  }

  /**
   * Resumes every ready coroutine, in one entry into Lua where each resume gets the whole CPU
   * budget (see run_entry in scheduler.lua). A budget abort in one coroutine is reported and
   * the rest go on in a new entry. With `wake`, first hands the woken readers their events in
   * the same entry (see wake_readers); after an abort only the quads not handled yet are
   * handed again, so no event is delivered twice.
   */
  run(wake?: LuaRef, args: LuaInput[] = []): void {
    const engine = this.host.engine;
    let pending = wake;
    let pendingArgs = args;
    for (;;) {
      try {
        if (pending === undefined) engine.call(this.runEntryFn);
        else engine.call(this.runEntryFn, pending, ...pendingArgs);
        return;
      } catch (error) {
        if (engine.closed) return;
        // The error escaped the scheduler itself: a CPU budget or memory limit hit while a
        // coroutine ran (the limit keeps firing until control is back in the host). Blame
        // that coroutine's owner, then go on with the coroutines still queued.
        let context: LuaValue = null;
        let woken = Number.POSITIVE_INFINITY;
        try {
          context = engine.call(this.currentContextFn)[0] ?? null;
          if (pending !== undefined) woken = Number(engine.call(this.wakeProgressFn)[0]);
        } catch {
          // Nothing to blame.
        }
        this.host.reportError("a coroutine", error);
        const message = error instanceof Error ? error.message : String(error);
        this.onFailure(context, message, "");
        if (pending !== undefined) {
          pendingArgs = pendingArgs.slice(woken * 4);
          if (pendingArgs.length === 0) pending = undefined;
        }
      }
    }
  }
}
