/** Frames smaller than this are copied into a shared slab so that many fit in one socket write. */
export const SMALL_FRAME_BYTES = 16 * 1024;
const SLAB_BYTES = 64 * 1024;

let slab = Buffer.allocUnsafe(SLAB_BYTES);
let slabOffset = 0;

/**
 * Bytes waiting to be written to one connection's transport. Small frames are written
 * back to back into a process-wide slab (the way Node's own Buffer pool works: a region once
 * handed out is never reused), so a burst of frames to one peer becomes one contiguous chunk
 * and one write, with no allocation per frame. Large payloads are queued by reference.
 */
export class OutputQueue {
  private chunks: Buffer[] = [];
  private runSlab: Buffer | null = null;
  private runStart = 0;
  private runEnd = 0;
  /** Bytes queued and not yet drained. */
  bytes = 0;

  /** The buffer that the last `reserve` handed out. */
  reserved: Buffer = slab;

  /**
   * Reserves `length` contiguous bytes for the caller to fill: they are `reserved[offset,
   * offset + length)`, with the returned offset. Valid until the next call into this module.
   */
  reserve(length: number): number {
    if (length > SLAB_BYTES - slabOffset) {
      if (length > SLAB_BYTES / 4) {
        const own = Buffer.allocUnsafe(length);
        this.closeRun();
        this.chunks.push(own);
        this.bytes += length;
        this.reserved = own;
        return 0;
      }
      slab = Buffer.allocUnsafe(SLAB_BYTES);
      slabOffset = 0;
    }
    if (this.runSlab !== slab || this.runEnd !== slabOffset) {
      this.closeRun();
      this.runSlab = slab;
      this.runStart = slabOffset;
    }
    const offset = slabOffset;
    slabOffset += length;
    this.runEnd = slabOffset;
    this.bytes += length;
    this.reserved = slab;
    return offset;
  }

  /** Queues `chunk` by reference (it must not be modified until written). */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.closeRun();
    this.chunks.push(chunk);
    this.bytes += chunk.length;
  }

  /** True when nothing is waiting. */
  isEmpty(): boolean {
    return this.bytes === 0;
  }

  /** Hands every queued chunk to `write`, in order, and empties the queue. */
  drain(write: (chunk: Buffer) => void): void {
    if (this.bytes === 0) return;
    this.bytes = 0;
    const chunks = this.chunks;
    if (chunks.length === 0 && this.runSlab !== null) {
      // The common case (small frames only): one run of the slab, written without an array.
      const run = this.runSlab.subarray(this.runStart, this.runEnd);
      this.runSlab = null;
      write(run);
      return;
    }
    this.closeRun();
    this.chunks = [];
    for (let i = 0; i < chunks.length; i++) write(chunks[i]!);
  }

  /** Drains into one buffer (tests and callers that want a single chunk). */
  take(): Buffer {
    const parts: Buffer[] = [];
    this.drain((chunk) => parts.push(chunk));
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  private closeRun(): void {
    if (this.runSlab !== null) {
      if (this.runEnd > this.runStart)
        this.chunks.push(this.runSlab.subarray(this.runStart, this.runEnd));
      this.runSlab = null;
    }
  }
}
