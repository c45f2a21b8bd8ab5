import { randomBytes } from "node:crypto";
import net from "node:net";
import tls from "node:tls";
import { CloseCode } from "../protocol/close-code.js";
import { ClosedError, HandshakeError, type ProtocolError, StateError } from "../protocol/errors.js";
import { generateKey, parseUpgradeResponse } from "../protocol/handshake.js";
import {
  acceptDeflateResponse,
  buildDeflateOffer,
  type DeflateOptions,
} from "../protocol/permessage-deflate.js";
import type { TransportHandler } from "../transport/socket-transport.js";
import { ZlibCompressor } from "../transport/zlib-compressor.js";
import { ClientTransport } from "./client-transport.js";
import { parseResponseHead, readResponseBody } from "./http-response.js";

/** Client settings. Sizes in bytes, durations in milliseconds. */
export interface ClientOptions {
  /** Extra request headers (e.g. Authorization, Origin, Cookie). */
  headers?: Record<string, string>;
  /** Subprotocols to offer, in order of preference. */
  protocols?: readonly string[];
  /** Offer permessage-deflate: false (default), true, or negotiation options. */
  perMessageDeflate?: boolean | DeflateOptions;
  /** Largest message accepted, after inflation. Default 16 MiB. Larger → close 1009. */
  maxPayload?: number;
  /** Time allowed for connecting and the opening handshake. Default 10000 ms. */
  handshakeTimeout?: number;
  /** Time allowed for the close handshake. Default 5000 ms. */
  closeTimeout?: number;
  /** Largest response head accepted. Default 16384 bytes. */
  maxHeaderBytes?: number;
  /** wss://: verify the server's certificate. Default true. */
  rejectUnauthorized?: boolean;
  /** wss://: extra trusted CA certificates (PEM). */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Deliver frames (`onFrame`) instead of messages; pongs and close replies are the caller's job. Default false. */
  frameMode?: boolean;
  /**
   * Called for each frame in frame mode: before the next frame is read, and never before
   * `connect()` has resolved, so it can answer through the client and its replies go out
   * before anything the following frames cause.
   */
  onFrame?: (opcode: number, payload: Buffer, fin: boolean) => void;
  /** Split outgoing messages larger than this into fragments. Default 0: never. */
  fragmentSize?: number;
  /** Unread messages held before reading from the socket pauses. Default 1024. */
  maxQueuedMessages?: number;
}

/** One message received by the client. */
export class Message {
  constructor(
    /** The payload bytes (UTF-8 for text). */
    readonly data: Buffer,
    /** True for a binary message, false for text. */
    readonly isBinary: boolean,
  ) {}

  /** The payload as a string (UTF-8). */
  text(): string {
    return this.data.toString("utf8");
  }
}

/** How a connection ended. */
export interface CloseInfo {
  /** The peer's close code, or 1006 when the connection dropped without one. */
  code: number;
  reason: string;
  /** True when both close frames were exchanged. */
  wasClean: boolean;
}

/**
 * A WebSocket client connection (ws:// or wss://), promise based: `connect` resolves once
 * the handshake succeeded; messages are read with `for await` or `next()`.
 *
 * Replies keep their order: once a message is handed to a waiting reader, the frames behind
 * it are read only when the reader asks for the next message (or at the event loop's next
 * turn), so a reply sent while handling it goes out before a pong, a close reply or a
 * 1002/1007 close those frames would cause.
 *
 * @example
 * const client = await connect("ws://127.0.0.1:8085/");
 * client.send("hello");
 * for await (const message of client) console.log(message.text());
 */
export class WebSocketClient implements TransportHandler, AsyncIterable<Message> {
  /** The negotiated subprotocol, or "". */
  readonly protocol: string;
  /** The negotiated extensions, or "". */
  readonly extensions: string;
  /** Resolves when the connection is closed (never rejects). */
  readonly closed: Promise<CloseInfo>;
  /** Called for each ping received (the pong is automatic unless in frame mode). */
  pingListener: ((payload: Buffer) => void) | null = null;
  /** Called for each pong received. */
  pongListener: ((payload: Buffer) => void) | null = null;
  private transport!: ClientTransport;
  private readonly queue: Message[] = [];
  private readonly waiting: Array<{
    resolve: (result: IteratorResult<Message>) => void;
    reject: (error: Error) => void;
  }> = [];
  private closeInfo: CloseInfo | null = null;
  private resolveClosed!: (info: CloseInfo) => void;
  private readonly maxQueued: number;
  private readonly onFrameHandler: ((opcode: number, payload: Buffer, fin: boolean) => void) | null;
  private paused = false;
  private protocolError: ProtocolError | null = null;

  /** @internal Use `connect`. */
  constructor(protocol: string, extensions: string, options: ClientOptions) {
    this.protocol = protocol;
    this.extensions = extensions;
    this.maxQueued = options.maxQueuedMessages ?? 1024;
    this.onFrameHandler = options.onFrame ?? null;
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
  }

  /** @internal */
  attach(transport: ClientTransport): void {
    this.transport = transport;
  }

  /** @internal Whether a `next()` is waiting for a message. */
  get readerWaiting(): boolean {
    return this.waiting.length > 0;
  }

  /** Whether the connection is open for sending. */
  get isOpen(): boolean {
    return this.closeInfo === null && this.transport.connection.canSend;
  }

  /** Bytes queued and not yet handed to the kernel. */
  get bufferedAmount(): number {
    return this.transport.bufferedAmount;
  }

  /** Sends text (a string) or binary (a Buffer/Uint8Array, unless `binary` is false). Throws ClosedError once closing. */
  send(data: string | Buffer | Uint8Array, binary = typeof data !== "string"): void {
    const payload =
      typeof data === "string" || Buffer.isBuffer(data)
        ? data
        : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (!this.transport.send(payload, binary))
      throw new ClosedError("cannot send: the connection is closing or closed");
  }

  /** Sends a raw frame (frame-mode callers). */
  sendFrame(opcode: number, payload: Buffer, fin = true): void {
    if (!this.transport.connection.sendFrame(opcode, payload, fin))
      throw new ClosedError("cannot send: the connection is closing or closed");
  }

  /** Sends a ping (payload ≤ 125 bytes). */
  ping(payload: string | Buffer = ""): void {
    if (!this.transport.connection.ping(payload))
      throw new ClosedError("cannot ping: the connection is closing or closed");
  }

  /** Sends a pong (payload ≤ 125 bytes). */
  pong(payload: string | Buffer = ""): void {
    if (!this.transport.connection.pong(payload))
      throw new ClosedError("cannot pong: the connection is closing or closed");
  }

  /**
   * Starts the close handshake and resolves when the connection is closed. Code 1000 by
   * default; 1000–1003, 1007–1014, 3000–4999 allowed (else StateError).
   */
  close(code: number = CloseCode.NormalClosure, reason = ""): Promise<CloseInfo> {
    if (this.closeInfo === null) this.transport.close(code, reason);
    return this.closed;
  }

  /** Drops the connection at once, without a close handshake. */
  terminate(): void {
    this.transport.terminate();
  }

  /** The next message, or `done` once the connection closed. Rejects after a protocol error. */
  next(): Promise<IteratorResult<Message>> {
    const message = this.queue.shift();
    if (message !== undefined) {
      if (this.paused && this.queue.length < this.maxQueued / 2) {
        this.paused = false;
        this.transport.socket.resume();
      }
      return Promise.resolve({ value: message, done: false });
    }
    if (this.closeInfo !== null) {
      if (this.protocolError !== null) return Promise.reject(this.protocolError);
      return Promise.resolve({ value: undefined, done: true });
    }
    const result = new Promise<IteratorResult<Message>>((resolve, reject) =>
      this.waiting.push({ resolve, reject }),
    );
    // Asking for the next message ends the turn the previous one was given: read what waited.
    this.transport.input.release();
    return result;
  }

  /** Resolves with the next message; rejects with ClosedError if the connection closes first. */
  async receive(): Promise<Message> {
    const result = await this.next();
    if (result.done)
      throw new ClosedError(
        `connection closed (${this.closeInfo?.code ?? 1006})`,
        this.closeInfo?.code ?? 1006,
      );
    return result.value;
  }

  [Symbol.asyncIterator](): AsyncIterator<Message> {
    return { next: () => this.next(), return: async () => ({ value: undefined, done: true }) };
  }

  // ---- TransportHandler ----------------------------------------------------------------

  onMessage(data: Buffer, isBinary: boolean): void {
    const message = new Message(data, isBinary);
    const waiter = this.waiting.shift();
    if (waiter !== undefined) {
      waiter.resolve({ value: message, done: false });
      // Give the reader its turn before the frames behind this message have any effect, so
      // that a reply to it goes out first (see PacedInput).
      if (this.transport.connection.canSend) this.transport.input.hold();
      return;
    }
    this.queue.push(message);
    if (!this.paused && this.queue.length >= this.maxQueued) {
      // Nobody is reading: stop reading from the socket so TCP pushes back on the server.
      this.paused = true;
      this.transport.socket.pause();
    }
  }

  onFrame(opcode: number, payload: Buffer, fin: boolean): void {
    this.onFrameHandler?.(opcode, payload, fin);
  }

  onPing(payload: Buffer): void {
    this.pingListener?.(payload);
  }

  onPong(payload: Buffer): void {
    this.pongListener?.(payload);
  }

  onProtocolError(error: ProtocolError): void {
    this.protocolError = error;
  }

  onClosed(code: number, reason: string, wasClean: boolean): void {
    this.closeInfo = { code, reason, wasClean };
    for (const waiter of this.waiting.splice(0)) {
      if (this.protocolError !== null) waiter.reject(this.protocolError);
      else waiter.resolve({ value: undefined, done: true });
    }
    this.resolveClosed(this.closeInfo);
  }
}

/** RFC 9110 §5.1 token characters: what a header name (or a subprotocol) may be made of. */
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** A header value: visible characters, spaces and tabs, and obs-text (RFC 9110 §5.5). */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** Connects to a ws:// or wss:// URL and completes the opening handshake. Rejects with HandshakeError or a socket error. */
export async function connect(
  url: string | URL,
  options: ClientOptions = {},
): Promise<WebSocketClient> {
  const target = typeof url === "string" ? new URL(url) : url;
  const secure = target.protocol === "wss:" || target.protocol === "https:";
  if (!secure && target.protocol !== "ws:" && target.protocol !== "http:") {
    throw new StateError(
      `unsupported URL scheme ${target.protocol} (use ws:// or wss://)`,
      "ERR_WS_URL",
    );
  }
  if (target.hash !== "")
    throw new StateError("a WebSocket URL must not have a fragment (#…)", "ERR_WS_URL");
  const host = target.hostname.replace(/^\[|\]$/g, "");
  const port = Number(target.port || (secure ? 443 : 80));
  const key = generateKey(randomBytes);
  const protocols = options.protocols ?? [];
  const deflate = options.perMessageDeflate === true ? {} : options.perMessageDeflate || null;
  const handshakeTimeout = options.handshakeTimeout ?? 10_000;

  const hostHeader = target.port ? `${target.hostname}:${target.port}` : target.hostname;
  let request =
    `GET ${target.pathname || "/"}${target.search} HTTP/1.1\r\nHost: ${hostHeader}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n`;
  for (const protocol of protocols)
    if (!HEADER_NAME.test(protocol))
      throw new StateError(
        `subprotocol ${JSON.stringify(protocol)} is not an HTTP token (RFC 6455 §4.1)`,
        "ERR_WS_HEADER",
      );
  if (protocols.length > 0) request += `Sec-WebSocket-Protocol: ${protocols.join(", ")}\r\n`;
  if (deflate !== null) request += `Sec-WebSocket-Extensions: ${buildDeflateOffer(deflate)}\r\n`;
  for (const [name, value] of Object.entries(options.headers ?? {})) {
    if (/[\r\n]/.test(name) || /[\r\n]/.test(value))
      throw new StateError(`header ${name} contains a line break`, "ERR_WS_HEADER");
    if (!HEADER_NAME.test(name))
      throw new StateError(
        `header name ${JSON.stringify(name)} is not an HTTP token`,
        "ERR_WS_HEADER",
      );
    if (!HEADER_VALUE.test(value))
      throw new StateError(`header ${name} contains a control character`, "ERR_WS_HEADER");
    request += `${name}: ${value}\r\n`;
  }
  request += "\r\n";

  // Only once the request is known to be good: a refused request must leave no socket behind.
  const socket: net.Socket = secure
    ? tls.connect({
        host,
        port,
        servername: net.isIP(host) ? "" : host,
        rejectUnauthorized: options.rejectUnauthorized ?? true,
        ...(options.ca !== undefined ? { ca: options.ca } : {}),
      })
    : net.connect({ host, port });

  const head = await new Promise<ReturnType<typeof parseResponseHead> & object>(
    (resolve, reject) => {
      let received: Buffer = Buffer.alloc(0);
      const timer = setTimeout(
        () =>
          fail(new HandshakeError(0, `opening handshake timed out after ${handshakeTimeout} ms`)),
        handshakeTimeout,
      );
      const cleanup = () => {
        clearTimeout(timer);
        socket.off("data", onData);
        socket.off("error", fail);
        socket.off("close", onClose);
      };
      const fail = (error: Error) => {
        cleanup();
        socket.destroy();
        reject(error);
      };
      const onClose = () =>
        fail(new HandshakeError(0, "connection closed during the opening handshake"));
      const onData = (chunk: Buffer) => {
        received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
        try {
          const parsed = parseResponseHead(received, options.maxHeaderBytes ?? 16384);
          if (parsed === null) return;
          cleanup();
          socket.pause();
          resolve(parsed);
        } catch (error) {
          fail(new HandshakeError(0, (error as Error).message));
        }
      };
      socket.on("data", onData);
      socket.on("error", fail);
      socket.on("close", onClose);
      socket.once(secure ? "secureConnect" : "connect", () => socket.write(request));
    },
  );

  if (head.status !== 101) {
    // A refusal: the body usually says why (403 "origin not allowed"); keep it for the caller.
    const body = await readResponseBody(socket, head, 4096, Math.min(handshakeTimeout, 2000));
    socket.destroy();
    throw new HandshakeError(
      head.status,
      `server answered ${head.status} instead of 101 Switching Protocols`,
      head.headers,
      body,
    );
  }
  try {
    const accepted = parseUpgradeResponse(head.status, head.headers, key, protocols);
    const params = deflate !== null ? acceptDeflateResponse(accepted.extensions, deflate) : null;
    if (deflate === null && accepted.extensions.trim() !== "") {
      throw new HandshakeError(
        0,
        `server accepted an extension that was not offered: ${accepted.extensions}`,
      );
    }
    const client = new WebSocketClient(accepted.protocol, accepted.extensions, options);
    const frameMode = options.frameMode ?? false;
    const transport = new ClientTransport(
      socket,
      client,
      {
        role: "client",
        maxPayload: options.maxPayload ?? 16 * 1024 * 1024,
        compressor: params !== null ? new ZlibCompressor(params, "client", deflate ?? {}) : null,
        frameMode,
        fragmentSize: options.fragmentSize ?? 0,
      },
      { closeTimeout: options.closeTimeout ?? 5000 },
      frameMode ? null : () => client.readerWaiting,
    );
    client.attach(transport);
    // Frames that came with the 101 wait until the caller has the client (connect() resolved
    // and its continuation ran): an onFrame callback or a reader can then answer them.
    transport.input.hold();
    transport.receive(Buffer.from(head.rest));
    socket.resume();
    return client;
  } catch (error) {
    socket.destroy();
    throw error;
  }
}
