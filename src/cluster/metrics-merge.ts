/**
 * One /metrics page for a server of several worker processes: each worker renders its own
 * registry (Prometheus text format 0.0.4), the primary merges the pages.
 *
 * - **Counters** are summed over the workers, series by series: one figure for the server
 *   (`moonsocket_messages_received_total` counts every worker's messages). A worker that dies
 *   takes its counts with it, which Prometheus's `rate()` reads as a counter reset.
 * - **Gauges** are per worker, with a `worker` label (`moonsocket_connections{worker="2"}`):
 *   a Lua state's memory or a worker's open connections matter worker by worker, and
 *   `sum(moonsocket_connections)` gives the server's.
 *
 * @module
 */

interface Family {
  readonly help: string;
  readonly type: string;
  /** Series (the `name{labels}` text) to value, in first-seen order. */
  readonly samples: Map<string, number>;
}

/**
 * Merges the pages of the workers (`pages[i]` is worker `workers[i]`'s) into one page; the
 * families appear in the order the first page lists them.
 */
export function mergeWorkerMetrics(
  pages: readonly { readonly worker: number; readonly text: string }[],
): string {
  const families = new Map<string, Family>();
  for (const { worker, text } of pages) {
    let current: { name: string; help: string; type: string } = { name: "", help: "", type: "" };
    for (const line of text.split("\n")) {
      if (line.startsWith("# HELP ")) {
        const rest = line.slice(7);
        const space = rest.indexOf(" ");
        current = { name: rest.slice(0, space), help: rest.slice(space + 1), type: "untyped" };
      } else if (line.startsWith("# TYPE ")) {
        const [name, type] = line.slice(7).split(" ");
        if (name === current.name && type !== undefined) current.type = type;
      } else if (line !== "" && !line.startsWith("#")) {
        const space = line.lastIndexOf(" ");
        const series = line.slice(0, space);
        const value = parseValue(line.slice(space + 1));
        const name = seriesName(series);
        let family = families.get(name);
        if (family === undefined) {
          const described = current.name === name ? current : { help: "", type: "untyped" };
          family = { help: described.help, type: described.type, samples: new Map() };
          families.set(name, family);
        }
        const key = family.type === "counter" ? series : withWorkerLabel(series, name, worker);
        family.samples.set(key, (family.samples.get(key) ?? 0) + value);
      }
    }
  }
  const out: string[] = [];
  for (const [name, family] of families) {
    if (family.help !== "") out.push(`# HELP ${name} ${family.help}\n`);
    out.push(`# TYPE ${name} ${family.type}\n`);
    for (const [series, value] of family.samples) out.push(`${series} ${formatValue(value)}\n`);
  }
  return out.join("");
}

/** The metric name of a series: `a_total{x="1"}` → `a_total`. */
function seriesName(series: string): string {
  const brace = series.indexOf("{");
  return brace < 0 ? series : series.slice(0, brace);
}

/** `name{a="b"}` → `name{worker="3",a="b"}`. */
function withWorkerLabel(series: string, name: string, worker: number): string {
  const labels = series.slice(name.length);
  const label = `worker="${worker}"`;
  if (labels === "" || labels === "{}") return `${name}{${label}}`;
  return `${name}{${label},${labels.slice(1)}`;
}

function parseValue(text: string): number {
  if (text === "+Inf") return Number.POSITIVE_INFINITY;
  if (text === "-Inf") return Number.NEGATIVE_INFINITY;
  return Number(text);
}

function formatValue(value: number): string {
  if (value === Number.POSITIVE_INFINITY) return "+Inf";
  if (value === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(value);
}
