/**
 * A message compressor for one connection (permessage-deflate, RFC 7692). The protocol core
 * calls the synchronous methods only; the zlib implementation lives in the transport layer.
 *
 * Work that would stall the event loop (a large message) is not done inline: `decompress` and
 * `compress` return `undefined` instead, the connection hands the job to its transport
 * (`ConnectionEvents.onInflate`/`onDeflate`), which runs it with the asynchronous methods and
 * hands the result back (`Connection.inflated`/`deflated`). The core itself stays synchronous.
 */
export interface MessageCompressor {
  /**
   * Inflates the next frame of a compressed message. With `final`, the message ends with this
   * frame (the implementation appends the 00 00 FF FF tail, §7.2.2). Returns the output (an
   * implementation may return nothing for a non-final frame and the whole message with the
   * final one), null when the inflated message would exceed `limit` bytes (a decompression
   * bomb is stopped there, not after), or undefined when the frame is to be inflated with
   * `decompressAsync`. Throws on corrupt data.
   */
  decompress(frame: Buffer, final: boolean, limit: number): Buffer | null | undefined;
  /** Finishes a `decompress` that returned undefined: calls `done` once, later, with its result or error. */
  decompressAsync(
    frame: Buffer,
    final: boolean,
    limit: number,
    done: (result: Buffer | null | Error) => void,
  ): void;
  /**
   * Deflates one whole message and returns the payload without the 00 00 FF FF tail (§7.2.1),
   * or undefined when it is to be deflated with `compressAsync`.
   */
  compress(data: Buffer): Buffer | undefined;
  /**
   * Finishes a `compress` that returned undefined: calls `done` once, later. Results come back
   * in the order the messages were given to `compress`.
   */
  compressAsync(data: Buffer, done: (result: Buffer | Error) => void): void;
  /** Messages shorter than this many bytes are sent uncompressed. */
  readonly threshold: number;
  /** Releases what the compressor holds; pending asynchronous results are dropped. */
  close(): void;
}
