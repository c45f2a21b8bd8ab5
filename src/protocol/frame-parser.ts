import { CloseCode } from "./close-code.js";
import { MAX_CONTROL_PAYLOAD } from "./frame.js";
import { applyMask, applyMaskSmall, SMALL_MASK_BYTES } from "./mask.js";
import { isControlOpcode, isKnownOpcode } from "./opcode.js";

/** What the parser reports, as calls rather than event objects, to keep the hot path allocation-free. */
export interface FrameHandler {
  /** A complete, structurally valid header was read. Return false to stop parsing. */
  onFrameHeader(fin: boolean, rsv1: boolean, opcode: number, length: number): boolean;
  /**
   * Unmasked payload bytes of the current frame, in order; `last` marks the final piece.
   * A control frame's payload always arrives whole, in one piece. Return false to stop parsing.
   */
  onFramePayload(payload: Buffer, last: boolean): boolean;
  /** The frame structure broke RFC 6455; parsing has stopped. */
  onFrameError(closeCode: number, message: string): void;
}

export interface FrameParserOptions {
  /** True on the server: every client frame must be masked; false on the client: none may be (§5.1). */
  expectMasked: boolean;
  /** Whether RSV1 may be set on data frames (permessage-deflate negotiated, RFC 7692 §6). */
  allowRsv1: boolean;
}

const EMPTY = Buffer.alloc(0);
const READING_HEADER = 0;
const READING_PAYLOAD = 1;
const STOPPED = 2;
/** Between frames, waiting for `resume()`; input is kept meanwhile. */
const PAUSED = 3;
/** Offset of the masking key in `header`, where it is kept whichever way the header was read. */
const KEY_OFFSET = 14;

/**
 * Incremental RFC 6455 frame parser (§5.2). Feed it whatever the transport read; it handles
 * headers and payloads split anywhere, unmasks in place, and validates what a single frame
 * can tell: reserved bits, reserved opcodes, masking, control-frame length and fragmentation,
 * and the 64-bit length's top bit. Message-level rules are the handler's.
 */
export class FrameParser {
  private readonly handler: FrameHandler;
  private readonly expectMasked: boolean;
  private allowRsv1: boolean;
  private state = READING_HEADER;
  /** Header bytes gathered across chunks (at most 14), then the masking key at KEY_OFFSET. */
  private readonly header = Buffer.allocUnsafe(KEY_OFFSET + 4);
  private headerHave = 0;
  private masked = false;
  /**
   * True while the payload piece being handed over is known to be ASCII (a short masked piece,
   * checked while unmasking): a text message then needs no separate UTF-8 check.
   */
  pieceIsAscii = false;
  private remaining = 0;
  private phase = 0;
  private control: Buffer | null = null;
  private controlHave = 0;
  /** Input kept while paused, oldest first. */
  private held: Buffer[] = [];
  private pushing = false;

  constructor(handler: FrameHandler, options: FrameParserOptions) {
    this.handler = handler;
    this.expectMasked = options.expectMasked;
    this.allowRsv1 = options.allowRsv1;
  }

  /** Permits or forbids RSV1 from now on (set once the extension negotiation is known). */
  setAllowRsv1(allow: boolean): void {
    this.allowRsv1 = allow;
  }

  /** Stops parsing for good; later input is ignored. */
  stop(): void {
    this.state = STOPPED;
    this.control = null;
    this.held = [];
  }

  /**
   * Called by the handler from `onFramePayload` for a frame's last piece: parsing stops after
   * this frame, and input from then on is kept, unparsed, until `resume()`.
   */
  pause(): void {
    if (this.state === READING_HEADER) this.state = PAUSED;
  }

  /** Parses the input kept since `pause()`, and whatever comes next. */
  resume(): void {
    if (this.state !== PAUSED) return;
    this.state = READING_HEADER;
    // Called from within the handler (the pause was over at once): `push` simply goes on.
    if (this.pushing) return;
    const held = this.held;
    this.held = [];
    for (const chunk of held) this.push(chunk);
  }

  /** True while paused. */
  get paused(): boolean {
    return this.state === PAUSED;
  }

  /** True once parsing stopped (error, or the handler asked). */
  get stopped(): boolean {
    return this.state === STOPPED;
  }

  /**
   * Parses `chunk`. The parser takes ownership: payload bytes are unmasked in place and the
   * pieces handed to the handler are views into `chunk`.
   */
  push(chunk: Buffer): void {
    let offset = 0;
    const end = chunk.length;
    this.pushing = true;
    while (offset < end) {
      if (this.state === READING_HEADER) {
        offset = this.readHeader(chunk, offset, end);
      } else if (this.state === READING_PAYLOAD) {
        offset = this.readPayload(chunk, offset, end);
      } else {
        if (this.state === PAUSED) this.held.push(chunk.subarray(offset));
        break;
      }
    }
    this.pushing = false;
  }

  private readHeader(chunk: Buffer, offset: number, end: number): number {
    if (this.headerHave === 0 && end - offset >= 2) {
      const needed = headerSize(chunk[offset + 1]!);
      if (end - offset >= needed) {
        this.parseHeader(chunk, offset);
        return offset + needed;
      }
    }
    // Slow path: the header is split across chunks; gather it.
    const header = this.header;
    if (this.headerHave < 2) {
      while (this.headerHave < 2 && offset < end) header[this.headerHave++] = chunk[offset++]!;
      if (this.headerHave < 2) return offset;
    }
    const needed = headerSize(header[1]!);
    while (this.headerHave < needed && offset < end) header[this.headerHave++] = chunk[offset++]!;
    if (this.headerHave === needed) {
      this.headerHave = 0;
      this.parseHeader(header, 0);
    }
    return offset;
  }

  private parseHeader(source: Buffer, at: number): void {
    const b0 = source[at]!;
    const b1 = source[at + 1]!;
    const fin = (b0 & 0x80) !== 0;
    const rsv1 = (b0 & 0x40) !== 0;
    const opcode = b0 & 0x0f;
    const masked = (b1 & 0x80) !== 0;
    let length = b1 & 0x7f;
    let p = at + 2;
    if ((b0 & 0x30) !== 0) {
      this.fail(CloseCode.ProtocolError, "RSV2 and RSV3 must be clear");
      return;
    }
    if (!isKnownOpcode(opcode)) {
      this.fail(CloseCode.ProtocolError, `invalid opcode ${opcode}`);
      return;
    }
    if (isControlOpcode(opcode)) {
      // §5.5: control frames are short and never fragmented; RFC 7692 §6.1: never compressed.
      if (!fin) {
        this.fail(CloseCode.ProtocolError, "control frames must not be fragmented");
        return;
      }
      if (length > MAX_CONTROL_PAYLOAD) {
        this.fail(CloseCode.ProtocolError, "control frame payload is longer than 125 bytes");
        return;
      }
      if (rsv1) {
        this.fail(CloseCode.ProtocolError, "RSV1 must be clear on control frames");
        return;
      }
    } else if (rsv1 && !this.allowRsv1) {
      this.fail(CloseCode.ProtocolError, "RSV1 must be clear without a negotiated extension");
      return;
    }
    if (masked !== this.expectMasked) {
      this.fail(
        CloseCode.ProtocolError,
        masked ? "server frames must not be masked" : "client frames must be masked",
      );
      return;
    }
    if (length === 126) {
      length = (source[p]! << 8) | source[p + 1]!;
      p += 2;
    } else if (length === 127) {
      const high = source.readUInt32BE(p);
      // §5.2: the most significant bit of a 64-bit length must be 0.
      if (high & 0x80000000) {
        this.fail(CloseCode.ProtocolError, "64-bit payload length has its top bit set");
        return;
      }
      length = high * 0x100000000 + source.readUInt32BE(p + 4);
      p += 8;
    }
    if (masked) {
      const header = this.header;
      header[KEY_OFFSET] = source[p]!;
      header[KEY_OFFSET + 1] = source[p + 1]!;
      header[KEY_OFFSET + 2] = source[p + 2]!;
      header[KEY_OFFSET + 3] = source[p + 3]!;
    }
    this.masked = masked;
    if (!this.handler.onFrameHeader(fin, rsv1, opcode, length)) {
      this.stop();
      return;
    }
    if (this.state === STOPPED) return;
    if (length === 0) {
      if (!this.handler.onFramePayload(EMPTY, true)) this.stop();
      return;
    }
    this.remaining = length;
    this.phase = 0;
    if (isControlOpcode(opcode)) {
      this.control = Buffer.allocUnsafe(length);
      this.controlHave = 0;
    }
    this.state = READING_PAYLOAD;
  }

  private readPayload(chunk: Buffer, offset: number, end: number): number {
    const take = Math.min(this.remaining, end - offset);
    const stop = offset + take;
    let ascii = false;
    if (this.masked) {
      if (take < SMALL_MASK_BYTES)
        ascii = applyMaskSmall(chunk, offset, stop, this.header, KEY_OFFSET, this.phase) < 0x80;
      else applyMask(chunk, offset, stop, this.header, KEY_OFFSET, this.phase);
    }
    this.pieceIsAscii = ascii;
    this.phase += take;
    this.remaining -= take;
    const last = this.remaining === 0;
    if (last) this.state = READING_HEADER;
    const control = this.control;
    if (control !== null) {
      chunk.copy(control, this.controlHave, offset, stop);
      this.controlHave += take;
      if (last) {
        this.control = null;
        if (!this.handler.onFramePayload(control, true)) this.stop();
      }
    } else if (!this.handler.onFramePayload(chunk.subarray(offset, stop), last)) {
      this.stop();
    }
    return stop;
  }

  private fail(closeCode: number, message: string): void {
    this.stop();
    this.handler.onFrameError(closeCode, message);
  }
}

/** Total header size (2–14 bytes) given the second header byte. */
function headerSize(b1: number): number {
  const length = b1 & 0x7f;
  const extended = length === 126 ? 2 : length === 127 ? 8 : 0;
  return 2 + extended + (b1 & 0x80 ? 4 : 0);
}
