import { randomFillSync } from "node:crypto";
import { CloseCode, isValidCloseCode } from "./close-code.js";
import type { MessageCompressor } from "./compression.js";
import { ProtocolError, StateError } from "./errors.js";
import {
  encodeClosePayload,
  frameHeaderLength,
  MAX_CONTROL_PAYLOAD,
  writeFrameHeader,
} from "./frame.js";
import { type FrameHandler, FrameParser } from "./frame-parser.js";
import { applyMask } from "./mask.js";
import { isControlOpcode, isKnownOpcode, Opcode } from "./opcode.js";
import { OutputQueue, SMALL_FRAME_BYTES } from "./output-queue.js";
import { isValidUtf8, Utf8Validator } from "./utf8.js";

/** Default `maxPayload`: 16 MiB, the largest message the Autobahn limits cases send. */
export const DEFAULT_MAX_PAYLOAD = 16 * 1024 * 1024;

/** What the application receives from a connection; called synchronously from `receive`. */
export interface MessageEvents {
  /** A complete, validated message (message mode). Text arrives as UTF-8 bytes. */
  onMessage(data: Buffer, binary: boolean): void;
  /**
   * Frame mode only: every data frame (fin false on all but the last fragment; a
   * continuation frame has opcode 0, as on the wire) and every ping, pong and close frame.
   */
  onFrame?(opcode: number, payload: Buffer, fin: boolean): void;
  /** A ping arrived (message mode; the pong is already queued when autoPong is on). */
  onPing?(payload: Buffer): void;
  /** A pong arrived (message mode). */
  onPong?(payload: Buffer): void;
}

/**
 * What the transport driving a connection hears: the close handshake, failures, output and
 * compression work; called synchronously from `receive` and the send methods.
 */
export interface TransportEvents {
  /** The peer's close frame arrived; code 1005 when it carried none. */
  onClose(code: number, reason: string): void;
  /** The peer broke the protocol: a close frame with `error.closeCode` is queued, input is ignored from now on. */
  onError(error: ProtocolError): void;
  /** Output went from empty to non-empty: the transport should schedule a flush. */
  onOutput(): void;
  /**
   * A compressed frame too large to inflate inline (the compressor's `decompress` returned
   * undefined): inflate it (`compressor.decompressAsync`) and hand the result to
   * `Connection.inflated`. No input is parsed meanwhile. Needed when a compressor is given.
   */
  onInflate?(frame: Buffer, final: boolean, limit: number): void;
  /**
   * A message too large to deflate inline: deflate it (`compressor.compressAsync`) and hand
   * the results to `Connection.deflated` in order. Frames sent meanwhile wait behind it.
   * Needed when a compressor is given.
   */
  onDeflate?(data: Buffer): void;
}

/** Everything a connection reports, to one object (or give the message half as `receiver`). */
export interface ConnectionEvents extends MessageEvents, TransportEvents {}

export interface ConnectionOptions {
  /** "server" expects masked frames and sends unmasked ones; "client" the reverse (§5.1). */
  role: "server" | "client";
  /** Largest message accepted, in bytes, counted after inflation. Default 16 MiB. Larger → close 1009. */
  maxPayload?: number;
  /** The negotiated permessage-deflate compressor, or null/undefined when not negotiated. */
  compressor?: MessageCompressor | null;
  /**
   * Frame mode: deliver frames as they arrive (`onFrame`) instead of messages, and leave
   * pongs and close replies to the application, as OpenResty's `resty.websocket` does.
   */
  frameMode?: boolean;
  /** Answer pings with pongs automatically (message mode). Default true. */
  autoPong?: boolean;
  /** Split outgoing messages larger than this many bytes into fragments. Default 0: never. */
  fragmentSize?: number;
  /**
   * Where messages, frames, pings and pongs go, when not to `events`: a transport hands the
   * application's handler to the core this way, so a message reaches it in one call instead
   * of being relayed. Default: `events`.
   */
  receiver?: MessageEvents;
  /** Randomness for masking keys (client role). Default `crypto.randomFillSync`. */
  randomFill?: (target: Buffer) => void;
}

/** Where the close handshake stands (§7). */
/** How a connection ended, as its application hears it once the transport is gone. */
export interface CloseOutcome {
  /** The peer's close code (1005 when its close frame had none), the failure's code, or 1006 when no close frame came. */
  code: number;
  /** The peer's close reason, or what failed the connection, or "". */
  reason: string;
  /** True when both close frames were exchanged and nothing failed (§7.1.4's "cleanly"). */
  wasClean: boolean;
}

export const ConnectionState = {
  Open: 0,
  /** We sent a close frame and wait for the peer's. */
  CloseSent: 1,
  /** The peer's close frame arrived and ours is not sent yet (frame mode only). */
  CloseReceived: 2,
  /** Both close frames exchanged, or the connection failed: the transport should close. */
  Closed: 3,
} as const;
export type ConnectionState = (typeof ConnectionState)[keyof typeof ConnectionState];

const EMPTY = Buffer.alloc(0);

/** A frame held back behind a message being deflated; `payload` null while that deflate runs. */
interface DeferredFrame {
  opcode: number;
  payload: Buffer | null;
  fin: boolean;
  /** With "message", whether its payload is compressed. */
  rsv1: boolean;
  /** A whole message (fragmented as configured when released), one frame, or a prebuilt frame. */
  kind: "message" | "frame" | "prebuilt";
  /** Bytes it stands for: the input while deflating, then the payload. */
  bytes: number;
}

/**
 * One WebSocket connection's protocol state, without I/O (sans-I/O): bytes in through
 * `receive`, events out through `ConnectionEvents`, bytes to send out through `drainOutput`.
 * Peer input never makes it throw; a violation queues a close frame with the right code.
 * API misuse (bad close code, oversized ping) throws a `StateError`.
 */
export class Connection implements FrameHandler {
  readonly role: "server" | "client";
  state: ConnectionState = ConnectionState.Open;
  /** The error that failed the connection, if any. */
  failure: ProtocolError | null = null;
  /** Code and reason of the peer's close frame, once received. */
  closeCodeReceived = CloseCode.AbnormalClosure as number;
  closeReasonReceived = "";
  /** Code of the close frame we sent, once sent. */
  closeCodeSent = CloseCode.AbnormalClosure as number;

  private readonly events: TransportEvents;
  private readonly receiver: MessageEvents;
  private readonly parser: FrameParser;
  private readonly output = new OutputQueue();
  private readonly maxPayload: number;
  private readonly frameMode: boolean;
  private readonly autoPong: boolean;
  private readonly fragmentSize: number;
  private readonly masking: boolean;
  private readonly randomFill: (target: Buffer) => void;
  private compressor: MessageCompressor | null;

  // The frame being read.
  private frameOpcode = 0;
  private frameFin = false;
  private frameLength = 0;
  private frameBuffer: Buffer | null = null;
  private frameHave = 0;
  // The message being assembled.
  private messageOpcode = 0;
  private messageCompressed = false;
  private messageLength = 0;
  private messageBuffer: Buffer | null = null;
  private utf8: Utf8Validator | null = null;
  private closeReceived = false;
  private closeSent = false;
  private eofReceived = false;
  private maskKey: Buffer = EMPTY;
  private maskKeyAt = 0;
  private ownMaskKey: Buffer | null = null;
  // Compression work handed out to the transport (see MessageCompressor).
  private inflating = false;
  private deferred: DeferredFrame[] | null = null;

  constructor(events: ConnectionEvents, options: ConnectionOptions);
  /** Messages, frames, pings and pongs go straight to `options.receiver`, the rest to `events`. */
  constructor(
    events: TransportEvents,
    options: ConnectionOptions & { readonly receiver: MessageEvents },
  );
  constructor(events: TransportEvents & Partial<MessageEvents>, options: ConnectionOptions) {
    this.events = events;
    this.receiver = options.receiver ?? (events as MessageEvents);
    this.role = options.role;
    this.maxPayload = options.maxPayload ?? DEFAULT_MAX_PAYLOAD;
    this.frameMode = options.frameMode ?? false;
    this.autoPong = options.autoPong ?? !this.frameMode;
    this.fragmentSize = options.fragmentSize ?? 0;
    this.masking = options.role === "client";
    this.randomFill = options.randomFill ?? randomFillSync;
    this.compressor = options.compressor ?? null;
    this.parser = new FrameParser(this, {
      expectMasked: options.role === "server",
      allowRsv1: this.compressor !== null,
    });
  }

  /** Feeds bytes read from the transport. Takes ownership of `chunk` (it is unmasked in place). */
  receive(chunk: Buffer): void {
    this.parser.push(chunk);
  }

  /**
   * The peer will send nothing more (its end of the byte stream: TCP FIN, or the socket is
   * gone). A frame cut short is dropped; a connection whose close handshake had not finished
   * is Closed, abnormally (§7.1.5: 1006). Output already queued may still be written. Calling
   * it again does nothing.
   */
  receiveEof(): void {
    if (this.eofReceived) return;
    this.eofReceived = true;
    this.parser.stop();
    this.inflating = false;
    this.messageBuffer = null;
    this.frameBuffer = null;
    this.state = ConnectionState.Closed;
  }

  /**
   * True once the transport should end its side of the byte stream (TCP FIN) after writing
   * what is queued: §7.1.1 has the server close TCP first once the handshake is done; a
   * client waits for the server's, unless the connection failed or the peer's end came
   * first. Never while frames wait behind a message being deflated (the close frame is
   * among them).
   */
  get shouldSendEof(): boolean {
    if (this.deferred !== null) return false;
    if (this.eofReceived) return true;
    return (
      this.state === ConnectionState.Closed && (this.role === "server" || this.failure !== null)
    );
  }

  /**
   * True once the connection is closing (a close frame sent or received, a failure, or the
   * peer's end of stream): the TCP connection should end soon, and the transport bounds the
   * wait (closeTimeout).
   */
  get closeExpected(): boolean {
    return this.state !== ConnectionState.Open;
  }

  /** How the connection ended, for the application once the transport is gone. */
  get closeOutcome(): CloseOutcome {
    const failure = this.failure;
    if (failure !== null)
      return { code: failure.closeCode, reason: failure.message, wasClean: false };
    if (!this.closeReceived)
      return { code: CloseCode.AbnormalClosure, reason: "", wasClean: false };
    return {
      code: this.closeCodeReceived,
      reason: this.closeReasonReceived,
      wasClean: this.closeSent,
    };
  }

  /** Bytes queued for the transport, including messages still being deflated and what waits behind them. */
  get bufferedAmount(): number {
    let bytes = this.output.bytes;
    if (this.deferred !== null) for (const frame of this.deferred) bytes += frame.bytes;
    return bytes;
  }

  /** True while frames wait behind a message being deflated: more output is still to come. */
  get awaitingDeflate(): boolean {
    return this.deferred !== null;
  }

  /** Hands queued output to `write` in order and empties the queue. */
  drainOutput(write: (chunk: Buffer) => void): void {
    this.output.drain(write);
  }

  /** True while data may still be sent (no close frame sent yet). */
  get canSend(): boolean {
    return this.state === ConnectionState.Open || this.state === ConnectionState.CloseReceived;
  }

  /**
   * Queues a text (`binary` false) or binary message. Strings are encoded as UTF-8; a Buffer
   * is sent as is (for text it must already be UTF-8) and must not change until written.
   * Returns false, sending nothing, once a close frame has been sent.
   */
  send(data: Buffer | string, binary: boolean): boolean {
    if (!this.canSend) return false;
    const opcode = binary ? Opcode.Binary : Opcode.Text;
    const compressor = this.compressor;
    if (typeof data === "string") {
      if (compressor === null && this.fragmentSize === 0 && !this.masking && data.length < 2048) {
        this.queueStringFrame(opcode, data);
        return true;
      }
      data = Buffer.from(data, "utf8");
    }
    if (compressor !== null && data.length >= compressor.threshold) {
      const payload = compressor.compress(data);
      if (payload !== undefined) {
        this.queueMessage(opcode, payload, true);
      } else {
        // Deflated off the event loop: the message keeps its place in the output, and every
        // frame sent after it (data and control alike) waits behind it, so the order on the
        // wire is the order of the calls.
        const events = this.events;
        if (events.onDeflate === undefined) throw new StateError("onDeflate is needed to compress");
        this.defer({
          opcode,
          payload: null,
          fin: true,
          rsv1: true,
          kind: "message",
          bytes: data.length,
        });
        events.onDeflate(data);
      }
    } else {
      this.queueMessage(opcode, data, false);
    }
    return true;
  }

  /** Queues a ping (payload ≤ 125 bytes, §5.5). Throws StateError when the payload is too long. */
  ping(payload: Buffer | string = EMPTY): boolean {
    return this.sendControl(Opcode.Ping, payload);
  }

  /** Queues a pong (payload ≤ 125 bytes, §5.5.3). Throws StateError when the payload is too long. */
  pong(payload: Buffer | string = EMPTY): boolean {
    return this.sendControl(Opcode.Pong, payload);
  }

  /**
   * Starts (or, after the peer's close in frame mode, completes) the close handshake.
   * `code` must be 1000–1003, 1007–1014 or 3000–4999, `reason` at most 123 UTF-8 bytes;
   * otherwise a StateError is thrown. Without a code the close frame has an empty body.
   * Returns false when a close frame was already sent.
   */
  close(code?: number, reason = ""): boolean {
    if (code !== undefined && (!Number.isInteger(code) || !isValidCloseCode(code))) {
      throw new StateError(
        `invalid close code ${code}: use 1000–1003, 1007–1014 or 3000–4999`,
        "ERR_WS_CLOSE_CODE",
      );
    }
    if (code === undefined && reason !== "") {
      throw new StateError("a close reason needs a close code", "ERR_WS_CLOSE_CODE");
    }
    const payload = encodeClosePayload(code, reason);
    if (payload.length > MAX_CONTROL_PAYLOAD) {
      throw new StateError("close reason is longer than 123 bytes", "ERR_WS_CLOSE_REASON");
    }
    if (!this.canSend) return false;
    this.queueClose(code, payload);
    return true;
  }

  /**
   * Queues one raw frame, for applications that frame their own messages (OpenResty's
   * `send_frame`). The opcode must be one RFC 6455 defines, and control frames follow §5.5
   * (≤ 125 bytes, fin set), or a StateError is thrown.
   */
  sendFrame(opcode: number, payload: Buffer, fin: boolean): boolean {
    // §5.2: reserved opcodes (3–7, 0xB–0xF) would fail the peer's connection, and a value
    // above 15 would spill into the RSV bits of the header byte.
    if (!Number.isInteger(opcode) || opcode < 0 || !isKnownOpcode(opcode)) {
      throw new StateError(`invalid opcode ${opcode}: use 0–2 or 8–10 (RFC 6455 §5.2)`);
    }
    if (isControlOpcode(opcode)) {
      if (!fin) throw new StateError("control frames must not be fragmented");
      if (opcode === Opcode.Close) {
        if (payload.length === 1)
          throw new StateError("a close payload is empty or at least 2 bytes");
        if (payload.length >= 2) {
          const code = payload.readUInt16BE(0);
          return this.close(code, payload.toString("utf8", 2));
        }
        return this.close();
      }
      return this.sendControl(opcode, payload);
    }
    if (!this.canSend) return false;
    this.queueFrame(opcode, payload, fin, false);
    return true;
  }

  /**
   * Queues an already framed, unmasked, uncompressed message by reference: how a broadcast
   * is framed once for many connections. Server role only.
   */
  sendPrebuiltFrame(frame: Buffer): boolean {
    if (!this.canSend) return false;
    if (this.masking) throw new StateError("prebuilt frames are unmasked: server role only");
    if (this.deferred !== null) {
      this.defer({
        opcode: 0,
        payload: frame,
        fin: true,
        rsv1: false,
        kind: "prebuilt",
        bytes: frame.length,
      });
      return true;
    }
    this.notifyOutput();
    this.output.push(frame);
    return true;
  }

  /** Whether outgoing messages are compressed (permessage-deflate negotiated). */
  get compressed(): boolean {
    return this.compressor !== null;
  }

  /**
   * Takes back the result of `onInflate`: an inflated message (or piece), null when it exceeds
   * the limit, or the error for corrupt data. The message is delivered as if inflated inline,
   * then the input held meanwhile is parsed.
   */
  inflated(result: Buffer | null | Error): void {
    if (!this.inflating) return;
    this.inflating = false;
    if (this.parser.stopped) return;
    const proceed =
      result instanceof Error ? this.failCorrupt(result) : this.acceptInflated(result);
    if (proceed) this.parser.resume();
    else this.parser.stop();
  }

  /**
   * Takes back the result of `onDeflate` (results come back in the order handed out): the
   * message, and the frames that waited behind it, are queued for the transport.
   */
  deflated(result: Buffer | Error): void {
    const deferred = this.deferred;
    if (deferred === null) return;
    const failed = result instanceof Error;
    const slot = deferred.findIndex((frame) => frame.payload === null);
    if (failed) deferred.splice(slot, 1);
    else deferred[slot]!.payload = result;
    this.deferred = null;
    let released = 0;
    for (const frame of deferred) {
      const payload = frame.payload;
      if (payload === null) break;
      released++;
      if (frame.kind === "message") this.queueMessage(frame.opcode, payload, frame.rsv1);
      else if (frame.kind === "frame") this.queueFrame(frame.opcode, payload, frame.fin, false);
      else this.sendPrebuiltFrame(payload);
    }
    if (released < deferred.length) this.deferred = deferred.slice(released);
    // zlib fails only when out of memory; the message is lost, so the peer must not go on.
    if (failed && this.canSend) this.close(CloseCode.InternalError, "compression failed");
  }

  /** Releases the compressor; call when the transport is gone. */
  dispose(): void {
    this.inflating = false;
    this.deferred = null;
    this.parser.stop();
    this.compressor?.close();
    this.compressor = null;
    this.messageBuffer = null;
    this.frameBuffer = null;
  }

  // ---- FrameHandler -------------------------------------------------------------------

  onFrameHeader(fin: boolean, rsv1: boolean, opcode: number, length: number): boolean {
    this.frameOpcode = opcode;
    this.frameFin = fin;
    this.frameLength = length;
    this.frameHave = 0;
    if (isControlOpcode(opcode)) return true;
    if (opcode === Opcode.Continuation) {
      if (this.messageOpcode === 0)
        return this.fail(
          CloseCode.ProtocolError,
          "continuation frame without a message to continue",
        );
      // RFC 7692 §6.1: only the first frame of a message carries RSV1.
      if (rsv1) return this.fail(CloseCode.ProtocolError, "RSV1 set on a continuation frame");
    } else {
      if (this.messageOpcode !== 0)
        return this.fail(
          CloseCode.ProtocolError,
          "a new message started before the previous one ended",
        );
      this.messageOpcode = opcode;
      this.messageCompressed = rsv1;
      this.messageLength = 0;
    }
    if (this.messageCompressed) {
      // The limit is on the inflated size; the compressed frame only has to be plausible.
      if (length > this.maxPayload + (this.maxPayload >>> 4) + 1024) {
        return this.fail(
          CloseCode.MessageTooBig,
          `message exceeds the ${this.maxPayload}-byte limit`,
          "ERR_WS_TOO_BIG",
        );
      }
    } else if (this.messageLength + length > this.maxPayload) {
      return this.fail(
        CloseCode.MessageTooBig,
        `message exceeds the ${this.maxPayload}-byte limit`,
        "ERR_WS_TOO_BIG",
      );
    }
    return true;
  }

  onFramePayload(payload: Buffer, last: boolean): boolean {
    const opcode = this.frameOpcode;
    if (isControlOpcode(opcode)) return this.receiveControl(opcode, payload);
    if (this.messageCompressed) {
      // Inflate whole frames: gather the compressed bytes of a frame split across reads.
      if (!last || this.frameHave > 0) {
        payload = this.gatherFrame(payload);
        if (!last) return true;
      }
      return this.receiveCompressed(payload);
    }
    return this.receiveData(payload, last);
  }

  onFrameError(closeCode: number, message: string): void {
    this.fail(closeCode, message);
  }

  // ---- receiving ----------------------------------------------------------------------

  private receiveData(piece: Buffer, frameEnd: boolean): boolean {
    const messageEnd = frameEnd && this.frameFin;
    const binary = this.messageOpcode === Opcode.Binary;
    const whole = messageEnd && this.messageLength === 0 && this.frameHave === 0;
    if (!binary) {
      if (whole) {
        if (!this.parser.pieceIsAscii && !isValidUtf8(piece))
          return this.fail(CloseCode.InvalidPayloadData, "text message is not valid UTF-8");
      } else {
        const utf8 = (this.utf8 ??= new Utf8Validator());
        // §8.1: fail as soon as the bytes so far cannot be the start of valid UTF-8.
        if (!utf8.push(piece) || (messageEnd && !utf8.isComplete())) {
          utf8.reset();
          return this.fail(CloseCode.InvalidPayloadData, "text message is not valid UTF-8");
        }
      }
    }
    // Frame mode: gatherFrame counts frameHave itself (it is the copy offset of the next
    // piece), so it must not be advanced here too, or a frame split across reads is
    // reassembled at the wrong offsets.
    if (this.frameMode) return this.deliverFramePiece(piece, frameEnd);
    this.frameHave += piece.length;
    if (whole) {
      this.messageOpcode = 0;
      this.receiver.onMessage(piece, binary);
      return this.parserShouldContinue();
    }
    this.appendMessage(piece);
    if (messageEnd) return this.finishMessage(binary);
    return true;
  }

  private receiveCompressed(frame: Buffer): boolean {
    const final = this.frameFin;
    const limit = this.maxPayload - this.messageLength;
    let inflated: Buffer | null | undefined;
    try {
      inflated = this.compressor!.decompress(frame, final, limit);
    } catch (error) {
      return this.failCorrupt(error as Error);
    }
    if (inflated !== undefined) return this.acceptInflated(inflated);
    // Too large to inflate here without holding up everything else: hand the frame out and
    // parse nothing more until the result comes back (`inflated`), so that messages, control
    // frames and the close handshake keep their order.
    const events = this.events;
    if (events.onInflate === undefined)
      return this.fail(CloseCode.InternalError, "no way to inflate a large message");
    this.inflating = true;
    this.parser.pause();
    events.onInflate(frame, final, limit);
    return true;
  }

  private failCorrupt(error: Error): false {
    return this.fail(CloseCode.InvalidPayloadData, `invalid compressed data: ${error.message}`);
  }

  /** Goes on with a compressed frame's inflated bytes (null: over the limit). */
  private acceptInflated(inflated: Buffer | null): boolean {
    const messageEnd = this.frameFin;
    if (inflated === null) {
      return this.fail(
        CloseCode.MessageTooBig,
        `message exceeds the ${this.maxPayload}-byte limit`,
        "ERR_WS_TOO_BIG",
      );
    }
    this.frameHave = 0;
    this.frameBuffer = null;
    const binary = this.messageOpcode === Opcode.Binary;
    if (!binary) {
      const utf8 = (this.utf8 ??= new Utf8Validator());
      if (!utf8.push(inflated) || (messageEnd && !utf8.isComplete())) {
        utf8.reset();
        return this.fail(CloseCode.InvalidPayloadData, "text message is not valid UTF-8");
      }
    }
    if (this.frameMode) {
      this.messageLength += inflated.length;
      return this.deliverFramePiece(inflated, true);
    }
    if (messageEnd && this.messageLength === 0) {
      this.messageOpcode = 0;
      this.receiver.onMessage(inflated, binary);
      return this.parserShouldContinue();
    }
    this.appendMessage(inflated);
    if (messageEnd) return this.finishMessage(binary);
    return true;
  }

  /** Frame mode: hand over whole frames, gathering one split across reads. */
  private deliverFramePiece(piece: Buffer, frameEnd: boolean): boolean {
    if (!frameEnd || this.frameBuffer !== null) {
      piece = this.messageCompressed ? piece : this.gatherFrame(piece);
      if (!frameEnd) return true;
    }
    this.frameBuffer = null;
    this.frameHave = 0;
    // Frames are reported as they came: a continuation frame has opcode 0 (OpenResty's
    // "continuation"); `messageOpcode` still tells the message's type until fin.
    const opcode = this.frameOpcode;
    const fin = this.frameFin;
    if (fin) {
      this.messageOpcode = 0;
      this.messageLength = 0;
      this.utf8?.reset();
    } else if (!this.messageCompressed) {
      this.messageLength += piece.length;
    }
    this.receiver.onFrame?.(opcode, piece, fin);
    return this.parserShouldContinue();
  }

  /** Copies a piece of the current frame into a buffer of the frame's exact length. */
  private gatherFrame(piece: Buffer): Buffer {
    let buffer = this.frameBuffer;
    if (buffer === null) {
      buffer = this.frameBuffer = Buffer.allocUnsafe(this.frameLength);
      this.frameHave = 0;
    }
    piece.copy(buffer, this.frameHave);
    this.frameHave += piece.length;
    return buffer;
  }

  /** Appends to the message being assembled, growing its buffer geometrically (bounded by maxPayload). */
  private appendMessage(piece: Buffer): void {
    const needed = this.messageLength + piece.length;
    let buffer = this.messageBuffer;
    if (buffer === null || buffer.length < needed) {
      // A single frame split across reads gets exactly its size; fragments grow by doubling.
      const exact = this.messageLength === 0 && this.frameFin && !this.messageCompressed;
      const target = exact
        ? this.frameLength
        : Math.min(this.maxPayload, Math.max(needed, (buffer?.length ?? 0) * 2, 1024));
      const grown = Buffer.allocUnsafe(Math.max(target, needed));
      if (buffer !== null) buffer.copy(grown, 0, 0, this.messageLength);
      buffer = this.messageBuffer = grown;
    }
    piece.copy(buffer, this.messageLength);
    this.messageLength = needed;
  }

  private finishMessage(binary: boolean): boolean {
    const message = this.messageBuffer!.subarray(0, this.messageLength);
    this.messageBuffer = null;
    this.messageLength = 0;
    this.messageOpcode = 0;
    this.utf8?.reset();
    this.receiver.onMessage(message, binary);
    return this.parserShouldContinue();
  }

  private receiveControl(opcode: number, payload: Buffer): boolean {
    if (opcode === Opcode.Close) return this.receiveClose(payload);
    if (this.frameMode) {
      this.receiver.onFrame?.(opcode, payload, true);
    } else if (opcode === Opcode.Ping) {
      if (this.autoPong) this.sendControl(Opcode.Pong, payload);
      this.receiver.onPing?.(payload);
    } else {
      this.receiver.onPong?.(payload);
    }
    return this.parserShouldContinue();
  }

  private receiveClose(payload: Buffer): boolean {
    let code: number = CloseCode.NoStatusReceived;
    let reason = "";
    if (payload.length === 1)
      return this.fail(CloseCode.ProtocolError, "close frame with a 1-byte payload");
    if (payload.length >= 2) {
      code = payload.readUInt16BE(0);
      if (!isValidCloseCode(code))
        return this.fail(CloseCode.ProtocolError, `invalid close code ${code}`);
      const reasonBytes = payload.subarray(2);
      if (!isValidUtf8(reasonBytes))
        return this.fail(CloseCode.InvalidPayloadData, "close reason is not valid UTF-8");
      reason = reasonBytes.toString("utf8");
    }
    this.closeCodeReceived = code;
    this.closeReasonReceived = reason;
    this.closeReceived = true;
    // §5.5.1: nothing may follow a close frame.
    this.parser.stop();
    if (this.state === ConnectionState.CloseSent) {
      this.state = ConnectionState.Closed;
    } else if (this.frameMode) {
      this.state = ConnectionState.CloseReceived;
    } else {
      // Echo the peer's code and reason (§5.5.1 allows either; the reason tells the peer its
      // own words were heard); an empty close is answered with an empty close. The reason
      // came in a valid close frame, so it fits in ours (copied, not a view that keeps the read chunk alive).
      const echoed = code === CloseCode.NoStatusReceived ? undefined : code;
      this.queueClose(echoed, echoed === undefined ? EMPTY : Buffer.from(payload));
    }
    if (this.frameMode) this.receiver.onFrame?.(Opcode.Close, payload, true);
    this.events.onClose(code, reason);
    return false;
  }

  /** Records a protocol violation, queues the close frame and stops reading (§7.1.7). */
  private fail(closeCode: number, message: string, errorCode?: string): false {
    if (this.failure !== null || this.state === ConnectionState.Closed) return false;
    this.parser.stop();
    const error = new ProtocolError(closeCode, message, errorCode);
    this.failure = error;
    this.messageBuffer = null;
    this.frameBuffer = null;
    if (this.canSend) {
      const reason = truncateUtf8(message, MAX_CONTROL_PAYLOAD - 2);
      this.queueClose(closeCode, encodeClosePayload(closeCode, reason));
    }
    this.state = ConnectionState.Closed;
    this.events.onError(error);
    return false;
  }

  private parserShouldContinue(): boolean {
    return this.failure === null && this.state !== ConnectionState.Closed;
  }

  // ---- sending ------------------------------------------------------------------------

  private sendControl(opcode: number, payload: Buffer | string): boolean {
    const bytes = typeof payload === "string" ? Buffer.from(payload, "utf8") : payload;
    if (bytes.length > MAX_CONTROL_PAYLOAD) {
      throw new StateError(
        "control frame payload is longer than 125 bytes",
        "ERR_WS_CONTROL_TOO_LONG",
      );
    }
    if (!this.canSend) return false;
    this.queueFrame(opcode, bytes, true, false);
    return true;
  }

  private queueClose(code: number | undefined, payload: Buffer): void {
    this.queueFrame(Opcode.Close, payload, true, false);
    this.closeCodeSent = code ?? CloseCode.NoStatusReceived;
    this.closeSent = true;
    this.state = this.closeReceived ? ConnectionState.Closed : ConnectionState.CloseSent;
  }

  private queueMessage(opcode: number, payload: Buffer, compressed: boolean): void {
    if (this.deferred !== null) {
      this.defer({
        opcode,
        payload,
        fin: true,
        rsv1: compressed,
        kind: "message",
        bytes: payload.length,
      });
      return;
    }
    const size = this.fragmentSize;
    if (size === 0 || payload.length <= size) {
      this.queueFrame(opcode, payload, true, compressed);
      return;
    }
    let offset = 0;
    let first = true;
    while (offset < payload.length) {
      const end = Math.min(payload.length, offset + size);
      this.queueFrame(
        first ? opcode : Opcode.Continuation,
        payload.subarray(offset, end),
        end === payload.length,
        first && compressed,
      );
      first = false;
      offset = end;
    }
  }

  /** Holds a frame back behind a message being deflated (the first one: that message). */
  private defer(frame: DeferredFrame): void {
    if (this.deferred === null) this.deferred = [frame];
    else this.deferred.push(frame);
  }

  private queueFrame(opcode: number, payload: Buffer, fin: boolean, rsv1: boolean): void {
    if (this.deferred !== null) {
      // Only queueMessage sets rsv1, and it defers whole messages itself.
      this.defer({ opcode, payload, fin, rsv1: false, kind: "frame", bytes: payload.length });
      return;
    }
    this.notifyOutput();
    const length = payload.length;
    const output = this.output;
    if (this.masking) {
      this.takeMaskKey();
      const key = this.maskKey;
      const maskKeyOffset = this.maskKeyAt;
      const headerLength = frameHeaderLength(length, true);
      if (length < SMALL_FRAME_BYTES) {
        const at = output.reserve(headerLength + length);
        const target = output.reserved;
        writeFrameHeader(target, at, opcode, fin, rsv1, length, key, maskKeyOffset);
        payload.copy(target, at + headerLength);
        applyMask(target, at + headerLength, at + headerLength + length, key, maskKeyOffset, 0);
      } else {
        const at = output.reserve(headerLength);
        writeFrameHeader(output.reserved, at, opcode, fin, rsv1, length, key, maskKeyOffset);
        const masked = Buffer.allocUnsafe(length);
        payload.copy(masked);
        applyMask(masked, 0, length, key, maskKeyOffset, 0);
        output.push(masked);
      }
      return;
    }
    const headerLength = frameHeaderLength(length, false);
    if (length < SMALL_FRAME_BYTES) {
      const at = output.reserve(headerLength + length);
      const target = output.reserved;
      writeFrameHeader(target, at, opcode, fin, rsv1, length, null);
      payload.copy(target, at + headerLength);
    } else {
      const at = output.reserve(headerLength);
      writeFrameHeader(output.reserved, at, opcode, fin, rsv1, length, null);
      output.push(payload);
    }
  }

  /** Server fast path for short strings: encode straight into the output slab. */
  private queueStringFrame(opcode: number, text: string): void {
    this.notifyOutput();
    const length = Buffer.byteLength(text, "utf8");
    const headerLength = frameHeaderLength(length, false);
    const output = this.output;
    const at = output.reserve(headerLength + length);
    const target = output.reserved;
    writeFrameHeader(target, at, opcode, true, false, length, null);
    target.write(text, at + headerLength, length, "utf8");
  }

  private notifyOutput(): void {
    if (this.output.isEmpty()) this.events.onOutput();
  }

  /** Returns the masking key for the next frame as `[buffer, offset]` via `maskKey`/`maskKeyAt`. */
  private takeMaskKey(): void {
    if (this.randomFill !== randomFillSync) {
      // Injected randomness (tests): drawn per frame so frames are reproducible.
      const key = (this.ownMaskKey ??= Buffer.alloc(4));
      this.randomFill(key);
      this.maskKey = key;
      this.maskKeyAt = 0;
      return;
    }
    // One crypto call per 1024 frames, from a process-wide pool.
    if (maskPoolOffset + 4 > maskPool.length) {
      randomFillSync(maskPool);
      maskPoolOffset = 0;
    }
    this.maskKey = maskPool;
    this.maskKeyAt = maskPoolOffset;
    maskPoolOffset += 4;
  }
}

const maskPool = Buffer.alloc(4096);
let maskPoolOffset = maskPool.length;

/** Cuts `text` to at most `maxBytes` UTF-8 bytes without splitting a code point. */
function truncateUtf8(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text, "utf8");
  if (bytes.length <= maxBytes) return text;
  let end = maxBytes;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.toString("utf8", 0, end);
}
