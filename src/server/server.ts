import { readFileSync } from "node:fs";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import https from "node:https";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import { createLogger, type Logger } from "../observability/logger.js";
import { MetricsRegistry, PROMETHEUS_CONTENT_TYPE } from "../observability/metrics.js";
import { CloseCode } from "../protocol/close-code.js";
import { HandshakeError, type ProtocolError, StateError } from "../protocol/errors.js";
import {
  buildErrorResponse,
  buildUpgradeResponse,
  parseUpgradeRequest,
} from "../protocol/handshake.js";
import { Opcode } from "../protocol/opcode.js";
import {
  acceptDeflateOffer,
  type DeflateOptions,
  parseExtensions,
} from "../protocol/permessage-deflate.js";
import { IdleSweeper, type LimitKind, SocketTransport } from "../transport/socket-transport.js";
import { ZlibCompressor } from "../transport/zlib-compressor.js";
import type { Bus, BusNode } from "./bus.js";
import { Hub } from "./hub.js";
import { createPageHandler } from "./page-handler.js";
import { type ClientOwner, type SendStatus, ServerClient } from "./server-client.js";
import { ServerMetrics } from "./server-metrics.js";
import { SERVER_DEFAULTS, type ServerOptions } from "./server-options.js";
import type { StaticHandler } from "./static-files.js";

type Resolved = Required<
  Omit<
    ServerOptions,
    | "path"
    | "staticDir"
    | "consolePage"
    | "tls"
    | "perMessageDeflate"
    | "logger"
    | "metrics"
    | "bus"
    | "historyLength"
    | "hub"
    | "wholeServer"
    | "server"
    | "noServer"
  >
>;

/**
 * Application hooks, the TypeScript counterpart of WebSocketServer's C++ `wsHookInterface`.
 * Every hook is optional; a server may have several sets (TypeScript hooks and a Lua
 * script) and calls them in the order they were added. A hook that throws is logged and
 * closes the client concerned with 1011; the server and every other client go on.
 */
export interface ServerHooks {
  /** The server is listening. May return a promise; `listen` waits for it. */
  onStartup?(server: WebSocketServer): void | Promise<void>;
  /** The server is shutting down, before clients are closed with 1001. May return a promise. */
  onShutdown?(server: WebSocketServer): void | Promise<void>;
  /** A client completed the opening handshake. `request` is its HTTP upgrade request. */
  onConnect?(client: ServerClient, request: IncomingMessage): void;
  /** A client left. Only follows an `onConnect` of the same client. Code 1006 when the TCP connection just dropped. */
  onDisconnect?(client: ServerClient, code: number, reason: string): void;
  /** A whole message arrived: text as UTF-8 bytes (`isBinary` false) or binary. */
  onMessage?(client: ServerClient, data: Buffer, isBinary: boolean): void;
  /** Frame mode only: a data frame or control frame as it arrived (see `ServerOptions.frameMode`). */
  onFrame?(client: ServerClient, opcode: number, payload: Buffer, fin: boolean): void;
  /**
   * A plain HTTP request (not /healthz or /metrics). Return true to answer it yourself;
   * otherwise static files or 404 follow.
   */
  onRequest?(request: IncomingMessage, response: ServerResponse): boolean;
  /**
   * An upgrade request to a WebSocket path. Return true to take it over: the hook then calls
   * `server.acceptUpgrade(request, socket, head)` when (and if) it wants the connection.
   */
  onUpgradeRequest?(request: IncomingMessage, socket: Socket, head: Buffer): boolean;
  /**
   * The client's send buffer emptied after a send returned `SendStatus.Backpressure`
   * (uWebSockets' `drain`): the moment to send what was held back.
   */
  onDrain?(client: ServerClient): void;
  /** A ping arrived (the pong is sent automatically unless in frame mode). */
  onPing?(client: ServerClient, payload: Buffer): void;
  /** A pong arrived. */
  onPong?(client: ServerClient, payload: Buffer): void;
}

/** Reads PEM files for `ServerOptions.tls`. */
export function readTlsFiles(certFile: string, keyFile: string): { cert: Buffer; key: Buffer } {
  return { cert: readFileSync(certFile), key: readFileSync(keyFile) };
}

/**
 * A WebSocket server on one port that also answers plain HTTP: static files (or the console
 * page), `/healthz`, `/metrics`, else 404. Clients get the lowest free integer id. Limits are enforced with the
 * RFC's close codes, logged and counted.
 *
 * It can also live on an HTTP server you own (`{ server }`: its upgrades are ours, its plain
 * requests yours) or take upgrades from your code (`{ noServer: true }` and
 * {@link handleUpgrade}); every limit, origin check and metric applies the same way.
 *
 * @example
 * const server = new WebSocketServer({ port: 8085 });
 * server.addHooks({ onMessage: (client, data, isBinary) => client.send(data, isBinary) });
 * await server.listen();
 */
export class WebSocketServer implements ClientOwner {
  readonly options: Resolved;
  readonly logger: Logger;
  readonly metricsRegistry: MetricsRegistry;
  readonly metrics: ServerMetrics;
  readonly maxBufferedBytes: number;
  /** The HTTP server upgrades come from: ours, the one given as `server`, or null (`noServer`). */
  private readonly httpServer: http.Server | null;
  /** Whether `httpServer` is ours to listen on and close. */
  private readonly ownsHttpServer: boolean;
  private readonly hooks: ServerHooks[] = [];
  /** Every delivery between clients (send to id, broadcast, publish) and the client list. */
  readonly hub: Hub;
  private readonly sweeper: IdleSweeper;
  private readonly paths: ReadonlySet<string> | null;
  private readonly allowedOrigins: ReadonlySet<string> | null;
  /** The --static folder, or the console page, or null (page-handler.ts). */
  private readonly pageHandler: StaticHandler | null;
  private readonly deflate: DeflateOptions | null;
  private readonly secure: boolean;
  private readonly startedAt = Date.now();
  private shuttingDown: Promise<void> | null = null;
  /** The figures of the whole server when it spans several processes (`--workers N`). */
  private readonly wholeServer: ServerOptions["wholeServer"];
  /** Ids taken from the bus for upgrade requests not yet answered. */
  private readonly reservedIds = new WeakMap<IncomingMessage, number>();
  private started: Promise<void> | null = null;

  constructor(options: ServerOptions = {}) {
    const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
    this.options = {
      ...SERVER_DEFAULTS,
      allowedOrigins: [],
      protocols: [],
      frameMode: false,
      fragmentSize: 0,
      ...defined,
    } as Resolved;
    this.logger = options.logger ?? createLogger();
    this.wholeServer = options.wholeServer;
    this.metricsRegistry = options.metrics ?? new MetricsRegistry();
    this.metrics = new ServerMetrics(this.metricsRegistry);
    this.hub = options.hub ?? this.createHub(options);
    // A hub shared by several servers counts its deliveries in the first one's metrics.
    if (options.hub !== undefined) options.hub.countDeliveriesIn(this.metrics.messagesSent);
    this.metricsRegistry.gauge({
      name: "moonsocket_topics",
      help: "Topics with at least one subscriber.",
      collect: () => this.hub.topicCount,
    });
    this.maxBufferedBytes = this.options.maxBufferedBytes;
    this.sweeper = new IdleSweeper(this.options.pingInterval, this.options.idleTimeout);
    const path = options.path;
    this.paths = path === undefined ? null : new Set(typeof path === "string" ? [path] : path);
    this.allowedOrigins =
      this.options.allowedOrigins.length > 0 ? new Set(this.options.allowedOrigins) : null;
    this.pageHandler = createPageHandler(options);
    const deflate = options.perMessageDeflate;
    this.deflate = deflate === true ? {} : deflate ? deflate : null;
    this.ownsHttpServer = options.server === undefined && options.noServer !== true;
    this.secure = this.ownsHttpServer
      ? options.tls !== undefined
      : options.server instanceof tls.Server;
    this.httpServer = this.ownsHttpServer ? this.createHttpServer(options) : attach(options);
    if (!this.ownsHttpServer) this.httpServer?.on("upgrade", this.onAttachedUpgrade);
  }

  /** Our own HTTP(S) server: requests routed (else 404), upgrades handled, bad requests answered. */
  private createHttpServer(options: ServerOptions): http.Server {
    const httpOptions: http.ServerOptions = {
      maxHeaderSize: this.options.maxHeaderBytes,
      headersTimeout: this.options.handshakeTimeout,
      requestTimeout: Math.max(this.options.handshakeTimeout, 30_000),
      connectionsCheckingInterval: Math.min(1000, this.options.handshakeTimeout),
      keepAliveTimeout: 5000,
    };
    // wss: the TLS handshake comes before the HTTP request and node:tls gives it 120 s by
    // default, so a client that connects and never finishes TLS would escape handshakeTimeout.
    const server = options.tls
      ? https.createServer({
          ...httpOptions,
          handshakeTimeout: this.options.handshakeTimeout,
          ...options.tls,
        })
      : http.createServer(httpOptions);
    // One over the limit, so a request with too many headers can be told from one at the limit.
    server.maxHeadersCount = this.options.maxHeaderCount + 1;
    server.on("request", (req, res) => {
      this.handleRequest(req, res)
        .then((answered) => {
          if (!answered) answerNotFound(req, res);
        })
        .catch((error: unknown) => this.logger.error("HTTP request failed", { err: error }));
    });
    server.on("upgrade", (req: IncomingMessage, socket: Socket, head: Buffer) =>
      this.handleUpgrade(req, socket, head),
    );
    server.on("clientError", (error: NodeJS.ErrnoException, socket: Socket) =>
      this.handleClientError(error, socket),
    );
    return server;
  }

  private createHub(options: ServerOptions): Hub {
    return new Hub({
      messagesSent: this.metrics.messagesSent,
      logger: this.logger,
      ...(options.bus !== undefined ? { bus: options.bus } : {}),
      ...(options.historyLength !== undefined ? { historyLength: options.historyLength } : {}),
    });
  }

  /** Adds a set of hooks; hooks run in the order their sets were added. */
  addHooks(hooks: ServerHooks): this {
    this.hooks.push(hooks);
    return this;
  }

  /** Replaces one set of hooks by another in place (a script reloaded with --watch). */
  replaceHooks(old: ServerHooks, replacement: ServerHooks): void {
    const index = this.hooks.indexOf(old);
    if (index < 0) throw new RangeError("these hooks were never added");
    this.hooks[index] = replacement;
  }

  /**
   * Joins the cluster (with a bus), starts listening and runs the startup hooks. Resolves with
   * the bound address. On a
   * server given as `server`, it binds nothing: it waits until that server is listening
   * (you call its `listen`), then runs the startup hooks. With `noServer` there is no
   * address: call {@link start} instead (throws StateError).
   * @throws {BusError} `"unreachable"` when the bus cannot reach its cluster.
   */
  async listen(): Promise<AddressInfo> {
    const httpServer = this.httpServer;
    if (httpServer === null)
      throw new StateError(
        "noServer: there is no port to listen on; call start() and hand upgrades to handleUpgrade()",
        "ERR_WS_NO_SERVER",
      );
    await this.hub.start();
    if (this.ownsHttpServer || !httpServer.listening) {
      await new Promise<void>((resolve, reject) => {
        const onError = (error: Error) => reject(error);
        httpServer.once("error", onError);
        const onListening = () => {
          httpServer.off("error", onError);
          resolve();
        };
        if (this.ownsHttpServer)
          httpServer.listen(this.options.port, this.options.host, onListening);
        else httpServer.once("listening", onListening);
      });
    }
    await this.start();
    const address = this.address();
    this.logger.info("listening", {
      url: this.url,
      maxPayload: this.options.maxPayload,
      deflate: this.deflate !== null,
    });
    return address;
  }

  /**
   * Runs the startup hooks (once; later calls wait for the same run). `listen` calls it; with
   * `noServer`, call it yourself before handing upgrades over if your hooks (a Lua script's
   * `on_startup`) need it.
   */
  start(): Promise<void> {
    this.started ??= (async () => {
      for (const hooks of this.hooks) await hooks.onStartup?.(this);
    })();
    return this.started;
  }

  /** The bound address (after `listen`). Throws StateError with `noServer`. */
  address(): AddressInfo {
    if (this.httpServer === null)
      throw new StateError("noServer: the server has no address of its own", "ERR_WS_NO_SERVER");
    return this.httpServer.address() as AddressInfo;
  }

  /** The ws:// or wss:// URL clients connect to (after `listen`). */
  get url(): string {
    const { address, family, port } = this.address();
    const host = family === "IPv6" ? `[${address}]` : address;
    return `${this.secure ? "wss" : "ws"}://${host}:${port}/`;
  }

  /** The WebSocket endpoint paths (the `path` option), or null when every path is one. */
  get endpointPaths(): ReadonlySet<string> | null {
    return this.paths;
  }

  /** Connected clients by id. */
  get clientCount(): number {
    return this.hub.clientCount;
  }

  /** The client with `id`, if connected. */
  getClient(id: number): ServerClient | undefined {
    return this.hub.getClient(id);
  }

  /** Every connected client. */
  allClients(): IterableIterator<ServerClient> {
    return this.hub.allClients();
  }

  /** Sends a message to one client by id; Dropped when there is no such client. */
  sendTo(id: number, data: string | Buffer, binary = typeof data !== "string"): SendStatus {
    return this.hub.sendTo(id, data, binary);
  }

  /** Sends one message to every connected client (optionally but one), framed once. Returns the number of receivers. */
  broadcast(
    data: string | Buffer,
    binary = typeof data !== "string",
    except?: ServerClient,
  ): number {
    return this.hub.broadcast(data, binary, except);
  }

  /** Sends one message to every subscriber of `topic`, framed once. Returns the number of receivers. */
  publish(
    topic: string,
    data: string | Buffer,
    binary = typeof data !== "string",
    except?: ServerClient,
  ): number {
    return this.hub.publish(topic, data, binary, except);
  }

  subscribe(client: ServerClient, topic: string): boolean {
    return this.hub.subscribe(client, topic);
  }

  unsubscribe(client: ServerClient, topic: string): boolean {
    return this.hub.unsubscribe(client, topic);
  }

  /** Number of subscribers of `topic`. */
  subscriberCount(topic: string): number {
    return this.hub.subscriberCount(topic);
  }

  /** The topics `client` is subscribed to. */
  topicsOf(client: ServerClient): ReadonlySet<string> {
    return this.hub.topicsOf(client);
  }

  /**
   * Graceful shutdown: stops accepting, runs the shutdown hooks, closes every client with
   * 1001 and waits for them (at most closeTimeout), then closes the port. A server given as
   * `server` is left open (it is yours): only its upgrades stop coming here.
   */
  close(): Promise<void> {
    this.shuttingDown ??= this.shutdown();
    return this.shuttingDown;
  }

  private async shutdown(): Promise<void> {
    this.logger.info("shutting down", { clients: this.hub.clientCount });
    const httpServer = this.ownsHttpServer ? this.httpServer : null;
    this.httpServer?.off("upgrade", this.onAttachedUpgrade);
    const closed = new Promise<void>((resolve) =>
      httpServer === null ? resolve() : httpServer.close(() => resolve()),
    );
    for (const hooks of this.hooks) {
      try {
        await hooks.onShutdown?.(this);
      } catch (error) {
        this.logger.error("shutdown hook failed", { err: error });
      }
    }
    const waits: Promise<void>[] = [];
    for (const client of this.hub.allClients()) {
      waits.push(new Promise((resolve) => client.transport.socket.once("close", () => resolve())));
      client.close(CloseCode.GoingAway, "server shutting down");
    }
    await Promise.race([Promise.all(waits), delay(this.options.closeTimeout + 100)]);
    for (const client of this.hub.allClients()) client.terminate();
    httpServer?.closeAllConnections();
    await closed;
    await this.hub.stop();
  }

  // ---- HTTP ---------------------------------------------------------------------------

  /**
   * Answers a plain HTTP request if it is one of ours: the health check, the metrics, a
   * WebSocket handshake that lacks its upgrade headers (refused), an `onRequest` hook, the
   * static folder or console page. Resolves false, leaving `res` untouched, otherwise. The
   * server we create calls it for every request and answers 404 to the rest; on a server
   * given as `server`, call it from your request handler if you want these routes.
   */
  async handleRequest(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const path = (req.url ?? "/").split("?", 1)[0]!;
    if (this.logger.isLevelEnabled("debug")) this.logRequest(req, res, path);
    if (path === this.options.healthPath && (req.method === "GET" || req.method === "HEAD")) {
      const body = JSON.stringify({
        status: this.shuttingDown ? "stopping" : "ok",
        connections: this.hub.clientCount,
        uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
        ...(this.hub.bus === null ? {} : { cluster: await describeCluster(this.hub.bus) }),
        ...(await this.wholeServerFigures((whole) => whole.health(), {})),
      });
      res.writeHead(this.shuttingDown ? 503 : 200, {
        "Content-Type": "application/json",
        "Cache-Control": "no-store",
      });
      res.end(req.method === "HEAD" ? undefined : body);
      return true;
    }
    if (path === this.options.metricsPath && (req.method === "GET" || req.method === "HEAD")) {
      res.writeHead(200, { "Content-Type": PROMETHEUS_CONTENT_TYPE, "Cache-Control": "no-store" });
      const page = await this.wholeServerFigures((whole) => whole.metrics(), null);
      res.end(req.method === "HEAD" ? undefined : (page ?? this.metricsRegistry.render()));
      return true;
    }
    // node:http emits 'upgrade' only when both `Upgrade` and `Connection: Upgrade` are present,
    // so a WebSocket handshake missing one of them arrives here as a plain request. §4.2.1
    // wants it refused with 400 and a reason (logged and counted like any refused handshake),
    // not answered as a page or a 404.
    if (
      req.headers["sec-websocket-key"] !== undefined &&
      (this.paths === null || this.paths.has(path))
    ) {
      this.refuseHandshakeRequest(req, res);
      return true;
    }
    for (const hooks of this.hooks) {
      if (hooks.onRequest?.(req, res)) return true;
    }
    return this.pageHandler !== null && (await this.pageHandler(req, res));
  }

  /** The whole server's figures (ServerOptions.wholeServer), or `fallback` without them. */
  private async wholeServerFigures<T, F>(
    read: (whole: NonNullable<ServerOptions["wholeServer"]>) => Promise<T>,
    fallback: F,
  ): Promise<T | F> {
    const whole = this.wholeServer;
    if (whole === undefined) return fallback;
    try {
      return await read(whole);
    } catch (error) {
      this.logger.warn("cannot gather the whole server's figures; serving this process's", {
        err: error,
      });
      return fallback;
    }
  }

  /** Logs a plain HTTP request once answered (debug: pages, healthz and metrics are routine). */
  private logRequest(req: IncomingMessage, res: ServerResponse, path: string): void {
    const socket = req.socket;
    const before = socket.bytesWritten;
    res.once("finish", () =>
      this.logger.debug("http request", {
        method: req.method,
        path,
        status: res.statusCode,
        // On the wire, headers included (as nginx's $bytes_sent).
        bytes: socket.bytesWritten - before,
        remote: socket.remoteAddress,
      }),
    );
  }

  /** Answers a WebSocket handshake that node:http did not treat as an upgrade with its 4xx. */
  private refuseHandshakeRequest(req: IncomingMessage, res: ServerResponse): void {
    let status = 400;
    let message = "not a valid WebSocket handshake";
    let headers: Readonly<Record<string, string>> = {};
    try {
      parseUpgradeRequest(req.method ?? "", req.httpVersion, req.headers);
    } catch (error) {
      if (!(error instanceof HandshakeError)) throw error;
      ({ status, message, headers } = error);
    }
    this.logger.warn("handshake refused", {
      status,
      reason: message,
      remote: req.socket.remoteAddress,
      path: req.url,
    });
    this.metrics.handshakeFailures.labels({ status: String(status) }).inc();
    const body = `${message}\n`;
    res.shouldKeepAlive = false;
    res.writeHead(status, {
      ...headers,
      "Content-Type": "text/plain; charset=utf-8",
      "Content-Length": Buffer.byteLength(body),
    });
    res.end(req.method === "HEAD" ? undefined : body);
  }

  private handleClientError(error: NodeJS.ErrnoException, socket: Socket): void {
    let status = 400;
    let limit: string | null = null;
    if (error.code === "HPE_HEADER_OVERFLOW") {
      status = 431;
      limit = "header_size";
    } else if (
      error.code === "ERR_HTTP_REQUEST_TIMEOUT" ||
      error.code === "ERR_TLS_HANDSHAKE_TIMEOUT"
    ) {
      // node:https reports a TLS handshake that outlived handshakeTimeout here too.
      status = 408;
      limit = "handshake_timeout";
    }
    if (error.code !== "ECONNRESET") {
      this.logger.warn("bad HTTP request", {
        status,
        error: error.code ?? error.message,
        remote: socket.remoteAddress,
      });
      this.metrics.handshakeFailures.labels({ status: String(status) }).inc();
      if (limit !== null) this.metrics.countLimit(limit);
    }
    if (socket.writable && !socket.destroyed) {
      socket.end(
        buildErrorResponse(
          status,
          status === 431
            ? "request headers too large"
            : status === 408
              ? "request timeout"
              : "bad request",
        ),
      );
    }
    socket.destroy();
  }

  // ---- upgrade ------------------------------------------------------------------------

  private reject(
    socket: Socket,
    req: IncomingMessage,
    status: number,
    message: string,
    headers: Record<string, string> = {},
  ): null {
    this.logger.warn("handshake refused", {
      status,
      reason: message,
      remote: req.socket.remoteAddress,
      path: req.url,
    });
    this.metrics.handshakeFailures.labels({ status: String(status) }).inc();
    if (socket.writable) socket.end(buildErrorResponse(status, message, headers));
    socket.destroy();
    return null;
  }

  /**
   * The `upgrade` listener: on our own server every upgrade is ours; on a server given as
   * `server`, one for a path outside `path` is left to the other upgrade listeners, if any.
   */
  private readonly onAttachedUpgrade = (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const foreign = this.paths !== null && !this.paths.has(pathOf(req.url ?? "/"));
    if (foreign && !this.ownsHttpServer && this.httpServer!.listenerCount("upgrade") > 1) return;
    this.handleUpgrade(req, socket, head);
  };

  /**
   * Handles an HTTP upgrade request (from your server's `upgrade` event, with `noServer`;
   * ws's `handleUpgrade`): the endpoint paths, `onUpgradeRequest` hooks, every handshake
   * check, origins, `maxConnections`, deflate negotiation and metrics apply as on our own
   * server. Returns the new client once its `onConnect` hooks ran, and passes it to
   * `onClient` too (with a bus — `--workers`, `--redis` — the id comes from the cluster
   * asynchronously: then the client reaches `onClient` only); returns null when there is none: the request was refused (the socket got
   * the HTTP status and was closed), the server is full (the client was closed with 1013),
   * or an `onUpgradeRequest` hook took the request over.
   */
  handleUpgrade(
    req: IncomingMessage,
    duplex: Duplex,
    head: Buffer,
    onClient?: (client: ServerClient, request: IncomingMessage) => void,
  ): ServerClient | null {
    // node:http types its upgrade socket as a Duplex; it is a net.Socket (or a TLSSocket).
    const socket = duplex as Socket;
    socket.on("error", ignore);
    if (this.shuttingDown) return this.reject(socket, req, 503, "server is shutting down");
    const path = pathOf(req.url ?? "/");
    if (this.paths !== null && !this.paths.has(path))
      return this.reject(socket, req, 404, `no WebSocket endpoint at ${path}`);
    if (this.hub.idsFromBus) {
      // The id comes from the cluster, asynchronously: the client reaches onClient only.
      this.upgradeWithClusterId(req, socket, head, onClient).catch((error: unknown) =>
        this.logger.error("upgrade failed", { err: error }),
      );
      return null;
    }
    return this.dispatchUpgrade(req, socket, head, onClient);
  }

  private dispatchUpgrade(
    req: IncomingMessage,
    socket: Socket,
    head: Buffer,
    onClient?: (client: ServerClient, request: IncomingMessage) => void,
  ): ServerClient | null {
    for (const hooks of this.hooks) {
      if (hooks.onUpgradeRequest?.(req, socket, head)) return null;
    }
    const client = this.acceptUpgrade(req, socket, head);
    if (client === null || !client.connected || !client.open) return null;
    onClient?.(client, req);
    return client;
  }

  /**
   * With a bus the id may come from the network: take it before the handshake is answered (and
   * before the hooks, which accept synchronously), give it back if no client gets it.
   */
  private async upgradeWithClusterId(
    req: IncomingMessage,
    socket: Socket,
    head: Buffer,
    onClient?: (client: ServerClient, request: IncomingMessage) => void,
  ): Promise<void> {
    let id: number;
    try {
      id = await this.hub.takeId();
    } catch (error) {
      this.reject(socket, req, 503, `cluster unavailable, try again later (${describe(error)})`);
      return;
    }
    if (socket.destroyed || this.shuttingDown) {
      this.hub.releaseId(id);
      if (!socket.destroyed) this.reject(socket, req, 503, "server is shutting down");
      return;
    }
    this.reservedIds.set(req, id);
    socket.once("close", () => {
      const unused = this.reservedIds.get(req);
      if (unused === undefined) return;
      this.reservedIds.delete(req);
      this.hub.releaseId(unused);
    });
    this.dispatchUpgrade(req, socket, head, onClient);
  }

  /** The id taken for an upgrade request; it moves to the client when the upgrade succeeds. */
  private takeReservedId(req: IncomingMessage): number {
    const reserved = this.reservedIds.get(req);
    if (reserved !== undefined) {
      this.reservedIds.delete(req);
      return reserved;
    }
    const id = this.hub.takeId();
    if (typeof id !== "number") {
      throw new TypeError("acceptUpgrade needs an id taken before; call it from onUpgradeRequest");
    }
    return id;
  }

  /**
   * Validates an upgrade request and, if it is acceptable, answers 101 and returns the new
   * client (after its `onConnect` hooks ran); otherwise answers with the HTTP error and
   * returns null. For hooks that took an upgrade over with `onUpgradeRequest`.
   */
  acceptUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): ServerClient | null {
    const url = req.url ?? "/";
    const queryAt = url.indexOf("?");
    const path = queryAt < 0 ? url : url.slice(0, queryAt);
    const query = queryAt < 0 ? "" : url.slice(queryAt + 1);
    if (req.rawHeaders.length / 2 > this.options.maxHeaderCount) {
      this.metrics.countLimit("header_count");
      return this.reject(
        socket,
        req,
        431,
        `more than ${this.options.maxHeaderCount} request headers`,
      );
    }
    let request: ReturnType<typeof parseUpgradeRequest>;
    try {
      request = parseUpgradeRequest(req.method ?? "", req.httpVersion, req.headers);
    } catch (error) {
      if (error instanceof HandshakeError)
        return this.reject(socket, req, error.status, error.message, { ...error.headers });
      throw error;
    }
    if (
      this.allowedOrigins !== null &&
      request.origin !== "" &&
      !this.allowedOrigins.has(request.origin)
    ) {
      this.metrics.countLimit("origin");
      return this.reject(socket, req, 403, `origin ${request.origin} is not allowed`);
    }
    let extensions = "";
    let compressor: ZlibCompressor | null = null;
    if (this.deflate !== null && request.extensions !== "") {
      try {
        const accepted = acceptDeflateOffer(parseExtensions(request.extensions), this.deflate);
        if (accepted !== null) {
          extensions = accepted.response;
          compressor = new ZlibCompressor(accepted.params, "server", this.deflate);
        }
      } catch (error) {
        if (error instanceof HandshakeError)
          return this.reject(socket, req, error.status, error.message);
        throw error;
      }
    }
    // `ServerOptions.protocols` is documented as the server's order of preference, so the
    // first of the server's protocols that the client offered wins (§4.2.2 leaves the choice
    // to the server), not the client's first.
    const protocol = this.options.protocols.find((own) => request.protocols.includes(own)) ?? "";
    if (!socket.writable) return null;
    socket.write(buildUpgradeResponse(request.key, { protocol, extensions }));
    const full = this.hub.clientCount >= this.options.maxConnections;
    const id = this.takeReservedId(req);
    const client = new ServerClient(id, this, {
      path,
      query,
      headers: req.headers,
      remoteAddress: req.socket.remoteAddress ?? "",
      remotePort: req.socket.remotePort ?? 0,
      protocol,
      extensions,
    });
    this.hub.join(client);
    client.transport = new SocketTransport(
      socket,
      client,
      {
        role: "server",
        maxPayload: this.options.maxPayload,
        compressor,
        frameMode: this.options.frameMode,
        fragmentSize: this.options.fragmentSize,
      },
      { maxBufferedBytes: this.options.maxBufferedBytes, closeTimeout: this.options.closeTimeout },
    );
    this.metrics.connectionsTotal.inc();
    this.metrics.connections.set(this.hub.clientCount);
    if (full) {
      this.metrics.countLimit("max_connections");
      this.logger.warn("connection refused: server full", {
        limit: this.options.maxConnections,
        remote: client.remoteAddress,
      });
      client.close(CloseCode.TryAgainLater, "server is full, try again later");
      return client;
    }
    this.sweeper.add(client.transport);
    client.connected = true;
    this.logger.debug("client connected", { id, remote: client.remoteAddress, path });
    for (const hooks of this.hooks) {
      // Counted before the call: a set whose onConnect ran (even if it threw) gets the
      // onDisconnect; the sets after a throwing one never heard of the client and get nothing.
      client.connectedHookSets++;
      if (hooks.onConnect === undefined) continue;
      try {
        hooks.onConnect(client, req);
      } catch (error) {
        this.hookFailed(client, "onConnect", error);
        break;
      }
    }
    if (head.length > 0 && client.open) client.transport.receive(head);
    return client;
  }

  // ---- ClientOwner ----------------------------------------------------------------------

  handleMessage(client: ServerClient, data: Buffer, binary: boolean): void {
    this.metrics.messagesReceived.inc();
    this.metrics.bytesReceived.inc(data.length);
    const hooks = this.hooks;
    for (let i = 0; i < hooks.length; i++) {
      const onMessage = hooks[i]!.onMessage;
      if (onMessage === undefined) continue;
      try {
        onMessage.call(hooks[i], client, data, binary);
      } catch (error) {
        this.hookFailed(client, "onMessage", error);
        return;
      }
    }
  }

  handleFrame(client: ServerClient, opcode: number, payload: Buffer, fin: boolean): void {
    if (fin && opcode <= Opcode.Binary) this.metrics.messagesReceived.inc();
    for (const hooks of this.hooks) {
      try {
        hooks.onFrame?.(client, opcode, payload, fin);
      } catch (error) {
        this.hookFailed(client, "onFrame", error);
        return;
      }
    }
  }

  handlePing(client: ServerClient, payload: Buffer): void {
    for (const hooks of this.hooks) {
      try {
        hooks.onPing?.(client, payload);
      } catch (error) {
        this.hookFailed(client, "onPing", error);
        return;
      }
    }
  }

  handlePong(client: ServerClient, payload: Buffer): void {
    for (const hooks of this.hooks) {
      try {
        hooks.onPong?.(client, payload);
      } catch (error) {
        this.hookFailed(client, "onPong", error);
        return;
      }
    }
  }

  handleProtocolError(client: ServerClient, error: ProtocolError): void {
    this.metrics.protocolErrors.labels({ code: String(error.closeCode) }).inc();
    if (error.closeCode === CloseCode.MessageTooBig) this.metrics.countLimit("max_payload");
    this.logger.info("protocol error, closing", {
      id: client.id,
      code: error.closeCode,
      reason: error.message,
      remote: client.remoteAddress,
    });
  }

  handleLimit(client: ServerClient, kind: LimitKind, detail: string): void {
    this.metrics.countLimit(kind.replace("-", "_"));
    this.logger.warn("limit exceeded, closing", {
      id: client.id,
      limit: kind,
      detail,
      remote: client.remoteAddress,
    });
  }

  handleDrain(client: ServerClient): void {
    for (const hooks of this.hooks) {
      try {
        hooks.onDrain?.(client);
      } catch (error) {
        this.hookFailed(client, "onDrain", error);
        return;
      }
    }
  }

  handleClosed(client: ServerClient, code: number, reason: string, wasClean: boolean): void {
    this.hub.leave(client);
    this.sweeper.delete(client.transport);
    this.metrics.connections.set(this.hub.clientCount);
    // When this side started the close, its code and reason say why, not the client's echo.
    const started = client.closeStarted;
    this.logger.debug("client disconnected", {
      id: client.id,
      code: started?.code ?? code,
      reason: started?.reason ?? reason,
      closedBy: started === null ? undefined : "server",
      clean: wasClean,
    });
    if (!client.connected) return;
    // onDisconnect only follows an onConnect of the same set (hooks.ts): not for sets after
    // one whose onConnect threw, nor for sets added after the client connected.
    const hookSets = this.hooks.slice(0, client.connectedHookSets);
    for (const hooks of hookSets) {
      try {
        hooks.onDisconnect?.(client, code, reason);
      } catch (error) {
        this.metrics.hookErrors.inc();
        this.logger.error("onDisconnect hook failed", { id: client.id, err: error });
      }
    }
  }

  private hookFailed(client: ServerClient, hook: string, error: unknown): void {
    this.metrics.hookErrors.inc();
    this.logger.error(`${hook} hook failed; closing the client with 1011`, {
      id: client.id,
      err: error,
    });
    if (client.open) client.close(CloseCode.InternalError, "internal server error");
  }
}

/** The server given as `server` (null with `noServer`), after checking the options agree. */
function attach(options: ServerOptions): http.Server | null {
  if (options.server !== undefined && options.noServer === true)
    throw new StateError("give either server or noServer, not both", "ERR_WS_OPTIONS");
  if (options.tls !== undefined)
    throw new StateError(
      "tls belongs to the server that accepts the connections: create it with https",
      "ERR_WS_OPTIONS",
    );
  return options.server ?? null;
}

/** The path of a request URL, without its query string. */
function pathOf(url: string): string {
  const queryAt = url.indexOf("?");
  return queryAt < 0 ? url : url.slice(0, queryAt);
}

function answerNotFound(req: IncomingMessage, res: ServerResponse): void {
  const body = "Not Found\n";
  res.writeHead(404, {
    "Content-Type": "text/plain; charset=utf-8",
    "Content-Length": Buffer.byteLength(body),
  });
  res.end(req.method === "HEAD" ? undefined : body);
}

function ignore(): void {
  // Socket errors surface as 'close'; nothing to add.
}

/** The cluster as /healthz shows it: this node, whether its link is up, the nodes alive. */
async function describeCluster(bus: Bus): Promise<Record<string, unknown>> {
  let nodes: readonly BusNode[] | null = null;
  try {
    nodes = await bus.nodes();
  } catch {
    // The link is down: say so rather than fail the health check (local clients are served).
  }
  return { node: bus.nodeId, up: bus.up, nodes };
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
