import { readFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { CloseCode, isValidCloseCode } from "../../../protocol/close-code.js";
import { SMALL_FRAME_BYTES } from "../../../protocol/output-queue.js";
import { isValidUtf8 } from "../../../protocol/utf8.js";
import type { ServerHooks, WebSocketServer } from "../../../server/server.js";
import type { ServerClient } from "../../../server/server-client.js";
import { SendStatus } from "../../../server/server-client.js";
import type { LuaHost } from "../../host/lua-host.js";
import { readRuntimeFile } from "../../host/runtime-files.js";
import {
  type HostFunction,
  type LuaArgs,
  type LuaInput,
  type LuaRef,
  luaMulti,
} from "../../vm/engine.js";

/** Messages handed to Lua in one entry at most (a loop turn's reads can hold thousands). */
const MAX_BATCH = 256;

/**
 * WebSocketServer's callback style: the script defines `main(clientId, message)`,
 * `on_connect(clientId)`, `on_disconnect(clientId)` and calls `_send(clientId, message)` and
 * `_sendAll(message)`. Fixed where the original was fragile (a Lua error never stops the
 * server; `on_disconnect` only follows `on_connect`; binary messages reach `main` too, with a
 * third argument `is_binary`) and extended in the same spirit: `_sendBinary`, `_sendAllBinary`,
 * `_close`, `_subscribe`/`_unsubscribe`/`_publish`, `_setTimeout`/`_setInterval`/`_clearTimer`,
 * `_getHeaders`, `_getClientInfo`, `_clients`, and the hooks `on_startup()`/`on_shutdown()`.
 *
 * The messages of one event-loop turn — every socket the poll phase read — reach `main` with
 * one entry into Lua (runtime/callback/callback-dispatch.lua), each under its own CPU budget;
 * every other entry (on_connect, on_disconnect, …) first delivers the messages that arrived
 * before it.
 */
export class CallbackStyle implements ServerHooks {
  private readonly host: LuaHost;
  private server: WebSocketServer | null = null;
  private main: LuaRef | null = null;
  private onConnectFn: LuaRef | null = null;
  private onDisconnectFn: LuaRef | null = null;
  private onStartupFn: LuaRef | null = null;
  private onShutdownFn: LuaRef | null = null;
  private readonly dispatchFn: LuaRef;
  private readonly progressFn: LuaRef;
  /** Messages waiting for main: client id, data, is_binary, …; and their clients. */
  private pending: LuaInput[] = [];
  private pendingClients: ServerClient[] = [];
  private flushScheduled = false;
  private readonly flushTask = (): void => {
    this.flushScheduled = false;
    this.flush();
  };

  constructor(host: LuaHost) {
    this.host = host;
    const engine = host.engine;
    const [dispatch, progress] = engine.run(
      readRuntimeFile("callback/callback-dispatch.lua"),
      "=callback-dispatch",
      engine.budgetEpoch(),
    );
    this.dispatchFn = dispatch as LuaRef;
    this.progressFn = progress as LuaRef;
  }

  /** Registers the `_send` family, runs the script once, and picks up its callbacks. Throws LuaError. */
  load(server: WebSocketServer): void {
    this.server = server;
    const engine = this.host.engine;
    const register = (name: string, fn: HostFunction) => engine.registerFunction(null, name, fn);
    register("_send", (args) => this.result(this.sendTo(args, false)));
    register("_sendBinary", (args) => this.result(this.sendTo(args, true)));
    register("_sendAll", (args) => this.sendAll(args, false));
    register("_sendAllBinary", (args) => this.sendAll(args, true));
    register("_close", (args) => {
      const client = this.clientArg(args);
      if (client === undefined) return luaMulti(null, "no such client");
      const code = args.optInteger(2) ?? CloseCode.NormalClosure;
      if (!isValidCloseCode(code)) args.argError(2, `invalid close code ${code}`);
      const reason = args.optBytes(3) ?? Buffer.alloc(0);
      if (reason.length > 123) args.argError(3, "close reason longer than 123 bytes");
      // RFC 6455 §5.5.1: the reason is UTF-8; a peer fails the connection on anything else.
      if (!isValidUtf8(reason)) args.argError(3, "close reason is not valid UTF-8");
      client.close(code, reason.toString("utf8"));
      return true;
    });
    register("_subscribe", (args) => {
      const client = this.clientArg(args);
      if (client === undefined) return false;
      const topic = args.string(2);
      // Subscriptions live outside the Lua state: its memory cap does not bound them.
      const topics = this.server!.hub.topicsOf(client);
      if (topics.size >= this.host.maxTopics && !topics.has(topic)) {
        const max = this.host.maxTopics;
        return luaMulti(
          false,
          this.host.limitHit(`too many topics: ${max} per client (--max-topics)`),
        );
      }
      return this.server!.hub.subscribe(client, topic);
    });
    register("_unsubscribe", (args) => {
      const client = this.clientArg(args);
      return client !== undefined && this.server!.hub.unsubscribe(client, args.string(2));
    });
    register("_publish", (args) => {
      const data = args.bytes(2);
      const binary = args.count >= 3 ? args.boolean(3) : !isValidUtf8(data);
      return server.hub.publish(args.string(1), data, binary);
    });
    register("_history", (args) =>
      server.hub.history(args.string(1)).map((message) => Buffer.from(message.data)),
    );
    register("_setTimeout", (args) => this.host.setTimer(args.number(1), args.ref(2), false));
    register("_setInterval", (args) => this.host.setTimer(args.number(1), args.ref(2), true));
    register("_clearTimer", (args) => this.host.cancelTimer(args.integer(1)));
    register("_getHeaders", (args) => {
      const client = this.clientArg(args);
      if (client === undefined) return luaMulti(null, "no such client");
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(client.headers)) {
        if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(", ") : value;
      }
      return headers;
    });
    register("_getClientInfo", (args) => {
      const client = this.clientArg(args);
      if (client === undefined) return luaMulti(null, "no such client");
      return {
        id: client.id,
        path: client.path,
        query: client.query,
        remote_address: client.remoteAddress,
        remote_port: client.remotePort,
        protocol: client.protocol,
      };
    });
    register("_clients", () => Array.from(server.hub.clientIds()));
    const source = readFileSync(this.host.scriptPath);
    engine.run(source, `@${this.host.scriptName}`);
    this.main = this.functionGlobal("main");
    this.onConnectFn = this.functionGlobal("on_connect");
    this.onDisconnectFn = this.functionGlobal("on_disconnect");
    this.onStartupFn = this.functionGlobal("on_startup");
    this.onShutdownFn = this.functionGlobal("on_shutdown");
    if (this.main === null) {
      this.host.logger.warn("the script defines no main(clientId, message): messages are ignored", {
        script: this.host.scriptName,
      });
    }
  }

  private functionGlobal(name: string): LuaRef | null {
    const value = this.host.engine.getGlobal(name);
    if (value !== null && typeof value === "object" && "type" in value && value.type === "function")
      return value as LuaRef;
    return null;
  }

  private clientArg(args: LuaArgs): ServerClient | undefined {
    return this.server!.hub.getClient(args.integer(1));
  }

  private sendTo(args: LuaArgs, forceBinary: boolean): SendStatus {
    const id = args.integer(1);
    // A small message is copied into its frame at once: no need for a copy of its own.
    let data = args.bytesView(2);
    if (data.length >= SMALL_FRAME_BYTES) data = Buffer.from(data);
    // Text frames must be UTF-8 (RFC 6455 §5.6); other bytes go out unchanged as binary.
    return this.server!.hub.sendTo(id, data, forceBinary || !isValidUtf8(data));
  }

  private sendAll(args: LuaArgs, forceBinary: boolean): number {
    const data = args.bytes(1);
    return this.server!.hub.broadcast(data, forceBinary || !isValidUtf8(data));
  }

  private result(status: SendStatus) {
    return status === SendStatus.Dropped
      ? luaMulti(false, "no such client or connection closed")
      : true;
  }

  /** Calls on_connect for every client already connected (after a reload). */
  introduceClients(server: WebSocketServer): void {
    for (const client of server.hub.allClients()) {
      if (client.open && client.connected) this.onConnect(client);
    }
  }

  // ---- ServerHooks ------------------------------------------------------------------------

  onStartup(): void {
    this.flush();
    if (this.onStartupFn) this.host.callProtected("on_startup", this.onStartupFn);
  }

  onShutdown(): void {
    this.flush();
    if (this.onShutdownFn) this.host.callProtected("on_shutdown", this.onShutdownFn);
  }

  onConnect(client: ServerClient, _request?: IncomingMessage): void {
    this.flush();
    if (this.onConnectFn && !this.host.callProtected("on_connect", this.onConnectFn, client.id)) {
      client.close(CloseCode.InternalError, "internal server error");
    }
  }

  onMessage(client: ServerClient, data: Buffer, isBinary: boolean): void {
    if (this.main === null) return;
    this.pending.push(client.id, data, isBinary);
    this.pendingClients.push(client);
    if (this.pendingClients.length >= MAX_BATCH) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      // After the poll phase has read every ready socket: one entry for all their messages
      // (a microtask would run after each socket's read, one entry per socket).
      setImmediate(this.flushTask);
    }
  }

  /** Runs main for the messages received so far, in order. */
  flush(): void {
    const main = this.main;
    let clients = this.pendingClients;
    if (main === null || clients.length === 0) return;
    let args = this.pending;
    this.pending = [];
    this.pendingClients = [];
    const engine = this.host.engine;
    while (clients.length > 0 && !engine.closed) {
      try {
        engine.call(this.dispatchFn, main, ...args);
        return;
      } catch (error) {
        if (engine.closed) return;
        // Which message failed (1-based); 0 if the dispatcher itself failed (out of memory
        // while taking the batch): blame the first.
        let failed = 0;
        try {
          failed = Number(engine.call(this.progressFn)[0] ?? 0);
        } catch {}
        const index = Math.max(failed, 1) - 1;
        const client = clients[index]!;
        this.host.reportError("main", error, { client: client.id });
        if (client.open) client.close(CloseCode.InternalError, "internal server error");
        // The messages after it go on, but not those of a client that is closing.
        const restClients: ServerClient[] = [];
        const restArgs: LuaInput[] = [];
        for (let i = index + 1; i < clients.length; i++) {
          const next = clients[i]!;
          if (!next.open) continue;
          restClients.push(next);
          restArgs.push(args[i * 3], args[i * 3 + 1], args[i * 3 + 2]);
        }
        clients = restClients;
        args = restArgs;
      }
    }
  }

  onDisconnect(client: ServerClient, code: number, reason: string): void {
    this.flush();
    if (this.onDisconnectFn)
      this.host.callProtected("on_disconnect", this.onDisconnectFn, client.id, code, reason);
  }
}
