/**
 * A process-wide bound on zlib work running in libuv's thread pool. Every asynchronous
 * inflate or deflate takes a slot for its whole run; the rest wait in order. Without a bound,
 * many clients sending large compressed messages at once would each hold an engine and a
 * growing output buffer, and would occupy every pool thread that file and DNS work need too.
 */
export class JobLimiter {
  /** Jobs allowed to run at once. */
  readonly limit: number;
  private running = 0;
  private highWater = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError("limit must be ≥ 1");
    this.limit = limit;
  }

  /** Jobs running now. */
  get active(): number {
    return this.running;
  }

  /** Jobs waiting for a slot. */
  get queued(): number {
    return this.waiting.length;
  }

  /** The most jobs that ever ran at once. */
  get peak(): number {
    return this.highWater;
  }

  /**
   * Runs `job` when a slot is free (now, or after the jobs queued before it). The job must
   * call the `release` it is given exactly once, when its work is over.
   */
  run(job: (release: () => void) => void): void {
    if (this.running < this.limit) this.start(job);
    else this.waiting.push(() => this.start(job));
  }

  private start(job: (release: () => void) => void): void {
    this.running++;
    if (this.running > this.highWater) this.highWater = this.running;
    let released = false;
    job(() => {
      if (released) return;
      released = true;
      this.running--;
      this.waiting.shift()?.();
    });
  }
}

/**
 * The limiter every `ZlibCompressor` shares: one fewer job than libuv's thread pool has
 * threads (4 unless UV_THREADPOOL_SIZE says otherwise), so file and DNS work always find one.
 */
export const zlibJobs = new JobLimiter(
  Math.max(1, (Number.parseInt(process.env.UV_THREADPOOL_SIZE ?? "", 10) || 4) - 1),
);
