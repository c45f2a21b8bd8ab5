/**
 * The load engine of `moonsocket bench`: many client connections on raw sockets driven by the
 * protocol core (`FrameParser`, `writeFrameHeader`, `applyMask`, the handshake checks), with the
 * traffic patterns, payloads and accounting of wsload (`/work/shared/tools/wsload`) so that
 * both tools measure the same thing.
 *
 * Why not the `WebSocketClient` of `src/client`: it is built for applications (one promise per
 * message, message objects, UTF-8 validation, a queue per connection). Measured on one core
 * against `moonsocket echo`, it handled about 26 k messages per CPU-second, fewer than the
 * server it was meant to saturate. This engine reads into one shared buffer (`onread`), checks
 * echoes against the bytes it sent instead of validating them, and writes once per read; see
 * bench/CLI-BENCH.md for the figures.
 *
 * @module
 */

import { randomBytes, randomFillSync } from "node:crypto";
import net from "node:net";
import tls from "node:tls";
import { parseResponseHead } from "../client/http-response.js";
import { HandshakeError } from "../protocol/errors.js";
import { type FrameHandler, FrameParser } from "../protocol/frame-parser.js";
import { generateKey, parseUpgradeResponse } from "../protocol/handshake.js";
import { applyMask } from "../protocol/mask.js";
import { type CpuSample, type CpuUsage, diffCpu, sampleCpu } from "./bench-cpu.js";
import { LatencyHistogram } from "./bench-histogram.js";

/** What to run. Sizes in bytes, durations in milliseconds. */
export interface BenchOptions {
  /** ws:// or wss:// URL of the server. */
  readonly url: URL;
  /** `echo`: every connection sends and checks its echoes; `broadcast`: one sender, N receivers. */
  readonly mode: "echo" | "broadcast";
  /** Connections (broadcast: receivers; the sender comes on top). */
  readonly connections: number;
  /** Echo: messages in flight per connection. Broadcast closed loop: broadcasts outstanding. */
  readonly pipeline: number;
  /** Payload bytes per message (broadcast: at least 16, for the sequence number). */
  readonly size: number;
  /** Binary frames instead of text frames (text payloads are printable ASCII). */
  readonly binary: boolean;
  /** Measured time, in ms. */
  readonly durationMs: number;
  /** Time between all connections being open and the start of the measurement, in ms. */
  readonly warmupMs: number;
  /** Broadcast: one message every this many ms; 0 = closed loop with `pipeline` outstanding. */
  readonly intervalMs: number;
  /** Extra request headers for the opening handshake. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Subprotocols to offer, in order of preference. */
  readonly protocols?: readonly string[];
  /** wss://: verify the server's certificate. Default true. */
  readonly rejectUnauthorized?: boolean;
  /** A server process whose CPU use is sampled (Linux `/proc`). */
  readonly pid?: number;
  /** Time allowed for one connection's TCP connect and opening handshake. Default 10000 ms. */
  readonly handshakeTimeoutMs?: number;
  /** Handshakes under way at once. Default 256 (as wsload). */
  readonly maxPending?: number;
  /** Called once a second with the state of the run. */
  readonly onProgress?: (progress: BenchProgress) => void;
}

/** The state of a run, once a second. */
export interface BenchProgress {
  /** Time since the start, in ms. */
  readonly elapsedMs: number;
  readonly phase: "connecting" | "warm-up" | "measuring";
  /** Connections open now, and how many were asked for (broadcast: receivers + sender). */
  readonly open: number;
  readonly target: number;
  /** Messages (echoes or deliveries) received over the last second, whatever the phase. */
  readonly messagesPerSecond: number;
  /** Payload and protocol errors so far. */
  readonly errors: number;
  /** This process's CPU over the last second, in percent of one core. */
  readonly benchCpu: number;
}

/** Latency percentiles in whole microseconds, from {@link LatencyHistogram}. */
export interface LatencySummary {
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  /** Samples behind the figures. */
  readonly count: number;
}

/** The outcome of a run. Rates are per second of the measured window. */
export interface BenchResult {
  readonly mode: "echo" | "broadcast";
  /** Threads that generated the load (`--threads`); CPU figures are for all of them together. */
  readonly threads: number;
  readonly url: string;
  readonly connections: number;
  readonly pipeline: number;
  readonly size: number;
  readonly binary: boolean;
  readonly durationMs: number;
  readonly warmupMs: number;
  /** The measured window as it really was, in ms (0 when the run never got there). */
  readonly measuredMs: number;
  /** Echoes (echo) or deliveries to receivers (broadcast) received while measuring. */
  readonly messages: number;
  /** Payload bytes of those messages. */
  readonly bytes: number;
  readonly messagesPerSecond: number;
  /** Payload megabytes (10^6 bytes) received per second, one way. */
  readonly megabytesPerSecond: number;
  /** Echo round trip, or broadcast fan-out (send → last receiver), in µs. */
  readonly latencyUs: LatencySummary;
  /** Connections whose handshake succeeded. */
  readonly opened: number;
  /** Connections whose TCP connect or handshake failed. */
  readonly failed: number;
  /** Open connections that the server closed (close frame, EOF, reset) before the end. */
  readonly closed: number;
  /** Messages that differed from what was expected (content, size, type, order, count). */
  readonly errors: number;
  /** Frames that broke RFC 6455. */
  readonly protocolErrors: number;
  /** Broadcast only: messages sent, broadcasts not complete after 5 s, copies to the sender. */
  readonly broadcast: {
    readonly intervalMs: number;
    readonly sent: number;
    readonly incomplete: number;
    readonly echoesToSender: number;
  } | null;
  /** CPU over the measured window, or null when nothing was measured. */
  readonly cpu: CpuUsage | null;
  /** Messages per second of server CPU (needs `pid`), or null. */
  readonly messagesPerServerCpuSecond: number | null;
  /** The first thing that went wrong with the traffic (a mismatch, a close), or null. */
  readonly firstError: string | null;
  /** The first connection failure, as thrown (describe it for the user), or null. */
  readonly connectError: Error | null;
  /**
   * Why the run ended before its duration, when the server did it ("the server closed every
   * connection"), or null. Ctrl-C is not counted here.
   */
  readonly stopReason: string | null;
}

const IDLE = 0;
const CONNECTING = 1;
const HANDSHAKE = 2;
const OPEN = 3;
const DEAD = 4;

const TEXT = 0x1;
const BINARY = 0x2;
const CLOSE = 0x8;
const PING = 0x9;
const PONG = 0xa;

/** Broadcast bookkeeping: a ring of recent messages, as in wsload. */
const RING = 4096;
/** A broadcast not seen by every receiver after this long is given up (ms). */
const BROADCAST_EXPIRY_MS = 5000;
const MAX_RESPONSE_HEAD = 16384;
/** Payloads up to this size are copied, masked and compared in JavaScript (no native call). */
const SMALL_PAYLOAD = 128;
/** Shared read buffer: reads are handled synchronously, so one is enough for every socket. */
const READ_BUFFER_BYTES = 256 * 1024;

/** One client connection of the run. */
class BenchConnection implements FrameHandler {
  state = IDLE;
  socket: net.Socket | null = null;
  startedAt = 0;
  key = "";
  head: Buffer | null = null;
  readonly parser: FrameParser;
  /** Echo: messages sent and echoes received; their send times, by sequence modulo pipeline. */
  sent = 0;
  received = 0;
  sendTimes: Float64Array | null = null;
  /** Broadcast receiver: the sequence number expected next. */
  nextSequence = 0;
  /** Echo messages sent but not yet framed: built together, straight into one write, by `flush`. */
  pendingEchoes = 0;
  /** Other frames (pongs, close, broadcasts) queued while a read is handled. */
  output: Buffer[] = [];
  outputBytes = 0;
  reading = false;
  private frameOpcode = 0;
  private frameFin = false;
  private frameLength = 0;
  private messageOpcode = 0;
  private messageLength = 0;
  private messageBuffer: Buffer | null = null;

  constructor(
    readonly id: number,
    readonly isSender: boolean,
    private readonly run: BenchRun,
  ) {
    this.parser = new FrameParser(this, { expectMasked: false, allowRsv1: false });
  }

  onFrameHeader(fin: boolean, _rsv1: boolean, opcode: number, length: number): boolean {
    this.frameOpcode = opcode;
    this.frameFin = fin;
    this.frameLength = length;
    if (opcode >= CLOSE) return true;
    if (opcode === 0) {
      if (this.messageOpcode === 0) {
        this.run.protocolError(this, "a continuation frame without a message to continue");
        return false;
      }
    } else if (this.messageOpcode !== 0) {
      this.run.protocolError(this, "a new message began before the fragmented one ended");
      return false;
    } else {
      this.messageOpcode = opcode;
      this.messageLength = 0;
    }
    return true;
  }

  onFramePayload(payload: Buffer, last: boolean): boolean {
    const opcode = this.frameOpcode;
    if (opcode >= CLOSE) {
      this.run.controlFrame(this, opcode, payload);
      return this.state === OPEN;
    }
    if (last && this.frameFin && this.messageLength === 0 && payload.length === this.frameLength) {
      // The common case: a whole message in one frame, read in one piece. No copy. (The
      // message's opcode, not the frame's: the frame may end a message of empty fragments.)
      const kind = this.messageOpcode;
      this.messageOpcode = 0;
      this.run.deliver(this, kind, payload);
      return this.state === OPEN;
    }
    // Fragmented, or split across reads: gather it. Anything beyond the expected size is a
    // wrong message anyway, so it is counted but not kept (memory stays bounded).
    const capacity = this.run.size;
    if (this.messageLength < capacity) {
      this.messageBuffer ??= Buffer.allocUnsafe(capacity);
      payload.copy(
        this.messageBuffer,
        this.messageLength,
        0,
        Math.min(payload.length, capacity - this.messageLength),
      );
    }
    this.messageLength += payload.length;
    if (last && this.frameFin) {
      const length = this.messageLength;
      const kind = this.messageOpcode;
      this.messageOpcode = 0;
      this.messageLength = 0;
      if (length > capacity)
        this.run.payloadError(
          this,
          `a ${length}-byte message where ${capacity} bytes were expected`,
        );
      else this.run.deliver(this, kind, this.messageBuffer!.subarray(0, length));
    }
    return this.state === OPEN;
  }

  onFrameError(_closeCode: number, message: string): void {
    this.run.protocolError(this, message);
  }

  /** Queues a frame; it is written after the current read, or at once outside a read. */
  queue(frame: Buffer): void {
    this.output.push(frame);
    this.outputBytes += frame.length;
    if (!this.reading) this.flush();
  }

  /** Writes everything queued with one `write`. */
  flush(): void {
    const echoes = this.pendingEchoes;
    if (echoes === 0 && this.output.length === 0) return;
    let data: Buffer;
    if (echoes === 0) {
      data =
        this.output.length === 1 ? this.output[0]! : Buffer.concat(this.output, this.outputBytes);
    } else {
      data = this.run.buildEchoFrames(this, echoes, this.outputBytes);
      let at = data.length - this.outputBytes;
      for (const frame of this.output) at += frame.copy(data, at);
    }
    this.pendingEchoes = 0;
    this.output = [];
    this.outputBytes = 0;
    if (this.socket !== null && !this.socket.destroyed) this.socket.write(data);
  }
}

/** One run of the load generator; {@link runBenchmark} creates and starts it. */
class BenchRun {
  readonly size: number;
  private readonly options: BenchOptions;
  private readonly opcode: number;
  private readonly pipeline: number;
  private readonly pattern: Buffer;
  private readonly maskPool = Buffer.allocUnsafe(64 * 1024);
  private maskOffset = this.maskPool.length;
  readonly histogram = new LatencyHistogram();
  private readonly connections: BenchConnection[] = [];
  private readonly pending = new Set<BenchConnection>();
  private readonly sender: BenchConnection | null;
  private readonly readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  private readonly handshakeTimeoutMs: number;
  private readonly maxPending: number;
  private readonly request: (key: string) => string;
  private readonly secure: boolean;
  private readonly host: string;
  private readonly port: number;

  private now = performance.now();
  private readonly startedAt = this.now;
  private started = 0;
  private open = 0;
  private opened = 0;
  private failed = 0;
  private closed = 0;
  private errors = 0;
  private protocolErrors = 0;
  private messages = 0;
  private bytes = 0;
  /** Messages received in any phase, for the progress line. */
  private receivedTotal = 0;
  private firstError: string | null = null;
  private connectError: Error | null = null;
  private stopReason: string | null = null;

  private ready = false;
  private measuring = false;
  private stopping = false;
  private measureAt = 0;
  private endAt = 0;
  private measureStarted = 0;
  private measureStopped = 0;
  private cpuBefore: CpuSample | null = null;
  private cpuUsage: CpuUsage | null = null;

  private readonly ringSequence = new Float64Array(RING);
  private readonly ringTime = new Float64Array(RING);
  private readonly ringGot = new Int32Array(RING);
  private readonly ringExpect = new Int32Array(RING);
  private readonly ringLive = new Uint8Array(RING);
  private broadcastSequence = 0;
  private outstanding = 0;
  private incomplete = 0;
  private receiversOpen = 0;
  private echoesToSender = 0;
  private nextBroadcastAt = 0;
  private lastExpiry = this.now;
  private readonly broadcastPayload: Buffer;

  private ticker: NodeJS.Timeout | null = null;
  private nextProgressAt = this.now + 1000;
  private progressMessages = 0;
  private progressCpu = process.cpuUsage();
  private resolveDone!: (result: BenchResult) => void;
  readonly done: Promise<BenchResult>;

  constructor(options: BenchOptions) {
    this.options = options;
    this.size = options.size;
    this.opcode = options.binary ? BINARY : TEXT;
    this.pipeline = options.pipeline;
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? 10_000;
    this.maxPending = options.maxPending ?? 256;
    this.done = new Promise((resolve) => {
      this.resolveDone = resolve;
    });
    // Payload source, as wsload: printable ASCII for text (valid UTF-8), random bytes for binary.
    this.pattern = randomBytes(options.size + 256);
    if (!options.binary) {
      for (let i = 0; i < this.pattern.length; i++)
        this.pattern[i] = 0x20 + (this.pattern[i]! % 95);
    }
    this.broadcastPayload = Buffer.allocUnsafe(Math.max(options.size, 16));

    const url = options.url;
    this.secure = url.protocol === "wss:" || url.protocol === "https:";
    this.host = url.hostname.replace(/^\[|\]$/g, "");
    this.port = Number(url.port || (this.secure ? 443 : 80));
    const hostHeader = url.port ? `${url.hostname}:${url.port}` : url.hostname;
    let extra = "";
    for (const [name, value] of Object.entries(options.headers ?? {}))
      extra += `${name}: ${value}\r\n`;
    if (options.protocols !== undefined && options.protocols.length > 0) {
      extra += `Sec-WebSocket-Protocol: ${options.protocols.join(", ")}\r\n`;
    }
    const path = `${url.pathname || "/"}${url.search}`;
    this.request = (key) =>
      `GET ${path} HTTP/1.1\r\nHost: ${hostHeader}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;

    const total = options.connections + (options.mode === "broadcast" ? 1 : 0);
    for (let i = 0; i < total; i++) {
      const isSender = options.mode === "broadcast" && i === total - 1;
      this.connections.push(new BenchConnection(i, isSender, this));
    }
    this.sender = options.mode === "broadcast" ? this.connections[total - 1]! : null;
  }

  start(): void {
    const interval = this.options.mode === "broadcast" && this.options.intervalMs > 0 ? 1 : 10;
    this.ticker = setInterval(() => this.tick(), interval);
    this.startMore();
  }

  /** Ends the run now (e.g. on Ctrl-C): what was measured so far is reported. */
  stop(): void {
    if (this.stopping) return;
    this.now = performance.now();
    this.finish();
  }

  // ---- connections ----------------------------------------------------------------------

  private startMore(): void {
    while (this.started < this.connections.length && this.pending.size < this.maxPending) {
      const connection = this.connections[this.started]!;
      // The broadcast sender connects only once every receiver is up (or has failed).
      if (connection.isSender && this.pending.size > 0) break;
      this.started++;
      this.connect(connection);
    }
    this.checkReady();
  }

  private connect(c: BenchConnection): void {
    c.state = CONNECTING;
    c.startedAt = this.now;
    this.pending.add(c);
    let socket: net.Socket;
    if (this.secure) {
      socket = tls.connect({
        host: this.host,
        port: this.port,
        servername: net.isIP(this.host) ? "" : this.host,
        rejectUnauthorized: this.options.rejectUnauthorized ?? true,
      });
      socket.on("data", (chunk: Buffer) => this.onRead(c, chunk));
    } else {
      const buffer = this.readBuffer;
      socket = net.connect({
        host: this.host,
        port: this.port,
        onread: {
          buffer,
          callback: (bytes: number) => {
            this.onRead(c, bytes === buffer.length ? buffer : buffer.subarray(0, bytes));
            return true;
          },
        },
      });
    }
    c.socket = socket;
    socket.setNoDelay(true);
    socket.once(this.secure ? "secureConnect" : "connect", () => {
      if (c.state !== CONNECTING) return;
      c.state = HANDSHAKE;
      c.key = generateKey(randomBytes);
      socket.write(this.request(c.key));
    });
    socket.on("error", (error: Error) => {
      if (c.state !== OPEN && c.state !== DEAD) this.connectError ??= error;
    });
    socket.on("end", () => socket.destroy());
    socket.on("close", () => this.lose(c));
  }

  private onRead(c: BenchConnection, chunk: Buffer): void {
    this.now = performance.now();
    if (c.state === HANDSHAKE) {
      this.readHandshake(c, chunk);
    } else if (c.state === OPEN) {
      c.reading = true;
      c.parser.push(chunk);
      c.reading = false;
      c.flush();
    }
  }

  private readHandshake(c: BenchConnection, chunk: Buffer): void {
    // The read buffer is reused: keep a copy of a head that is not complete yet.
    c.head = c.head === null ? Buffer.from(chunk) : Buffer.concat([c.head, chunk]);
    let rest: Buffer;
    try {
      const head = parseResponseHead(c.head, MAX_RESPONSE_HEAD);
      if (head === null) return;
      if (head.status !== 101) {
        // The body (what of it came with the head) says why: 403 "origin not allowed".
        throw new HandshakeError(
          head.status,
          `server answered ${head.status} instead of 101 Switching Protocols`,
          head.headers,
          head.rest.toString("utf8"),
        );
      }
      const accepted = parseUpgradeResponse(
        head.status,
        head.headers,
        c.key,
        this.options.protocols ?? [],
      );
      if (accepted.extensions.trim() !== "") {
        throw new Error(
          `server accepted an extension that was not offered: ${accepted.extensions}`,
        );
      }
      rest = head.rest;
    } catch (error) {
      this.connectError ??= error as Error;
      c.socket?.destroy();
      return;
    }
    c.head = null;
    c.state = OPEN;
    this.pending.delete(c);
    this.open++;
    this.opened++;
    if (this.options.mode === "echo") {
      c.sendTimes = new Float64Array(this.pipeline);
      c.reading = true;
      for (let i = 0; i < this.pipeline; i++) this.echoSend(c);
      c.reading = false;
    } else if (!c.isSender) {
      this.receiversOpen++;
    }
    if (rest.length > 0) {
      c.reading = true;
      c.parser.push(Buffer.from(rest));
      c.reading = false;
    }
    c.flush();
    this.startMore();
  }

  /** The connection ended (by the peer, an error, or us): count it once. */
  private lose(c: BenchConnection): void {
    if (c.state === DEAD || c.state === IDLE) return;
    if (c.state === OPEN) {
      this.open--;
      if (!c.isSender && this.options.mode === "broadcast") this.receiversOpen--;
      if (!this.stopping) this.closed++;
    } else {
      this.failed++;
      this.pending.delete(c);
      this.connectError ??= new HandshakeError(
        0,
        "the server closed the connection during the opening handshake",
      );
    }
    c.state = DEAD;
    c.socket?.destroy();
    if (!this.stopping) {
      this.startMore();
      this.stopIfNothingLeft();
    }
  }

  /**
   * Once every connection is up, ends the run as soon as no traffic can flow any more: every
   * connection gone, or in broadcast mode the sender or every receiver gone. Waiting for the end
   * of the duration would measure nothing.
   */
  private stopIfNothingLeft(): void {
    if (!this.ready || this.stopping || this.opened === 0) return;
    let reason: string | null = null;
    if (this.open === 0) reason = "every connection is gone (closed by the server)";
    else if (this.sender !== null && this.sender.state !== OPEN)
      reason = "the sender's connection is gone (closed by the server): nothing more to broadcast";
    else if (this.sender !== null && this.receiversOpen === 0)
      reason = "every receiver is gone (closed by the server): nobody left to deliver to";
    if (reason === null) return;
    this.stopReason = reason;
    this.now = performance.now();
    this.finish();
  }

  private checkReady(): void {
    if (this.ready || this.started < this.connections.length || this.pending.size > 0) return;
    this.ready = true;
    if (this.opened === 0) {
      this.finish();
      return;
    }
    this.measureAt = this.now + this.options.warmupMs;
    this.endAt = this.measureAt + this.options.durationMs;
    this.nextBroadcastAt = this.now;
    if (this.options.mode === "broadcast") this.broadcastPump();
    this.stopIfNothingLeft();
  }

  // ---- traffic --------------------------------------------------------------------------

  /** A masked client frame with a fresh masking key (§5.3), payload copied from `source`. */
  private buildFrame(opcode: number, source: Buffer, start: number, length: number): Buffer {
    const frame = Buffer.allocUnsafe(measureFrame(length));
    this.writeFrame(frame, 0, opcode, source, start, length);
    return frame;
  }

  /**
   * The frames of `c`'s last `count` echo messages, in one buffer with `spare` bytes left at
   * the end for other queued frames.
   */
  buildEchoFrames(c: BenchConnection, count: number, spare: number): Buffer {
    const size = this.size;
    const each = measureFrame(size);
    const data = Buffer.allocUnsafe(count * each + spare);
    let sequence = c.sent - count;
    for (let at = 0; at < count * each; at += each) {
      this.writeFrame(
        data,
        at,
        this.opcode,
        this.pattern,
        findPayloadOffset(c.id, sequence++),
        size,
      );
    }
    return data;
  }

  /** Writes a masked frame at `target[at]`: header, a fresh key from the pool, masked payload. */
  private writeFrame(
    target: Buffer,
    at: number,
    opcode: number,
    source: Buffer,
    start: number,
    length: number,
  ): void {
    if (this.maskOffset + 4 > this.maskPool.length) {
      randomFillSync(this.maskPool);
      this.maskOffset = 0;
    }
    const pool = this.maskPool;
    const keyAt = this.maskOffset;
    this.maskOffset += 4;
    let p = at;
    target[p++] = 0x80 | opcode;
    if (length < 126) {
      target[p++] = 0x80 | length;
    } else if (length < 0x10000) {
      target[p++] = 0x80 | 126;
      target[p++] = length >>> 8;
      target[p++] = length & 0xff;
    } else {
      target[p++] = 0x80 | 127;
      target.writeUInt32BE(Math.floor(length / 0x100000000), p);
      target.writeUInt32BE(length >>> 0, p + 4);
      p += 8;
    }
    const k0 = pool[keyAt]!;
    const k1 = pool[keyAt + 1]!;
    const k2 = pool[keyAt + 2]!;
    const k3 = pool[keyAt + 3]!;
    target[p++] = k0;
    target[p++] = k1;
    target[p++] = k2;
    target[p++] = k3;
    if (length <= SMALL_PAYLOAD) {
      // Copy and mask in one pass: cheaper than two native calls for small payloads.
      let i = 0;
      for (; i + 4 <= length; i += 4) {
        target[p + i] = source[start + i]! ^ k0;
        target[p + i + 1] = source[start + i + 1]! ^ k1;
        target[p + i + 2] = source[start + i + 2]! ^ k2;
        target[p + i + 3] = source[start + i + 3]! ^ k3;
      }
      for (; i < length; i++) target[p + i] = source[start + i]! ^ pool[keyAt + (i & 3)]!;
    } else {
      source.copy(target, p, start, start + length);
      applyMask(target, p, p + length, pool, keyAt, 0);
    }
  }

  private echoSend(c: BenchConnection): void {
    const sequence = c.sent++;
    c.sendTimes![sequence % this.pipeline] = this.now;
    c.pendingEchoes++;
    if (!c.reading) c.flush();
  }

  /** A complete data message arrived on `c`. */
  deliver(c: BenchConnection, opcode: number, data: Buffer): void {
    this.receivedTotal++;
    if (this.options.mode === "echo") this.echoReceive(c, opcode, data);
    else this.broadcastReceive(c, opcode, data);
  }

  private echoReceive(c: BenchConnection, opcode: number, data: Buffer): void {
    if (c.received >= c.sent) {
      this.payloadError(c, "an echo of a message that was never sent");
      return;
    }
    const sequence = c.received++;
    const start = findPayloadOffset(c.id, sequence);
    if (
      opcode !== this.opcode ||
      data.length !== this.size ||
      !matchBytes(data, 0, this.pattern, start, this.size)
    ) {
      this.payloadError(c, describeMismatch(opcode, this.opcode, data.length, this.size, sequence));
    }
    if (this.measuring) {
      this.histogram.record((this.now - c.sendTimes![sequence % this.pipeline]!) * 1000);
      this.messages++;
      this.bytes += data.length;
    }
    if (!this.stopping) this.echoSend(c);
  }

  private broadcastSend(): void {
    const sender = this.sender;
    if (sender === null || sender.state !== OPEN || this.outstanding >= RING / 2) return;
    const sequence = this.broadcastSequence++;
    const payload = this.writeBroadcastPayload(this.broadcastPayload, sequence);
    const slot = sequence % RING;
    if (this.ringLive[slot] === 1) {
      // Overwritten before every receiver got it.
      this.incomplete++;
      this.outstanding--;
    }
    this.ringSequence[slot] = sequence;
    this.ringTime[slot] = this.now;
    this.ringGot[slot] = 0;
    this.ringExpect[slot] = this.receiversOpen;
    this.ringLive[slot] = 1;
    this.outstanding++;
    sender.queue(this.buildFrame(this.opcode, payload, 0, this.size));
  }

  /** Writes broadcast `sequence` into `target`: its number in 16 hex digits, then the pattern. */
  private writeBroadcastPayload(target: Buffer, sequence: number): Buffer {
    target.write(sequence.toString(16).padStart(16, "0"), 0, "latin1");
    const start = findPayloadOffset(0, sequence);
    this.pattern.copy(target, 16, start, start + this.size - 16);
    return target;
  }

  /** Closed loop: keep `pipeline` broadcasts outstanding. */
  private broadcastPump(): void {
    if (this.options.intervalMs > 0 || this.stopping) return;
    const sender = this.sender;
    while (this.outstanding < this.pipeline && sender !== null && sender.state === OPEN) {
      const before = this.outstanding;
      this.broadcastSend();
      if (this.outstanding === before) break;
    }
    if (sender !== null && !sender.reading) sender.flush();
  }

  private broadcastReceive(c: BenchConnection, opcode: number, data: Buffer): void {
    if (c.isSender) {
      // The server may send the sender its own messages: not counted.
      this.echoesToSender++;
      return;
    }
    const expected = () =>
      this.writeBroadcastPayload(Buffer.allocUnsafe(this.size), c.nextSequence);
    if (data.length !== this.size || opcode !== this.opcode) {
      this.payloadError(
        c,
        `a delivery differs in size or type: expected broadcast ${c.nextSequence}, ` +
          `${describeMessage(this.opcode, expected())}; got ${describeMessage(opcode, data)}`,
      );
      return;
    }
    const sequence = readHexSequence(data);
    if (sequence < 0) {
      this.payloadError(
        c,
        "a delivery without a sequence number (16 hex digits) in front: expected " +
          `${showBytes(this.opcode, expected(), 0)}, got ${showBytes(opcode, data, 0)}`,
      );
      return;
    }
    const start = findPayloadOffset(0, sequence);
    if (!matchBytes(data, 16, this.pattern, start, this.size - 16)) {
      const sent = this.writeBroadcastPayload(Buffer.allocUnsafe(this.size), sequence);
      const at = findFirstDifference(sent, data);
      this.payloadError(
        c,
        `broadcast ${sequence} differs from what was sent from byte ${at} of ${this.size}: ` +
          `expected ${showBytes(opcode, sent, at)}, got ${showBytes(opcode, data, at)}`,
      );
    } else if (sequence !== c.nextSequence) {
      this.payloadError(
        c,
        `expected broadcast ${c.nextSequence}, got broadcast ${sequence} ` +
          (sequence > c.nextSequence
            ? `(${sequence - c.nextSequence} lost, or reordered)`
            : "(a repeat, or reordered)"),
      );
    }
    c.nextSequence = sequence + 1;
    if (this.measuring) {
      this.messages++;
      this.bytes += data.length;
    }
    const slot = sequence % RING;
    if (
      this.ringLive[slot] === 1 &&
      this.ringSequence[slot] === sequence &&
      ++this.ringGot[slot]! >= this.ringExpect[slot]!
    ) {
      if (this.measuring) this.histogram.record((this.now - this.ringTime[slot]!) * 1000);
      this.ringLive[slot] = 0;
      this.outstanding--;
      this.broadcastPump();
    }
  }

  /** A broadcast stuck because a receiver died must not stall the closed loop: give up after 5 s. */
  private expireBroadcasts(): void {
    for (let slot = 0; slot < RING; slot++) {
      if (this.ringLive[slot] === 1 && this.now - this.ringTime[slot]! > BROADCAST_EXPIRY_MS) {
        this.ringLive[slot] = 0;
        this.outstanding--;
        this.incomplete++;
      }
    }
  }

  /** A ping, pong or close frame arrived on `c` (payload whole). */
  controlFrame(c: BenchConnection, opcode: number, payload: Buffer): void {
    if (opcode === PING) {
      c.queue(this.buildFrame(PONG, payload, 0, payload.length));
    } else if (opcode === CLOSE) {
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      const reason = payload.length > 2 ? payload.toString("utf8", 2) : "";
      if (!this.stopping) {
        this.firstError ??= `the server closed a connection with ${code}${reason === "" ? "" : ` (${reason})`}`;
      }
      // §5.5.1: answer with a close frame echoing the code, then drop the connection.
      c.queue(this.buildFrame(CLOSE, payload, 0, Math.min(payload.length, 2)));
      c.flush();
      c.socket?.end();
      this.lose(c);
    }
  }

  payloadError(_c: BenchConnection, message: string): void {
    this.errors++;
    this.firstError ??= message;
  }

  protocolError(c: BenchConnection, message: string): void {
    this.protocolErrors++;
    this.firstError ??= `protocol error: ${message}`;
    this.lose(c);
  }

  // ---- clock ----------------------------------------------------------------------------

  private tick(): void {
    this.now = performance.now();
    if (!this.ready) {
      for (const c of this.pending) {
        if (this.now - c.startedAt > this.handshakeTimeoutMs) {
          this.connectError ??= new Error(
            `no WebSocket handshake within ${this.handshakeTimeoutMs} ms`,
          );
          c.socket?.destroy();
        }
      }
    }
    if (this.ready && !this.measuring && !this.stopping && this.now >= this.measureAt) {
      this.measuring = true;
      this.measureStarted = this.now;
      this.cpuBefore = sampleCpu(this.options.pid);
    }
    if (this.measuring && this.now >= this.endAt) {
      this.finish();
      return;
    }
    if (this.options.mode === "broadcast" && this.ready) {
      if (this.options.intervalMs > 0) {
        while (this.now >= this.nextBroadcastAt) {
          this.broadcastSend();
          this.nextBroadcastAt += this.options.intervalMs;
        }
      }
      if (this.now - this.lastExpiry > 100) {
        this.expireBroadcasts();
        this.broadcastPump();
        this.lastExpiry = this.now;
      }
    }
    if (this.now >= this.nextProgressAt) {
      this.nextProgressAt += 1000;
      const cpu = process.cpuUsage(this.progressCpu);
      this.progressCpu = process.cpuUsage();
      this.options.onProgress?.({
        elapsedMs: this.now - this.startedAt,
        phase: !this.ready ? "connecting" : this.measuring ? "measuring" : "warm-up",
        open: this.open,
        target: this.connections.length,
        messagesPerSecond: this.receivedTotal - this.progressMessages,
        errors: this.errors + this.protocolErrors,
        benchCpu: (cpu.user + cpu.system) / 1e4,
      });
      this.progressMessages = this.receivedTotal;
    }
  }

  private finish(): void {
    if (this.stopping) return;
    this.stopping = true;
    if (this.measuring) {
      this.measuring = false;
      this.measureStopped = this.now;
      if (this.cpuBefore !== null)
        this.cpuUsage = diffCpu(this.cpuBefore, sampleCpu(this.options.pid));
    }
    if (this.ticker !== null) clearInterval(this.ticker);
    for (const c of this.connections) {
      const socket = c.socket;
      c.state = DEAD;
      if (socket === null || socket.destroyed) continue;
      // Reset rather than close (as wsload's SO_LINGER 0): no TIME_WAIT pile-up between runs.
      if (this.secure) socket.destroy();
      else socket.resetAndDestroy();
    }
    this.resolveDone(this.result());
  }

  private result(): BenchResult {
    const o = this.options;
    const measuredMs =
      this.measureStopped > this.measureStarted ? this.measureStopped - this.measureStarted : 0;
    const seconds = measuredMs / 1000;
    const h = this.histogram;
    const serverCpuSeconds =
      this.cpuUsage?.server !== null && this.cpuUsage?.server !== undefined
        ? (this.cpuUsage.server / 100) * seconds
        : null;
    return {
      mode: o.mode,
      threads: 1,
      url: o.url.href,
      connections: o.connections,
      pipeline: o.pipeline,
      size: o.size,
      binary: o.binary,
      durationMs: o.durationMs,
      warmupMs: o.warmupMs,
      measuredMs,
      messages: this.messages,
      bytes: this.bytes,
      messagesPerSecond: seconds > 0 ? this.messages / seconds : 0,
      megabytesPerSecond: seconds > 0 ? this.bytes / seconds / 1e6 : 0,
      latencyUs: summarizeLatency(h),
      opened: this.opened,
      failed: this.failed,
      closed: this.closed,
      errors: this.errors,
      protocolErrors: this.protocolErrors,
      broadcast:
        o.mode === "broadcast"
          ? {
              intervalMs: o.intervalMs,
              sent: this.broadcastSequence,
              incomplete: this.incomplete,
              echoesToSender: this.echoesToSender,
            }
          : null,
      cpu: this.cpuUsage,
      messagesPerServerCpuSecond:
        serverCpuSeconds !== null && serverCpuSeconds > 0 ? this.messages / serverCpuSeconds : null,
      firstError: this.firstError,
      connectError: this.connectError,
      stopReason: this.stopReason,
    };
  }
}

/** A benchmark under way. */
export interface BenchHandle {
  /** Resolves with the result; never rejects for server behaviour (failures are counted). */
  readonly done: Promise<BenchResult>;
  /** Ends the run early; what was measured so far is reported. */
  stop(): void;
  /** The latency samples behind `latencyUs` (to merge runs of several threads). */
  readonly histogram: LatencyHistogram;
}

/** Starts a benchmark in this thread. */
export function runBenchmark(options: BenchOptions): BenchHandle {
  const run = new BenchRun(options);
  run.start();
  return { done: run.done, stop: () => run.stop(), histogram: run.histogram };
}

/** The percentiles of a histogram, in µs. */
export function summarizeLatency(h: LatencyHistogram): LatencySummary {
  return {
    p50: h.percentile(0.5),
    p90: h.percentile(0.9),
    p99: h.percentile(0.99),
    max: h.max,
    count: h.count,
  };
}

/**
 * Start of the payload of message `sequence` on connection `id` in the pattern buffer, as in
 * wsload: a window that moves with the sequence, so lost, duplicated or reordered echoes fail
 * the byte-for-byte comparison.
 */
export function findPayloadOffset(id: number, sequence: number): number {
  return (sequence * 31 + id * 7) % 256;
}

/** Bytes of a frame with `length` payload bytes, as a client sends it (masked). */
function measureFrame(length: number): number {
  return (length < 126 ? 6 : length < 0x10000 ? 8 : 14) + length;
}

/** Whether `a[aStart, aStart+length)` equals `b[bStart, bStart+length)`. */
function matchBytes(a: Buffer, aStart: number, b: Buffer, bStart: number, length: number): boolean {
  if (length > SMALL_PAYLOAD)
    return a.compare(b, bStart, bStart + length, aStart, aStart + length) === 0;
  for (let i = 0; i < length; i++) if (a[aStart + i] !== b[bStart + i]) return false;
  return true;
}

/** The sequence number in the first 16 bytes (hex digits) of a broadcast, or -1. */
export function readHexSequence(data: Buffer): number {
  if (data.length < 16) return -1;
  let value = 0;
  for (let i = 0; i < 16; i++) {
    const c = data[i]!;
    const digit =
      c >= 0x30 && c <= 0x39
        ? c - 0x30
        : c >= 0x61 && c <= 0x66
          ? c - 0x57
          : c >= 0x41 && c <= 0x46
            ? c - 0x37
            : -1;
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

function describeMismatch(
  opcode: number,
  expectedOpcode: number,
  length: number,
  size: number,
  sequence: number,
): string {
  const kind = (op: number) => (op === TEXT ? "text" : op === BINARY ? "binary" : `opcode ${op}`);
  if (opcode !== expectedOpcode)
    return `message ${sequence} came back as ${kind(opcode)} instead of ${kind(expectedOpcode)}`;
  if (length !== size)
    return `message ${sequence} came back with ${length} bytes instead of ${size}`;
  return `message ${sequence} came back with different bytes`;
}

/** How many bytes of a message a mismatch shows. */
const SHOWN_BYTES = 24;

/** `64 bytes of text "0000000000000005 k#9…"`: size, type and the first bytes. */
function describeMessage(opcode: number, data: Buffer): string {
  const kind = opcode === TEXT ? "text" : opcode === BINARY ? "binary" : `opcode ${opcode}`;
  return `${data.length} bytes of ${kind} ${showBytes(opcode, data, 0)}`;
}

/** Bytes from `from` on, as a quoted string (text) or hex (binary), "…" when there are more. */
function showBytes(opcode: number, data: Buffer, from: number): string {
  const end = Math.min(data.length, from + SHOWN_BYTES);
  const more = end < data.length ? "…" : "";
  if (opcode === TEXT) return `${JSON.stringify(data.toString("latin1", from, end))}${more}`;
  return `0x${data.toString("hex", from, end)}${more}`;
}

/** Index of the first byte where `a` and `b` differ (the shorter length if one is a prefix). */
function findFirstDifference(a: Buffer, b: Buffer): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) if (a[i] !== b[i]) return i;
  return length;
}
