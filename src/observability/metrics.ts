/**
 * A tiny Prometheus registry: counters and gauges rendered in the text exposition format 0.0.4.
 *
 * Hot paths hold a pre-resolved metric (or labelled child) and call `inc()`, which is a plain
 * number add: no allocation, no map lookup. Everything else (label resolution, rendering) is
 * done once or at scrape time.
 *
 * @example
 * ```ts
 * const registry = new MetricsRegistry();
 * const messages = registry.counter({ name: "moonsocket_messages_received_total", help: "Messages received." });
 * const closes = registry.counter({ name: "moonsocket_closes_total", help: "Closes by reason.", labelNames: ["reason"] });
 * const tooBig = closes.labels({ reason: "message_too_big" }); // resolve once, at startup
 * registry.gauge({ name: "moonsocket_connections", help: "Open connections.", collect: () => clients.size });
 * messages.inc();
 * tooBig.inc();
 * res.setHeader("Content-Type", PROMETHEUS_CONTENT_TYPE).end(registry.render());
 * ```
 *
 * @module
 */

/** The `Content-Type` to send with {@link MetricsRegistry.render}'s output on `/metrics`. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Label names to label values, e.g. `{ reason: "too_big" }`. */
export type Labels = Readonly<Record<string, string>>;

/** What every metric needs: a name, a help text and, optionally, the label names it uses. */
export interface MetricOptions {
  /** Metric name, matching `[a-zA-Z_:][a-zA-Z0-9_:]*`; counters conventionally end in `_total`. */
  readonly name: string;
  /** One line saying what is measured and in which unit (bytes, seconds…). */
  readonly help: string;
  /**
   * The label names that {@link Counter.labels} / {@link Gauge.labels} accept, each matching
   * `[a-zA-Z_][a-zA-Z0-9_]*` and not starting with `__`. Default: none.
   */
  readonly labelNames?: readonly string[];
}

/** Options of {@link MetricsRegistry.gauge}. */
export interface GaugeOptions extends MetricOptions {
  /**
   * Evaluated at every scrape to give the unlabelled value, instead of `set`/`inc`/`dec`.
   * If it throws or returns a non-number, the sample is left out of that scrape (the rest of
   * the page is still rendered: one broken callback must not hide every other metric).
   */
  readonly collect?: () => number;
}

/** Thrown for programming errors: invalid names, duplicate names, wrong labels, negative counts. */
export class MetricsError extends Error {
  override readonly name = "MetricsError";
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A labelled series of a {@link Counter}; keep it and call `inc()` on the hot path. */
export class CounterChild {
  /** The current value. Read it freely; change it only through {@link CounterChild.inc}. */
  value = 0;

  /** @internal Pre-rendered `{a="b"}` part of the sample line. */
  constructor(readonly labelText: string) {}

  /**
   * Adds `n` (default 1) to the counter. A plain number add with no allocation.
   * @throws {MetricsError} if `n` is negative or NaN (counters only go up).
   */
  inc(n = 1): void {
    if (!(n >= 0)) throw new MetricsError(`counter increment must be >= 0, got ${n}`);
    this.value += n;
  }
}

/** A labelled series of a {@link Gauge}; keep it and call `set`/`inc`/`dec` on the hot path. */
export class GaugeChild {
  /** The current value. */
  value = 0;

  /** @internal Pre-rendered `{a="b"}` part of the sample line. */
  constructor(readonly labelText: string) {}

  /** Sets the gauge to `v`. */
  set(v: number): void {
    this.value = v;
  }

  /** Adds `n` (default 1). */
  inc(n = 1): void {
    this.value += n;
  }

  /** Subtracts `n` (default 1). */
  dec(n = 1): void {
    this.value -= n;
  }
}

/** Shared by counters and gauges: name checks and resolution of labelled children. */
abstract class Metric<Child extends { readonly labelText: string; value: number }> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  /** Keyed by the label values in `labelNames` order, joined by NUL (not valid in a name). */
  readonly #children = new Map<string, Child>();

  constructor(options: MetricOptions) {
    if (!METRIC_NAME.test(options.name)) {
      throw new MetricsError(`invalid metric name ${JSON.stringify(options.name)}`);
    }
    const labelNames = options.labelNames ?? [];
    for (const label of labelNames) {
      if (!LABEL_NAME.test(label) || label.startsWith("__")) {
        throw new MetricsError(`invalid label name ${JSON.stringify(label)} on ${options.name}`);
      }
    }
    if (new Set(labelNames).size !== labelNames.length) {
      throw new MetricsError(`duplicate label name on ${options.name}`);
    }
    this.name = options.name;
    this.help = options.help;
    this.labelNames = [...labelNames];
  }

  /** The Prometheus type word for `# TYPE`. */
  abstract readonly type: "counter" | "gauge";

  protected abstract createChild(labelText: string): Child;

  /**
   * Returns the child series for these label values, creating it on first use. Call it once
   * (at startup or on the cold path) and keep the child: it allocates and looks up a map.
   * @throws {MetricsError} if the keys are not exactly the metric's `labelNames`.
   */
  labels(labels: Labels): Child {
    const keys = Object.keys(labels);
    if (
      keys.length !== this.labelNames.length ||
      !keys.every((key) => this.labelNames.includes(key))
    ) {
      throw new MetricsError(
        `${this.name} takes labels {${this.labelNames.join(", ")}}, got {${keys.join(", ")}}`,
      );
    }
    const values = this.labelNames.map((name) => labels[name] ?? "");
    const key = values.join("\0");
    let child = this.#children.get(key);
    if (child === undefined) {
      const pairs = this.labelNames.map((name, i) => `${name}="${escapeLabelValue(values[i]!)}"`);
      child = this.createChild(`{${pairs.join(",")}}`);
      this.#children.set(key, child);
    }
    return child;
  }

  /** @internal Appends this metric's family to `out`. */
  renderInto(out: string[]): void {
    out.push(
      `# HELP ${this.name} ${escapeHelp(this.help)}\n`,
      `# TYPE ${this.name} ${this.type}\n`,
    );
    const own = this.ownValue();
    if (own !== undefined) out.push(`${this.name} ${formatValue(own)}\n`);
    for (const child of this.#children.values()) {
      out.push(`${this.name}${child.labelText} ${formatValue(child.value)}\n`);
    }
  }

  /** The unlabelled sample's value, or undefined to leave it out. */
  protected abstract ownValue(): number | undefined;
}

/**
 * A monotonically increasing count (messages, bytes, errors). Without labels use `inc()` directly;
 * with `labelNames`, resolve children once with {@link Counter.labels}.
 */
export class Counter extends Metric<CounterChild> {
  readonly type = "counter";
  /** The unlabelled value. Read it freely; change it only through {@link Counter.inc}. */
  value = 0;

  /**
   * Adds `n` (default 1) to the unlabelled counter. A plain number add with no allocation.
   * @throws {MetricsError} if `n` is negative or NaN (counters only go up).
   */
  inc(n = 1): void {
    if (!(n >= 0)) throw new MetricsError(`counter increment must be >= 0, got ${n}`);
    this.value += n;
  }

  protected createChild(labelText: string): CounterChild {
    return new CounterChild(labelText);
  }

  protected ownValue(): number | undefined {
    // A counter declared with labels shows its unlabelled series only if someone used it, so
    // the page does not carry a meaningless `name 0` next to the labelled series.
    return this.labelNames.length === 0 || this.value !== 0 ? this.value : undefined;
  }
}

/**
 * A value that goes up and down (open connections, buffered bytes). Either `set`/`inc`/`dec` it,
 * or give a `collect` callback that is evaluated at scrape time.
 */
export class Gauge extends Metric<GaugeChild> {
  readonly type = "gauge";
  /** The unlabelled value (ignored when a `collect` callback was given). */
  value = 0;
  readonly #collect: (() => number) | undefined;

  constructor(options: GaugeOptions) {
    super(options);
    this.#collect = options.collect;
  }

  /** Sets the unlabelled gauge to `v`. */
  set(v: number): void {
    this.value = v;
  }

  /** Adds `n` (default 1) to the unlabelled gauge. */
  inc(n = 1): void {
    this.value += n;
  }

  /** Subtracts `n` (default 1) from the unlabelled gauge. */
  dec(n = 1): void {
    this.value -= n;
  }

  protected createChild(labelText: string): GaugeChild {
    return new GaugeChild(labelText);
  }

  protected ownValue(): number | undefined {
    if (this.#collect !== undefined) {
      try {
        const v = this.#collect();
        return typeof v === "number" ? v : undefined;
      } catch {
        return undefined;
      }
    }
    return this.labelNames.length === 0 || this.value !== 0 ? this.value : undefined;
  }
}

/** Holds metrics by name and renders them all for `/metrics`. */
export class MetricsRegistry {
  readonly #metrics = new Map<string, Counter | Gauge>();

  /**
   * Creates and registers a counter.
   * @throws {MetricsError} if the name or a label name is invalid or the name is already taken.
   */
  counter(options: MetricOptions): Counter {
    return this.#add(new Counter(options));
  }

  /**
   * Creates and registers a gauge.
   * @throws {MetricsError} if the name or a label name is invalid or the name is already taken.
   */
  gauge(options: GaugeOptions): Gauge {
    return this.#add(new Gauge(options));
  }

  /** Returns the metric registered under `name`, if any. */
  get(name: string): Counter | Gauge | undefined {
    return this.#metrics.get(name);
  }

  /**
   * Renders every metric in the Prometheus text exposition format 0.0.4, in registration order:
   * one `# HELP` and `# TYPE` per name, then its samples; the text ends with a newline.
   * Serve it with {@link PROMETHEUS_CONTENT_TYPE}.
   */
  render(): string {
    const out: string[] = [];
    for (const metric of this.#metrics.values()) metric.renderInto(out);
    return out.join("");
  }

  #add<M extends Counter | Gauge>(metric: M): M {
    if (this.#metrics.has(metric.name)) {
      throw new MetricsError(`metric ${metric.name} is already registered`);
    }
    this.#metrics.set(metric.name, metric);
    return metric;
  }
}

/** Exposition format: HELP text escapes `\` and newline. */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** Exposition format: label values escape `\`, `"` and newline. */
function escapeLabelValue(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** Exposition format spells the special floats `+Inf`, `-Inf` and `NaN`. */
function formatValue(v: number): string {
  if (v === Number.POSITIVE_INFINITY) return "+Inf";
  if (v === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(v);
}
