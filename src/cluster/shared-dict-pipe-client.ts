/**
 * A worker's side of the shared dictionaries of `--workers N`: every call is one blocking round
 * trip to the primary process over the worker's FIFO pair (see shared-dict-pipe-server.ts for why
 * FIFOs and what a call costs). The worker's event loop is blocked for that round trip, as an
 * nginx worker is while it holds the shared zone's lock.
 *
 * @module
 */

import { closeSync, constants, openSync, readSync, writeSync } from "node:fs";
import {
  decodeFrameBody,
  encodeFrame,
  FRAME_HEADER_BYTES,
  type SharedDictReply,
} from "./shared-dict-frames.js";
import type { SharedDictChannel } from "./shared-dict-pipe-server.js";
import {
  SharedDictError,
  type SharedDictOp,
  type SharedDictResult,
  type SharedDictStore,
  type SharedDictValue,
} from "./shared-dict-store.js";

/** A synchronous pause without a busy loop (the request pipe is full: the primary is behind). */
const PAUSE = new Int32Array(new SharedArrayBuffer(4));

/** The {@link SharedDictStore} of a worker process. */
export class PipeSharedDictStore implements SharedDictStore {
  readonly #requestFd: number;
  readonly #responseFd: number;
  readonly #header = Buffer.alloc(FRAME_HEADER_BYTES);
  #closed = false;

  /**
   * Opens the worker's FIFO pair. Synchronous.
   * @throws {SharedDictError} if the primary is not serving them.
   */
  constructor(channel: SharedDictChannel) {
    try {
      // Non-blocking open for writing fails at once (ENXIO) when nobody serves the pipe, instead
      // of hanging; the reply pipe is opened blocking, so that reading it waits for the answer.
      this.#requestFd = openSync(channel.requestPath, constants.O_WRONLY | constants.O_NONBLOCK);
      this.#responseFd = openSync(channel.responsePath, constants.O_RDONLY);
    } catch (error) {
      throw new SharedDictError(
        `cannot open the shared dictionaries' pipes (${describe(error)}): is the primary process running?`,
        { cause: error },
      );
    }
  }

  call(dict: string, op: SharedDictOp, args: readonly SharedDictValue[]): SharedDictResult {
    if (this.#closed) throw new SharedDictError("the shared dictionary store is closed");
    this.#writeAll(encodeFrame([dict, op, args]));
    this.#readExactly(this.#header);
    const body = Buffer.allocUnsafe(this.#header.readUInt32BE(0));
    this.#readExactly(body);
    const reply = decodeFrameBody<SharedDictReply>(body);
    if ("error" in reply) throw new SharedDictError(reply.error);
    return reply.ok;
  }

  /** Closes the pipes; later calls throw. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeSync(this.#requestFd);
    closeSync(this.#responseFd);
  }

  #writeAll(frame: Buffer): void {
    let offset = 0;
    while (offset < frame.length) {
      try {
        offset += writeSync(this.#requestFd, frame, offset);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "EAGAIN") {
          Atomics.wait(PAUSE, 0, 0, 1);
          continue;
        }
        throw this.#gone(error);
      }
    }
  }

  #readExactly(into: Buffer): void {
    let offset = 0;
    while (offset < into.length) {
      let n: number;
      try {
        n = readSync(this.#responseFd, into, offset, into.length - offset, null);
      } catch (error) {
        throw this.#gone(error);
      }
      if (n === 0) throw this.#gone(new Error("end of file"));
      offset += n;
    }
  }

  #gone(cause: unknown): SharedDictError {
    return new SharedDictError(
      `the shared dictionaries' primary process is gone (${describe(cause)})`,
      { cause },
    );
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
