#!/usr/bin/env node
// Run: taskset -c 1 node bench/wasm-throw-cost.mjs (after npx tsc -b).
// How much a throw through WebAssembly frames costs in this Node: a JavaScript exception thrown
// from an import and caught in JavaScript (what Emscripten's setjmp/longjmp emulation does for
// every Lua error and yield) versus a native WebAssembly exception (what a build with
// -fwasm-exceptions / -sSUPPORT_LONGJMP=wasm would do). Hand-assembled module, no tools needed.
import { threadCpuTimeMs } from "../dist/src/lua/cpu-budget.js";

const sec = (id, bytes) => [id, bytes.length, ...bytes];
const vec = (items) => [items.length, ...items.flat()];
const str = (s) => [s.length, ...Buffer.from(s)];
const body = (code) => [code.length + 1, 0, ...code];
const type = sec(
  1,
  vec([
    [0x60, 1, 0x7f, 1, 0x7f],
    [0x60, 1, 0x7f, 0],
    [0x60, 0, 0],
  ]),
);
const imp = sec(2, vec([[...str("env"), ...str("jsthrow"), 0, 2]]));
const func = sec(3, vec([[0], [0], [0]]));
const tag = sec(13, vec([[0, 1]]));
const exp = sec(
  7,
  vec([
    [...str("run"), 0, 2],
    [...str("runjs"), 0, 3],
  ]),
);
const f0 = [
  0x20, 0, 0x45, 0x04, 0x40, 0x41, 7, 0x08, 0, 0x0b, 0x20, 0, 0x41, 1, 0x6b, 0x10, 1, 0x41, 1, 0x6a,
  0x0b,
];
const f1 = [0x06, 0x7f, 0x20, 0, 0x10, 1, 0x07, 0, 0x0b, 0x0b];
const f2 = [
  0x20, 0, 0x45, 0x04, 0x40, 0x10, 0, 0x0b, 0x20, 0, 0x41, 1, 0x6b, 0x10, 3, 0x41, 1, 0x6a, 0x0b,
];
const code = sec(10, vec([body(f0), body(f1), body(f2)]));
const bytes = new Uint8Array([
  0,
  0x61,
  0x73,
  0x6d,
  1,
  0,
  0,
  0,
  ...type,
  ...imp,
  ...func,
  ...tag,
  ...exp,
  ...code,
]);
const { instance } = await WebAssembly.instantiate(bytes, {
  env: {
    jsthrow: () => {
      throw Infinity;
    },
  },
});
const { run, runjs } = instance.exports;
function bench(name, fn) {
  const N = 200000;
  for (let i = 0; i < N / 10; i++) fn();
  const rounds = [];
  for (let r = 0; r < 5; r++) {
    const t = threadCpuTimeMs();
    for (let i = 0; i < N; i++) fn();
    rounds.push(((threadCpuTimeMs() - t) * 1e3) / N);
  }
  rounds.sort((a, b) => a - b);
  console.log(`| ${name} | ${rounds[0].toFixed(3)} | ${rounds[2].toFixed(3)} |`);
}
console.log("| throw through 8 wasm frames | min µs | median µs |\n|---|---:|---:|");
bench("native wasm exception (throw/catch in wasm)", () => run(8));
bench("JS exception from an import, caught in JS (Emscripten's longjmp)", () => {
  try {
    runjs(8);
  } catch (e) {
    if (e !== e + 0) throw e;
  }
});
