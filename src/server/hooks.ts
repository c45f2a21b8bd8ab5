import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { WebSocketServer } from "./server.js";
import type { ServerClient } from "./server-client.js";

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
  /** A ping arrived (the pong is sent automatically unless in frame mode). */
  onPing?(client: ServerClient, payload: Buffer): void;
  /** A pong arrived. */
  onPong?(client: ServerClient, payload: Buffer): void;
}
