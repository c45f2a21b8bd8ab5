import { LuaError, type LuaInput, type LuaRef, type LuaValue } from "../vm/engine.js";
import { createHostApi } from "./host-api.js";
import type { LuaHost } from "./lua-host.js";
import { readRuntimeFile } from "./runtime-files.js";

/** Event kinds delivered to a Lua socket inbox (frame opcodes, plus "closed"). */
export const SocketEvent = {
  Continuation: 0,
  Text: 1,
  Binary: 2,
  Close: 8,
  Ping: 9,
  Pong: 10,
  /** The connection is gone; `extra` is the close code. */
  Closed: -1,
} as const;

/** Who a failed coroutine belonged to, as the style set it with `spawn(fn, context)`. */
export type FailureHandler = (context: LuaValue, message: string, traceback: string) => void;

/**
 * The host side of `runtime/scheduler.lua`: delivers socket events to Lua and runs the
 * cooperative scheduler after each, so coroutines waiting in `read`, `sleep` or `wait`
 * continue. A coroutine that fails (a Lua error, or a CPU budget or memory limit hit) is
 * reported to `onFailure` with its context, so the style can close the connection concerned.
 */
export class SchedulerBridge {
  private readonly host: LuaHost;
  private readonly runEntryFn: LuaRef;
  private readonly postFn: LuaRef;
  private readonly postBatchFn: LuaRef;
  private readonly openFn: LuaRef;
  private readonly forgetFn: LuaRef;
  private readonly currentContextFn: LuaRef;

  /**
   * `onFlow(handle, reading)`, when given, is told to stop reading a socket's peer (false) when
   * the script has too much of it unread, and to read again (true) once it caught up.
   */
  constructor(
    host: LuaHost,
    onFailure: FailureHandler,
    onFlow?: (handle: number, reading: boolean) => void,
  ) {
    this.host = host;
    const engine = host.engine;
    const api = createHostApi(host);
    const primitives = {
      set_timer: engine.createRef(api.set_timer),
      cancel_timer: engine.createRef(api.cancel_timer),
      failed: host.engine.createRef((args) => {
        const message = args.string(2);
        const traceback = args.optString(3) ?? "";
        host.reportError("a coroutine", new LuaError("ERR_LUA_RUNTIME", message, traceback));
        onFailure(args.value(1), message, traceback);
        return undefined;
      }),
      epoch: engine.budgetEpoch(),
      ...(onFlow !== undefined
        ? {
            flow: host.engine.createRef((args) => {
              onFlow(args.integer(1), args.boolean(2));
              return undefined;
            }),
          }
        : {}),
    };
    const [module] = engine.run(readRuntimeFile("common/scheduler.lua"), "=scheduler", primitives);
    const table = module as Record<string, LuaValue>;
    this.runEntryFn = table.run_entry as LuaRef;
    this.postFn = table.post as LuaRef;
    this.postBatchFn = table.post_batch as LuaRef;
    this.openFn = table.open_socket as LuaRef;
    this.forgetFn = table.forget_socket as LuaRef;
    this.currentContextFn = engine.load(
      "return require('moonsocket.scheduler').current_context",
      "=scheduler-context",
    );
    host.afterEvent = () => this.run();
    this.onFailure = onFailure;
  }

  private readonly onFailure: FailureHandler;

  /**
   * Resumes every ready coroutine, in one entry into Lua where each resume gets the whole CPU
   * budget (see run_entry in scheduler.lua). With `first`, calls `first(...args)` in the same
   * entry before (it wakes tasks). A budget abort in one coroutine is reported and the rest go
   * on in a new entry.
   */
  run(first?: LuaRef, ...args: LuaInput[]): void {
    const engine = this.host.engine;
    let pending = first;
    for (let retried = false; ; ) {
      try {
        if (pending === undefined) engine.call(this.runEntryFn);
        else engine.call(this.runEntryFn, pending, ...args);
        return;
      } catch (error) {
        if (engine.closed) return;
        // The error escaped the scheduler itself: a CPU budget or memory limit hit while a
        // coroutine ran (the limit keeps firing until control is back in the host). Blame
        // that coroutine's owner, then go on with the coroutines still queued.
        let context: LuaValue = null;
        try {
          context = engine.call(this.currentContextFn)[0] ?? null;
        } catch {
          // Nothing to blame.
        }
        this.host.reportError("a coroutine", error);
        const message = error instanceof Error ? error.message : String(error);
        this.onFailure(context, message, "");
        // `first` may not have finished (a memory error): call it once more, it must be
        // harmless to repeat (waking a task that is awake already does nothing).
        if (pending !== undefined && retried) pending = undefined;
        retried = true;
      }
    }
  }

  /** Gives socket `handle` an inbox. */
  openSocket(handle: number): void {
    this.host.engine.call(this.openFn, handle);
  }

  /** Drops socket `handle`'s inbox. */
  forgetSocket(handle: number): void {
    this.host.engine.call(this.forgetFn, handle);
  }

  /**
   * Queues several socket events (in order) with one entry into Lua, and runs the scheduler:
   * the readers they wake resume in one more entry, however many events there were.
   */
  deliverBatch(
    handles: number[],
    kinds: number[],
    datas: Array<Buffer | null>,
    extras: Array<number | boolean | null>,
  ): void {
    const count = handles.length;
    if (count === 0) return;
    // One event (every message, at pipelining depth 1): no tables to build.
    if (count === 1)
      this.host.engine.call(this.postFn, handles[0]!, kinds[0]!, datas[0]!, extras[0]!);
    else this.host.engine.call(this.postBatchFn, handles, kinds, datas, extras, count);
    this.run();
  }
}
