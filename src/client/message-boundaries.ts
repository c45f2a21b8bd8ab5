/** Largest frame header: 2 bytes, an 8-byte length, a 4-byte masking key (RFC 6455 §5.2). */
const MAX_HEADER_BYTES = 14;

/**
 * Finds where messages end in a stream of frames, without checking anything: just enough of
 * RFC 6455 §5.2 (header size, payload length, FIN, opcode) to know where a data frame with
 * FIN set ends. A connection's own parser does all the validating; this only says where to
 * stop feeding it. Bytes past a malformed header are counted as if the header were good:
 * the parser fails the connection there, so where they go no longer matters.
 */
export class MessageBoundaryScanner {
  private readonly header = Buffer.alloc(MAX_HEADER_BYTES);
  private headerHave = 0;
  /** Payload bytes of the current frame still to come; 0 between frames. */
  private remaining = 0;
  /** Whether the current frame, once complete, ends a message. */
  private endsMessage = false;

  /**
   * Advances over the start of `chunk` and returns how many of its bytes it covered: all of
   * them, or with `stopAtMessageEnd` only those up to the end of the first message that
   * ends in `chunk`. The caller continues with the rest of `chunk` in a later call.
   */
  scan(chunk: Buffer, stopAtMessageEnd: boolean): number {
    const end = chunk.length;
    let offset = 0;
    while (offset < end) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, end - offset);
        offset += take;
        this.remaining -= take;
        if (this.remaining === 0 && this.endsMessage && stopAtMessageEnd) return offset;
        continue;
      }
      offset = this.readHeader(chunk, offset);
      if (this.headerHave > 0) continue;
      // A whole header was read: an empty frame is complete at once.
      if (this.remaining === 0 && this.endsMessage && stopAtMessageEnd) return offset;
    }
    return end;
  }

  /** Gathers header bytes from `offset`; when the header is complete, starts its frame. */
  private readHeader(chunk: Buffer, offset: number): number {
    const header = this.header;
    while (this.headerHave < 2 && offset < chunk.length)
      header[this.headerHave++] = chunk[offset++]!;
    if (this.headerHave < 2) return offset;
    const needed = headerSize(header[1]!);
    while (this.headerHave < needed && offset < chunk.length)
      header[this.headerHave++] = chunk[offset++]!;
    if (this.headerHave < needed) return offset;
    this.headerHave = 0;
    const lengthField = header[1]! & 0x7f;
    this.remaining =
      lengthField === 126
        ? header.readUInt16BE(2)
        : lengthField === 127
          ? header.readUInt32BE(2) * 0x1_0000_0000 + header.readUInt32BE(6)
          : lengthField;
    const fin = (header[0]! & 0x80) !== 0;
    const opcode = header[0]! & 0x0f;
    // Opcodes below 8 are data frames (§5.2); control frames never end a message.
    this.endsMessage = fin && opcode < 8;
    return offset;
  }
}

/** Total header size (2–14 bytes) given the second header byte. */
function headerSize(b1: number): number {
  const length = b1 & 0x7f;
  const extended = length === 126 ? 2 : length === 127 ? 8 : 0;
  return 2 + extended + (b1 & 0x80 ? 4 : 0);
}
