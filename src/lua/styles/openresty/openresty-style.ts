/**
 * OpenResty style: scripts written for `resty.websocket.server` (and `resty.websocket.client`)
 * with the `ngx` API, run unmodified.
 *
 * The script runs once per WebSocket connection, as `content_by_lua_file` does: it is compiled
 * once, and every upgrade request runs it in its own coroutine (the request's "entry thread",
 * see `runtime/ngx.lua`). `websocket:new{…}` answers the handshake (so `ngx.exit(403)` before it
 * refuses the upgrade with an HTTP 403, and 444 closes without an answer, as in nginx), and the
 * returned `wb` sees every frame as it arrives (the server runs in frame mode: no automatic pong,
 * no automatic close reply). When the handler ends: if it sent a close frame, the close handshake
 * finishes (or is cut after closeTimeout); if not, the connection is closed with 1000 (1011 when
 * the handler raised an error, logged with script, line and traceback). `ngx.exit(444)` or any
 * status >= 300 drops the connection. An error in one connection never affects the others.
 *
 * Shared state. As in OpenResty, state shared between connections lives in modules (`require`
 * caches them) and in `ngx.shared.DICT`; everything else in the script runs per connection, with
 * its own globals (falling back to `_G`) and `ngx.ctx`. One exception, so that the reference
 * tutorial's broadcast and chat scripts work unmodified (they declare `local clients = {}` at the
 * top of the script and expect every connection to see the others): a line starting at column 0
 * that is exactly `local NAME = {}` (a comment may follow) declares a table created once per
 * script and shared by all connections. The loader rewrites such lines to fetch the shared table
 * by name, keeping line numbers unchanged; nothing else is rewritten. Mind it when a top-level
 * table should be per connection (e.g. one holding closures over this connection's `wb`): write it
 * any other way (`local t = setmetatable({}, nil)`, or inside a function).
 *
 * Deviations from OpenResty:
 * - A handler that keeps looping on `ngx.sleep` after its connection closed is stopped at its
 *   next `ngx.sleep` (OpenResty would let it run forever, e.g. the tutorial's live feed).
 * - moonsocket's protocol core validates what arrives (masking, reserved bits and opcodes,
 *   control frames, UTF-8, close codes) and fails a bad connection with the RFC's close code:
 *   `recv_frame` then reports "failed to receive the first 2 bytes: closed" rather than
 *   lua-resty-websocket's "frame unmasked", "bad RSV1, RSV2, or RSV3 bits"… Frames longer than
 *   the server's maxPayload (16 MiB by default) close the connection with 1009 before the
 *   script's max_payload_len check.
 * - The handshake is validated by moonsocket's server after lua-resty-websocket's own checks;
 *   subprotocols are negotiated against `ServerOptions.protocols`, not echoed; `ngx.header` is
 *   accepted and ignored.
 * - Sends never block: they are queued, and a peer that stops reading is closed with 1008 by the
 *   server's send-buffer limit (there is no send timeout). Sending after the script's close frame
 *   fails with "failed to send frame: closed". `send_masked` is ignored (a server never masks);
 *   close codes RFC 6455 §7.4 forbids on the wire (1005, 1006, 1015, unassigned) are refused with
 *   "bad status code" and non-UTF-8 close reasons with "bad close reason: not UTF-8", without
 *   making `wb` fatal.
 * - The read timeout defaults to 60 s (lua_socket_read_timeout's default); `set_timeout(0)`
 *   restores it.
 * - `ngx.re` runs on JavaScript RegExp with PCRE syntax translated (see `openresty-regex.ts` for
 *   what is not supported). `ngx.now` is never cached. `print` logs at info. `ngx.say`/`ngx.print`
 *   before `websocket:new` make the body of the HTTP answer sent if the handler ends without a
 *   handshake; after it they return nil, "raw request socket acquired".
 * - `ngx.shared` dictionaries exist on first use, have no size limit but the Lua memory cap, and
 *   never evict (`forcible` is always false). Under `--workers N` they are the primary process's,
 *   shared by every worker (each call a synchronous round trip), without a size limit either.
 * - Not supported: `ffi` (`require` fails with a clear error), `setfenv` (absent, so that
 *   `if setfenv then` feature tests take their Lua 5.4 branch), cosockets (`ngx.socket.tcp`,
 *   `ngx.req.socket` return nil and an explanation), subrequests, request bodies.
 * - resty.websocket.client: always masks, has no connection pool (`set_keepalive` closes),
 *   verifies TLS certificates only with `ssl_verify = true`, and `close` lets the close handshake
 *   finish in the background.
 *
 * Over 500 lines, for now: the request lifecycle, frame delivery, sending and outgoing clients
 * share the request table here; ngx's library, request variables and the script rewrite are in
 * files of their own beside it.
 *
 * @module
 */

import { readFileSync } from "node:fs";
import { type IncomingMessage, STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import { type ClientOptions, connect, type WebSocketClient } from "../../../client/client.js";
import { CloseCode, isValidCloseCode } from "../../../protocol/close-code.js";
import { ClosedError, HandshakeError, StateError } from "../../../protocol/errors.js";
import { isKnownOpcode, Opcode } from "../../../protocol/opcode.js";
import { isValidUtf8 } from "../../../protocol/utf8.js";
import { type ServerHooks, WebSocketServer } from "../../../server/server.js";
import { SendStatus, type ServerClient } from "../../../server/server-client.js";
import type { ServerOptions } from "../../../server/server-options.js";
import { createHostApi } from "../../host/host-api.js";
import type { LuaHost } from "../../host/lua-host.js";
import { readRuntimeFile } from "../../host/runtime-files.js";
import { SchedulerBridge } from "../../host/scheduler-bridge.js";
import {
  type HostFunction,
  type HostReturn,
  type LuaArgs,
  LuaError,
  type LuaRef,
  type LuaValue,
  luaMulti,
} from "../../vm/engine.js";
import type { StyleOptions, StyleRuntime, WorkerPlace } from "../style-runtime.js";
import { createNgxLibrary } from "./ngx-library.js";
import { firstHeader, type Request } from "./request.js";
import { requestInfo, requestVariable } from "./request-vars.js";
import { rewriteOpenRestyScript } from "./script-rewrite.js";
import { createSharedDictHost } from "./shared-dict-host.js";

/** The runtime files loaded into the Lua state, by module name. */
const RESTY_SOURCES: Record<string, string> = {
  "resty.core.shdict": "resty/resty-shdict.lua",
  "resty.websocket.protocol": "resty/resty-websocket-protocol.lua",
  "resty.websocket.server": "resty/resty-websocket-server.lua",
  "resty.websocket.client": "resty/resty-websocket-client.lua",
};

/** Bytes a client may send before the handshake is answered (they are kept for the connection). */
const MAX_EARLY_BYTES = 64 * 1024;

const EMPTY = Buffer.alloc(0);

// ---- connections ----------------------------------------------------------------------------

/** A resty.websocket.client connection. */
interface Outgoing {
  readonly handle: number;
  /** The request whose handler opened it (closed when that handler finishes), or null (a timer). */
  readonly owner: number | null;
  client: WebSocketClient | null;
  /** Closed by the script (or its handler finished) while still connecting. */
  abandoned: boolean;
}

/** The private API `runtime/ngx.lua` returns. */
interface NgxApi {
  start: LuaRef;
  abort: LuaRef;
  release: LuaRef;
  shutdown: LuaRef;
}

/**
 * Runs an OpenResty-style script: one WebSocketServer in frame mode whose upgrade requests are
 * handed to the script (see the module documentation).
 */
export class OpenRestyStyle implements StyleRuntime, ServerHooks {
  readonly servers: WebSocketServer[];
  private readonly server: WebSocketServer;
  private readonly host: LuaHost;
  private readonly secure: boolean;
  private bridge: SchedulerBridge | null = null;
  private api: NgxApi | null = null;
  private readonly requests = new Map<number, Request>();
  private readonly byClient = new Map<ServerClient, Request>();
  private readonly outgoing = new Map<number, Outgoing>();
  private nextHandle = 1;
  /** The request whose handshake `acceptUpgrade` is answering right now. */
  private accepting: Request | null = null;
  private disposed = false;
  /** Where this process stands among the workers (`ngx.worker.id()`, `.count()`). */
  private readonly worker: WorkerPlace;
  /** The store of `ngx.shared` when it lives outside the Lua state (`--workers N`). */
  private readonly sharedDicts: StyleOptions["sharedDicts"];

  constructor(
    host: LuaHost,
    options: ServerOptions,
    placement: Pick<StyleOptions, "worker" | "sharedDicts"> = {},
  ) {
    this.host = host;
    this.worker = placement.worker ?? { id: 0, count: 1 };
    this.sharedDicts = placement.sharedDicts;
    this.secure = options.tls !== undefined;
    this.server = new WebSocketServer({ ...options, frameMode: true });
    this.server.addHooks(this);
    this.servers = [this.server];
    options.metrics?.gauge({
      name: "moonsocket_lua_outgoing",
      help: "Outgoing WebSocket connections the script has open (--max-outgoing).",
      collect: () => this.outgoing.size,
    });
  }

  /** Compiles the script and installs `ngx` and the resty.* modules. Throws LuaError on a syntax error. */
  load(): void {
    const engine = this.host.engine;
    const source = readFileSync(this.host.scriptPath).toString("latin1");
    const chunk = engine.load(
      Buffer.from(rewriteOpenRestyScript(source), "latin1"),
      `@${this.host.scriptName}`,
    );
    this.bridge = new SchedulerBridge(this.host, (context) => this.onCoroutineFailure(context), {
      onFlow: (handle, reading) => {
        // Only a request's peer: an outgoing connection's peer is one the script chose.
        const client = this.requests.get(handle)?.client;
        if (reading) client?.resumeReading();
        else client?.pauseReading();
      },
    });
    const sources: Record<string, string> = {};
    for (const [name, file] of Object.entries(RESTY_SOURCES)) sources[name] = readRuntimeFile(file);
    const [api] = engine.run(
      readRuntimeFile("resty/ngx.lua"),
      "=ngx",
      this.primitives(),
      sources,
      chunk,
    );
    chunk.release();
    const table = api as Record<string, LuaValue>;
    this.api = {
      start: table.start as LuaRef,
      abort: table.abort as LuaRef,
      release: table.release as LuaRef,
      shutdown: table.shutdown as LuaRef,
    };
  }

  dispose(): void {
    this.disposed = true;
    this.bridge?.inboxes.dispose();
    for (const request of this.requests.values()) {
      if (request.client === null) request.socket.destroy();
    }
    for (const out of this.outgoing.values()) {
      out.abandoned = true;
      out.client?.terminate();
    }
    this.requests.clear();
    this.byClient.clear();
    this.outgoing.clear();
  }

  // ---- ServerHooks ----------------------------------------------------------------------------

  onUpgradeRequest(req: IncomingMessage, socket: Socket, head: Buffer): boolean {
    const api = this.api;
    if (api === null || this.disposed) return false;
    const handle = this.nextHandle++;
    const request: Request = {
      handle,
      req,
      socket,
      head: Buffer.from(head),
      client: null,
      pendingFrames: null,
      finished: false,
      disconnected: false,
      responded: false,
      released: false,
      body: [],
      bodyBytes: 0,
      status: 200,
      startTime: Date.now(),
      requestId: null,
      onEarlyData: null,
    };
    this.requests.set(handle, request);
    // Until the handler answers the handshake, keep what the client sends, and notice if it leaves.
    request.onEarlyData = (chunk: Buffer) => {
      request.head = Buffer.concat([request.head, chunk]);
      if (request.head.length > MAX_EARLY_BYTES) socket.destroy();
    };
    socket.on("data", request.onEarlyData);
    socket.once("close", () => {
      if (request.client === null) this.connectionGone(request, CloseCode.AbnormalClosure);
    });
    socket.resume();
    if (!this.callLua(api.start, handle)) {
      socket.destroy();
      return true;
    }
    this.bridge!.run();
    return true;
  }

  onConnect(client: ServerClient): void {
    const request = this.accepting;
    if (request === null) {
      // Only handshakes answered by websocket:new reach here.
      client.close(CloseCode.InternalError, "internal server error");
      return;
    }
    request.client = client;
    this.byClient.set(client, request);
  }

  onFrame(client: ServerClient, opcode: number, payload: Buffer, fin: boolean): void {
    const request = this.byClient.get(client);
    if (request === undefined) return;
    if (request.pendingFrames !== null) {
      request.pendingFrames.push([opcode, Buffer.from(payload), fin]);
      return;
    }
    this.deliverFrame(request.handle, opcode, payload, fin);
  }

  onDisconnect(client: ServerClient, code: number): void {
    const request = this.byClient.get(client);
    if (request !== undefined) this.connectionGone(request, code);
  }

  onShutdown(): void {
    const api = this.api;
    if (api === null || this.disposed) return;
    this.callLua(api.shutdown);
    this.bridge!.run();
  }

  // ---- requests -------------------------------------------------------------------------------

  private deliverFrame(handle: number, opcode: number, payload: Buffer, fin: boolean): void {
    if (this.disposed) return;
    if (opcode === Opcode.Close) {
      // The inbox gets the reason as data and the code as extra (none for an empty close frame).
      if (payload.length >= 2)
        this.queueEvent(handle, Opcode.Close, payload.subarray(2), payload.readUInt16BE(0));
      else this.queueEvent(handle, Opcode.Close, EMPTY, null);
    } else {
      this.queueEvent(handle, opcode, payload, fin);
    }
  }

  private connectionGone(request: Request, code: number): void {
    if (request.disconnected) return;
    request.disconnected = true;
    if (!this.disposed) this.queueEvent(request.handle, -1, null, code);
    this.maybeRelease(request);
  }

  /**
   * Queues a socket event in the handle's inbox (see SocketInboxes): a reader parked on it
   * resumes after this event-loop turn, in one entry into Lua with every other reader the
   * turn woke. Every event goes through here, so each socket's events keep their order.
   */
  private queueEvent(
    handle: number,
    kind: number,
    data: Buffer | null,
    extra: number | boolean | null,
  ): void {
    if (this.disposed || this.host.engine.closed) return;
    this.bridge!.inboxes.deliver(handle, kind, data, extra);
  }

  private maybeRelease(request: Request): void {
    if (request.released || !request.finished || !request.disconnected) return;
    request.released = true;
    this.requests.delete(request.handle);
    if (request.client !== null) this.byClient.delete(request.client);
    // Not from inside the Lua call that may have got here.
    queueMicrotask(() => {
      if (this.api !== null && !this.disposed) this.callLua(this.api.release, request.handle);
    });
  }

  /** websocket:new: answers the handshake of request `handle`; true, or nil and OpenResty's error. */
  private accept(handle: number): HostReturn {
    const request = this.requests.get(handle);
    if (request === undefined) return luaMulti(null, "no request found");
    if (request.client !== null || request.responded)
      return luaMulti(null, "response header already sent");
    const { req, socket } = request;
    if (request.disconnected || socket.destroyed || !socket.writable)
      return luaMulti(null, "failed to send response header: closed");
    // lua-resty-websocket's checks and words; the server then applies RFC 6455's.
    if (req.httpVersion !== "1.1") return luaMulti(null, "bad http version");
    const upgrade = firstHeader(req, "upgrade");
    if (upgrade === undefined || upgrade.toLowerCase() !== "websocket") {
      return luaMulti(null, `bad "upgrade" request header: ${upgrade ?? "nil"}`);
    }
    const connection = firstHeader(req, "connection");
    if (connection === undefined || !connection.toLowerCase().includes("upgrade")) {
      return luaMulti(null, 'bad "connection" request header');
    }
    if (firstHeader(req, "sec-websocket-key") === undefined)
      return luaMulti(null, 'bad "sec-websocket-key" request header');
    if (firstHeader(req, "sec-websocket-version") !== "13")
      return luaMulti(null, 'bad "sec-websocket-version" request header');
    if (request.onEarlyData !== null) socket.off("data", request.onEarlyData);
    request.onEarlyData = null;
    request.pendingFrames = [];
    this.accepting = request;
    try {
      this.server.acceptUpgrade(req, socket, request.head);
    } finally {
      this.accepting = null;
      request.head = EMPTY;
    }
    const pending = request.pendingFrames;
    request.pendingFrames = null;
    if (request.client === null) {
      // Refused by the server (it answered and logged why), or the server is full.
      request.responded = true;
      return luaMulti(null, "failed to send response header: handshake refused");
    }
    if (pending.length > 0) {
      queueMicrotask(() => {
        for (const [opcode, payload, fin] of pending)
          this.deliverFrame(handle, opcode, payload, fin);
      });
    }
    return true;
  }

  /** The handler of request `handle` ended: "normal", "error", or "exit" with an ngx.exit status. */
  private finish(handle: number, how: string, status: number): void {
    const request = this.requests.get(handle);
    if (request === undefined || request.finished) return;
    request.finished = true;
    for (const out of this.outgoing.values()) {
      if (out.owner === handle) this.closeOutgoing(out);
    }
    const client = request.client;
    if (client === null) {
      if (!request.responded) this.respondWithoutHandshake(request, how, status);
    } else if (client.open) {
      if (how === "exit" && (status === -1 || status >= 300)) {
        client.terminate();
      } else if (client.canSend) {
        // No close frame from the script: close the connection ourselves.
        if (how === "error") client.close(CloseCode.InternalError, "internal server error");
        else client.close(CloseCode.NormalClosure);
      }
    }
    this.maybeRelease(request);
  }

  /** The handler ended before websocket:new: answer with HTTP, as nginx would (444: just close). */
  private respondWithoutHandshake(request: Request, how: string, status: number): void {
    request.responded = true;
    const socket = request.socket;
    if (socket.destroyed) return;
    if (how === "exit" && (status === 444 || status === -1)) {
      socket.destroy();
      return;
    }
    let code = request.status;
    if (how === "error") code = 500;
    else if (how === "exit" && status >= 200) code = status;
    const text = STATUS_CODES[code] ?? "Unknown";
    const body =
      request.body.length > 0 || code < 300
        ? Buffer.concat(request.body)
        : Buffer.from(`${code} ${text}\n`);
    const head =
      `HTTP/1.1 ${code} ${text}\r\nContent-Type: text/plain; charset=utf-8\r\n` +
      `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
    this.host.logger.info("handshake answered by the script without an upgrade", {
      script: this.host.scriptName,
      status: code,
      path: request.req.url,
    });
    socket.end(Buffer.concat([Buffer.from(head, "latin1"), body]));
  }

  /** A coroutine died of an error its request cannot survive (CPU budget, memory): close it 1011. */
  private onCoroutineFailure(context: LuaValue): void {
    if (typeof context !== "number" || this.api === null) return;
    if (this.requests.has(context)) this.callLua(this.api.abort, context);
  }

  /** Calls into Lua from the host; a Lua error is logged. */
  private callLua(fn: LuaRef, ...args: Array<number | boolean | string | null>): boolean {
    if (this.host.engine.closed) return false;
    try {
      this.host.engine.call(fn, ...args);
      return true;
    } catch (error) {
      this.host.reportError("the OpenResty runtime", error);
      return false;
    }
  }

  // ---- sending --------------------------------------------------------------------------------

  /** send_frame: true, or nil and why (the connection is gone), or false and why (refused, nothing sent). */
  private send(handle: number, opcode: number, payload: Buffer, fin: boolean): HostReturn {
    if (!isKnownOpcode(opcode)) return luaMulti(false, "bad opcode");
    if (opcode === Opcode.Close && payload.length > 0) {
      // RFC 6455 §7.4: 1005, 1006, 1015 and unassigned codes never go on the wire.
      if (payload.length === 1 || !isValidCloseCode(payload.readUInt16BE(0)))
        return luaMulti(false, "bad status code");
      if (!isValidUtf8(payload.subarray(2))) return luaMulti(false, "bad close reason: not UTF-8");
    }
    const request = this.requests.get(handle);
    try {
      if (request !== undefined) {
        const client = request.client;
        if (client === null || !client.open) return luaMulti(null, "closed");
        const status = client.sendFrame(opcode, payload, fin);
        return status === SendStatus.Dropped ? luaMulti(null, "closed") : true;
      }
      const out = this.outgoing.get(handle);
      if (out === undefined || out.client === null) return luaMulti(null, "closed");
      out.client.sendFrame(opcode, payload, fin);
      return true;
    } catch (error) {
      if (error instanceof ClosedError) return luaMulti(null, "closed");
      if (error instanceof StateError) return luaMulti(false, error.message);
      throw error;
    }
  }

  // ---- resty.websocket.client -----------------------------------------------------------------

  private connectOutgoing(args: LuaArgs): HostReturn {
    const url = args.string(1);
    const options = (args.optTable(2) ?? {}) as Record<string, LuaValue>;
    const owner = args.optInteger(3) ?? null;
    const refusal = this.host.outgoingRefusal(this.outgoing.size);
    if (refusal !== null) return luaMulti(null, `failed to connect: ${refusal}`);
    const callback = args.ref(4);
    let target: URL;
    try {
      target = new URL(url);
      if (target.protocol !== "ws:" && target.protocol !== "wss:") throw new TypeError("scheme");
    } catch {
      callback.release();
      return luaMulti(null, "bad websocket uri");
    }
    const headers: Record<string, string> = {};
    const headerTable = options.headers;
    if (
      headerTable !== null &&
      typeof headerTable === "object" &&
      !Array.isArray(headerTable) &&
      !Buffer.isBuffer(headerTable)
    ) {
      for (const [name, value] of Object.entries(headerTable as Record<string, LuaValue>))
        headers[name] = text(value);
    }
    if (options.origin !== undefined && options.origin !== null)
      headers.Origin = text(options.origin);
    const protocols = Array.isArray(options.protocols) ? options.protocols.map(text) : [];
    const timeout =
      typeof options.timeout === "number" && options.timeout > 0 ? options.timeout : 60_000;
    const handle = this.nextHandle++;
    const out: Outgoing = { handle, owner, client: null, abandoned: false };
    this.outgoing.set(handle, out);
    const clientOptions: ClientOptions = {
      frameMode: true,
      onFrame: (opcode, payload, fin) => this.deliverFrame(handle, opcode, payload, fin),
      headers,
      protocols,
      handshakeTimeout: timeout,
      rejectUnauthorized: options.ssl_verify === true,
    };
    connect(target, clientOptions).then(
      (client) => {
        if (this.disposed || out.abandoned) {
          client.terminate();
          this.outgoing.delete(handle);
          this.resumeConnect(callback, null, "closed");
          return;
        }
        out.client = client;
        void client.closed.then((info) => {
          this.outgoing.delete(handle);
          if (!this.disposed) this.queueEvent(handle, -1, null, info.code);
        });
        this.resumeConnect(callback, true, null);
      },
      (error: unknown) => {
        this.outgoing.delete(handle);
        this.resumeConnect(callback, null, describeConnectError(error, target.hostname));
      },
    );
    return handle;
  }

  private resumeConnect(callback: LuaRef, ok: true | null, error: string | null): void {
    if (this.disposed || this.host.engine.closed) {
      callback.release();
      return;
    }
    this.callLua(callback, ok, error);
    callback.release();
    this.bridge!.run();
  }

  private closeOutgoing(out: Outgoing): void {
    if (out.client === null) {
      out.abandoned = true;
      return;
    }
    if (out.client.isOpen) void out.client.close();
  }

  // ---- primitives -----------------------------------------------------------------------------

  /** The host functions `runtime/ngx.lua` builds on (argument errors name the ngx function). */
  private primitives(): Record<string, HostFunction> {
    const host = this.host;
    const clientId = (handle: number | undefined) =>
      handle === undefined ? undefined : this.requests.get(handle)?.client?.id;
    return {
      ...createHostApi(host, clientId),
      ...createNgxLibrary(host),
      ...(this.sharedDicts === undefined ? {} : createSharedDictHost(this.sharedDicts)),
      worker_id: () => this.worker.id,
      worker_count: () => this.worker.count,
      finish: (args) => this.finish(args.integer(1), args.string(2), args.optInteger(3) ?? 0),
      accept: (args) => this.accept(args.integer(1)),
      send: (args) => this.send(args.integer(1), args.integer(2), args.bytes(3), args.boolean(4)),
      connect: (args) => this.connectOutgoing(args),
      close_client: (args) => {
        const out = this.outgoing.get(args.integer(1));
        if (out !== undefined) this.closeOutgoing(out);
        return true;
      },
      say: (args) => {
        const request = this.requests.get(args.integer(1));
        if (request === undefined || request.responded) return luaMulti(null, "closed");
        const data = Buffer.from(args.bytes(2));
        // The body is sent when the handler ends: bounded like a client's unsent bytes.
        if (request.bodyBytes + data.length > this.server.options.maxBufferedBytes)
          return luaMulti(null, "response body too large (--max-buffered)");
        request.body.push(data);
        request.bodyBytes += data.length;
        return 1;
      },
      set_status: (args) => {
        const request = this.requests.get(args.integer(1));
        if (request !== undefined) request.status = args.integer(2);
      },
      var: (args) =>
        requestVariable(this.requests.get(args.integer(1)), args.string(2), this.secure),
      req: (args) => requestInfo(this.requests.get(args.integer(1)), args.string(2)),
      report_error: (args) => {
        const kind = args.string(1);
        const id = clientId(args.optInteger(4));
        const context =
          kind === "handler"
            ? "the OpenResty handler"
            : kind === "light thread"
              ? "an ngx.thread"
              : "an ngx.timer callback";
        host.reportError(
          context,
          new LuaError("ERR_LUA_RUNTIME", args.string(2), args.optString(3) ?? ""),
          id !== undefined ? { client: id } : {},
        );
      },
    };
  }
}

// ---- helpers --------------------------------------------------------------------------------

/** A Lua value as text (strings arrive as bytes). */
function text(value: LuaValue | undefined): string {
  if (Buffer.isBuffer(value)) return value.toString("utf8");
  return String(value ?? "");
}

/** resty.websocket.client's words for a failed connect (nginx's error texts where they exist). */
function describeConnectError(error: unknown, host: string): string {
  if (error instanceof HandshakeError) {
    if (error.message.includes("timed out")) return "failed to connect: timeout";
    if (error.message.startsWith("connection closed"))
      return "failed to receive response header: closed";
    if (error.status !== 0) return `bad HTTP response status line: ${error.message}`;
    return `failed to complete the handshake: ${error.message}`;
  }
  if (error instanceof StateError)
    return error.code === "ERR_WS_HEADER"
      ? `bad request header: ${error.message}`
      : "bad websocket uri";
  const code = (error as NodeJS.ErrnoException).code;
  switch (code) {
    case "ECONNREFUSED":
      return "failed to connect: connection refused";
    case "ECONNRESET":
      return "failed to connect: connection reset by peer";
    case "ETIMEDOUT":
      return "failed to connect: timeout";
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return `failed to connect: ${host} could not be resolved`;
  }
  return `failed to connect: ${error instanceof Error ? error.message : String(error)}`;
}
