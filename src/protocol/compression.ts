/**
 * A message compressor for one connection (permessage-deflate, RFC 7692). The protocol core
 * calls it synchronously; the zlib implementation lives in the transport layer.
 */
export interface MessageCompressor {
  /**
   * Inflates the next piece of a compressed message. With `final`, the message ends after this
   * piece (the implementation appends the 00 00 FF FF tail, §7.2.2). Returns null when the
   * inflated output would exceed `limit` bytes (a decompression bomb is stopped there, not
   * after). Throws on corrupt data.
   */
  decompress(data: Buffer, final: boolean, limit: number): Buffer | null;
  /** Deflates one whole message and returns the payload without the 00 00 FF FF tail (§7.2.1). */
  compress(data: Buffer): Buffer;
  /** Messages shorter than this many bytes are sent uncompressed. */
  readonly threshold: number;
  /** Releases zlib resources. */
  close(): void;
}
