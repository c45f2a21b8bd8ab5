import { MessageBoundaryScanner } from "./message-boundaries.js";

/**
 * Feeds what a client reads to its connection in order, and can stop right after a message
 * and hold the rest back for a while.
 *
 * Why: a server may send a message and, in the same TCP read, a frame that breaks the
 * protocol (or its close frame). Parsed in one go, the second would fail (or close) the
 * connection before the application had even seen the first, so its reply could never be
 * sent. A strict peer handles them in order: the application gets the message and may
 * answer it, then the next frame has its effect (RFC 6455 §7.1.7's close 1002/1007 comes
 * after the echo, as the Autobahn|Testsuite's client cases expect).
 *
 * How: the owner calls `hold()` when it has handed a message to a reader that was waiting
 * for it. Input then stays here until the reader asks for more (`release()`) or, if it never
 * does, until the event loop's next turn (`setImmediate`), by which time the reader's
 * synchronous reaction and its promise continuations have run. Holding for one turn at most
 * keeps a client that does not read answering pings and seeing the server's close. A
 * message no reader waits for is queued without a hold: a reader busy elsewhere would not
 * be helped by one. (Parsing strictly on demand would be stricter still, but then a client
 * that never reads would stop answering pings after the first unread message.)
 */
export class PacedInput {
  private readonly feed: (bytes: Buffer) => void;
  private readonly readerWaiting: (() => boolean) | null;
  private readonly scanner: MessageBoundaryScanner | null;
  /** Chunks read and not yet fed, oldest first. */
  private readonly pending: Buffer[] = [];
  private holding = false;
  private draining = false;
  private pumping = false;
  private releaseTimer: NodeJS.Immediate | null = null;

  /**
   * @param feed hands bytes to the connection.
   * @param readerWaiting tells whether the next message will go to a waiting reader, in which
   *   case feeding stops right after it (so that `hold()` can take effect); null when no
   *   message is ever held (frame mode: callbacks run before the next frame is parsed).
   */
  constructor(feed: (bytes: Buffer) => void, readerWaiting: (() => boolean) | null) {
    this.feed = feed;
    this.readerWaiting = readerWaiting;
    this.scanner = readerWaiting === null ? null : new MessageBoundaryScanner();
  }

  /** Bytes read from the socket: fed now, or queued behind held input. */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.pending.push(chunk);
    this.pump();
  }

  /** Holds further input until `release()` or the event loop's next turn. */
  hold(): void {
    if (this.draining) return;
    this.holding = true;
    this.releaseTimer ??= setImmediate(this.release);
  }

  /** Ends a hold and feeds what waited. */
  readonly release = (): void => {
    if (this.releaseTimer !== null) {
      clearImmediate(this.releaseTimer);
      this.releaseTimer = null;
    }
    this.holding = false;
    this.pump();
  };

  /** Feeds everything now and holds nothing from now on (the socket closed: no reply can go out). */
  drain(): void {
    this.draining = true;
    this.release();
  }

  private pump(): void {
    // A reader may call back in (release from a listener) while a chunk is being fed; the
    // loop below then simply goes on.
    if (this.pumping) return;
    this.pumping = true;
    try {
      const pending = this.pending;
      while (!this.holding && pending.length > 0) {
        const chunk = pending[0]!;
        const take =
          this.scanner === null
            ? chunk.length
            : this.scanner.scan(chunk, !this.draining && this.readerWaiting!());
        if (take === chunk.length) {
          pending.shift();
          this.feed(chunk);
        } else {
          pending[0] = chunk.subarray(take);
          this.feed(chunk.subarray(0, take));
        }
      }
    } finally {
      this.pumping = false;
    }
  }
}
