import { constants as bufferConstants } from "node:buffer";
import zlib from "node:zlib";
import type { MessageCompressor } from "../protocol/compression.js";
import type { DeflateParams } from "../protocol/permessage-deflate.js";
import { zlibJobs } from "./zlib-jobs.js";

/** RFC 7692 §7.2.1: a message's deflate output ends with this empty stored block, which is not sent. */
const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);
/** RFC 7692 §7.2.3.6: what an empty message compresses to. */
const EMPTY_MESSAGE = Buffer.from([0x00]);
const EMPTY = Buffer.alloc(0);
const DEFAULT_INLINE_BYTES = 128 * 1024;
/**
 * How much of what we sent earlier a new message may refer back to. zlib hashes the whole
 * dictionary for every message (a fresh engine per message, see below), so a short one keeps
 * small messages cheap while still catching the repeated structure of similar messages.
 */
const DEFLATE_DICTIONARY_BYTES = 4096;
const MAX_CHUNK_BYTES = 64 * 1024;

/** Options for the zlib compressor beyond the negotiated parameters. */
export interface ZlibCompressorOptions {
  /** Messages shorter than this many bytes go uncompressed. Default 1024. */
  threshold?: number;
  /** zlib level 0–9. Default 1. */
  level?: number;
  /** zlib memLevel 1–9. Default 8. */
  memLevel?: number;
  /**
   * Messages larger than this many bytes (compressed or inflated) are deflated and inflated in
   * libuv's thread pool, a bounded number at a time across the process, so one large message
   * does not hold up every other connection. Smaller ones are done at once, on the event loop.
   * Default 128 KiB.
   */
  inlineBytes?: number;
}

/**
 * The last bytes of a stream, kept contiguous: what later messages may refer back to.
 * Replaces a live zlib engine between messages, so an idle connection holds no zlib state.
 */
class History {
  private readonly bytes: Buffer;
  private length = 0;

  constructor(capacity: number) {
    this.bytes = Buffer.allocUnsafe(capacity);
  }

  /** The bytes kept, or undefined when there are none yet (a zlib `dictionary` option). */
  get view(): Buffer | undefined {
    return this.length === 0 ? undefined : this.bytes.subarray(0, this.length);
  }

  push(data: Buffer): void {
    const capacity = this.bytes.length;
    if (data.length >= capacity) {
      data.copy(this.bytes, 0, data.length - capacity);
      this.length = capacity;
      return;
    }
    const keep = Math.min(this.length, capacity - data.length);
    if (keep < this.length) this.bytes.copy(this.bytes, 0, this.length - keep, this.length);
    data.copy(this.bytes, keep);
    this.length = keep + data.length;
  }
}

/** An asynchronous deflate whose result waits for those of the messages before it. */
interface PendingDeflate {
  result: Buffer | Error | null;
  readonly done: (result: Buffer | Error) => void;
}

/**
 * permessage-deflate on node:zlib's public API, for one connection.
 *
 * node:zlib has no public way to run one engine synchronously across messages, so no engine
 * outlives a message: context takeover is kept as plain bytes instead. Each received message
 * is inflated by a fresh engine given the previous output's last window as its dictionary
 * (exactly the inflater's state between messages, §7.2.3.2); each sent message is deflated
 * by a fresh engine given our recent input as its dictionary, whose output any peer's
 * persistent inflater reads as the continuation of its stream. Small messages go through
 * `inflateRawSync`/`deflateRawSync`; large ones through `inflateRaw`/`deflateRaw` in the
 * thread pool (`decompress`/`compress` return undefined for those, see MessageCompressor).
 * A fragmented message's frames are gathered and inflated together with the last one.
 */
export class ZlibCompressor implements MessageCompressor {
  readonly threshold: number;
  private readonly level: number;
  private readonly memLevel: number;
  private readonly inlineBytes: number;
  private readonly ownWindowBits: number;
  private readonly peerWindowBits: number;
  private readonly ownNoContext: boolean;
  private readonly peerNoContext: boolean;
  /** The peer's inflated output (its window's worth), null until needed or without context takeover. */
  private received: History | null = null;
  /** What we deflated lately, null until needed or without context takeover. */
  private sent: History | null = null;
  /** Compressed frames of the message being received, before its last frame. */
  private fragments: Buffer[] = [];
  private fragmentBytes = 0;
  private readonly deflates: PendingDeflate[] = [];
  /** Bumped by close(): results of jobs started before are dropped. */
  private generation = 0;
  /** Set when the peer's data was corrupt: the inflater's context is unknown from then on. */
  private broken = false;

  constructor(
    params: DeflateParams,
    role: "server" | "client",
    options: ZlibCompressorOptions = {},
  ) {
    this.threshold = options.threshold ?? 1024;
    this.level = options.level ?? 1;
    this.memLevel = options.memLevel ?? 8;
    this.inlineBytes = options.inlineBytes ?? DEFAULT_INLINE_BYTES;
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

  decompress(frame: Buffer, final: boolean, limit: number): Buffer | null | undefined {
    this.checkUsable();
    if (!final) return this.gather(frame, limit) ? EMPTY : null;
    if (this.fragmentBytes + frame.length > this.inlineBytes) return undefined;
    const input = this.messageInput(frame);
    // Inflating is cut off at `inlineBytes` of output too: a small frame may inflate to a lot.
    const cap = Math.min(limit, this.inlineBytes);
    let output: Buffer;
    try {
      output = zlib.inflateRawSync(input, this.inflateOptions(cap, frame.length));
    } catch (error) {
      if (!isTooLarge(error)) return this.corrupt(error);
      if (cap < limit) return undefined;
      this.endMessage();
      return null;
    }
    return this.inflatedMessage(output, limit);
  }

  decompressAsync(
    frame: Buffer,
    final: boolean,
    limit: number,
    done: (result: Buffer | null | Error) => void,
  ): void {
    if (this.broken || !final) {
      // Not a job for the thread pool (decompress never hands these out); answered all the same.
      let result: Buffer | null | Error;
      try {
        result = this.decompress(frame, final, limit) ?? null;
      } catch (error) {
        result = error as Error;
      }
      queueMicrotask(() => done(result));
      return;
    }
    const input = this.messageInput(frame);
    const options = this.inflateOptions(limit, MAX_CHUNK_BYTES);
    const generation = this.generation;
    zlibJobs.run((release) => {
      zlib.inflateRaw(input, options, (error, output) => {
        release();
        if (generation !== this.generation) return;
        if (error === null) {
          done(this.inflatedMessage(output, limit));
        } else if (isTooLarge(error)) {
          this.endMessage();
          done(null);
        } else {
          try {
            this.corrupt(error);
          } catch (failure) {
            done(failure as Error);
          }
        }
      });
    });
  }

  compress(data: Buffer): Buffer | undefined {
    if (data.length > this.inlineBytes) return undefined;
    const sent = this.sentHistory();
    const output = zlib.deflateRawSync(data, this.deflateOptions(sent?.view, data.length));
    sent?.push(data);
    return withoutTail(output);
  }

  compressAsync(data: Buffer, done: (result: Buffer | Error) => void): void {
    const sent = this.sentHistory();
    // The dictionary is what was sent before this message, whatever is sent while it runs.
    const before = sent?.view;
    const options = this.deflateOptions(before && Buffer.from(before), MAX_CHUNK_BYTES);
    sent?.push(data);
    const pending: PendingDeflate = { result: null, done };
    this.deflates.push(pending);
    const generation = this.generation;
    zlibJobs.run((release) => {
      zlib.deflateRaw(data, options, (error, output) => {
        release();
        if (generation !== this.generation) return;
        pending.result = error ?? withoutTail(output);
        this.deliverDeflates();
      });
    });
  }

  close(): void {
    this.generation++;
    this.received = null;
    this.sent = null;
    this.deflates.length = 0;
    this.broken = false;
    this.endMessage();
  }

  // ---- internals ----------------------------------------------------------------------

  private checkUsable(): void {
    if (this.broken) throw new Error("compressed stream is broken by earlier corrupt data");
  }

  /** Keeps a non-final frame; false when the message's compressed size is past any honest one. */
  private gather(frame: Buffer, limit: number): boolean {
    this.fragmentBytes += frame.length;
    // Deflate expands incompressible data by a few bytes per 16 KiB block at most.
    if (this.fragmentBytes > limit + (limit >>> 4) + 1024) {
      this.endMessage();
      return false;
    }
    this.fragments.push(frame);
    return true;
  }

  /** The whole message's compressed bytes with the tail appended (§7.2.2). */
  private messageInput(last: Buffer): Buffer {
    if (this.fragments.length === 0) return Buffer.concat([last, TAIL]);
    return Buffer.concat([...this.fragments, last, TAIL]);
  }

  private endMessage(): void {
    this.fragments = [];
    this.fragmentBytes = 0;
  }

  private inflatedMessage(output: Buffer, limit: number): Buffer | null {
    this.endMessage();
    if (output.length > limit) return null;
    if (!this.peerNoContext) {
      this.received ??= new History(1 << this.peerWindowBits);
      this.received.push(output);
    }
    return output;
  }

  private corrupt(error: unknown): never {
    this.endMessage();
    this.broken = true;
    throw new Error(`invalid deflate data (${(error as Error).message})`);
  }

  private inflateOptions(maxOutput: number, inputBytes: number): zlib.ZlibOptions {
    return {
      windowBits: this.peerWindowBits,
      dictionary: this.received?.view,
      finishFlush: zlib.constants.Z_SYNC_FLUSH,
      // zlib's bound is "more than", and must be at least 1; an empty message is never over.
      maxOutputLength: Math.max(1, Math.min(maxOutput, bufferConstants.MAX_LENGTH)),
      chunkSize: clampChunk(inputBytes * 4),
    };
  }

  private sentHistory(): History | null {
    if (this.ownNoContext) return null;
    return (this.sent ??= new History(Math.min(DEFLATE_DICTIONARY_BYTES, 1 << this.ownWindowBits)));
  }

  private deflateOptions(dictionary: Buffer | undefined, inputBytes: number): zlib.ZlibOptions {
    return {
      windowBits: this.ownWindowBits,
      level: this.level,
      memLevel: this.memLevel,
      dictionary,
      finishFlush: zlib.constants.Z_SYNC_FLUSH,
      chunkSize: clampChunk(inputBytes + 64),
    };
  }

  /** Hands finished deflates over in the order they were started. */
  private deliverDeflates(): void {
    const deflates = this.deflates;
    while (deflates.length > 0 && deflates[0]!.result !== null) {
      const head = deflates.shift()!;
      head.done(head.result!);
    }
  }
}

function clampChunk(bytes: number): number {
  return Math.max(1024, Math.min(MAX_CHUNK_BYTES, bytes));
}

function isTooLarge(error: unknown): boolean {
  return (error as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE";
}

/** A sync flush ends with the empty stored block; drop it (§7.2.1). An empty message is 00. */
function withoutTail(output: Buffer): Buffer {
  const end = output.length - 4;
  return end > 0 ? output.subarray(0, end) : EMPTY_MESSAGE;
}
