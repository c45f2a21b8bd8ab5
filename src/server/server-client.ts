import type { IncomingHttpHeaders } from "node:http";
import { CloseCode } from "../protocol/close-code.js";
import { ConnectionState } from "../protocol/connection.js";
import type { ProtocolError } from "../protocol/errors.js";
import type {
  LimitKind,
  SocketTransport,
  TransportHandler,
} from "../transport/socket-transport.js";

/** What `send` did with a message (uWebSockets' convention: a status, not an exception). */
export const SendStatus = {
  /** Queued and the send buffer is below its limit. */
  Success: 0,
  /** Queued, but the peer is slow: the send buffer is over half its limit. */
  Backpressure: 1,
  /** Not sent: the connection is closing or closed. */
  Dropped: 2,
} as const;
export type SendStatus = (typeof SendStatus)[keyof typeof SendStatus];

/** How a server client reports back to its server. */
export interface ClientOwner {
  readonly maxBufferedBytes: number;
  /** Where direct sends are counted (broadcasts are counted by the server per receiver). */
  readonly metrics: { readonly messagesSent: { inc(n?: number): void } };
  handleMessage(client: ServerClient, data: Buffer, binary: boolean): void;
  handleFrame(client: ServerClient, opcode: number, payload: Buffer, fin: boolean): void;
  handlePing(client: ServerClient, payload: Buffer): void;
  handlePong(client: ServerClient, payload: Buffer): void;
  handleProtocolError(client: ServerClient, error: ProtocolError): void;
  handleLimit(client: ServerClient, kind: LimitKind, detail: string): void;
  handleDrain(client: ServerClient): void;
  handleClosed(client: ServerClient, code: number, reason: string, wasClean: boolean): void;
  subscribe(client: ServerClient, topic: string): boolean;
  unsubscribe(client: ServerClient, topic: string): boolean;
}

/** Facts about the HTTP upgrade request, kept after the request object is gone. */
export interface UpgradeInfo {
  path: string;
  query: string;
  headers: IncomingHttpHeaders;
  remoteAddress: string;
  remotePort: number;
  protocol: string;
  extensions: string;
}

/** One connected WebSocket client, as the application sees it. */
export class ServerClient implements TransportHandler {
  /** The lowest free integer id at connect time (0, 1, 2, …), reused after the client leaves. */
  readonly id: number;
  /** The request path, without the query string. */
  readonly path: string;
  /** The query string without its "?", or "". */
  readonly query: string;
  /** The upgrade request's headers, with lower-case names. */
  readonly headers: IncomingHttpHeaders;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** The negotiated subprotocol, or "". */
  readonly protocol: string;
  /** The negotiated Sec-WebSocket-Extensions, or "". */
  readonly extensions: string;
  /** Free for the application's own per-client state. */
  data: Record<string, unknown> = {};
  /** False once the connection closed. */
  open = true;
  /** Set by the server once `onConnect` ran, so `onDisconnect` follows only a connect. */
  connected = false;
  /** @internal How many of the server's hook sets were offered this client's onConnect; onDisconnect goes to those only. */
  connectedHookSets = 0;
  /** @internal */ transport!: SocketTransport;
  /** @internal The close this server started with {@link close} (code and reason), for the log. */
  closeStarted: { code: number; reason: string } | null = null;
  private readonly owner: ClientOwner;

  constructor(id: number, owner: ClientOwner, info: UpgradeInfo) {
    this.id = id;
    this.owner = owner;
    this.path = info.path;
    this.query = info.query;
    this.headers = info.headers;
    this.remoteAddress = info.remoteAddress;
    this.remotePort = info.remotePort;
    this.protocol = info.protocol;
    this.extensions = info.extensions;
  }

  /** Sends a text message (string, or a Buffer with `binary` false) or a binary one. */
  send(data: string | Buffer | Uint8Array, binary = typeof data !== "string"): SendStatus {
    const payload =
      typeof data === "string" || Buffer.isBuffer(data)
        ? data
        : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (!this.transport.send(payload, binary)) return SendStatus.Dropped;
    // moonsocket_messages_sent_total counts every message sent, not only broadcasts.
    this.owner.metrics.messagesSent.inc();
    return this.status();
  }

  /** @internal Queues a frame built once for many clients. */
  sendPrebuilt(frame: Buffer, data: Buffer, binary: boolean): SendStatus {
    const transport = this.transport;
    // A compressing connection has its own deflate context, so it frames for itself.
    const sent = transport.connection.compressed
      ? transport.send(data, binary)
      : transport.sendPrebuilt(frame);
    return sent ? this.status() : SendStatus.Dropped;
  }

  /** Sends a raw frame (frame-mode applications such as OpenResty scripts). */
  sendFrame(opcode: number, payload: Buffer, fin = true): SendStatus {
    if (!this.transport.connection.sendFrame(opcode, payload, fin)) return SendStatus.Dropped;
    // A message's last data frame completes a message sent (opcodes below 8 carry data).
    if (fin && opcode < 8) this.owner.metrics.messagesSent.inc();
    return this.status();
  }

  /** Sends a ping with an optional payload (≤ 125 bytes). */
  ping(payload: string | Buffer = ""): SendStatus {
    return this.transport.connection.ping(payload) ? this.status() : SendStatus.Dropped;
  }

  /** Sends a pong (frame-mode applications answer pings themselves). Dropped when closing. */
  pong(payload: string | Buffer = ""): SendStatus {
    return this.transport.connection.pong(payload) ? this.status() : SendStatus.Dropped;
  }

  /**
   * Stops reading from the peer (TCP then slows it down), for an application that is behind
   * with the messages it has; {@link resumeReading} reads again. A closed client ignores both.
   */
  pauseReading(): void {
    const socket = this.transport.socket;
    if (!socket.destroyed) socket.pause();
  }

  /** Reads from the peer again after {@link pauseReading}. */
  resumeReading(): void {
    const socket = this.transport.socket;
    if (!socket.destroyed) socket.resume();
  }

  /** False once a close frame was sent or the connection failed: nothing more can be sent. */
  get canSend(): boolean {
    return this.transport.connection.canSend;
  }

  /**
   * Why the connection failed (the peer broke the protocol or a limit, e.g. "invalid UTF-8 in a
   * text message"), or null when it closed normally or is open.
   */
  get failureReason(): string | null {
    return this.transport.connection.failure?.message ?? null;
  }

  /** Starts the close handshake (code 1000–1003, 1007–1014, 3000–4999; reason ≤ 123 bytes). */
  close(code?: number, reason?: string): void {
    // Only a close this side starts: a reply to the client's close frame is the client's doing.
    const first =
      this.closeStarted === null && this.transport.connection.state === ConnectionState.Open;
    this.transport.close(code, reason);
    if (first)
      this.closeStarted = { code: code ?? CloseCode.NoStatusReceived, reason: reason ?? "" };
  }

  /** Drops the TCP connection without a close handshake. */
  terminate(): void {
    this.transport.terminate();
  }

  /** Subscribes to a topic for `WebSocketServer.publish`. */
  subscribe(topic: string): boolean {
    return this.owner.subscribe(this, topic);
  }

  /** Leaves a topic. */
  unsubscribe(topic: string): boolean {
    return this.owner.unsubscribe(this, topic);
  }

  /** Bytes queued for this client and not yet handed to the kernel. */
  get bufferedAmount(): number {
    return this.transport.bufferedAmount;
  }

  private status(): SendStatus {
    if (this.transport.bufferedAmount * 2 <= this.owner.maxBufferedBytes) return SendStatus.Success;
    // The sender was told to back off: tell it (onDrain) when it may go on.
    this.transport.watchDrain();
    return SendStatus.Backpressure;
  }

  // ---- TransportHandler ----------------------------------------------------------------

  onMessage(data: Buffer, binary: boolean): void {
    this.owner.handleMessage(this, data, binary);
  }
  onFrame(opcode: number, payload: Buffer, fin: boolean): void {
    this.owner.handleFrame(this, opcode, payload, fin);
  }
  onPing(payload: Buffer): void {
    this.owner.handlePing(this, payload);
  }
  onPong(payload: Buffer): void {
    this.owner.handlePong(this, payload);
  }
  onProtocolError(error: ProtocolError): void {
    this.owner.handleProtocolError(this, error);
  }
  onDrain(): void {
    this.owner.handleDrain(this);
  }
  onLimit(kind: LimitKind, detail: string): void {
    this.owner.handleLimit(this, kind, detail);
  }
  onClosed(code: number, reason: string, wasClean: boolean): void {
    this.open = false;
    this.owner.handleClosed(this, code, reason, wasClean);
  }
}
