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
 *   never evict (`forcible` is always false).
 * - Not supported: `ffi` (`require` fails with a clear error), `setfenv` (absent, so that
 *   `if setfenv then` feature tests take their Lua 5.4 branch), cosockets (`ngx.socket.tcp`,
 *   `ngx.req.socket` return nil and an explanation), subrequests, request bodies.
 * - resty.websocket.client: always masks, has no connection pool (`set_keepalive` closes),
 *   verifies TLS certificates only with `ssl_verify = true`, and `close` lets the close handshake
 *   finish in the background.
 *
 * @module
 */

import { createHash, createHmac, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { type IncomingMessage, STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import { hostname } from "node:os";
import { type ClientOptions, connect, type WebSocketClient } from "../../../client/client.js";
import { CloseCode, isValidCloseCode } from "../../../protocol/close-code.js";
import { ClosedError, HandshakeError, StateError } from "../../../protocol/errors.js";
import { isKnownOpcode, Opcode } from "../../../protocol/opcode.js";
import { isValidUtf8 } from "../../../protocol/utf8.js";
import type { ServerHooks } from "../../../server/server.js";
import { WebSocketServer } from "../../../server/server.js";
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
import type { StyleRuntime } from "../style-runtime.js";
import {
  execRegex,
  MATCH_LIMIT_MESSAGE,
  type MatchBudget,
  RegexError,
  substituteRegex,
} from "./regex.js";

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

// ---- script loading -------------------------------------------------------------------------

const SHARED_LOCAL = /^local[ \t]+([A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*\{[ \t]*\}[ \t]*(--.*)?$/;

/**
 * Prepares an OpenResty-style script for `runtime/ngx.lua`, keeping every line where it was:
 * the chunk receives its per-connection environment and the shared-table function
 * (`local _ENV, __ngx_shared = ...;` is put in front of line 1), and each top-level
 * `local NAME = {}` line (column 0, outside strings and comments, a comment may follow) becomes
 * `local NAME = __ngx_shared("NAME")`, one table per script shared by all connections.
 * A `#!` first line becomes a comment. `source` is the file's bytes decoded as latin1.
 */
export function rewriteOpenRestyScript(source: string): string {
  if (source.startsWith("\xef\xbb\xbf")) source = source.slice(3);
  const lines = source.split("\n");
  const inCode = codeLineStarts(source);
  for (let i = 0; i < lines.length; i++) {
    if (!inCode[i]) continue;
    let line = lines[i]!;
    const cr = line.endsWith("\r") ? "\r" : "";
    if (cr !== "") line = line.slice(0, -1);
    const m = SHARED_LOCAL.exec(line);
    if (m === null) continue;
    lines[i] =
      `local ${m[1]} = __ngx_shared("${m[1]}")${m[2] !== undefined ? ` ${m[2]}` : ""}${cr}`;
  }
  let first = lines[0] ?? "";
  if (first.startsWith("#")) first = `--${first}`;
  lines[0] = `local _ENV, __ngx_shared = ...; ${first}`;
  return lines.join("\n");
}

/** For each line of `src`, whether it starts in code (not inside a string or a long comment). */
function codeLineStarts(src: string): boolean[] {
  const starts = [true];
  let state: "code" | "short" | "long" | "comment" = "code";
  let quote = "";
  let level = 0;
  const longBracket = (at: number): number => {
    if (src[at] !== "[") return -1;
    let j = at + 1;
    while (src[j] === "=") j++;
    return src[j] === "[" ? j - at - 1 : -1;
  };
  for (let i = 0; i < src.length; ) {
    const c = src[i]!;
    if (c === "\n") {
      if (state === "comment") state = "code";
      starts.push(state === "code");
      i++;
      continue;
    }
    if (state === "code") {
      if (c === "-" && src[i + 1] === "-") {
        const lvl = longBracket(i + 2);
        if (lvl >= 0) {
          state = "long";
          level = lvl;
          i += lvl + 4;
        } else {
          state = "comment";
          i += 2;
        }
      } else if (c === "[" && longBracket(i) >= 0) {
        level = longBracket(i);
        state = "long";
        i += level + 2;
      } else if (c === '"' || c === "'") {
        state = "short";
        quote = c;
        i++;
      } else {
        i++;
      }
    } else if (state === "short") {
      if (c === "\\") {
        // An escaped line break continues the string on the next line.
        if (src[i + 1] === "\n") starts.push(false);
        i += 2;
      } else {
        if (c === quote) state = "code";
        i++;
      }
    } else if (state === "long") {
      if (c === "]" && src.startsWith(`${"=".repeat(level)}]`, i + 1)) {
        state = "code";
        i += level + 2;
      } else {
        i++;
      }
    } else {
      i++;
    }
  }
  return starts;
}

// ---- connections ----------------------------------------------------------------------------

/** A WebSocket upgrade request and, once its handler called websocket:new, its connection. */
interface Request {
  readonly handle: number;
  readonly req: IncomingMessage;
  readonly socket: Socket;
  /** Bytes that arrived before the handshake was answered. */
  head: Buffer;
  /** The connection, once accepted. */
  client: ServerClient | null;
  /** Frames that arrived while the handshake was being answered (inside a Lua call). */
  pendingFrames: Array<[number, Buffer, boolean]> | null;
  finished: boolean;
  disconnected: boolean;
  /** An HTTP answer was written (the handshake refused), so there will be no connection. */
  responded: boolean;
  released: boolean;
  /** ngx.say / ngx.print output and ngx.status, for an answer without a handshake. */
  body: Buffer[];
  /** Bytes in body. */
  bodyBytes: number;
  status: number;
  readonly startTime: number;
  requestId: string | null;
  onEarlyData: ((chunk: Buffer) => void) | null;
}

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
  /** Socket events waiting for the next flush (see queueEvent). */
  private batch = newEventBatch();
  private readonly byClient = new Map<ServerClient, Request>();
  private readonly outgoing = new Map<number, Outgoing>();
  private nextHandle = 1;
  /** The request whose handshake `acceptUpgrade` is answering right now. */
  private accepting: Request | null = null;
  private disposed = false;

  constructor(host: LuaHost, options: ServerOptions) {
    this.host = host;
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
    this.bridge = new SchedulerBridge(
      this.host,
      (context) => this.onCoroutineFailure(context),
      (handle, reading) => {
        // Only a request's peer: an outgoing connection's peer is one the script chose.
        const client = this.requests.get(handle)?.client;
        if (reading) client?.resumeReading();
        else client?.pauseReading();
      },
    );
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
   * Queues a socket event for the next flush, which runs once the current socket read is
   * handled: the frames of one read (16 at pipelining depth 16) then enter Lua together and
   * their readers resume once, instead of an entry, a resume and a yield per frame. Every
   * event goes through here, so each socket's events keep their order.
   */
  private queueEvent(
    handle: number,
    kind: number,
    data: Buffer | null,
    extra: number | boolean | null,
  ): void {
    const batch = this.batch;
    batch.handles.push(handle);
    batch.kinds.push(kind);
    batch.datas.push(data);
    batch.extras.push(extra);
    if (batch.handles.length === 1) queueMicrotask(this.flushEvents);
  }

  private readonly flushEvents = (): void => {
    const batch = this.batch;
    this.batch = newEventBatch();
    if (this.disposed || this.host.engine.closed) return;
    try {
      this.bridge!.deliverBatch(batch.handles, batch.kinds, batch.datas, batch.extras);
    } catch (error) {
      this.host.reportError("the OpenResty runtime", error);
    }
  };

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

  // ---- request facts --------------------------------------------------------------------------

  /** ngx.var.NAME of request `handle`: a string, or null when not set. */
  private variable(handle: number, name: string): string | null {
    const request = this.requests.get(handle);
    if (request === undefined) return null;
    const req = request.req;
    const url = req.url ?? "/";
    const queryAt = url.indexOf("?");
    const path = queryAt < 0 ? url : url.slice(0, queryAt);
    const query = queryAt < 0 ? null : url.slice(queryAt + 1);
    switch (name) {
      case "remote_addr":
        return req.socket.remoteAddress ?? "";
      case "remote_port":
        return String(req.socket.remotePort ?? "");
      case "server_addr":
        return req.socket.localAddress ?? "";
      case "server_port":
        return String(req.socket.localPort ?? "");
      case "uri":
      case "document_uri":
        return decodePath(path);
      case "request_uri":
        return url;
      case "args":
      case "query_string":
        return query;
      case "is_args":
        return query === null ? "" : "?";
      case "host": {
        const host = firstHeader(req, "host");
        return host === undefined
          ? "localhost"
          : host
              .replace(/:\d*$/, "")
              .replace(/^\[(.*)\]$/, "[$1]")
              .toLowerCase();
      }
      case "hostname":
        return hostname();
      case "scheme":
        return this.secure ? "https" : "http";
      case "https":
        return this.secure ? "on" : "";
      case "request_method":
        return req.method ?? "GET";
      case "server_protocol":
        return `HTTP/${req.httpVersion}`;
      case "connection":
        return String(handle);
      case "request_id":
        request.requestId ??= randomBytes(16).toString("hex");
        return request.requestId;
      case "msec":
        return (Date.now() / 1000).toFixed(3);
      case "time_local":
        return formatTimeLocal(new Date());
      case "request_time":
        return ((Date.now() - request.startTime) / 1000).toFixed(3);
    }
    if (name.startsWith("http_")) {
      const value = req.headers[name.slice(5).replace(/_/g, "-").toLowerCase()];
      return value === undefined ? null : Array.isArray(value) ? value.join(", ") : value;
    }
    if (name.startsWith("arg_")) {
      if (query === null) return null;
      const wanted = name.slice(4).toLowerCase();
      for (const part of query.split("&")) {
        const eq = part.indexOf("=");
        const key = eq < 0 ? part : part.slice(0, eq);
        if (key.toLowerCase() === wanted) return eq < 0 ? "" : part.slice(eq + 1);
      }
      return null;
    }
    if (name.startsWith("cookie_")) {
      const cookie = req.headers.cookie;
      if (cookie === undefined) return null;
      const wanted = name.slice(7);
      for (const part of cookie.split(/;\s*/)) {
        const eq = part.indexOf("=");
        if (eq > 0 && part.slice(0, eq) === wanted) return part.slice(eq + 1);
      }
      return null;
    }
    return null;
  }

  /** ngx.req.* facts of request `handle`. */
  private requestInfo(handle: number, what: string): HostReturn {
    const request = this.requests.get(handle);
    if (request === undefined) return null;
    const req = request.req;
    switch (what) {
      case "headers":
        return req.rawHeaders.map((item) => Buffer.from(item, "latin1"));
      case "args": {
        const url = req.url ?? "/";
        const queryAt = url.indexOf("?");
        return queryAt < 0 ? null : url.slice(queryAt + 1);
      }
      case "method":
        return req.method ?? "GET";
      case "http_version":
        return Number(req.httpVersion);
      case "start_time":
        return request.startTime / 1000;
      case "raw_header":
      case "raw_header_only": {
        let head =
          what === "raw_header" ? `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n` : "";
        for (let i = 0; i < req.rawHeaders.length; i += 2)
          head += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
        return Buffer.from(`${head}\r\n`, "latin1");
      }
    }
    return null;
  }

  // ---- primitives -----------------------------------------------------------------------------

  /** The host functions `runtime/ngx.lua` builds on (argument errors name the ngx function). */
  private primitives(): Record<string, HostFunction> {
    const host = this.host;
    const clientId = (handle: number | undefined) =>
      handle === undefined ? undefined : this.requests.get(handle)?.client?.id;
    // A costly ngx.re match may take half of what is left of the CPU budget (see
    // regex-limit.ts): the other half lets the script handle the error, as under PCRE's limit.
    const regexBudget: MatchBudget = () => host.engine.budgetLeftMs() / 2;
    // Logged at most once a second (a script may retry in a loop), counted every time.
    let lastLogged = Number.NEGATIVE_INFINITY;
    let unlogged = 0;
    const regexFailure = (error: RegexError, pattern: Buffer) => {
      if (error.message === MATCH_LIMIT_MESSAGE) {
        const now = performance.now();
        unlogged++;
        if (now - lastLogged >= 1000) {
          host.reportLimit(`ngx.re: a match ran out of CPU budget (${MATCH_LIMIT_MESSAGE})`, {
            kind: "ERR_LUA_REGEX_LIMIT",
            pattern: pattern.toString("latin1").slice(0, 200),
            hits: unlogged,
          });
          lastLogged = now;
          unlogged = 0;
        } else {
          host.countLimit();
        }
      }
      return luaMulti(false, error.message, error.raise);
    };
    return {
      ...createHostApi(host, clientId),
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
      var: (args) => this.variable(args.integer(1), args.string(2)),
      req: (args) => this.requestInfo(args.integer(1), args.string(2)),
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
      time: () => Math.floor(Date.now() / 1000),
      today: () => formatDate(new Date(), false).slice(0, 10),
      localtime: () => formatDate(new Date(), false),
      utctime: () => formatDate(new Date(), true),
      http_time: (args) => new Date(args.number(1) * 1000).toUTCString(),
      cookie_time: (args) => formatCookieTime(new Date(args.number(1) * 1000)),
      parse_http_time: (args) => {
        const ms = Date.parse(args.string(1));
        return Number.isNaN(ms) ? null : Math.floor(ms / 1000);
      },
      md5: (args) =>
        createHash("md5")
          .update(args.optBytes(1) ?? EMPTY)
          .digest("hex"),
      md5_bin: (args) =>
        createHash("md5")
          .update(args.optBytes(1) ?? EMPTY)
          .digest(),
      sha1_bin: (args) =>
        createHash("sha1")
          .update(args.optBytes(1) ?? EMPTY)
          .digest(),
      hmac_sha1: (args) => createHmac("sha1", args.bytes(1)).update(args.bytes(2)).digest(),
      crc32: (args) => crc32(args.optBytes(1) ?? EMPTY),
      encode_base64: (args) => {
        const encoded = (args.optBytes(1) ?? EMPTY).toString("base64");
        return args.boolean(2) ? encoded.replace(/=+$/, "") : encoded;
      },
      decode_base64: (args) => {
        const text = args.bytes(1).toString("latin1");
        if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.replace(/=+$/, "").length % 4 === 1)
          return null;
        return Buffer.from(text, "base64");
      },
      re_exec: (args) => {
        try {
          const m = execRegex(
            args.bytes(1),
            args.bytes(2),
            args.string(3),
            args.integer(4) - 1,
            regexBudget,
          );
          if (m === null) return null;
          return luaMulti(m.positions, m.names);
        } catch (error) {
          if (error instanceof RegexError) return regexFailure(error, args.bytes(2));
          throw error;
        }
      },
      re_sub: (args) => {
        try {
          const [result, count] = substituteRegex(
            args.bytes(1),
            args.bytes(2),
            args.bytes(3),
            args.string(4),
            args.boolean(5),
            regexBudget,
          );
          return luaMulti(result, count);
        } catch (error) {
          if (error instanceof RegexError) return regexFailure(error, args.bytes(2));
          throw error;
        }
      },
    };
  }
}

// ---- helpers --------------------------------------------------------------------------------

/** The first value of request header `name` (repeated headers: the first one, as OpenResty takes). */
function firstHeader(req: IncomingMessage, name: string): string | undefined {
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === name) return raw[i + 1];
  }
  return undefined;
}

/** A Lua value as text (strings arrive as bytes). */
function text(value: LuaValue | undefined): string {
  if (Buffer.isBuffer(value)) return value.toString("utf8");
  return String(value ?? "");
}

/** nginx's $uri: the path with %XX decoded (left as is when malformed). */
function decodePath(path: string): string {
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, "0");
}

/** "yyyy-mm-dd hh:mm:ss" in local time or UTC. */
function formatDate(date: Date, utc: boolean): string {
  const [y, mo, d, h, mi, s] = utc
    ? [
        date.getUTCFullYear(),
        date.getUTCMonth() + 1,
        date.getUTCDate(),
        date.getUTCHours(),
        date.getUTCMinutes(),
        date.getUTCSeconds(),
      ]
    : [
        date.getFullYear(),
        date.getMonth() + 1,
        date.getDate(),
        date.getHours(),
        date.getMinutes(),
        date.getSeconds(),
      ];
  return `${y}-${pad(mo)}-${pad(d)} ${pad(h)}:${pad(mi)}:${pad(s)}`;
}

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** ngx.cookie_time: "Thu, 18-Nov-10 11:27:35 GMT". */
function formatCookieTime(date: Date): string {
  return (
    `${DAYS[date.getUTCDay()]}, ${pad(date.getUTCDate())}-${MONTHS[date.getUTCMonth()]}-${pad(date.getUTCFullYear() % 100)} ` +
    `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())} GMT`
  );
}

/** nginx's $time_local: "18/Nov/2010:11:27:35 +0100". */
function formatTimeLocal(date: Date): string {
  const offset = -date.getTimezoneOffset();
  const sign = offset >= 0 ? "+" : "-";
  const abs = Math.abs(offset);
  return (
    `${pad(date.getDate())}/${MONTHS[date.getMonth()]}/${date.getFullYear()}:${pad(date.getHours())}:${pad(date.getMinutes())}:` +
    `${pad(date.getSeconds())} ${sign}${pad(Math.floor(abs / 60))}${pad(abs % 60)}`
  );
}

let crcTable: Uint32Array | null = null;

/** CRC-32 (IEEE), as ngx.crc32_long. */
function crc32(bytes: Buffer): number {
  if (crcTable === null) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = crcTable[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
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

/** Socket events in arrival order, one array per field (they go into Lua as four tables). */
interface EventBatch {
  handles: number[];
  kinds: number[];
  datas: Array<Buffer | null>;
  extras: Array<number | boolean | null>;
}

function newEventBatch(): EventBatch {
  return { handles: [], kinds: [], datas: [], extras: [] };
}
