import { readFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { CloseCode, isValidCloseCode } from "../protocol/close-code.js";
import { isValidUtf8 } from "../protocol/utf8.js";
import type { ServerHooks } from "../server/hooks.js";
import type { WebSocketServer } from "../server/server.js";
import type { ServerClient } from "../server/server-client.js";
import { SendStatus } from "../server/server-client.js";
import { type HostFunction, type LuaArgs, type LuaRef, luaMulti } from "./engine.js";
import type { LuaHost } from "./lua-host.js";

/**
 * WebSocketServer's callback style: the script defines `main(clientId, message)`,
 * `on_connect(clientId)`, `on_disconnect(clientId)` and calls `_send(clientId, message)` and
 * `_sendAll(message)`. Fixed where the original was fragile (a Lua error never stops the
 * server; `on_disconnect` only follows `on_connect`; binary messages reach `main` too, with a
 * third argument `is_binary`) and extended in the same spirit: `_sendBinary`, `_sendAllBinary`,
 * `_close`, `_subscribe`/`_unsubscribe`/`_publish`, `_setTimeout`/`_setInterval`/`_clearTimer`,
 * `_getHeaders`, `_getClientInfo`, `_clients`, and the hooks `on_startup()`/`on_shutdown()`.
 */
export class CallbackStyle implements ServerHooks {
  private readonly host: LuaHost;
  private server: WebSocketServer | null = null;
  private main: LuaRef | null = null;
  private onConnectFn: LuaRef | null = null;
  private onDisconnectFn: LuaRef | null = null;
  private onStartupFn: LuaRef | null = null;
  private onShutdownFn: LuaRef | null = null;

  constructor(host: LuaHost) {
    this.host = host;
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
      client.close(code, reason.toString("utf8"));
      return true;
    });
    register("_subscribe", (args) => this.clientArg(args)?.subscribe(args.string(2)) ?? false);
    register("_unsubscribe", (args) => this.clientArg(args)?.unsubscribe(args.string(2)) ?? false);
    register("_publish", (args) => {
      const data = args.bytes(2);
      const binary = args.count >= 3 ? args.boolean(3) : !isValidUtf8(data);
      return server.publish(args.string(1), data, binary);
    });
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
    register("_clients", () => Array.from(server.allClients(), (client) => client.id));
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
    return this.server!.getClient(args.integer(1));
  }

  private sendTo(args: LuaArgs, forceBinary: boolean): SendStatus {
    const id = args.integer(1);
    const data = args.bytes(2);
    // Text frames must be UTF-8 (RFC 6455 §5.6); other bytes go out unchanged as binary.
    return this.server!.sendTo(id, data, forceBinary || !isValidUtf8(data));
  }

  private sendAll(args: LuaArgs, forceBinary: boolean): number {
    const data = args.bytes(1);
    return this.server!.broadcast(data, forceBinary || !isValidUtf8(data));
  }

  private result(status: SendStatus) {
    return status === SendStatus.Dropped
      ? luaMulti(false, "no such client or connection closed")
      : true;
  }

  /** Calls on_connect for every client already connected (after a reload). */
  introduceClients(server: WebSocketServer): void {
    for (const client of server.allClients()) {
      if (client.open && client.connected) this.onConnect(client);
    }
  }

  // ---- ServerHooks ------------------------------------------------------------------------

  onStartup(): void {
    if (this.onStartupFn) this.host.callProtected("on_startup", this.onStartupFn);
  }

  onShutdown(): void {
    if (this.onShutdownFn) this.host.callProtected("on_shutdown", this.onShutdownFn);
  }

  onConnect(client: ServerClient, _request?: IncomingMessage): void {
    if (this.onConnectFn && !this.host.callProtected("on_connect", this.onConnectFn, client.id)) {
      client.close(CloseCode.InternalError, "internal server error");
    }
  }

  onMessage(client: ServerClient, data: Buffer, isBinary: boolean): void {
    const main = this.main;
    if (main === null) return;
    try {
      this.host.engine.call(main, client.id, data, isBinary);
    } catch (error) {
      this.host.reportError("main", error, { client: client.id });
      if (client.open) client.close(CloseCode.InternalError, "internal server error");
    }
  }

  onDisconnect(client: ServerClient, code: number, reason: string): void {
    if (this.onDisconnectFn)
      this.host.callProtected("on_disconnect", this.onDisconnectFn, client.id, code, reason);
  }
}
