// Hot-path cost of the Lua engine (micro-benchmark, not a test). Run after `npx tsc -b`: node bench/lua-engine.mjs
import { createLuaEngine } from "../dist/src/lua/vm/create-engine.js";
import { luaYield } from "../dist/src/lua/vm/engine.js";

const lua = await createLuaEngine({});
let sink = 0;
lua.registerFunction(null, "send", (args) => {
  sink += args.integer(1) + args.bytes(2).length;
});
const onMessage = lua.run("return function(id, msg) send(id, msg) end", "@bench.lua")[0];
const noop = lua.run("return function() end", "@noop.lua")[0];
const msg = Buffer.alloc(64, 0x61);
function bench(name, n, fn) {
  const runs = [];
  for (let r = 0; r < 9; r++) {
    const t = process.hrtime.bigint();
    for (let i = 0; i < n; i++) fn(i);
    runs.push(Number(process.hrtime.bigint() - t) / 1e3 / n);
  }
  runs.sort((a, b) => a - b);
  console.log(`${name}: min ${runs[0].toFixed(2)} µs, median ${runs[4].toFixed(2)} µs`);
}
bench("call(noop)", 200_000, () => lua.call(noop));
bench("call(fn, int, 64 B) -> send(int, bytes) round trip", 200_000, (i) =>
  lua.call(onMessage, i, msg),
);
const co = lua.newThread(
  lua.run('return function() while true do coroutine.yield(1, "x") end end', "@co.lua")[0],
);
lua.resume(co);
bench('resume(co, int, 64 B) -> coroutine.yield(1, "x")', 100_000, (i) => lua.resume(co, i, msg));
lua.registerFunction(null, "sock_read", (args) => luaYield(args.integer(1)));
const co2 = lua.newThread(
  lua.run("return function() while true do sock_read(1) end end", "@co2.lua")[0],
);
lua.resume(co2);
bench("resume(co, 64 B) -> host fn returning luaYield(int)", 100_000, () => lua.resume(co2, msg));
const cyield = lua.newThread(
  lua.run("return function() while true do coroutine.yield() end end", "@co3.lua")[0],
);
lua.resume(cyield);
bench("resume(co) -> coroutine.yield() (no values)", 100_000, () => lua.resume(cyield));
console.log(sink > 0);
