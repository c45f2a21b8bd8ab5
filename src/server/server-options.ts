import type { Server as HttpServer } from "node:http";
import type { Server as HttpsServer } from "node:https";
import type { Logger } from "../observability/logger.js";
import type { MetricsRegistry } from "../observability/metrics.js";
import type { DeflateOptions } from "../protocol/permessage-deflate.js";
import type { Bus } from "./bus.js";
import type { Hub } from "./hub.js";

/** Server settings. Sizes in bytes, durations in milliseconds. */
export interface ServerOptions {
  /**
   * Attach to this http or https server instead of creating one (ws's `server` option): its
   * `upgrade` events for our paths become WebSocket connections; its plain requests stay
   * yours (`WebSocketServer.handleRequest` answers ours if you ask). `port`, `host`, `tls`
   * and the HTTP-level limits (`maxHeaderBytes`, `handshakeTimeout`) are then the server's
   * own. `listen()` does not bind it and `close()` does not close it. Default: none.
   */
  server?: HttpServer | HttpsServer;
  /**
   * Create no HTTP server at all: you hand upgrade requests over with
   * `WebSocketServer.handleUpgrade(req, socket, head)` (ws's `noServer`). Default false.
   */
  noServer?: boolean;
  /** TCP port. Default 8085; 0 picks a free port. */
  port?: number;
  /** Address to listen on. Default "127.0.0.1". */
  host?: string;
  /** WebSocket endpoint path(s); an upgrade elsewhere gets 404. Default: every path. */
  path?: string | readonly string[];
  /** Folder of static files served to plain HTTP requests (the HTML5 front end). Default: none. */
  staticDir?: string;
  /**
   * Serve the built-in console page (a WebSocket test client: connect, send text or hex
   * binary, see every message and close code) at `/` and `/index.html` when there is no
   * `staticDir`. Default false; `moonsocket serve` and `moonsocket echo` turn it on.
   */
  consolePage?: boolean;
  /** PEM certificate and key (contents, not paths) to serve https and wss. Default: plain http/ws. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Largest message accepted, after inflation. Default 16 MiB. Larger → close 1009. */
  maxPayload?: number;
  /** Most simultaneous WebSocket clients. Default 10000. One more is accepted and closed with 1013. */
  maxConnections?: number;
  /** Time allowed for the HTTP upgrade request to arrive. Default 10000 ms. */
  handshakeTimeout?: number;
  /** A client silent this long is closed with 1008. Default 120000 ms; 0 disables. */
  idleTimeout?: number;
  /** A client silent this long is sent a ping. Default 30000 ms; 0 disables. */
  pingInterval?: number;
  /** Time allowed for the close handshake before the TCP connection is cut. Default 5000 ms. */
  closeTimeout?: number;
  /** Origins allowed to connect (exact `Origin` values). Default: any. A request without Origin is allowed. */
  allowedOrigins?: readonly string[];
  /** Bytes allowed to wait unsent per client before it is closed with 1008. Default 16 MiB. */
  maxBufferedBytes?: number;
  /** Largest HTTP request head. Default 16384 bytes. Larger → 431. */
  maxHeaderBytes?: number;
  /** Most HTTP request headers. Default 100. More → 431. */
  maxHeaderCount?: number;
  /** permessage-deflate: false (default), true, or negotiation options. */
  perMessageDeflate?: boolean | DeflateOptions;
  /** Subprotocols the server speaks, in order of preference. Default: none. */
  protocols?: readonly string[];
  /** Deliver frames instead of messages and leave pongs and close replies to the application. Default false. */
  frameMode?: boolean;
  /** Split outgoing messages larger than this into fragments. Default 0: never. */
  fragmentSize?: number;
  /** Path of the health check. Default "/healthz". */
  healthPath?: string;
  /** Path of the Prometheus metrics. Default "/metrics". */
  metricsPath?: string;
  /** Logger. Default: a text logger on stderr at level info. */
  logger?: Logger;
  /** Metrics registry to register the server's metrics in. Default: a new one. */
  metrics?: MetricsRegistry;
  /**
   * The cluster this server is a node of (e.g. a `RedisBus`): ids, `sendTo`, `broadcast`,
   * `publish` and the client list then span every node. The server starts it in `listen` and
   * stops it in `close`; while it is down, upgrades are refused with 503 and local delivery goes
   * on. Default: none (one process, no overhead).
   */
  bus?: Bus;
  /** Messages kept per topic for `server.hub.history(topic)`. Default 0 (history off). */
  historyLength?: number;
  /**
   * A hub shared with other servers (a script listening on several addresses); `bus` and
   * `historyLength` are then the hub's. Default: the server makes its own.
   */
  hub?: Hub;
  /**
   * The figures of a server made of several processes (`--workers N`), for `/metrics` and
   * `/healthz`: called at each request; when it fails, this process's own figures are served.
   * Default: this process's own.
   */
  wholeServer?: WholeServerStats;
}

/** Where `/metrics` and `/healthz` get the figures of a server that spans several processes. */
export interface WholeServerStats {
  /** The Prometheus page of the whole server (instead of this process's registry's). */
  metrics(): Promise<string>;
  /** Fields that replace or extend this process's `/healthz` body (e.g. the total connections). */
  health(): Promise<Readonly<Record<string, unknown>>>;
}

/** The defaults of `ServerOptions`, in one place for the docs, the CLI and the server. */
export const SERVER_DEFAULTS = {
  port: 8085,
  host: "127.0.0.1",
  maxPayload: 16 * 1024 * 1024,
  maxConnections: 10_000,
  handshakeTimeout: 10_000,
  idleTimeout: 120_000,
  pingInterval: 30_000,
  closeTimeout: 5_000,
  maxBufferedBytes: 16 * 1024 * 1024,
  maxHeaderBytes: 16 * 1024,
  maxHeaderCount: 100,
  healthPath: "/healthz",
  metricsPath: "/metrics",
} as const;
