import assert from "node:assert/strict";
import zlib from "node:zlib";

/**
 * A raw DEFLATE stream (no 00 00 FF FF tail, as permessage-deflate sends it) that inflates
 * to `mebibytes` MiB of zeros, about 1 KB per MiB. Built from one compressed MiB: after the
 * first, every sync-flushed MiB of zeros compresses to the same bytes, so it is repeated
 * instead of compressing 100 MiB for real.
 */
export async function deflatedZeros(mebibytes: number): Promise<Buffer> {
  const deflater = zlib.createDeflateRaw({ level: 9 });
  const segments: Buffer[] = [];
  let current: Buffer[] = [];
  deflater.on("data", (chunk: Buffer) => current.push(chunk));
  const zeros = Buffer.alloc(1 << 20);
  for (let i = 0; i < 3; i++) {
    deflater.write(zeros);
    await new Promise<void>((resolve) =>
      deflater.flush(zlib.constants.Z_SYNC_FLUSH, () => resolve()),
    );
    segments.push(Buffer.concat(current));
    current = [];
  }
  deflater.close();
  const [first, unit, again] = segments as [Buffer, Buffer, Buffer];
  assert.ok(unit.equals(again), "the repeated unit is stable");
  const stream = Buffer.concat([first, ...new Array<Buffer>(mebibytes - 1).fill(unit)]);
  assert.deepEqual(stream.subarray(-4), Buffer.from([0x00, 0x00, 0xff, 0xff]));
  return stream.subarray(0, stream.length - 4);
}

/** Inflates `deflated` (plus the tail) as a stream, counting bytes without keeping them. */
export async function inflatedSize(deflated: Buffer): Promise<number> {
  const inflater = zlib.createInflateRaw({ finishFlush: zlib.constants.Z_SYNC_FLUSH });
  let total = 0;
  inflater.on("data", (chunk: Buffer) => {
    total += chunk.length;
  });
  const ended = new Promise<void>((resolve, reject) => {
    inflater.on("end", () => resolve());
    inflater.on("error", reject);
  });
  inflater.end(Buffer.concat([deflated, Buffer.from([0x00, 0x00, 0xff, 0xff])]));
  await ended;
  return total;
}
