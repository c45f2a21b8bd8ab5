/**
 * The CPU budget of a Lua entry, measured in CPU time of the thread that runs Lua, not in
 * wall-clock time: on a loaded machine a script is neither stopped early (while it waits for a
 * core, its budget does not run) nor given more than it was allowed.
 */
import { closeSync, openSync, readSync } from "node:fs";

/** The calling thread's CPU time in milliseconds; see {@link threadCpuTimeMs}. */
type CpuClock = () => number;

let schedstatFd: number | undefined;
const schedstatBuffer = Buffer.alloc(64);

/**
 * CPU time consumed by the calling thread, in milliseconds, from an arbitrary origin.
 *
 * On Linux it is the first field of `/proc/thread-self/schedstat` (nanoseconds on the CPU),
 * read with one `pread` on a descriptor kept open per thread (~2 µs). Elsewhere, or if that
 * file is missing (a kernel without scheduler statistics), the process's CPU time
 * (`process.cpuUsage()`), which also counts Node's helper threads (garbage collection, the
 * thread pool): a budget may then run out a little before the script's own CPU time does.
 */
export function threadCpuTimeMs(): number {
  if (schedstatFd === undefined) schedstatFd = openSchedstat();
  if (schedstatFd >= 0) {
    const ns = readLeadingInteger(schedstatFd);
    if (ns >= 0) return ns / 1e6;
    closeSync(schedstatFd);
    schedstatFd = -1;
  }
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

function openSchedstat(): number {
  if (process.platform !== "linux") return -1;
  try {
    // `thread-self` resolves when the file is opened: the descriptor stays bound to this thread.
    // Module state is per thread (worker threads load their own copy), and so is this descriptor.
    const fd = openSync("/proc/thread-self/schedstat", "r");
    if (readLeadingInteger(fd) >= 0) return fd;
    closeSync(fd);
    return -1;
  } catch {
    return -1;
  }
}

/** The decimal integer at the start of the file, or -1 if there is none. */
function readLeadingInteger(fd: number): number {
  let length: number;
  try {
    length = readSync(fd, schedstatBuffer, 0, schedstatBuffer.length, 0);
  } catch {
    return -1;
  }
  let value = 0;
  let digits = 0;
  for (let i = 0; i < length; i++) {
    const c = schedstatBuffer[i]!;
    if (c < 0x30 || c > 0x39) break;
    value = value * 10 + (c - 0x30);
    digits++;
  }
  return digits > 0 ? value : -1;
}

/**
 * One entry's CPU budget. It starts on its first check, so entries too short to be checked cost
 * nothing. A check reads the wall clock (~0.1 µs); the CPU clock is read only when the wall
 * clock says the budget may be spent: a thread cannot use more CPU time than the time that has
 * passed, so until then it cannot have.
 */
export class CpuBudget {
  /** CPU time at the start, in ms; NaN while not started. */
  private cpuStart = Number.NaN;
  /** Wall-clock time before which the budget cannot be spent, in ms (`performance.now()`). */
  private wallCheckAt = 0;

  /**
   * @param budgetMs CPU milliseconds an entry may use.
   * @param clock the CPU clock, in ms (tests pass their own).
   */
  constructor(
    readonly budgetMs: number,
    private readonly clock: CpuClock = threadCpuTimeMs,
  ) {}

  /** Whether the budget has been started since the last {@link reset}. */
  get started(): boolean {
    return !Number.isNaN(this.cpuStart);
  }

  /** Forgets the running budget: the next check starts a new one. */
  reset(): void {
    this.cpuStart = Number.NaN;
  }

  /** Starts a new budget now. */
  start(): void {
    this.cpuStart = this.clock();
    this.wallCheckAt = performance.now() + this.budgetMs;
  }

  /** True once the CPU time since the start reaches the budget; starts it if not started. */
  isSpent(): boolean {
    if (!this.started) {
      this.start();
      return false;
    }
    const now = performance.now();
    if (now < this.wallCheckAt) return false;
    const used = this.clock() - this.cpuStart;
    if (used >= this.budgetMs) return true;
    this.wallCheckAt = now + (this.budgetMs - used);
    return false;
  }

  /** CPU milliseconds left (0 when spent); starts the budget if not started. */
  leftMs(): number {
    if (!this.started) this.start();
    return Math.max(0, this.budgetMs - (this.clock() - this.cpuStart));
  }
}
