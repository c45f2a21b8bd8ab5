import type { Socket } from "node:net";
import { CloseCode } from "../protocol/close-code.js";
import type { MessageCompressor } from "../protocol/compression.js";
import {
  Connection,
  type ConnectionOptions,
  ConnectionState,
  type MessageEvents,
  type TransportEvents,
} from "../protocol/connection.js";
import type { ProtocolError } from "../protocol/errors.js";
import "./native-mask.js";

/** Timers and bounds a transport enforces. All durations in milliseconds, sizes in bytes. */
export interface TransportLimits {
  /** Bytes allowed to wait in the socket's send buffer before the peer is closed with 1008. Default 16 MiB. */
  maxBufferedBytes?: number;
  /** How long to wait for the peer's close frame / TCP close after ours. Default 5000 ms. */
  closeTimeout?: number;
}

/** Why a transport closed the connection on its own. */
export type LimitKind = "backpressure" | "idle" | "close-timeout";

/**
 * What the owner of a transport (a server's client, a client socket) hears. Messages, frames,
 * pings and pongs come straight from the protocol core (its `receiver`), without a relay.
 */
export interface TransportHandler extends MessageEvents {
  /** The peer's close frame arrived (the reply is already queued in message mode). */
  onCloseFrame?(code: number, reason: string): void;
  /** The peer broke the protocol; the connection is being failed with `error.closeCode`. */
  onProtocolError?(error: ProtocolError): void;
  /** The send buffer emptied after {@link SocketTransport.watchDrain} was called. */
  onDrain?(): void;
  /** A limit was hit and the connection is being closed. */
  onLimit?(kind: LimitKind, detail: string): void;
  /** The TCP connection is gone. `code`/`reason` are the peer's close frame, or 1006 when there was none. */
  onClosed(code: number, reason: string, wasClean: boolean): void;
}

export const DEFAULT_MAX_BUFFERED_BYTES = 16 * 1024 * 1024;
export const DEFAULT_CLOSE_TIMEOUT = 5000;

/**
 * Pumps a socket through a protocol `Connection`: socket reads go in, queued frames are
 * written out once per read (or once per tick for sends from elsewhere), the send buffer is
 * bounded, and the close handshake is finished or cut after a timeout.
 */
export class SocketTransport implements TransportEvents {
  readonly connection: Connection;
  readonly socket: Socket;
  /** Time of the last byte received (a coarse clock in ms), for idle detection. */
  lastActivity: number;
  private readonly handler: TransportHandler;
  private readonly maxBufferedBytes: number;
  private readonly closeTimeout: number;
  private flushScheduled = false;
  private closeTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private pendingFirst: Buffer | null = null;
  private corked = false;
  /** Someone waits for the send buffer to empty (watchDrain). */
  private drainWatched = false;
  private readonly compressor: MessageCompressor | null;

  constructor(
    socket: Socket,
    handler: TransportHandler,
    options: ConnectionOptions,
    limits: TransportLimits = {},
    head?: Buffer,
  ) {
    this.socket = socket;
    this.handler = handler;
    this.maxBufferedBytes = limits.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
    this.closeTimeout = limits.closeTimeout ?? DEFAULT_CLOSE_TIMEOUT;
    this.compressor = options.compressor ?? null;
    this.connection = new Connection(this, { ...options, receiver: handler });
    this.lastActivity = coarseNow;
    socket.setNoDelay(true);
    socket.on("data", this.onData);
    socket.on("error", () => {
      // A reset or a write after the peer vanished: 'close' follows and reports 1006.
    });
    socket.on("close", () => this.onSocketClose());
    socket.on("end", () => {
      this.connection.receiveEof();
      this.afterStateChange();
    });
    if (head !== undefined && head.length > 0) this.receive(head);
  }

  /** Feeds bytes read from the socket. */
  receive(chunk: Buffer): void {
    this.lastActivity = coarseNow;
    // Flush once after the whole chunk, not once per frame queued while reading it.
    this.flushScheduled = true;
    this.connection.receive(chunk);
    this.flush();
  }

  /** Sends a message; false when the connection is closing or closed. */
  send(data: Buffer | string, binary: boolean): boolean {
    return this.connection.send(data, binary);
  }

  /** Sends a prebuilt server frame (broadcast: framed once, sent to many). */
  sendPrebuilt(frame: Buffer): boolean {
    return this.connection.sendPrebuiltFrame(frame);
  }

  /** True while output waits for a flush already planned (at the end of a read or in a microtask). */
  get flushPending(): boolean {
    return this.flushScheduled;
  }

  /** Bytes waiting: queued frames plus the socket's own buffer. */
  get bufferedAmount(): number {
    return this.connection.bufferedAmount + this.socket.writableLength;
  }

  /**
   * Calls the handler's `onDrain` once everything queued so far, and anything queued
   * meanwhile, has been handed to the kernel. For senders told to back off.
   */
  watchDrain(): void {
    if (this.drainWatched || this.closed) return;
    this.drainWatched = true;
    // The next flush marks its end; with nothing left to flush, mark the end of what the
    // socket holds now. A zero-length write's callback runs once everything before it is out.
    if (!this.flushScheduled && this.connection.bufferedAmount === 0)
      this.socket.write(EMPTY, this.checkDrained);
  }

  /** Starts the close handshake; the connection is cut if the peer does not answer within closeTimeout. */
  close(code?: number, reason?: string): void {
    this.connection.close(code, reason);
    this.afterStateChange();
  }

  /** Cuts the TCP connection at once, without a close handshake. */
  terminate(): void {
    this.socket.destroy();
  }

  /** Closes the connection because a limit was hit: logged by the owner, close code sent. */
  closeForLimit(kind: LimitKind, code: number, detail: string): void {
    if (this.closed) return;
    this.handler.onLimit?.(kind, detail);
    if (this.connection.canSend) this.connection.close(code, detail.slice(0, 120));
    this.afterStateChange();
  }

  // ---- TransportEvents ----------------------------------------------------------------

  onClose(code: number, reason: string): void {
    this.handler.onCloseFrame?.(code, reason);
    this.scheduleStateCheck();
  }

  onError(error: ProtocolError): void {
    this.handler.onProtocolError?.(error);
    this.scheduleStateCheck();
  }

  onOutput(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // Sends from outside a read (a broadcast, a timer) are written at the end of the current
    // job, all transports in one microtask: one hop per broadcast, not one per receiver, and
    // frames queued for one socket in the same job still go out as one write.
    if (pendingFlushes.push(this) === 1) queueMicrotask(flushPending);
  }

  onInflate(frame: Buffer, final: boolean, limit: number): void {
    // The connection parses nothing until the result is back; stop reading too, so a peer
    // streaming large messages is held back by TCP rather than by our memory. A socket that
    // its owner paused (a reader applying backpressure) is left to that owner.
    const socket = this.socket;
    const ownPause = !socket.isPaused();
    if (ownPause) socket.pause();
    this.compressor!.decompressAsync(frame, final, limit, (result) => {
      if (this.closed) return;
      if (ownPause) socket.resume();
      this.flushScheduled = true;
      this.connection.inflated(result);
      this.flush();
    });
  }

  onDeflate(data: Buffer): void {
    this.compressor!.compressAsync(data, (result) => {
      if (this.closed) return;
      this.connection.deflated(result);
      // A close frame may have waited behind the message: finish what it started.
      if (this.connection.state !== ConnectionState.Open) this.afterStateChange();
    });
  }

  // ---- internals ----------------------------------------------------------------------

  /** The socket's 'data' listener (a subclass's `receive` decides when the bytes are read). */
  private readonly onData = (chunk: Buffer): void => this.receive(chunk);

  private scheduleStateCheck(): void {
    // Runs after the current read is flushed, so the close frame goes out first.
    queueMicrotask(() => this.afterStateChange());
  }

  private readonly writeChunk = (chunk: Buffer): void => {
    const socket = this.socket;
    if (this.pendingFirst === null && !this.corked) {
      this.pendingFirst = chunk;
      return;
    }
    if (!this.corked) {
      socket.cork();
      this.corked = true;
      socket.write(this.pendingFirst!);
      this.pendingFirst = null;
    }
    socket.write(chunk);
  };

  private readonly checkDrained = (): void => {
    if (!this.drainWatched || this.closed || this.bufferedAmount > 0) return;
    this.drainWatched = false;
    this.handler.onDrain?.();
  };

  /** Writes everything queued: one write, or one corked batch. */
  flush(): void {
    this.flushScheduled = false;
    const socket = this.socket;
    if (socket.destroyed) {
      this.connection.drainOutput(discard);
      return;
    }
    // The limit is on what is still unsent from earlier writes, so one large message may
    // always go out, but a peer that stops reading cannot make the buffer grow without bound.
    if (socket.writableLength > this.maxBufferedBytes && this.connection.canSend) {
      this.connection.drainOutput(discard);
      this.closeForLimit(
        "backpressure",
        CloseCode.PolicyViolation,
        `send buffer over ${this.maxBufferedBytes} bytes: the peer is not reading`,
      );
      return;
    }
    this.connection.drainOutput(this.writeChunk);
    if (this.corked) {
      this.corked = false;
      socket.uncork();
    } else if (this.pendingFirst !== null) {
      socket.write(this.pendingFirst);
      this.pendingFirst = null;
    }
    if (this.drainWatched) socket.write(EMPTY, this.checkDrained);
  }

  /** Acts on the close handshake's progress as the connection decides: end TCP, time out when stuck. */
  afterStateChange(): void {
    if (this.closed) return;
    const connection = this.connection;
    if (!connection.closeExpected) return;
    this.flush();
    const socket = this.socket;
    if (connection.shouldSendEof && !socket.destroyed) socket.end();
    if (this.closeTimer === null) {
      this.closeTimer = setTimeout(() => {
        this.handler.onLimit?.(
          "close-timeout",
          `peer did not finish closing within ${this.closeTimeout} ms`,
        );
        socket.destroy();
      }, this.closeTimeout);
      this.closeTimer.unref();
    }
  }

  private onSocketClose(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.closeTimer !== null) clearTimeout(this.closeTimer);
    const connection = this.connection;
    connection.receiveEof();
    connection.dispose();
    const { code, reason, wasClean } = connection.closeOutcome;
    this.handler.onClosed(code, reason, wasClean);
  }
}

const EMPTY = Buffer.alloc(0);

/** Transports with output queued outside a read, flushed together (see onOutput). */
let pendingFlushes: SocketTransport[] = [];

function flushPending(): void {
  const transports = pendingFlushes;
  pendingFlushes = [];
  for (let i = 0; i < transports.length; i++) {
    const transport = transports[i]!;
    // Already written by a read in the meantime, or listed twice: nothing to do.
    if (transport.flushPending) transport.flush();
  }
}

function discard(): void {
  // Output for a socket that is already gone.
}

/** The longest step the awake clock takes at once, in milliseconds (see {@link coarseNow}). */
const MAX_AWAKE_STEP_MS = 500;
let lastTick = Date.now();

/**
 * A coarse millisecond clock of the time this process was awake to hear its peers, read per
 * socket read (cheaper than Date.now()) and advanced by timers. It follows wall-clock time,
 * except that an event loop stalled for longer than {@link MAX_AWAKE_STEP_MS} (a long handler,
 * a process waiting for a core on a busy machine) counts as that much: peers are judged idle by
 * the time we were there to hear them, not blamed for our own absence.
 */
export let coarseNow = lastTick;

function tickAwakeClock(): void {
  const now = Date.now();
  coarseNow += Math.min(Math.max(0, now - lastTick), MAX_AWAKE_STEP_MS);
  lastTick = now;
}

/**
 * One timer for many transports: sends a ping to a connection that has been quiet for
 * `pingInterval` ms and closes one quiet for `idleTimeout` ms with 1008.
 */
export class IdleSweeper {
  private readonly members = new Set<SocketTransport>();
  private timer: NodeJS.Timeout | null = null;
  private readonly pingInterval: number;
  private readonly idleTimeout: number;

  /** Both in milliseconds; 0 disables that check. */
  constructor(pingInterval: number, idleTimeout: number) {
    this.pingInterval = pingInterval;
    this.idleTimeout = idleTimeout;
  }

  add(transport: SocketTransport): void {
    this.members.add(transport);
    if (this.timer === null && (this.pingInterval > 0 || this.idleTimeout > 0)) {
      const period = Math.max(
        50,
        Math.min(
          1000,
          ...[this.pingInterval, this.idleTimeout].filter((t) => t > 0).map((t) => t / 4),
        ),
      );
      this.timer = setInterval(() => {
        // Sweep after this turn's poll phase, with the clock advanced now: if the event loop
        // stalled (a long handler, a starved process), what peers sent meanwhile is read first
        // and counts as activity, instead of the peers being closed for our own silence.
        tickAwakeClock();
        setImmediate(() => this.sweep());
      }, period);
      this.timer.unref();
    }
  }

  delete(transport: SocketTransport): void {
    this.members.delete(transport);
    if (this.members.size === 0 && this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  private sweep(): void {
    if (this.timer === null) return;
    const now = coarseNow;
    for (const transport of this.members) {
      const quiet = now - transport.lastActivity;
      const connection = transport.connection;
      if (connection.state !== ConnectionState.Open) continue;
      if (this.idleTimeout > 0 && quiet >= this.idleTimeout) {
        transport.closeForLimit(
          "idle",
          CloseCode.PolicyViolation,
          `idle for ${this.idleTimeout} ms`,
        );
      } else if (this.pingInterval > 0 && quiet >= this.pingInterval && !pinged.has(transport)) {
        pinged.add(transport);
        connection.ping();
      } else if (quiet < this.pingInterval) {
        pinged.delete(transport);
      }
    }
  }
}

const pinged = new WeakSet<SocketTransport>();

/** Keeps the coarse clock fresh even when no sweeper runs (clients, tests). */
setInterval(tickAwakeClock, 250).unref();
