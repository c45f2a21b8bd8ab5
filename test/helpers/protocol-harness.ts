/**
 * Shared helpers for the protocol-core unit tests: an independent frame encoder/decoder (so
 * the tests do not check the code against itself), a seeded PRNG, and a recorder that feeds
 * bytes to a `Connection` whole, byte by byte and at random split points and checks that
 * every way gives the same events and the same output.
 */
import assert from "node:assert/strict";
import {
  Connection,
  type ConnectionOptions,
  ConnectionState,
} from "../../src/protocol/connection.js";
import type { ProtocolError } from "../../src/protocol/errors.js";

export type Role = "server" | "client";
export const ROLES: readonly Role[] = ["server", "client"];

export const OP = {
  continuation: 0x0,
  text: 0x1,
  binary: 0x2,
  close: 0x8,
  ping: 0x9,
  pong: 0xa,
} as const;

/** The masking key every test client uses, so client output is reproducible. */
export const MASK_KEY: Buffer = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);

/** A `randomFill` that always yields `MASK_KEY`. */
export function fixedMaskFill(target: Buffer): void {
  MASK_KEY.copy(target, 0, 0, target.length);
}

// ---- seeded randomness ----------------------------------------------------------------------

/** mulberry32: a small, fast, seeded PRNG returning floats in [0, 1). */
export function createRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `length` pseudo-random bytes from `random`. */
export function randomBytes(random: () => number, length: number): Buffer {
  const bytes = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) bytes[i] = Math.floor(random() * 256);
  return bytes;
}

// ---- an independent frame encoder / decoder -------------------------------------------------

export interface FrameSpec {
  fin?: boolean;
  rsv1?: boolean;
  rsv2?: boolean;
  rsv3?: boolean;
  /** Masking key; null or absent: unmasked. */
  mask?: Buffer | null;
  /** Length written in the header instead of the payload's (for truncated or lying frames). */
  declaredLength?: number;
  /** Force the 16-bit (2) or 64-bit (8) length encoding; default: the shortest. */
  lengthBytes?: 0 | 2 | 8;
  /** Raw value of the 64-bit length's top 32 bits (to set the forbidden top bit). */
  high32?: number;
}

/** Encodes one frame byte by byte from RFC 6455 §5.2, independently of src/protocol/frame.ts. */
export function buildFrame(
  opcode: number,
  payload: Buffer | string = "",
  spec: FrameSpec = {},
): Buffer {
  const data = typeof payload === "string" ? Buffer.from(payload, "utf8") : payload;
  const length = spec.declaredLength ?? data.length;
  const lengthBytes = spec.lengthBytes ?? (length < 126 ? 0 : length < 0x10000 ? 2 : 8);
  const mask = spec.mask ?? null;
  const header: number[] = [];
  header.push(
    (spec.fin === false ? 0 : 0x80) |
      (spec.rsv1 ? 0x40 : 0) |
      (spec.rsv2 ? 0x20 : 0) |
      (spec.rsv3 ? 0x10 : 0) |
      opcode,
  );
  const maskBit = mask ? 0x80 : 0;
  if (lengthBytes === 0) {
    header.push(maskBit | length);
  } else if (lengthBytes === 2) {
    header.push(maskBit | 126, (length >> 8) & 0xff, length & 0xff);
  } else {
    const high = spec.high32 ?? Math.floor(length / 2 ** 32);
    const low = length % 2 ** 32;
    header.push(maskBit | 127);
    for (const word of [high, low]) {
      header.push((word >>> 24) & 0xff, (word >>> 16) & 0xff, (word >>> 8) & 0xff, word & 0xff);
    }
  }
  if (mask) header.push(...mask);
  const body = Buffer.from(data);
  if (mask) for (let i = 0; i < body.length; i++) body[i] = body[i]! ^ mask[i % 4]!;
  return Buffer.concat([Buffer.from(header), body]);
}

/** A frame as the peer of a `role` connection sends it: masked to a server, unmasked to a client. */
export function inbound(
  role: Role,
  opcode: number,
  payload: Buffer | string = "",
  spec: FrameSpec = {},
): Buffer {
  return buildFrame(opcode, payload, { mask: role === "server" ? MASK_KEY : null, ...spec });
}

/** Close frame body: 2-byte code and UTF-8 reason (or raw bytes). */
export function closeBody(code: number, reason: Buffer | string = ""): Buffer {
  const code2 = Buffer.alloc(2);
  code2.writeUInt16BE(code);
  return Buffer.concat([code2, typeof reason === "string" ? Buffer.from(reason) : reason]);
}

export interface DecodedFrame {
  fin: boolean;
  rsv1: boolean;
  rsv2: boolean;
  rsv3: boolean;
  opcode: number;
  masked: boolean;
  key: Buffer | null;
  /** Unmasked payload. */
  payload: Buffer;
  /** Bytes the length field used beyond the 7 bits: 0, 2 or 8. */
  lengthBytes: number;
}

/** Decodes every frame in `bytes` (which must hold whole frames only). */
export function decodeFrames(bytes: Buffer): DecodedFrame[] {
  const frames: DecodedFrame[] = [];
  let p = 0;
  while (p < bytes.length) {
    assert.ok(bytes.length - p >= 2, "truncated frame header in output");
    const b0 = bytes[p]!;
    const b1 = bytes[p + 1]!;
    p += 2;
    let length = b1 & 0x7f;
    let lengthBytes = 0;
    if (length === 126) {
      length = bytes.readUInt16BE(p);
      p += 2;
      lengthBytes = 2;
    } else if (length === 127) {
      length = Number(bytes.readBigUInt64BE(p));
      p += 8;
      lengthBytes = 8;
    }
    const masked = (b1 & 0x80) !== 0;
    let key: Buffer | null = null;
    if (masked) {
      key = Buffer.from(bytes.subarray(p, p + 4));
      p += 4;
    }
    assert.ok(p + length <= bytes.length, "truncated frame payload in output");
    const payload = Buffer.from(bytes.subarray(p, p + length));
    if (key) for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ key[i % 4]!;
    p += length;
    frames.push({
      fin: (b0 & 0x80) !== 0,
      rsv1: (b0 & 0x40) !== 0,
      rsv2: (b0 & 0x20) !== 0,
      rsv3: (b0 & 0x10) !== 0,
      opcode: b0 & 0x0f,
      masked,
      key,
      payload,
      lengthBytes,
    });
  }
  return frames;
}

export interface ExpectedFrame {
  opcode: number;
  payload?: Buffer | string;
  fin?: boolean;
  rsv1?: boolean;
}

/**
 * Decodes what a `role` connection sent and compares it with `expected`. Frames from a
 * client must be masked (with the test key), frames from a server must not be (§5.1).
 */
export function assertSent(
  role: Role,
  output: Buffer,
  expected: readonly ExpectedFrame[],
): DecodedFrame[] {
  const frames = decodeFrames(output);
  assert.equal(
    frames.length,
    expected.length,
    `expected ${expected.length} frames, got ${frames.length}`,
  );
  frames.forEach((frame, i) => {
    const want = expected[i]!;
    assert.equal(frame.opcode, want.opcode, `frame ${i} opcode`);
    assert.equal(frame.fin, want.fin ?? true, `frame ${i} fin`);
    assert.equal(frame.rsv1, want.rsv1 ?? false, `frame ${i} rsv1`);
    assert.equal(frame.rsv2 || frame.rsv3, false, `frame ${i} rsv2/rsv3`);
    assert.equal(frame.masked, role === "client", `frame ${i} mask bit`);
    if (role === "client") assert.deepEqual(frame.key, MASK_KEY, `frame ${i} masking key`);
    if (want.payload !== undefined) {
      const payload = typeof want.payload === "string" ? Buffer.from(want.payload) : want.payload;
      assert.ok(frame.payload.equals(payload), `frame ${i} payload`);
    }
  });
  return frames;
}

/** The close code in a close frame's payload, or undefined for an empty one. */
export function closeCodeOf(frame: DecodedFrame): number | undefined {
  return frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : undefined;
}

// ---- recording a connection -----------------------------------------------------------------

export type ProtocolEvent =
  | { type: "message"; data: Buffer; binary: boolean }
  | { type: "frame"; opcode: number; payload: Buffer; fin: boolean }
  | { type: "ping"; payload: Buffer }
  | { type: "pong"; payload: Buffer }
  | { type: "close"; code: number; reason: string }
  | { type: "error"; closeCode: number; code: string };

export type RecorderOptions = Omit<ConnectionOptions, "role"> & { role: Role };

/** A Connection with every event recorded (payloads copied) and its output drained after each input. */
export class Recorder {
  readonly connection: Connection;
  readonly events: ProtocolEvent[] = [];
  readonly errors: ProtocolError[] = [];
  private readonly chunks: Buffer[] = [];
  /** How many times the connection signalled onOutput. */
  outputSignals = 0;

  constructor(options: RecorderOptions) {
    const events = this.events;
    this.connection = new Connection(
      {
        onMessage: (data, binary) =>
          events.push({ type: "message", data: Buffer.from(data), binary }),
        onFrame: (opcode, payload, fin) =>
          events.push({ type: "frame", opcode, payload: Buffer.from(payload), fin }),
        onPing: (payload) => events.push({ type: "ping", payload: Buffer.from(payload) }),
        onPong: (payload) => events.push({ type: "pong", payload: Buffer.from(payload) }),
        onClose: (code, reason) => events.push({ type: "close", code, reason }),
        onError: (error) => {
          this.errors.push(error);
          events.push({ type: "error", closeCode: error.closeCode, code: error.code });
        },
        onOutput: () => {
          this.outputSignals++;
        },
      },
      { randomFill: fixedMaskFill, ...options },
    );
  }

  /** Feeds one chunk (the connection owns it from now on) and collects the output. */
  receive(chunk: Buffer): void {
    this.connection.receive(chunk);
    this.drain();
  }

  /** Moves queued output into the recorder. */
  drain(): void {
    this.connection.drainOutput((chunk) => this.chunks.push(Buffer.from(chunk)));
  }

  /** Everything sent so far (drains first). */
  output(): Buffer {
    this.drain();
    return Buffer.concat(this.chunks);
  }

  /** Forgets the output collected so far. */
  clearOutput(): void {
    this.drain();
    this.chunks.length = 0;
  }

  get state(): ConnectionState {
    return this.connection.state;
  }
}

// ---- replaying a vector in several ways -----------------------------------------------------

export interface Split {
  name: string;
  /** Lengths of the successive chunks; they sum to the input's length. */
  pieces: number[];
}

const RANDOM_SEEDS = [1, 2, 3, 0x5eed];

/**
 * Random chunk lengths: half of them 1–16 bytes (to split headers, masking keys and code
 * points), half anywhere up to 64 KiB, so that large vectors are cut at random places too.
 */
export function randomPieces(length: number, seed: number): number[] {
  const random = createRandom(seed);
  const pieces: number[] = [];
  const largest = Math.min(length, 1 << 16);
  let left = length;
  while (left > 0) {
    const limit = random() < 0.5 ? Math.min(16, largest) : largest;
    const piece = Math.min(left, 1 + Math.floor(random() * limit));
    pieces.push(piece);
    left -= piece;
  }
  return pieces;
}

/** Whole, byte by byte, and at random split points for several seeds. */
export function splitsFor(length: number, options: { bytewise?: boolean } = {}): Split[] {
  const splits: Split[] = [{ name: "whole", pieces: length === 0 ? [] : [length] }];
  if (options.bytewise !== false)
    splits.push({ name: "byte by byte", pieces: new Array<number>(length).fill(1) });
  for (const seed of RANDOM_SEEDS)
    splits.push({ name: `random split (seed ${seed})`, pieces: randomPieces(length, seed) });
  return splits;
}

/** Feeds a private copy of `input` to `recorder` in the given pieces. */
export function feed(recorder: Recorder, input: Buffer, pieces: readonly number[]): void {
  const copy = Buffer.from(input);
  let offset = 0;
  for (const piece of pieces) {
    recorder.receive(copy.subarray(offset, offset + piece));
    offset += piece;
  }
  assert.equal(offset, input.length, "pieces must cover the input");
}

export interface ReplayOptions {
  /** Skip the byte-by-byte replay (for multi-megabyte vectors). */
  bytewise?: boolean;
  /** Compare event payloads (default true; large vectors compare their own way). */
  compareEvents?: boolean;
}

/**
 * Replays `input` into a fresh connection per split and asserts that events, output and
 * final state are the same every way. Returns the recorder of the whole-buffer replay.
 */
export function replay(
  options: RecorderOptions | (() => RecorderOptions),
  input: Buffer,
  replayOptions: ReplayOptions = {},
): Recorder {
  let reference: Recorder | null = null;
  let referenceOutput: Buffer = Buffer.alloc(0);
  for (const split of splitsFor(input.length, { bytewise: replayOptions.bytewise ?? true })) {
    // A factory gives each replay its own stateful parts (a compressor, for one).
    const recorder = new Recorder(typeof options === "function" ? options() : options);
    feed(recorder, input, split.pieces);
    const output = recorder.output();
    if (reference === null) {
      reference = recorder;
      referenceOutput = output;
      continue;
    }
    if (replayOptions.compareEvents !== false) {
      assert.deepStrictEqual(
        recorder.events,
        reference.events,
        `events differ when fed ${split.name}`,
      );
    } else {
      assert.equal(
        recorder.events.length,
        reference.events.length,
        `event count differs when fed ${split.name}`,
      );
    }
    assert.ok(output.equals(referenceOutput), `output differs when fed ${split.name}`);
    assert.equal(recorder.state, reference.state, `state differs when fed ${split.name}`);
  }
  return reference!;
}

/** Text of a message event, for terse assertions. */
export function messageText(event: ProtocolEvent | undefined): string {
  assert.ok(
    event !== undefined && event.type === "message",
    `expected a message event, got ${JSON.stringify(event)}`,
  );
  return event.data.toString("utf8");
}

/**
 * Asserts that `input`, replayed every way into a `role` connection, fails it with
 * `closeCode`: one error event, the matching close frame last in the output, state Closed,
 * and a valid text frame appended after the offending bytes is never delivered.
 */
export function assertFails(
  role: Role,
  input: Buffer,
  closeCode: number,
  options: Omit<RecorderOptions, "role"> | (() => Omit<RecorderOptions, "role">) = {},
  replayOptions: ReplayOptions = {},
): Recorder {
  const canary = inbound(role, OP.text, "must be ignored");
  const recorder = replay(
    () => ({ ...(typeof options === "function" ? options() : options), role }),
    Buffer.concat([input, canary]),
    replayOptions,
  );
  const errors = recorder.events.filter((event) => event.type === "error");
  assert.equal(errors.length, 1, `expected one error, got ${JSON.stringify(recorder.events)}`);
  assert.deepEqual(recorder.events.at(-1)?.type, "error", "the error is the last event");
  assert.equal(
    (errors[0] as { closeCode: number }).closeCode,
    closeCode,
    "close code of the failure",
  );
  assert.equal(recorder.connection.failure?.closeCode, closeCode);
  assert.ok(
    !recorder.events.some(
      (event) => event.type === "message" && event.data.toString() === "must be ignored",
    ),
    "input after the failure is ignored",
  );
  const frames = decodeFrames(recorder.output());
  const last = frames.at(-1);
  assert.ok(last !== undefined && last.opcode === OP.close, "a close frame is queued");
  assert.equal(closeCodeOf(last), closeCode, "the close frame carries the failure's code");
  assert.ok(last.payload.length <= 125, "close frame fits a control frame");
  assert.equal(last.masked, role === "client");
  assert.equal(recorder.state, ConnectionState.Closed);
  // Still ignored later.
  const eventsBefore = recorder.events.length;
  const outputBefore = recorder.output().length;
  recorder.receive(inbound(role, OP.text, "later"));
  recorder.receive(inbound(role, OP.ping, "later"));
  assert.equal(recorder.events.length, eventsBefore, "no events after the failure");
  assert.equal(recorder.output().length, outputBefore, "no output after the failure");
  return recorder;
}
