#!/usr/bin/env node
import { threadCpuTimeMs } from "../dist/src/lua/cpu-budget.js";
/**
 * The Lua engine's own per-operation costs (micro-benchmark, not a test), in µs of this
 * thread's CPU time (not wall time, so a busy machine does not inflate them): min and median
 * of 9 rounds. Run after `npx tsc -b`:  taskset -c 1 node bench/lua-engine-costs.mjs
 *
 * Each line isolates one thing a message costs in a Lua style: an entry from the host, a host
 * function called from Lua, pushing a 64 B string, a coroutine resume + yield from the host and
 * from Lua (in this WebAssembly build a yield is a JavaScript exception thrown through the VM,
 * a resume a setjmp through a JavaScript trampoline), and a protected call.
 */
import { createLuaEngine, luaMulti, luaYield } from "../dist/src/lua/engine.js";

const lua = await createLuaEngine({});
let sink = 0;
const msg = Buffer.alloc(64, 0x61);
const only = process.argv[2];

function bench(name, n, fn, perOp = 1) {
  if (only && !name.includes(only)) return;
  for (let i = 0; i < n / 10; i++) fn(i); // warm up
  const runs = [];
  for (let r = 0; r < 9; r++) {
    const t = threadCpuTimeMs();
    for (let i = 0; i < n; i++) fn(i);
    runs.push(((threadCpuTimeMs() - t) * 1e3) / n / perOp);
  }
  runs.sort((a, b) => a - b);
  console.log(`| ${name} | ${runs[0].toFixed(2)} | ${runs[4].toFixed(2)} |`);
}

console.log("| operation | min µs | median µs |");
console.log("|---|---:|---:|");
const load = (src) => lua.run(src, "@bench.lua")[0];
lua.registerFunction(null, "nop", () => {});
lua.registerFunction(null, "send", (args) => {
  sink += args.integer(1) + args.bytesView(2).length;
});
lua.registerFunction(null, "give", () => msg);
lua.registerFunction(null, "give2", () => luaMulti(1, msg));

const noop = load("return function() end");
bench("host → Lua: call(noop), no arguments", 200_000, () => lua.call(noop));
const take2 = load("return function(a, b) end");
bench("host → Lua: call(fn, int, 64 B string)", 200_000, (i) => lua.call(take2, i, msg));
const echo = load("return function(id, m) send(id, m) end");
bench("host → Lua → host: call(fn, int, 64 B) that calls send(id, msg)", 200_000, (i) =>
  lua.call(echo, i, msg),
);
const N = 1000;
const loopNop = load(`return function() for i = 1, ${N} do nop() end end`);
bench("Lua → host: nop() (per call, in a loop of 1000)", 300, () => lua.call(loopNop), N);
const loopSend = load(
  `local m = string.rep("a", 64) return function() for i = 1, ${N} do send(i, m) end end`,
);
bench("Lua → host: send(i, 64 B) reading the string in place", 300, () => lua.call(loopSend), N);
const loopGive = load(`return function() for i = 1, ${N} do give() end end`);
bench("Lua → host: give() returning a 64 B Buffer (push string)", 300, () => lua.call(loopGive), N);
const loopGive2 = load(`return function() for i = 1, ${N} do give2() end end`);
bench("Lua → host: give2() returning luaMulti(1, 64 B)", 300, () => lua.call(loopGive2), N);
const loopTable = load(`return function() for i = 1, ${N} do local t = { give2() } end end`);
bench("Lua → host: { give2() } (results packed in a table)", 300, () => lua.call(loopTable), N);
const loopLuaCall = load(
  `local function f(a, b) return a end return function() for i = 1, ${N} do f(i, i) end end`,
);
bench("Lua → Lua: a plain function call (reference)", 300, () => lua.call(loopLuaCall), N);
const loopPcall = load(
  `local function f(a, b) return a end return function() for i = 1, ${N} do pcall(f, i, i) end end`,
);
bench("Lua: pcall(f) (setjmp through the JS trampoline)", 300, () => lua.call(loopPcall), N);

const co = lua.newThread(load("return function() while true do coroutine.yield() end end"));
lua.resume(co);
bench("host resume(co) → coroutine.yield() (no values)", 100_000, () => lua.resume(co));
const co1 = lua.newThread(load('return function() while true do coroutine.yield(1, "x") end end'));
lua.resume(co1);
bench('host resume(co, int, 64 B) → coroutine.yield(1, "x")', 100_000, (i) =>
  lua.resume(co1, i, msg),
);
lua.registerFunction(null, "park", () => luaYield());
const co2 = lua.newThread(load("return function() while true do park() end end"));
lua.resume(co2);
bench("host resume(co) → host fn returning luaYield()", 100_000, () => lua.resume(co2));
const luaResume = load(`
  local co = coroutine.wrap(function() while true do coroutine.yield() end end)
  return function() for i = 1, ${N} do co() end end`);
bench("Lua coroutine resume + yield, from Lua (per pair)", 200, () => lua.call(luaResume), N);
const luaResumeStatus = load(`
  local co = coroutine.create(function() while true do coroutine.yield() end end)
  local resume, status = coroutine.resume, coroutine.status
  return function() for i = 1, ${N} do if status(co) == "suspended" then resume(co) end end end`);
bench(
  "Lua coroutine.status + resume + yield (the scheduler's step)",
  200,
  () => lua.call(luaResumeStatus),
  N,
);
const luaErr = load(
  `local function f() error("x", 0) end return function() for i = 1, ${N} do pcall(f) end end`,
);
bench("Lua pcall(error) (a Lua error: longjmp = JS throw)", 200, () => lua.call(luaErr), N);
const luaPack = load(
  `local pack = table.pack return function() for i = 1, ${N} do local t = pack(i, i) end end`,
);
bench("Lua table.pack(a, b) (a small table)", 300, () => lua.call(luaPack), N);
console.error(sink > 0 ? "" : "(sink)");
