/**
 * Helpers for integration tests over real sockets on 127.0.0.1: a raw WebSocket client that
 * writes arbitrary frame bytes and reads back the server's frames, a tiny frame builder,
 * plain HTTP requests, a captured logger, a `ws` peer wrapper, and cleanup bookkeeping.
 */
import { randomBytes } from "node:crypto";
import http from "node:http";
import net from "node:net";
import { Writable } from "node:stream";
import type WebSocket from "ws";
import { createLogger, type Logger, type LogLevel } from "../../src/observability/logger.js";
import { WebSocketServer } from "../../src/server/server.js";
import type { ServerOptions } from "../../src/server/server-options.js";

// ---- timing ----------------------------------------------------------------------------

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Rejects with a clear message if `promise` does not settle within `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * How long a test waits for something that must happen before it calls it a failure. A safety
 * net, never a measure: a passing test does not wait for it, and a machine busy with other work
 * (both cores taken) must not make a correct server look wrong.
 */
export const PATIENCE_MS = 15_000;

/** Polls `predicate` every `interval` ms until it is true; rejects after `ms`. */
export async function waitUntil(
  predicate: () => boolean,
  ms: number,
  what: string,
  interval = 10,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(interval);
  }
}

// ---- cleanup ---------------------------------------------------------------------------

/**
 * Things a test opened, closed in reverse order by `closeAll` (call it from `afterEach`), so
 * that clients go before the servers they are connected to.
 */
export class Resources {
  private readonly closers: Array<() => unknown> = [];

  /** Registers a closer; returns `value` for chaining. */
  add<T>(value: T, closer: (value: T) => unknown): T {
    this.closers.push(() => closer(value));
    return value;
  }

  /** Runs every closer (errors ignored), newest first. */
  async closeAll(): Promise<void> {
    const closers = this.closers.splice(0).reverse();
    for (const close of closers) {
      try {
        await withTimeout(Promise.resolve(close()), PATIENCE_MS, "a test resource to close");
      } catch {
        // Cleanup is best effort; a failure here must not hide the test's own result.
      }
    }
  }
}

// ---- logging ---------------------------------------------------------------------------

/** A logger writing into memory, with helpers to look for lines. */
export interface LogCapture {
  logger: Logger;
  /** Every line written so far. */
  lines(): string[];
  /** Resolves with the first line matching `pattern` (already written or to come). */
  waitForLine(pattern: RegExp, ms?: number): Promise<string>;
}

/** Creates a text logger at `level` (default debug) that captures its output. */
export function captureLogger(level: LogLevel = "debug"): LogCapture {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      for (const line of chunk.toString().split("\n")) if (line !== "") lines.push(line);
      callback();
    },
  });
  const logger = createLogger({ level, stream });
  return {
    logger,
    lines: () => lines.slice(),
    async waitForLine(pattern, ms = PATIENCE_MS) {
      let found: string | undefined;
      await waitUntil(
        () => (found = lines.find((line) => pattern.test(line))) !== undefined,
        ms,
        `a log line matching ${pattern} (got:\n${lines.join("\n")})`,
      );
      return found!;
    },
  };
}

// ---- servers ---------------------------------------------------------------------------

/** A listening moonsocket server with its captured log. */
export interface TestServer {
  server: WebSocketServer;
  port: number;
  /** ws://127.0.0.1:PORT/ (or wss://). */
  url: string;
  log: LogCapture;
}

/**
 * Starts a WebSocketServer on 127.0.0.1, port 0, with a captured debug logger and a short
 * close timeout (1000 ms unless given), registered in `resources` for cleanup.
 */
export async function startServer(
  resources: Resources,
  options: ServerOptions = {},
  setup?: (server: WebSocketServer) => void,
): Promise<TestServer> {
  const log = captureLogger();
  const server = new WebSocketServer({
    closeTimeout: 1000,
    ...options,
    port: 0,
    host: "127.0.0.1",
    logger: options.logger ?? log.logger,
  });
  setup?.(server);
  resources.add(server, (s) => s.close());
  const { port } = await server.listen();
  return { server, port, url: server.url, log };
}

/** Starts an echo server (text and binary sent back as received). */
export function startEchoServer(
  resources: Resources,
  options: ServerOptions = {},
): Promise<TestServer> {
  return startServer(resources, options, (server) =>
    server.addHooks({ onMessage: (client, data, isBinary) => client.send(data, isBinary) }),
  );
}

// ---- HTTP ------------------------------------------------------------------------------

/** A plain HTTP response. */
export interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** Sends one HTTP request with its own connection (no keep-alive agent). */
export function httpRequest(
  port: number,
  path: string,
  options: { method?: string; headers?: Record<string, string> } = {},
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        path,
        method: options.method ?? "GET",
        headers: options.headers ?? {},
        agent: false,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on("data", (chunk: Buffer) => parts.push(chunk));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(parts),
          }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end();
  });
}

/** Fetches `/metrics` as text. */
export async function fetchMetrics(port: number, path = "/metrics"): Promise<string> {
  const res = await httpRequest(port, path);
  return res.body.toString("utf8");
}

/**
 * The value of one sample in Prometheus text, e.g. `metricValue(text,
 * "moonsocket_limit_closes_total", { limit: "idle" })`; 0 when the sample is absent.
 */
export function metricValue(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number {
  const wanted = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .join(",");
  const prefix = wanted === "" ? `${name} ` : `${name}{${wanted}} `;
  const line = text.split("\n").find((l) => l.startsWith(prefix));
  return line === undefined ? 0 : Number(line.slice(prefix.length));
}

/** A raw HTTP exchange: whatever came back before the server closed (or `ms` passed). */
export interface RawHttpResult {
  /** The status code of the response, or 0 when none arrived. */
  status: number;
  /** The whole response text (latin1). */
  text: string;
  /** True if the server closed the connection within the time allowed. */
  closed: boolean;
  /** Milliseconds from the write to the close (or to the timeout). */
  elapsed: number;
}

/**
 * Writes `request` bytes on a fresh TCP connection and collects the reply until the server
 * closes, or, for a 101 (the server keeps a WebSocket open), until its head is complete.
 */
export function rawHttp(
  port: number,
  request: string | Buffer,
  ms = PATIENCE_MS,
): Promise<RawHttpResult> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    const parts: Buffer[] = [];
    const started = Date.now();
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const text = Buffer.concat(parts).toString("latin1");
      const match = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve({
        status: match ? Number(match[1]) : 0,
        text,
        closed,
        elapsed: Date.now() - started,
      });
    };
    const timer = setTimeout(() => finish(false), ms);
    socket.on("data", (chunk: Buffer) => {
      parts.push(chunk);
      const received = Buffer.concat(parts).toString("latin1");
      if (/^HTTP\/1\.1 101 /.test(received) && received.includes("\r\n\r\n")) finish(false);
    });
    socket.on("error", () => finish(true));
    socket.on("close", () => finish(true));
    socket.on("connect", () => socket.write(request));
  });
}

/** A valid Sec-WebSocket-Key. */
export function makeKey(): string {
  return randomBytes(16).toString("base64");
}

/** Builds an upgrade request; `headers` override or remove (value null) the standard ones. */
export function upgradeRequest(
  options: { method?: string; path?: string; headers?: Record<string, string | null> } = {},
): string {
  const headers: Record<string, string | null> = {
    Host: "127.0.0.1",
    Upgrade: "websocket",
    Connection: "Upgrade",
    "Sec-WebSocket-Key": makeKey(),
    "Sec-WebSocket-Version": "13",
    ...options.headers,
  };
  let text = `${options.method ?? "GET"} ${options.path ?? "/"} HTTP/1.1\r\n`;
  for (const [name, value] of Object.entries(headers))
    if (value !== null) text += `${name}: ${value}\r\n`;
  return `${text}\r\n`;
}

// ---- frames ----------------------------------------------------------------------------

export const OP = { cont: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;

/** What `buildFrame` writes. Defaults: fin, no RSV bits, masked with a random key. */
export interface FrameSpec {
  opcode: number;
  payload?: Buffer | string;
  fin?: boolean;
  rsv1?: boolean;
  rsv2?: boolean;
  rsv3?: boolean;
  /** Mask the frame (clients must). Default true. */
  mask?: boolean;
  /** Declared payload length, to lie about it (the payload bytes written stay as given). */
  declaredLength?: number;
}

let maskPool = randomBytes(4096);
let maskPoolAt = 0;

/** Builds one frame (RFC 6455 §5.2), masked by default as a client's must be. */
export function buildFrame(spec: FrameSpec): Buffer {
  const payload =
    typeof spec.payload === "string"
      ? Buffer.from(spec.payload, "utf8")
      : (spec.payload ?? Buffer.alloc(0));
  const length = spec.declaredLength ?? payload.length;
  const mask = spec.mask ?? true;
  const lengthBytes = length < 126 ? 0 : length < 0x10000 ? 2 : 8;
  const headerLength = 2 + lengthBytes + (mask ? 4 : 0);
  const frame = Buffer.allocUnsafe(headerLength + payload.length);
  frame[0] =
    ((spec.fin ?? true) ? 0x80 : 0) |
    (spec.rsv1 ? 0x40 : 0) |
    (spec.rsv2 ? 0x20 : 0) |
    (spec.rsv3 ? 0x10 : 0) |
    (spec.opcode & 0x0f);
  const maskBit = mask ? 0x80 : 0;
  if (lengthBytes === 0) {
    frame[1] = maskBit | length;
  } else if (lengthBytes === 2) {
    frame[1] = maskBit | 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = maskBit | 127;
    frame.writeBigUInt64BE(BigInt(length), 2);
  }
  if (!mask) {
    payload.copy(frame, headerLength);
    return frame;
  }
  // Masking keys from a pool: one crypto call per 1024 frames keeps big frame floods cheap.
  if (maskPoolAt + 4 > maskPool.length) {
    maskPool = randomBytes(4096);
    maskPoolAt = 0;
  }
  const keyAt = headerLength - 4;
  maskPool.copy(frame, keyAt, maskPoolAt, maskPoolAt + 4);
  maskPoolAt += 4;
  for (let i = 0; i < payload.length; i++)
    frame[headerLength + i] = payload[i]! ^ frame[keyAt + (i & 3)]!;
  return frame;
}

/** A close frame's payload: 2-byte code and UTF-8 reason. */
export function closePayload(code: number, reason = ""): Buffer {
  const body = Buffer.alloc(2 + Buffer.byteLength(reason));
  body.writeUInt16BE(code, 0);
  body.write(reason, 2, "utf8");
  return body;
}

/** A frame received from the server. */
export interface ReceivedFrame {
  fin: boolean;
  rsv1: boolean;
  opcode: number;
  masked: boolean;
  payload: Buffer;
}

/** A FIFO of byte chunks that hands out exact lengths with O(n) copying. */
class ByteQueue {
  private chunks: Buffer[] = [];
  length = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** The first `n` bytes without consuming them, or null if fewer are queued. */
  peek(n: number): Buffer | null {
    if (this.length < n) return null;
    this.gather(n);
    return this.chunks[0]!.subarray(0, n);
  }

  /** Consumes and returns `n` bytes (the caller checked `length`). */
  take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    this.gather(n);
    const first = this.chunks[0]!;
    const out = first.subarray(0, n);
    if (first.length === n) this.chunks.shift();
    else this.chunks[0] = first.subarray(n);
    this.length -= n;
    return out;
  }

  /** Makes the first chunk at least `n` bytes long. */
  private gather(n: number): void {
    if (this.chunks[0]!.length >= n) return;
    let have = 0;
    let count = 0;
    while (have < n) have += this.chunks[count++]!.length;
    const merged = Buffer.concat(this.chunks.slice(0, count), have);
    this.chunks.splice(0, count, merged);
  }
}

/** How a raw connection ended, as far as the close handshake goes. */
export interface CloseResult {
  /** The close code the server sent (1005 for an empty close frame), or null when none came. */
  code: number | null;
  reason: string;
  /** Frames received before the close frame. */
  frames: ReceivedFrame[];
}

/** Options of `RawClient.connect`. */
export interface RawConnectOptions {
  path?: string;
  /** Extra or replaced request headers. */
  headers?: Record<string, string>;
  /** Milliseconds allowed for the handshake. Default 2000. */
  timeout?: number;
  /** Bytes written in the same write as the request (frames sent before the 101 arrives). */
  early?: Buffer;
}

/**
 * A WebSocket client over a raw TCP socket: it performs a valid opening handshake, then lets
 * a test write any bytes and read the server's frames one by one.
 */
export class RawClient {
  readonly socket: net.Socket;
  /** The server's 101 response head. */
  readonly response: string;
  /** Resolves when the TCP connection is closed (by either side). */
  readonly closed: Promise<void>;
  isClosed = false;
  private readonly input = new ByteQueue();
  private readonly frames: ReceivedFrame[] = [];
  private wake: (() => void) | null = null;

  private constructor(socket: net.Socket, response: string, rest: Buffer) {
    this.socket = socket;
    this.response = response;
    this.closed = new Promise((resolve) => {
      socket.on("close", () => {
        this.isClosed = true;
        this.notify();
        resolve();
      });
    });
    socket.on("error", () => {
      // A reset surfaces as 'close'.
    });
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    this.onData(rest);
  }

  /** Opens a connection and completes the handshake; rejects unless the server answers 101. */
  static connect(port: number, options: RawConnectOptions = {}): Promise<RawClient> {
    const request = upgradeRequest({ path: options.path ?? "/", headers: options.headers ?? {} });
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: "127.0.0.1", port });
      socket.setNoDelay(true);
      let received = Buffer.alloc(0);
      const timer = setTimeout(
        () => fail(new Error("raw handshake timed out")),
        options.timeout ?? 2000,
      );
      const fail = (error: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(error);
      };
      const onData = (chunk: Buffer) => {
        received = Buffer.concat([received, chunk]);
        const end = received.indexOf("\r\n\r\n");
        if (end < 0) return;
        clearTimeout(timer);
        socket.off("data", onData);
        socket.off("error", fail);
        socket.off("close", onClose);
        const head = received.toString("latin1", 0, end);
        if (!head.startsWith("HTTP/1.1 101")) {
          socket.destroy();
          reject(new Error(`handshake refused: ${head.split("\r\n")[0]}`));
          return;
        }
        resolve(new RawClient(socket, head, received.subarray(end + 4)));
      };
      const onClose = () => fail(new Error("connection closed during the handshake"));
      socket.on("data", onData);
      socket.on("error", fail);
      socket.on("close", onClose);
      socket.on("connect", () =>
        socket.write(
          Buffer.concat([Buffer.from(request, "latin1"), options.early ?? Buffer.alloc(0)]),
        ),
      );
    });
  }

  /** Writes raw bytes; resolves once they are handed to the kernel. */
  write(bytes: Buffer | string): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) return resolve();
      this.socket.write(bytes, () => resolve());
    });
  }

  /** Builds and writes one frame. */
  send(spec: FrameSpec): Promise<void> {
    return this.write(buildFrame(spec));
  }

  /** The next frame from the server; rejects on timeout or if the connection closes first. */
  async nextFrame(ms = PATIENCE_MS): Promise<ReceivedFrame> {
    const deadline = Date.now() + ms;
    for (;;) {
      const frame = this.frames.shift();
      if (frame !== undefined) return frame;
      if (this.isClosed) throw new Error("connection closed before a frame arrived");
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no frame within ${ms} ms`);
      await withTimeout(
        new Promise<void>((resolve) => {
          this.wake = resolve;
        }),
        left,
        "a frame from the server",
      );
    }
  }

  /**
   * Reads frames until the server's close frame (or until the connection drops) and returns
   * its code and reason plus the frames before it. Rejects if neither happens within `ms`.
   */
  async readUntilClose(ms = PATIENCE_MS): Promise<CloseResult> {
    const frames: ReceivedFrame[] = [];
    const deadline = Date.now() + ms;
    for (;;) {
      let frame: ReceivedFrame;
      try {
        frame = await this.nextFrame(Math.max(1, deadline - Date.now()));
      } catch (error) {
        if (this.isClosed && this.frames.length === 0) return { code: null, reason: "", frames };
        throw error;
      }
      if (frame.opcode === OP.close) {
        const code = frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : 1005;
        return { code, reason: frame.payload.toString("utf8", 2), frames };
      }
      frames.push(frame);
    }
  }

  /** Resolves when the TCP connection is gone; rejects after `ms`. */
  waitForSocketClose(ms = PATIENCE_MS): Promise<void> {
    return withTimeout(this.closed, ms, "the server to close the TCP connection");
  }

  /** Stops reading from the socket (TCP pushes back on the server). */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  /** Drops the connection. */
  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.input.push(chunk);
    for (;;) {
      const frame = this.parseFrame();
      if (frame === null) break;
      this.frames.push(frame);
    }
    this.notify();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  private parseFrame(): ReceivedFrame | null {
    const input = this.input;
    const start = input.peek(2);
    if (start === null) return null;
    const b0 = start[0]!;
    const b1 = start[1]!;
    const masked = (b1 & 0x80) !== 0;
    const short = b1 & 0x7f;
    const extended = short === 126 ? 2 : short === 127 ? 8 : 0;
    const headerLength = 2 + extended + (masked ? 4 : 0);
    const header = input.peek(headerLength);
    if (header === null) return null;
    let length = short;
    if (short === 126) length = header.readUInt16BE(2);
    else if (short === 127) length = Number(header.readBigUInt64BE(2));
    if (input.length < headerLength + length) return null;
    const key = masked ? Buffer.from(header.subarray(2 + extended, headerLength)) : null;
    input.take(headerLength);
    const payload = Buffer.from(input.take(length));
    if (key !== null)
      for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ key[i & 3]!;
    return { fin: (b0 & 0x80) !== 0, rsv1: (b0 & 0x40) !== 0, opcode: b0 & 0x0f, masked, payload };
  }
}

// ---- ws peers --------------------------------------------------------------------------

/** How a `ws` socket closed. */
export interface WsCloseInfo {
  code: number;
  reason: string;
  wasClean: boolean;
}

/** One message a `ws` socket received. */
export interface WsMessage {
  data: Buffer;
  isBinary: boolean;
}

/**
 * Wraps a `ws` WebSocket (client or server side): queues its messages, records how it closed
 * (with `wasClean` from the CloseEvent) and any unexpected HTTP response.
 */
export class WsPeer {
  readonly ws: WebSocket;
  readonly closed: Promise<WsCloseInfo>;
  closeInfo: WsCloseInfo | null = null;
  /** The server's Sec-WebSocket-Extensions response (client side), or "". */
  extensions = "";
  private readonly messages: WsMessage[] = [];
  private wake: (() => void) | null = null;

  constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on("message", (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
      const buffer = Buffer.isBuffer(data)
        ? data
        : Array.isArray(data)
          ? Buffer.concat(data)
          : Buffer.from(data);
      this.messages.push({ data: buffer, isBinary });
      this.notify();
    });
    ws.on("error", () => {
      // Reported through 'close' (1006) or the open promise.
    });
    ws.on("upgrade", (res) => {
      // `ws.extensions` lists only names; the parameters are in the response header.
      this.extensions = String(res.headers["sec-websocket-extensions"] ?? "");
    });
    this.closed = new Promise((resolve) => {
      ws.addEventListener("close", (event) => {
        this.closeInfo = { code: event.code, reason: event.reason, wasClean: event.wasClean };
        this.notify();
        resolve(this.closeInfo);
      });
    });
  }

  /** Resolves once open; rejects with the HTTP status of a refused handshake (`status` on the error). */
  opened(): Promise<this> {
    const ws = this.ws;
    if (ws.readyState === ws.OPEN) return Promise.resolve(this);
    return new Promise((resolve, reject) => {
      ws.once("open", () => resolve(this));
      ws.once("unexpected-response", (_req, res) => {
        const error = Object.assign(new Error(`unexpected response ${res.statusCode}`), {
          status: res.statusCode ?? 0,
          headers: res.headers,
        });
        res.resume();
        ws.terminate();
        reject(error);
      });
      ws.once("error", reject);
    });
  }

  /** The next message; rejects on timeout or when the socket closes first. */
  async next(ms = PATIENCE_MS): Promise<WsMessage> {
    const deadline = Date.now() + ms;
    for (;;) {
      const message = this.messages.shift();
      if (message !== undefined) return message;
      if (this.closeInfo !== null)
        throw new Error(`socket closed (${this.closeInfo.code}) before a message arrived`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no message within ${ms} ms`);
      await withTimeout(
        new Promise<void>((resolve) => {
          this.wake = resolve;
        }),
        left,
        "a message",
      );
    }
  }

  /** Resolves if no message arrives within `ms`; rejects with the message otherwise. */
  async expectNoMessage(ms = 150): Promise<void> {
    await sleep(ms);
    const message = this.messages[0];
    if (message !== undefined)
      throw new Error(`unexpected message: ${message.data.toString().slice(0, 80)}`);
  }

  /** Waits for the close event. */
  waitClosed(ms = PATIENCE_MS): Promise<WsCloseInfo> {
    return withTimeout(this.closed, ms, "the ws socket to close");
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }
}

// ---- data ------------------------------------------------------------------------------

/** `size` pseudo-random bytes (fast, deterministic per size). */
export function makeBinary(size: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  let x = (size * 2654435761) >>> 0 || 1;
  for (let i = 0; i + 4 <= size; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.writeUInt32LE(x >>> 0, i);
  }
  for (let i = size & ~3; i < size; i++) out[i] = i & 0xff;
  return out;
}

/**
 * `size` bytes that compress well (a 4 KiB random block repeated): large messages through
 * permessage-deflate without spending seconds deflating incompressible data.
 */
export function makeCompressible(size: number): Buffer {
  const block = makeBinary(4096);
  const out = Buffer.allocUnsafe(size);
  for (let at = 0; at < size; at += block.length)
    block.copy(out, at, 0, Math.min(block.length, size - at));
  return out;
}

/** A string of exactly `bytes` UTF-8 bytes mixing 1-, 2-, 3- and 4-byte characters. */
export function makeText(bytes: number): string {
  // "aé✓🌍" is 1 + 2 + 3 + 4 = 10 bytes.
  return "aé✓🌍".repeat(Math.floor(bytes / 10)) + "z".repeat(bytes % 10);
}
