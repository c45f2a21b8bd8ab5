#!/usr/bin/env node
/**
 * Summarizes a V8 CPU profile (`node --cpu-prof`): the functions with the most self time, the
 * same by total (inclusive) time, and self time per source file.
 *
 *   node bench/cpuprofile-top.mjs PROFILE.cpuprofile [--top 25] [--markdown]
 *
 * Times come from the profile's sample deltas (µs), so they are exact to the sampling interval.
 * Percentages are of the busy time: all sampled time except `(idle)` (waiting in epoll). Busy
 * time includes `(program)` (native code outside JavaScript: libuv, syscalls not attributed to
 * a JavaScript caller) and `(garbage collector)`.
 */
import { readFileSync } from "node:fs";
import { relative } from "node:path";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    top: { type: "string", default: "25" },
    markdown: { type: "boolean", default: false },
  },
});
if (positionals.length !== 1) {
  process.stderr.write(
    "usage: node bench/cpuprofile-top.mjs PROFILE.cpuprofile [--top N] [--markdown]\n",
  );
  process.exit(2);
}
const top = Number(values.top);
const profile = JSON.parse(readFileSync(positionals[0], "utf8"));

const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const parentOf = new Map();
for (const node of profile.nodes)
  for (const child of node.children ?? []) parentOf.set(child, node.id);

function shortUrl(url) {
  if (!url) return "";
  const path = url.startsWith("file://") ? new URL(url).pathname : url;
  return path.startsWith("/") ? relative(process.cwd(), path) : path;
}

/** One key per function: name and where it is defined. */
function functionKey(node) {
  const { functionName, url, lineNumber } = node.callFrame;
  const name = functionName || "(anonymous)";
  return url ? `${name} ${shortUrl(url)}:${lineNumber + 1}` : name;
}

const self = new Map();
const total = new Map();
const selfByFile = new Map();
let sampled = 0;
const add = (map, key, us) => map.set(key, (map.get(key) ?? 0) + us);

for (let i = 0; i < profile.samples.length; i++) {
  // timeDeltas[i] is the time since the previous sample; attribute it to this sample's stack.
  const us = profile.timeDeltas[i] ?? 0;
  const node = byId.get(profile.samples[i]);
  if (!node || us <= 0) continue;
  sampled += us;
  add(self, functionKey(node), us);
  add(selfByFile, shortUrl(node.callFrame.url) || node.callFrame.functionName || "(native)", us);
  const seen = new Set();
  for (let id = node.id; id !== undefined; id = parentOf.get(id)) {
    const key = functionKey(byId.get(id));
    if (key === "(root)" || seen.has(key)) continue;
    seen.add(key);
    add(total, key, us);
  }
}

const idle = self.get("(idle)") ?? 0;
const busy = sampled - idle;
self.delete("(idle)");
total.delete("(idle)");
selfByFile.delete("(idle)");
const pct = (us) => `${((100 * us) / busy).toFixed(1)}%`;
const ms = (us) => (us / 1000).toFixed(0);

function table(title, map, limit) {
  const rows = [...map.entries()].sort((a, b) => b[1] - a[1]).slice(0, limit);
  if (values.markdown) {
    return [
      `**${title}**`,
      "",
      "| % | ms | function |",
      "|--:|--:|---|",
      ...rows.map(([k, us]) => `| ${pct(us)} | ${ms(us)} | \`${k}\` |`),
      "",
    ].join("\n");
  }
  return [
    title,
    ...rows.map(([k, us]) => `${pct(us).padStart(6)} ${ms(us).padStart(7)} ms  ${k}`),
    "",
  ].join("\n");
}

process.stdout.write(
  [
    `${positionals[0]}: ${(sampled / 1e6).toFixed(2)} s sampled (${profile.samples.length} samples), ` +
      `${(busy / 1e6).toFixed(2)} s busy, ${(idle / 1e6).toFixed(2)} s idle; percentages are of busy time`,
    "",
    table(`Top ${top} by self time`, self, top),
    table(`Top ${top} by total time (self + callees)`, total, top),
    table("Self time by file", selfByFile, 15),
  ].join("\n"),
);
