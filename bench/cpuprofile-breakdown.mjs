#!/usr/bin/env node
/**
 * Splits the busy time of a V8 CPU profile (`node --cpu-prof`) into the stages of a message's
 * trip through the server, by the self time of each function (what it is, from its name and
 * file), and scales it to µs per message when given the server's cost per message.
 *
 *   node bench/cpuprofile-breakdown.mjs PROFILE.cpuprofile [--us-per-msg 28.4] [--skip-ms 3500]
 *
 * `--skip-ms` leaves out the first milliseconds of the profile (start-up, connecting).
 *
 * The profiler slows the server down a little; the shares are what to read, the µs column
 * spreads the unprofiled cost (from `bench/ab.mjs`) over them.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { "us-per-msg": { type: "string" }, "skip-ms": { type: "string", default: "0" } },
});
const profile = JSON.parse(readFileSync(positionals[0], "utf8"));
const usPerMsg = values["us-per-msg"] ? Number(values["us-per-msg"]) : null;

/** [category, test on (name, url)], first match wins. */
const CATEGORIES = [
  ["idle", (n) => n === "(idle)"],
  [
    "kernel: socket write (writeBuffer/writev syscall)",
    (n) => /^(writeBuffer|writev|writeUtf8String|writeLatin1String)$/.test(n),
  ],
  [
    "native: libuv, socket read syscall, (program)",
    (n, u) => n === "(program)" || (n === "read" && !u),
  ],
  ["GC", (n) => n === "(garbage collector)"],
  [
    "VM: setjmp trampoline + longjmp throw (invoke_vii, yield/error as JS exception)",
    (n, u) =>
      u.includes("wasmoon/dist") &&
      (n === "nc" || n === "_emscripten_throw_longjmp" || n === "(anonymous)"),
  ],
  [
    "VM: Lua in WebAssembly (interpreter, C API, allocator)",
    (n, u) => u.startsWith("wasm://") || n.startsWith("wasm-") || n.startsWith("js-to-wasm"),
  ],
  ["VM: other wasmoon glue", (_n, u) => u.includes("wasmoon/dist")],
  [
    "host: engine binding (wasmoon-engine, args, push/pull, budget)",
    (_n, u) =>
      /\/lua\/(vm\/|(wasmoon-engine|engine|engine-capi|engine-allocator|cpu-budget)\.js)/.test(u),
  ],
  ["host: style + scheduler bridge + inbox", (_n, u) => /\/dist\/src\/lua\//.test(u)],
  [
    "host: protocol (frame parse, framing, output queue, utf8)",
    (n, u) => /\/dist\/src\/protocol\//.test(u) || n === "isUtf8",
  ],
  [
    "host: transport + server + client objects",
    (_n, u) => /\/dist\/src\/(transport|server)\//.test(u),
  ],
  ["host: other moonsocket", (_n, u) => /\/dist\/src\//.test(u)],
  [
    "Node: streams, net, events",
    (_n, u) =>
      /node:(internal\/streams|net|internal\/stream_base_commons|events|internal\/net|stream)/.test(
        u,
      ),
  ],
  [
    "Node: microtasks, ticks, setImmediate, timers",
    (n, u) =>
      /node:internal\/(process\/task_queues|process\/promises|async_hooks|timers)|node:async_hooks|node:timers/.test(
        u,
      ) || /^(runMicrotasks|enqueueMicrotask|processImmediate)$/.test(n),
  ],
  ["Node: Buffer", (_n, u) => /node:(buffer|internal\/buffer)/.test(u)],
  ["other", () => true],
];

const selfUs = new Map();
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const dt = profile.timeDeltas;
const skipUs = Number(values["skip-ms"]) * 1000;
let elapsed = 0;
for (let i = 0; i < profile.samples.length; i++) {
  elapsed += dt[i];
  if (elapsed < skipUs) continue;
  const node = byId.get(profile.samples[i]);
  const { functionName, url } = node.callFrame;
  const d = dt[i + 1] ?? 0;
  const [cat] = CATEGORIES.find(([, test]) => test(functionName || "(anonymous)", url || ""));
  selfUs.set(cat, (selfUs.get(cat) ?? 0) + d);
}
const busy = [...selfUs].filter(([c]) => c !== "idle").reduce((s, [, v]) => s + v, 0);
console.log(`| stage | share of busy time |${usPerMsg ? " µs per message |" : ""}`);
console.log(`|---|---:|${usPerMsg ? "---:|" : ""}`);
for (const [cat] of CATEGORIES) {
  const us = selfUs.get(cat);
  if (!us || cat === "idle") continue;
  const share = us / busy;
  console.log(
    `| ${cat} | ${(share * 100).toFixed(1)} % |${usPerMsg ? ` ${(share * usPerMsg).toFixed(1)} |` : ""}`,
  );
}
if (usPerMsg) console.log(`| **total** | 100 % | **${usPerMsg.toFixed(1)}** |`);
