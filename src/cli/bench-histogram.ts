/**
 * The latency histogram of `moonsocket bench`, bucket for bucket the one of wsload
 * (`/work/shared/tools/wsload`), so that both tools print the same percentiles for the same
 * samples: exact below 2048 µs, then 1024 sub-buckets per power of two (about 0.1 %
 * resolution), up to 2^40 µs. A percentile is reported as the lower edge of its bucket.
 *
 * @module
 */

const EXACT = 2048;
const SUB_BUCKETS = 1024;
const OCTAVES = 31;
const BUCKETS = EXACT + OCTAVES * SUB_BUCKETS;
const LARGEST = 2 ** 40 - 1;

/** A histogram's state as plain data (structured-clonable). */
export interface HistogramSnapshot {
  readonly buckets: Float64Array;
  readonly count: number;
  readonly max: number;
}

/** A fixed-size histogram of durations in whole microseconds. Recording never allocates. */
export class LatencyHistogram {
  private readonly buckets = new Float64Array(BUCKETS);
  private total = 0;
  private largest = 0;

  /** Number of samples recorded. */
  get count(): number {
    return this.total;
  }

  /** Largest sample recorded, in µs (exact, not bucketed); 0 when empty. */
  get max(): number {
    return this.largest;
  }

  /**
   * Records one duration in microseconds. Fractions are truncated, negative values count as 0
   * and values from 2^40 µs (about 12.7 days) on are clamped.
   */
  record(us: number): void {
    let value = us > 0 ? Math.floor(us) : 0;
    if (value > LARGEST) value = LARGEST;
    this.buckets[findBucket(value)]! += 1;
    this.total += 1;
    if (value > this.largest) this.largest = value;
  }

  /** Adds every sample of `other` to this histogram. */
  merge(other: LatencyHistogram): void {
    for (let i = 0; i < BUCKETS; i++) this.buckets[i]! += other.buckets[i]!;
    this.total += other.total;
    if (other.largest > this.largest) this.largest = other.largest;
  }

  /** The raw state, to send to another thread ({@link mergeSnapshot} takes it back). */
  snapshot(): HistogramSnapshot {
    return { buckets: this.buckets.slice(), count: this.total, max: this.largest };
  }

  /** Adds the samples of a {@link snapshot} (from another thread) to this histogram. */
  mergeSnapshot(snapshot: HistogramSnapshot): void {
    const { buckets } = snapshot;
    for (let i = 0; i < BUCKETS; i++) this.buckets[i]! += buckets[i] ?? 0;
    this.total += snapshot.count;
    if (snapshot.max > this.largest) this.largest = snapshot.max;
  }

  /** Forgets every sample. */
  reset(): void {
    this.buckets.fill(0);
    this.total = 0;
    this.largest = 0;
  }

  /**
   * The `q` quantile (0 < q ≤ 1) in µs: the lower edge of the bucket holding the
   * ⌈q·count⌉-th smallest sample, exactly as wsload computes it. 0 when empty.
   */
  percentile(q: number): number {
    if (this.total === 0) return 0;
    // wsload: want = (uint64_t)(q * n + 0.999999), i.e. a ceiling that tolerates rounding.
    const want = Math.max(1, Math.floor(q * this.total + 0.999999));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.buckets[i]!;
      if (seen >= want) return findLowerEdge(i);
    }
    return this.largest;
  }
}

/** Index of the bucket that holds `us` (a whole number from 0 to 2^40 − 1). */
export function findBucket(us: number): number {
  if (us < EXACT) return us;
  let e: number;
  if (us < 2 ** 32) {
    // e such that us >> e lies in [1024, 2047].
    e = 31 - Math.clz32(us) - 10;
    return EXACT + (e - 1) * SUB_BUCKETS + ((us >>> e) - SUB_BUCKETS);
  }
  // Beyond 32 bits (over an hour): no bit operators; correct Math.log2's rounding at powers of two.
  e = Math.floor(Math.log2(us)) - 10;
  while (Math.floor(us / 2 ** e) >= 2 * SUB_BUCKETS) e++;
  while (Math.floor(us / 2 ** e) < SUB_BUCKETS) e--;
  return EXACT + (e - 1) * SUB_BUCKETS + (Math.floor(us / 2 ** e) - SUB_BUCKETS);
}

/** The smallest value that falls into bucket `index`, in µs. */
export function findLowerEdge(index: number): number {
  if (index < EXACT) return index;
  const e = Math.floor((index - EXACT) / SUB_BUCKETS) + 1;
  const sub = (index - EXACT) % SUB_BUCKETS;
  return (SUB_BUCKETS + sub) * 2 ** e;
}
