import zlib from "node:zlib";
import type { MessageCompressor } from "../protocol/compression.js";
import type { DeflateParams } from "../protocol/permessage-deflate.js";

/** RFC 7692 §7.2.1: a message's deflate output ends with this empty stored block, which is not sent. */
const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);
const SCRATCH_BYTES = 64 * 1024;
const scratch = Buffer.allocUnsafe(SCRATCH_BYTES);

/** The parts of a node:zlib engine used to run it synchronously with a persistent context. */
interface ZlibHandle {
  writeSync(
    flush: number,
    input: Buffer,
    inOffset: number,
    inLength: number,
    output: Buffer,
    outOffset: number,
    outLength: number,
  ): void;
}
interface ZlibEngine extends zlib.Zlib {
  _handle: ZlibHandle | null;
  _writeState: Uint32Array;
  destroyed: boolean;
  reset(): void;
  close(): void;
  on(event: "error", listener: (error: Error) => void): this;
}

function ignoreError(): void {
  // Errors are detected synchronously through `destroyed`; the async 'error' event is redundant.
}

/**
 * Runs `input` through a zlib engine synchronously, keeping its LZ77 context for the next
 * call (node:zlib's own sync API closes the engine after one call). Output beyond `limit`
 * bytes stops it and returns null, so a decompression bomb costs at most `limit` + 64 KiB.
 */
function runSync(engine: ZlibEngine, input: Buffer, limit: number): Buffer | null {
  const handle = engine._handle;
  if (handle === null) throw new Error("compression context is closed");
  const state = engine._writeState;
  let parts: Buffer[] | null = null;
  let single: Buffer | null = null;
  let total = 0;
  let inOffset = 0;
  let inLength = input.length;
  for (;;) {
    handle.writeSync(
      zlib.constants.Z_SYNC_FLUSH,
      input,
      inOffset,
      inLength,
      scratch,
      0,
      SCRATCH_BYTES,
    );
    if (engine.destroyed || engine._handle === null) throw new Error("invalid deflate data");
    const outLeft = state[0]!;
    const inLeft = state[1]!;
    const produced = SCRATCH_BYTES - outLeft;
    if (produced > 0) {
      total += produced;
      if (total > limit) return null;
      const piece = Buffer.allocUnsafe(produced);
      scratch.copy(piece, 0, 0, produced);
      if (single === null) single = piece;
      else (parts ??= [single]).push(piece);
    }
    inOffset += inLength - inLeft;
    inLength = inLeft;
    // Output space left over means zlib consumed all it could.
    if (outLeft !== 0) break;
  }
  if (parts !== null) return Buffer.concat(parts, total);
  return single ?? Buffer.alloc(0);
}

/** Options for the zlib compressor beyond the negotiated parameters. */
export interface ZlibCompressorOptions {
  /** Messages shorter than this many bytes go uncompressed. Default 1024. */
  threshold?: number;
  /** zlib level 0–9. Default 1. */
  level?: number;
  /** zlib memLevel 1–9. Default 8. */
  memLevel?: number;
}

/**
 * permessage-deflate on node:zlib for one connection. Engines are created on first use, so
 * a connection that negotiated compression but sends little costs little.
 */
export class ZlibCompressor implements MessageCompressor {
  readonly threshold: number;
  private readonly level: number;
  private readonly memLevel: number;
  private readonly ownWindowBits: number;
  private readonly peerWindowBits: number;
  private readonly ownNoContext: boolean;
  private readonly peerNoContext: boolean;
  private deflater: ZlibEngine | null = null;
  private inflater: ZlibEngine | null = null;

  constructor(
    params: DeflateParams,
    role: "server" | "client",
    options: ZlibCompressorOptions = {},
  ) {
    this.threshold = options.threshold ?? 1024;
    this.level = options.level ?? 1;
    this.memLevel = options.memLevel ?? 8;
    const server = role === "server";
    // zlib cannot deflate raw with an 8-bit window; a 9-bit one never reaches back more than
    // 250 bytes (window minus MIN_LOOKAHEAD), so its output inflates within 256 bytes.
    this.ownWindowBits = Math.max(
      9,
      server ? params.serverMaxWindowBits : params.clientMaxWindowBits,
    );
    this.peerWindowBits = server ? params.clientMaxWindowBits : params.serverMaxWindowBits;
    this.ownNoContext = server ? params.serverNoContextTakeover : params.clientNoContextTakeover;
    this.peerNoContext = server ? params.clientNoContextTakeover : params.serverNoContextTakeover;
  }

  decompress(data: Buffer, final: boolean, limit: number): Buffer | null {
    let inflater = this.inflater;
    if (inflater === null) {
      inflater = this.inflater = zlib.createInflateRaw({
        windowBits: this.peerWindowBits,
      }) as unknown as ZlibEngine;
      inflater.on("error", ignoreError);
    }
    const input = final ? Buffer.concat([data, TAIL]) : data;
    const output = runSync(inflater, input, limit);
    // RFC 7692 §7.2.3.4: a peer may end a message with a BFINAL block, which ends the DEFLATE
    // stream; zlib then reads no further (input is left over: at least the tail appended
    // above) and would inflate every later message to nothing. Start a fresh stream.
    const streamEnded = inflater._writeState[1] !== 0;
    if ((final && this.peerNoContext) || streamEnded) inflater.reset();
    return output;
  }

  compress(data: Buffer): Buffer {
    let deflater = this.deflater;
    if (deflater === null) {
      deflater = this.deflater = zlib.createDeflateRaw({
        windowBits: this.ownWindowBits,
        level: this.level,
        memLevel: this.memLevel,
      }) as unknown as ZlibEngine;
      deflater.on("error", ignoreError);
    }
    const output = runSync(deflater, data, Number.POSITIVE_INFINITY)!;
    if (this.ownNoContext) deflater.reset();
    // With no input since the last sync flush zlib writes nothing at all (Z_BUF_ERROR), and an
    // empty payload would leave the peer's inflater inside a stored block that the appended
    // tail only begins. RFC 7692 §7.2.3.6: an empty message is sent as the single byte 00.
    if (output.length === 0) return Buffer.from([0x00]);
    // A sync flush always ends with the empty stored block; drop it (§7.2.1).
    return output.subarray(0, output.length - 4);
  }

  close(): void {
    this.deflater?.close();
    this.inflater?.close();
    this.deflater = null;
    this.inflater = null;
  }
}
