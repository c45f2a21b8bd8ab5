// Over 500 lines, for now: this class still holds four jobs that share its handle tables
// (listeners, HTTP streams, WebSocket sockets and outgoing connections, each a section below);
// the pure HTTP helpers are in http-helpers.ts. Splitting the four into files of their own
// around one handle registry is the next step of issue #11.

import { readFileSync } from "node:fs";
import {
  type IncomingMessage,
  type ServerResponse,
  validateHeaderName,
  validateHeaderValue,
} from "node:http";
import type { Socket } from "node:net";
import { createSecureContext } from "node:tls";
import { type ClientOptions, connect, type WebSocketClient } from "../../../client/client.js";
import { MetricsRegistry } from "../../../observability/metrics.js";
import { CloseCode, isValidCloseCode } from "../../../protocol/close-code.js";
import { HandshakeError } from "../../../protocol/errors.js";
import { SMALL_FRAME_BYTES } from "../../../protocol/output-queue.js";
import { isValidUtf8 } from "../../../protocol/utf8.js";
import { createPageHandler } from "../../../server/page-handler.js";
import { WebSocketServer } from "../../../server/server.js";
import { SendStatus, type ServerClient } from "../../../server/server-client.js";
import type { ServerOptions } from "../../../server/server-options.js";
import type { StaticHandler } from "../../../server/static-files.js";
import { createHostApi } from "../../host/host-api.js";
import type { LuaHost } from "../../host/lua-host.js";
import { readRuntimeFile } from "../../host/runtime-files.js";
import { SchedulerBridge, SocketEvent } from "../../host/scheduler-bridge.js";
import {
  type HostFunction,
  type LuaArgs,
  LuaError,
  type LuaInput,
  type LuaRef,
  type LuaValue,
  luaMulti,
} from "../../vm/engine.js";
import type { StyleRuntime } from "../style-runtime.js";
import {
  checkedHeader,
  type HttpStream,
  handshakeProblem,
  type Listener,
  luaHeaders,
  parseAddress,
  sendPlain,
  toHeaders,
  upgradeProblem,
  writeRawResponse,
} from "./http-helpers.js";

/** Event kinds delivered to Lua besides the frame opcodes (see runtime/silly-net.lua). */
const Result = {
  /** A listen or connect finished; data is the bound address or the subprotocol. */
  Ok: 100,
  /** A listen or connect failed, or the connection failed; data is the error message. */
  Failed: 101,
} as const;

const SOCKET_CLOSED = "socket closed";
const NO_BYTES = Buffer.alloc(0);

/** Options of the coroutine style that the command line does not set (tests, embedding). */
export interface CoroutineStyleOptions {
  /** Client settings for `websocket.connect`, e.g. a CA to trust for wss:// in tests. */
  readonly connect?: Pick<
    ClientOptions,
    "ca" | "rejectUnauthorized" | "handshakeTimeout" | "maxPayload"
  >;
  /**
   * Maps the URL a script passes to `websocket.connect` before connecting, e.g. to point a
   * script's fixed `ws://127.0.0.1:8080` at a test server. Default: unchanged.
   */
  readonly resolveUrl?: (url: string) => string;
  /**
   * A port given explicitly on the command line (`serve --port N`): it replaces the port of
   * the script's first `http.listen` address. Default: the script's own port.
   */
  readonly portOverride?: number;
  /**
   * Listeners the script may have open at once (each takes a port and a file descriptor; a
   * script listening in a loop would use them all up). Default 100.
   */
  readonly maxListeners?: number;
  /**
   * Never reach out (`moonsocket check`): `websocket.connect` opens no connection, and its
   * task waits as for a peer that never answers. Default false.
   */
  readonly offline?: boolean;
}

export const DEFAULT_MAX_LISTENERS = 100;

/** One WebSocket of the script: accepted by `websocket.upgrade` or opened by `connect`. */
interface WsSocket {
  readonly handle: number;
  server: ServerClient | null;
  client: WebSocketClient | null;
  /** The peer is paused: the script has too much of it unread (see SocketInboxes). */
  paused: boolean;
  /** Wakes the pump of a client socket paused for backpressure. */
  resume: (() => void) | null;
  /** The script closed it. */
  closing: boolean;
  /** The connection is gone. */
  gone: boolean;
}

/**
 * The coroutine style (the `silly` framework): the script runs once, in a task, at startup;
 * it forks tasks that block in `sock:read()`, `channel:recv()`, `time.sleep()`…, and serves
 * with `http.listen{addr, handler}` where each request runs `handler(stream)` in its own task.
 *
 * The script's `http.listen` calls made during startup create the {@link servers} (the
 * caller listens on them, as for every style); calls made later listen at once. The port of
 * every listen is the script's (`":8080"`, `"127.0.0.1:8080"`), on `options.host` when the
 * address has none, except that `options.port` 0 puts every listener on a free port (tests,
 * `--port 0`). Certificates come from the script's `certs`, else from `options.tls`.
 *
 * A Lua error (or a CPU budget or memory limit hit) in a request's task, or a task it forked,
 * is logged and closes that connection: 1011 for a WebSocket, 500 for an HTTP request not yet
 * answered. Every other task goes on.
 */
export class CoroutineStyle implements StyleRuntime {
  private readonly host: LuaHost;
  private readonly options: ServerOptions;
  private readonly extra: CoroutineStyleOptions;
  private readonly bridge: SchedulerBridge;
  private readonly startMain: LuaRef;
  private readonly onRequest: LuaRef;
  /**
   * The headers of upgrade requests whose Lua `stream.header` was not built yet: a table per
   * idle WebSocket is most of its Lua memory, and the server keeps the headers anyway. Lua
   * fetches them on first use (`http_header`), or when the stream outlives its connection.
   */
  private readonly lazyHeaders = new Map<number, { [key: string]: string | string[] }>();
  /** The --static folder, or the console page, for requests the handler left unanswered. */
  private readonly pageHandler: StaticHandler | null;
  private readonly created: WebSocketServer[] = [];
  private readonly listeners = new Map<number, Listener>();
  private readonly streams = new Map<number, HttpStream>();
  private readonly sockets = new Map<number, WsSocket>();
  private readonly byClient = new Map<ServerClient, WsSocket>();
  /** The socket being accepted, for the onConnect hook that acceptUpgrade runs. */
  private accepting: WsSocket | null = null;
  private nextHandle = 1;
  private metricsUsed = false;
  private loading = false;
  private loaded = false;
  private disposed = false;
  private mainFailure: { message: string; traceback: string } | null = null;
  /** Entries into Lua waiting for the current one to finish (see dispatch). */
  private readonly queue: Array<() => void> = [];
  private depth = 0;

  constructor(host: LuaHost, options: ServerOptions, extra: CoroutineStyleOptions = {}) {
    this.host = host;
    this.options = options;
    this.extra = extra;
    this.pageHandler = createPageHandler(options);
    this.bridge = new SchedulerBridge(
      host,
      (context, message, traceback) => this.onFailure(context, message, traceback),
      {
        onFlow: (handle, reading) => this.onFlow(handle, reading),
        enter: (work) => this.dispatch(work),
      },
    );
    options.metrics?.gauge({
      name: "moonsocket_lua_listeners",
      help: "Listeners the coroutine-style script has open (--max-listeners).",
      collect: () => this.listeners.size,
    });
    options.metrics?.gauge({
      name: "moonsocket_lua_outgoing",
      help: "Outgoing WebSocket connections the script has open (--max-outgoing).",
      collect: () => this.outgoingCount(),
    });
    // Timers fire from the event loop; the coroutines they wake run through dispatch.
    host.afterEvent = () => this.dispatch(() => this.bridge.run());
    const engine = host.engine;
    const primitives = engine.createRef(this.primitives());
    try {
      this.startMain = engine.run(
        readRuntimeFile("silly/silly.lua"),
        "=silly",
        primitives,
      )[0] as LuaRef;
      const net = engine.run(readRuntimeFile("silly/silly-net.lua"), "=silly-net", primitives);
      this.onRequest = net[0] as LuaRef;
    } finally {
      primitives.release();
    }
  }

  /**
   * The servers the script opened. A copy: the caller's `listen` loop sees the servers of
   * startup only (later ones listen by themselves), `close` sees them all.
   */
  get servers(): readonly WebSocketServer[] {
    return [...this.created];
  }

  /** Runs the script's main chunk as the first task, and every task it makes ready. Throws LuaError. */
  load(): void {
    const engine = this.host.engine;
    const main = engine.load(readFileSync(this.host.scriptPath), `@${this.host.scriptName}`);
    this.loading = true;
    try {
      this.dispatch(() => {
        engine.call(this.startMain, main);
        this.bridge.run();
      });
    } finally {
      main.release();
      this.loading = false;
      this.loaded = true;
    }
    const failure = this.mainFailure;
    if (failure !== null) throw new LuaError("ERR_LUA_RUNTIME", failure.message, failure.traceback);
    if (this.created.length === 0) {
      this.host.logger.warn(
        "no server after startup (the script's http.listen was not called or failed): nothing listens",
        {
          script: this.host.scriptName,
        },
      );
    }
  }

  /** Drops the client sockets; the servers are closed by then. */
  dispose(): void {
    this.disposed = true;
    this.bridge.inboxes.dispose();
    for (const ws of this.sockets.values()) ws.client?.terminate();
    this.sockets.clear();
    this.byClient.clear();
    this.streams.clear();
  }

  // ---- entering Lua ---------------------------------------------------------------------

  /**
   * Runs `work` (an entry into Lua) now, or, when Lua is already running (a host function
   * made a socket report something synchronously), after the current entry: the scheduler is
   * never entered twice at once.
   */
  private dispatch(work: () => void): void {
    if (this.disposed || this.host.engine.closed) return;
    this.queue.push(work);
    if (this.depth > 0) return;
    this.depth++;
    try {
      for (let next = this.queue.shift(); next !== undefined; next = this.queue.shift()) {
        if (this.host.engine.closed) {
          this.queue.length = 0;
          break;
        }
        try {
          next();
        } catch (error) {
          this.host.reportError("the coroutine runtime", error);
        }
      }
    } finally {
      this.depth--;
    }
  }

  /**
   * Queues an event for Lua handle `handle` (dropped when the script no longer reads it). A
   * task waiting for it is woken after this event-loop turn, together with every task the
   * turn's other events woke: one entry into Lua for all of them (see SocketInboxes).
   */
  private deliver(
    handle: number,
    kind: number,
    data: Buffer | string | null = null,
    extra: number | null = null,
  ): void {
    if (this.disposed) return;
    this.bridge.inboxes.deliver(handle, kind, data, extra);
  }

  /**
   * What silly's `websocket.upgrade` says of request `handle` whose `stream.header` is still
   * in the host: the checks of silly-net.lua's upgrade, on the same values.
   */
  private upgradeRequestProblem(handle: number): string | null {
    const header = this.lazyHeaders.get(handle);
    if (header === undefined) return "header not found";
    const value = (name: string) => {
      const v = header[name];
      return Array.isArray(v) ? v.join(", ") : v;
    };
    return (
      upgradeProblem(value("upgrade"), value("connection")) ??
      (header["sec-websocket-key"] === undefined ? "sec-websocket-key not found" : null)
    );
  }

  /** A task died (Lua error, CPU budget, memory): close the connection it served. */
  private onFailure(context: LuaValue, message: string, traceback: string): void {
    if (Buffer.isBuffer(context) && context.toString() === "main") {
      if (!this.loading) return;
      this.mainFailure ??= { message, traceback };
      return;
    }
    if (typeof context !== "number") return;
    const ws = this.sockets.get(context);
    if (ws !== undefined && !ws.gone && !ws.closing && ws.server !== null) {
      ws.closing = true;
      this.resumeReading(ws);
      ws.server.close(CloseCode.InternalError, "internal server error");
    }
    const stream = this.streams.get(context);
    if (stream !== undefined) this.failStream(stream);
  }

  // ---- host primitives ------------------------------------------------------------------

  private primitives(): { [name: string]: LuaInput } {
    const fn = (f: HostFunction) => f;
    return {
      ...createHostApi(this.host),
      version: "moonsocket",
      exit: fn((a) => this.exit(a.optInteger(1) ?? 0)),
      http_listen: fn((a) => this.listen(a)),
      http_close_listener: fn((a) => {
        const listener = this.listeners.get(a.integer(1));
        if (listener === undefined) return false;
        this.listeners.delete(listener.id);
        void listener.server.close();
        return true;
      }),
      http_respond: fn((a) => this.respond(a)),
      http_write: fn((a) => this.write(a)),
      http_close: fn((a) => {
        const stream = this.streams.get(a.integer(1));
        if (stream !== undefined) this.endStream(stream, a.optBytes(2));
      }),
      http_done: fn((a) => this.handlerDone(a.integer(1))),
      upgrade_problem: fn((a) => upgradeProblem(checkedHeader(a, 1), checkedHeader(a, 2))),
      upgrade_request_problem: fn((a) => this.upgradeRequestProblem(a.integer(1))),
      http_header: fn((a) => {
        const handle = a.integer(1);
        const header = this.lazyHeaders.get(handle);
        this.lazyHeaders.delete(handle);
        return header;
      }),
      ws_accept: fn((a) => this.accept(a.integer(1))),
      ws_connect: fn((a) => this.connect(a)),
      ws_send: fn((a) => this.send(a)),
      ws_close: fn((a) => {
        const handle = a.integer(1);
        // A task still blocked reading this socket wakes up (and finds it closed).
        this.bridge.inboxes.close(handle);
        const ws = this.sockets.get(handle);
        if (ws === undefined || ws.gone || ws.closing) return luaMulti(false, SOCKET_CLOSED);
        this.closeSocket(ws, CloseCode.NormalClosure);
        return true;
      }),
      inbox_close: fn((a) => this.bridge.inboxes.close(a.integer(1))),
      ws_collected: fn((a) => {
        // The script dropped every reference to an open socket: nobody can use it any more.
        const handle = a.integer(1);
        this.bridge.inboxes.forget(handle);
        this.lazyHeaders.delete(handle);
        const ws = this.sockets.get(handle);
        if (ws !== undefined && !ws.gone && !ws.closing) this.closeSocket(ws, CloseCode.GoingAway);
      }),
      conn_alive: fn((a) => {
        const handle = a.integer(1);
        const ws = this.sockets.get(handle);
        if (ws !== undefined) return !ws.gone && !ws.closing;
        const stream = this.streams.get(handle);
        return stream !== undefined && !stream.gone;
      }),
      conn_unsent: fn((a) => {
        const ws = this.sockets.get(a.integer(1));
        return ws?.server?.bufferedAmount ?? ws?.client?.bufferedAmount ?? 0;
      }),
    };
  }

  /** `silly.exit`: no process to end here; stop serving. */
  private exit(code: number): void {
    this.host.logger.warn(`silly.exit(${code}) called: closing the script's servers`, {
      script: this.host.scriptName,
    });
    for (const server of this.created) void server.close();
  }

  // ---- http.listen ----------------------------------------------------------------------

  private listen(a: LuaArgs) {
    const conf = a.table(1) as { [key: string]: LuaValue };
    const addr = text(conf.addr);
    // Scripts often ignore listen's `nil, err` (the reference examples do): say it in the log.
    const refuse = (message: string) => {
      this.host.logger.warn(`http.listen at '${addr}' failed: ${message}`, {
        script: this.host.scriptName,
      });
      return luaMulti(null, message);
    };
    const maxListeners = this.extra.maxListeners ?? DEFAULT_MAX_LISTENERS;
    if (this.listeners.size >= maxListeners) {
      return luaMulti(
        null,
        this.host.limitHit(`too many listeners: ${maxListeners} open (--max-listeners)`),
      );
    }
    const parsed = parseAddress(addr, this.options.host ?? "127.0.0.1");
    if (typeof parsed === "string") return refuse(parsed);
    let tls = this.options.tls;
    const certs = conf.certs;
    if (Array.isArray(certs) && certs.length > 0) {
      const first = certs[0] as { [key: string]: LuaValue } | undefined;
      const cert = first?.cert;
      const key = first?.key;
      if (!Buffer.isBuffer(cert) || !Buffer.isBuffer(key))
        return refuse("certs[1] needs cert and key (PEM text)");
      tls = { cert, key };
    } else if (conf.tls === true && tls === undefined) {
      return refuse("tls needs certs = {{cert = PEM, key = PEM}}");
    }
    if (tls !== undefined) {
      // Checked before the server exists: a failed server must not leave its metrics behind
      // in the registry the next listen uses.
      try {
        createSecureContext(tls);
      } catch (error) {
        return refuse(errorMessage(error));
      }
    }
    const override = this.extra.portOverride;
    const port =
      this.options.port === 0
        ? 0
        : override !== undefined && this.created.length === 0
          ? override
          : parsed.port;
    const options: ServerOptions = { ...this.options, host: parsed.host, port };
    if (tls !== undefined) options.tls = tls;
    else delete options.tls;
    if (this.metricsUsed || options.metrics === undefined) options.metrics = new MetricsRegistry();
    let server: WebSocketServer;
    try {
      server = new WebSocketServer(options);
    } catch (error) {
      return refuse(errorMessage(error));
    }
    if (options.metrics === this.options.metrics) this.metricsUsed = true;
    const listener: Listener = { id: this.nextHandle++, server, secure: tls !== undefined };
    this.listeners.set(listener.id, listener);
    this.addHooks(listener);
    this.created.push(server);
    if (!this.loaded) return luaMulti(listener.id, false, `${parsed.host}:${port}`);
    this.bridge.inboxes.open(listener.id);
    // Opened after startup: nobody else will listen on it.
    server.listen().then(
      (info) => this.deliver(listener.id, Result.Ok, `${info.address}:${info.port}`),
      (error: unknown) => {
        this.listeners.delete(listener.id);
        this.created.splice(this.created.indexOf(server), 1);
        this.host.logger.warn(`http.listen at '${addr}' failed: ${errorMessage(error)}`, {
          script: this.host.scriptName,
        });
        this.deliver(listener.id, Result.Failed, errorMessage(error));
      },
    );
    return luaMulti(listener.id, true);
  }

  private addHooks(listener: Listener): void {
    listener.server.addHooks({
      onRequest: (req, res) => {
        this.handleRequest(listener, req, res);
        return true;
      },
      onUpgradeRequest: (req, socket, head) => {
        this.handleUpgradeRequest(listener, req, socket, head);
        return true;
      },
      onConnect: (client) => {
        const ws = this.accepting;
        if (ws === null) return;
        ws.server = client;
        this.byClient.set(client, ws);
        this.sockets.set(ws.handle, ws);
      },
      onMessage: (client, data, isBinary) =>
        this.socketEvent(
          this.byClient.get(client),
          isBinary ? SocketEvent.Binary : SocketEvent.Text,
          data,
        ),
      onPing: (client, payload) =>
        this.socketEvent(this.byClient.get(client), SocketEvent.Ping, payload),
      onPong: (client, payload) =>
        this.socketEvent(this.byClient.get(client), SocketEvent.Pong, payload),
      onDisconnect: (client, code, reason) => {
        const ws = this.byClient.get(client);
        if (ws === undefined) return;
        this.byClient.delete(client);
        this.socketGone(ws, code, reason, client.failureReason);
      },
    });
  }

  // ---- requests -------------------------------------------------------------------------

  private newStream(
    listener: Listener,
    req: IncomingMessage,
    res: ServerResponse | null,
    socket: Socket | null,
    head: Buffer,
  ): HttpStream {
    const stream: HttpStream = {
      handle: this.nextHandle++,
      listener,
      req,
      res,
      socket,
      head,
      status: 200,
      headers: {},
      responded: false,
      started: false,
      ended: false,
      rawBody: [],
      rawBodyBytes: 0,
      gone: false,
      onSocketClose: null,
    };
    this.streams.set(stream.handle, stream);
    return stream;
  }

  private handleRequest(listener: Listener, req: IncomingMessage, res: ServerResponse): void {
    const stream = this.newStream(listener, req, res, null, NO_BYTES);
    res.on("close", () => {
      stream.gone = true;
      this.streams.delete(stream.handle);
    });
    // The handler starts with the whole body at hand (bounded like a message).
    const limit = listener.server.options.maxPayload;
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      if (stream.ended) return;
      size += chunk.length;
      if (size > limit) {
        stream.ended = true;
        sendPlain(res, 413, `request body larger than ${limit} bytes\n`);
        return;
      }
      chunks.push(chunk);
    });
    req.on("error", () => {
      // 'close' on the response follows.
    });
    req.on("end", () => {
      if (!stream.ended && !stream.gone) this.startHandler(stream, Buffer.concat(chunks, size));
    });
  }

  private handleUpgradeRequest(
    listener: Listener,
    req: IncomingMessage,
    socket: Socket,
    head: Buffer,
  ): void {
    const stream = this.newStream(listener, req, null, socket, head);
    // Captures the handle only, and is removed once the stream is accepted: the request
    // (headers and all) can then be collected while the socket lives on.
    const handle = stream.handle;
    stream.onSocketClose = () => {
      const open = this.streams.get(handle);
      if (open !== undefined) {
        open.gone = true;
        this.streams.delete(handle);
      }
    };
    socket.on("close", stream.onSocketClose);
    this.startHandler(stream, NO_BYTES, true);
  }

  /**
   * Runs the listener's Lua handler for `stream` in a new task. With `lazyHeader` (an upgrade
   * request) its `stream.header` is made when the script first reads it (see lazyHeaders).
   */
  private startHandler(stream: HttpStream, body: Buffer, lazyHeader = false): void {
    const req = stream.req;
    const url = req.url ?? "/";
    const queryAt = url.indexOf("?");
    const query: { [key: string]: string } = {};
    if (queryAt >= 0)
      for (const [name, value] of new URLSearchParams(url.slice(queryAt + 1)))
        query[name] ??= value;
    // Passed as arguments (see on_request): no table to build, in JS or in Lua.
    const args: LuaInput[] = [
      stream.listener.id,
      stream.handle,
      req.method ?? "GET",
      queryAt < 0 ? url : url.slice(0, queryAt),
      // No query: Lua makes the empty table if the script looks (one less per connection).
      queryAt < 0 ? undefined : query,
      lazyHeader ? undefined : luaHeaders(req),
      req.httpVersion === "1.1" ? "HTTP/1.1" : `HTTP/${req.httpVersion}`,
      `${req.socket.remoteAddress ?? ""}:${req.socket.remotePort ?? 0}`,
      stream.listener.secure ? "https" : "http",
      body.length > 0 ? body : undefined,
    ];
    if (lazyHeader) this.lazyHeaders.set(stream.handle, luaHeaders(req));
    this.dispatch(() => {
      const [accepted] = this.host.engine.call(this.onRequest, ...args);
      if (accepted !== true) {
        // The listener was closed meanwhile.
        this.lazyHeaders.delete(stream.handle);
        this.endWithStatus(stream, 503, "Service Unavailable\n");
      }
      this.bridge.run();
    });
  }

  private respond(a: LuaArgs) {
    const stream = this.streams.get(a.integer(1));
    if (stream === undefined || stream.gone) return luaMulti(false, SOCKET_CLOSED);
    if (stream.started || stream.ended) return luaMulti(false, "response already started");
    const status = a.integer(2);
    if (status < 100 || status > 999) a.argError(2, "HTTP status expected (100..999)");
    const headers = a.isNil(3) ? {} : toHeaders(a.table(3));
    // Refused here, while the script can still answer otherwise (a CR or LF in a value would
    // otherwise fail the response when it is sent).
    try {
      for (const [name, value] of Object.entries(headers)) {
        validateHeaderName(name);
        for (const item of Array.isArray(value) ? value : [value]) validateHeaderValue(name, item);
      }
    } catch (error) {
      return luaMulti(false, `invalid header: ${errorMessage(error)}`);
    }
    stream.status = status;
    stream.headers = headers;
    stream.responded = true;
    return true;
  }

  private write(a: LuaArgs) {
    const stream = this.streams.get(a.integer(1));
    if (stream === undefined || stream.gone) return luaMulti(false, SOCKET_CLOSED);
    if (stream.ended) return luaMulti(false, "write closed");
    const data = a.bytes(2);
    // A client that does not read must not make the process buffer without end (--max-buffered).
    const buffered = stream.res !== null ? stream.res.writableLength : stream.rawBodyBytes;
    if (buffered + data.length > stream.listener.server.options.maxBufferedBytes)
      return luaMulti(false, "send buffer full");
    try {
      this.startResponse(stream);
      if (stream.res !== null) stream.res.write(data);
      else {
        stream.rawBody.push(data);
        stream.rawBodyBytes += data.length;
      }
    } catch (error) {
      return luaMulti(false, errorMessage(error));
    }
    return true;
  }

  /** Commits the status and headers (a plain response sends them with the first bytes). */
  private startResponse(stream: HttpStream): void {
    if (stream.started) return;
    const res = stream.res;
    if (res !== null) {
      res.statusCode = stream.status;
      for (const [name, value] of Object.entries(stream.headers)) res.setHeader(name, value);
    }
    stream.started = true;
  }

  /** Ends the response (`closewrite`), after `body` if given. */
  private endStream(stream: HttpStream, body?: Buffer): void {
    if (stream.ended || stream.gone) return;
    try {
      this.startResponse(stream);
    } catch (error) {
      this.host.logger.error(`invalid response header: ${errorMessage(error)}`, {
        script: this.host.scriptName,
      });
      stream.status = 500;
      stream.headers = {};
      stream.started = false;
      if (stream.res !== null)
        for (const name of stream.res.getHeaderNames()) stream.res.removeHeader(name);
      this.startResponse(stream);
      body = Buffer.from("Internal Server Error\n");
    }
    stream.ended = true;
    if (stream.res !== null) {
      stream.res.end(body);
      return;
    }
    if (body !== undefined) stream.rawBody.push(body);
    writeRawResponse(stream, stream.status, stream.headers, Buffer.concat(stream.rawBody));
  }

  /** Answers with `status` unless something was sent already. */
  private endWithStatus(stream: HttpStream, status: number, body: string): void {
    if (stream.ended || stream.gone) return;
    stream.ended = true;
    if (stream.res !== null) {
      if (!stream.res.headersSent) sendPlain(stream.res, status, body);
      else stream.res.end();
      return;
    }
    writeRawResponse(
      stream,
      status,
      { "content-type": "text/plain; charset=utf-8" },
      Buffer.from(body),
    );
  }

  /** The handler of a request failed: 500 if nothing was sent yet, else cut the connection. */
  private failStream(stream: HttpStream): void {
    this.streams.delete(stream.handle);
    if (stream.ended || stream.gone) return;
    const sent =
      stream.res !== null ? stream.res.headersSent : stream.started && stream.rawBody.length > 0;
    if (!sent) {
      this.endWithStatus(stream, 500, "Internal Server Error\n");
      return;
    }
    stream.ended = true;
    // Cut the connection so the client sees an incomplete response, after what was
    // written this tick has gone out.
    const res = stream.res;
    const socket = stream.socket;
    setImmediate(() => {
      if (res !== null) res.destroy();
      else socket?.destroy();
    });
  }

  /**
   * The handler returned. A response left open is ended; a request it did not answer gets a
   * static file (with --static), the console page (`consolePage`) or 404. An upgraded stream's WebSocket stays open: the script
   * may hand the socket to other tasks (it is closed when the script drops it).
   */
  private handlerDone(handle: number): void {
    const stream = this.streams.get(handle);
    if (stream === undefined) return;
    this.streams.delete(handle);
    if (stream.ended || stream.gone) return;
    if (stream.responded || stream.started) {
      this.endStream(stream);
      return;
    }
    const res = stream.res;
    if (
      res !== null &&
      this.pageHandler !== null &&
      (stream.req.method === "GET" || stream.req.method === "HEAD")
    ) {
      stream.ended = true;
      this.pageHandler(stream.req, res).then(
        (served) => {
          if (!served) sendPlain(res, 404, "Not Found\n");
        },
        () => sendPlain(res, 500, "Internal Server Error\n"),
      );
      return;
    }
    this.endWithStatus(stream, 404, "Not Found\n");
  }

  // ---- websocket.upgrade ----------------------------------------------------------------

  private accept(handle: number) {
    const stream = this.streams.get(handle);
    if (stream === undefined || stream.gone) return luaMulti(null, SOCKET_CLOSED);
    if (stream.socket === null) {
      // A plain request (node:http saw no Upgrade/Connection pair).
      this.endWithStatus(stream, 400, "not a WebSocket upgrade request\n");
      return luaMulti(null, "not an upgrade request");
    }
    if (stream.started || stream.ended) return luaMulti(null, "stream already responded");
    const ws = newSocket(handle);
    stream.ended = true;
    this.streams.delete(handle);
    if (stream.onSocketClose !== null) stream.socket.removeListener("close", stream.onSocketClose);
    this.accepting = ws;
    // Before accepting: frames that came with the request are delivered during the accept.
    this.bridge.inboxes.open(handle);
    let client: ServerClient | null;
    try {
      client = stream.listener.server.acceptUpgrade(stream.req, stream.socket, stream.head);
    } finally {
      this.accepting = null;
    }
    // acceptUpgrade answered a refused handshake itself (4xx, logged and counted).
    let refusal: string | null = null;
    if (client === null) refusal = handshakeProblem(stream.req) ?? "handshake refused";
    else if (!client.connected) refusal = "server is full, try again later";
    if (refusal !== null) {
      this.bridge.inboxes.forget(handle);
      return luaMulti(null, refusal);
    }
    return true;
  }

  // ---- websocket.connect ----------------------------------------------------------------

  private connect(a: LuaArgs) {
    const given = a.string(1);
    const url = this.extra.resolveUrl?.(given) ?? given;
    const fields = a.isNil(2) ? {} : toHeaders(a.table(2));
    let target: URL;
    try {
      target = new URL(url);
    } catch {
      return luaMulti(null, `invalid url: ${url}`);
    }
    if (target.protocol !== "ws:" && target.protocol !== "wss:") {
      return luaMulti(
        null,
        `unsupported scheme '${target.protocol.slice(0, -1)}' (use ws:// or wss://)`,
      );
    }
    const refusal = this.host.outgoingRefusal(this.outgoingCount());
    if (refusal !== null) return luaMulti(null, refusal);
    const headers: Record<string, string> = {};
    let protocols: string[] = [];
    for (const [name, value] of Object.entries(fields)) {
      const lower = name.toLowerCase();
      const joined = Array.isArray(value) ? value.join(", ") : value;
      // The client writes the handshake's own fields; silly scripts may pass them too.
      if (
        lower === "host" ||
        lower === "upgrade" ||
        lower === "connection" ||
        lower === "sec-websocket-key" ||
        lower === "sec-websocket-version"
      )
        continue;
      if (lower === "sec-websocket-protocol")
        protocols = joined
          .split(",")
          .map((p) => p.trim())
          .filter((p) => p !== "");
      else headers[name] = joined;
    }
    const ws = newSocket(this.nextHandle++);
    this.sockets.set(ws.handle, ws);
    this.bridge.inboxes.open(ws.handle);
    if (this.extra.offline) return ws.handle;
    connect(target, { ...this.extra.connect, headers, protocols }).then(
      (client) => this.connected(ws, client),
      (error: unknown) => {
        this.sockets.delete(ws.handle);
        ws.gone = true;
        const message =
          error instanceof HandshakeError && error.status > 0
            ? `websocket.connect fail:${error.status}`
            : errorMessage(error);
        this.deliver(ws.handle, Result.Failed, message);
      },
    );
    return ws.handle;
  }

  /** Connections `websocket.connect` opened (or is opening): sockets no server accepted. */
  private outgoingCount(): number {
    let open = 0;
    for (const socket of this.sockets.values()) if (socket.server === null) open++;
    return open;
  }

  private connected(ws: WsSocket, client: WebSocketClient): void {
    if (this.disposed || ws.closing) {
      client.terminate();
      return;
    }
    ws.client = client;
    client.pingListener = (payload) => this.socketEvent(ws, SocketEvent.Ping, payload);
    client.pongListener = (payload) => this.socketEvent(ws, SocketEvent.Pong, payload);
    this.deliver(ws.handle, Result.Ok, client.protocol);
    void this.pump(ws, client);
  }

  /** Moves a client socket's messages into Lua, waiting while the script is behind. */
  private async pump(ws: WsSocket, client: WebSocketClient): Promise<void> {
    let failure: string | null = null;
    try {
      for await (const message of client) {
        this.socketEvent(
          ws,
          message.isBinary ? SocketEvent.Binary : SocketEvent.Text,
          message.data,
        );
        while (ws.paused && !ws.gone && !this.disposed) {
          await new Promise<void>((resolve) => {
            ws.resume = resolve;
          });
        }
      }
    } catch (error) {
      failure = errorMessage(error);
    }
    const info = await client.closed;
    this.socketGone(ws, info.code, info.reason, failure);
  }

  // ---- sockets --------------------------------------------------------------------------

  private socketEvent(ws: WsSocket | undefined, kind: number, data: Buffer): void {
    if (ws === undefined || ws.gone || ws.closing) return;
    this.deliver(ws.handle, kind, data);
  }

  /** The inbox's flow control: pause the peer of a socket the script is behind on, or go on. */
  private onFlow(handle: number, reading: boolean): void {
    const ws = this.sockets.get(handle);
    if (ws === undefined) return;
    if (!reading) {
      ws.paused = true;
      ws.server?.pauseReading();
      return;
    }
    if (!ws.paused) return;
    ws.paused = false;
    ws.server?.resumeReading();
    const resume = ws.resume;
    ws.resume = null;
    resume?.();
  }

  /** Reads from the peer again whatever the script has unread (it is closing the socket). */
  private resumeReading(ws: WsSocket): void {
    this.bridge.inboxes.resumeFlow(ws.handle, true);
    this.onFlow(ws.handle, true);
  }

  /** The connection ended: tell a reader why (the peer's close frame, or the failure), then EOF. */
  private socketGone(ws: WsSocket, code: number, reason: string, failure: string | null): void {
    if (ws.gone) return;
    ws.gone = true;
    this.sockets.delete(ws.handle);
    if (!ws.closing) {
      if (failure !== null) this.deliver(ws.handle, Result.Failed, failure);
      else if (code !== CloseCode.AbnormalClosure)
        this.deliver(ws.handle, SocketEvent.Close, closePayload(code, reason));
    }
    this.deliver(ws.handle, SocketEvent.Closed, null, code);
  }

  private closeSocket(ws: WsSocket, code: number): void {
    ws.closing = true;
    // The close handshake needs the peer's answer: read again if paused.
    this.resumeReading(ws);
    if (ws.server !== null) ws.server.close(code, "");
    else if (ws.client !== null) void ws.client.close(code);
  }

  private send(a: LuaArgs) {
    const ws = this.sockets.get(a.integer(1));
    if (ws === undefined || ws.gone || ws.closing || (ws.server === null && ws.client === null))
      return luaMulti(false, SOCKET_CLOSED);
    const opcode = a.integer(2);
    // A small message to a server socket is copied into its frame at once: read it in place.
    const view = a.bytesView(3);
    const data = ws.server !== null && view.length < SMALL_FRAME_BYTES ? view : Buffer.from(view);
    try {
      switch (opcode) {
        case SocketEvent.Text:
          // A text frame must be UTF-8 (RFC 6455 §5.6); the peer would fail the connection.
          if (!isValidUtf8(data))
            return luaMulti(false, "text data is not valid UTF-8 (send it as binary)");
          return sendResult(
            ws.server !== null
              ? ws.server.send(data, false)
              : sendClient(() => ws.client!.send(data, false)),
          );
        case SocketEvent.Binary:
          return sendResult(
            ws.server !== null
              ? ws.server.send(data, true)
              : sendClient(() => ws.client!.send(data, true)),
          );
        case SocketEvent.Ping:
          return sendResult(
            ws.server !== null ? ws.server.ping(data) : sendClient(() => ws.client!.ping(data)),
          );
        case SocketEvent.Pong:
          if (ws.server !== null) return sendResult(ws.server.pong(data));
          return sendResult(sendClient(() => ws.client!.pong(data)));
        case SocketEvent.Close: {
          // The payload of a close frame: empty, or a 2-byte code and a UTF-8 reason (§5.5.1).
          let code: number | undefined;
          let reason = "";
          if (data.length === 1)
            return luaMulti(false, "a close payload is empty or at least 2 bytes");
          if (data.length >= 2) {
            code = data.readUInt16BE(0);
            const reasonBytes = data.subarray(2);
            if (!isValidCloseCode(code)) return luaMulti(false, `invalid close code ${code}`);
            if (!isValidUtf8(reasonBytes))
              return luaMulti(false, "close reason is not valid UTF-8");
            reason = reasonBytes.toString("utf8");
          }
          if (ws.server !== null) ws.server.close(code, reason);
          else if (code === undefined) ws.client!.terminate();
          else void ws.client!.close(code, reason);
          return true;
        }
        default:
          return luaMulti(
            false,
            "continuation frames are not sent on their own (write the whole message)",
          );
      }
    } catch (error) {
      return luaMulti(false, errorMessage(error));
    }
  }
}

// ---- helpers ----------------------------------------------------------------------------

function newSocket(handle: number): WsSocket {
  return {
    handle,
    server: null,
    client: null,
    paused: false,
    resume: null,
    closing: false,
    gone: false,
  };
}

function sendClient(send: () => void): SendStatus {
  try {
    send();
    return SendStatus.Success;
  } catch {
    return SendStatus.Dropped;
  }
}

function sendResult(status: SendStatus) {
  return status === SendStatus.Dropped ? luaMulti(false, SOCKET_CLOSED) : true;
}

function text(value: LuaValue | undefined): string {
  if (Buffer.isBuffer(value)) return value.toString("utf8");
  if (typeof value === "number") return String(value);
  return "";
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function closePayload(code: number, reason: string): Buffer {
  if (code === CloseCode.NoStatusReceived) return Buffer.alloc(0);
  const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
  payload.writeUInt16BE(code, 0);
  payload.write(reason, 2, "utf8");
  return payload;
}
