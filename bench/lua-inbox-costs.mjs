#!/usr/bin/env node
/**
 * The Lua side of a message in the coroutine styles, without sockets (micro-benchmark, not a
 * test): 100 readers parked in the scheduler's read, one event each per event-loop turn handed
 * over by the socket inboxes, each reader sending it back through a host function and reading
 * again. Prints µs of this thread's CPU time per message (min and median of 9 rounds), the
 * host's inbox, wake entry, resume, read, send and yield included, the network excluded.
 * Run after `npx tsc -b`:  taskset -c 1 node bench/lua-inbox-costs.mjs
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { LuaHost } from "../dist/src/lua/host/lua-host.js";
import { SchedulerBridge } from "../dist/src/lua/host/scheduler-bridge.js";
import { threadCpuTimeMs } from "../dist/src/lua/vm/cpu-budget.js";

const scriptPath = path.join(mkdtempSync(path.join(tmpdir(), "inbox-costs-")), "app.lua");
writeFileSync(scriptPath, "-- empty\n");
const logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => logger };
const host = await LuaHost.create({ scriptPath, logger });
const bridge = new SchedulerBridge(host, () => {});
let sent = 0;
host.engine.registerFunction(null, "send", (args) => {
  sent += args.bytesView(2).length > 0 ? 1 : 0;
});
const READERS = 100;
host.engine.run(
  `local sched = require "moonsocket.scheduler"
  for h = 1, ${READERS} do
    sched.open_socket(h)
    sched.spawn(function()
      while true do
        local kind, data = sched.read(h, 60000)
        if kind == nil then return end
        send(h, data)
      end
    end, h)
  end`,
  "=readers",
);
bridge.run();
const msg = Buffer.alloc(64, 0x61);
const turn = () => new Promise((resolve) => setImmediate(resolve));

async function round(turns) {
  const t = threadCpuTimeMs();
  for (let i = 0; i < turns; i++) {
    for (let h = 1; h <= READERS; h++) bridge.inboxes.deliver(h, 1, msg, true);
    await turn();
  }
  return ((threadCpuTimeMs() - t) * 1e3) / (turns * READERS);
}

await round(200);
const runs = [];
for (let r = 0; r < 9; r++) runs.push(await round(300));
runs.sort((a, b) => a - b);
console.log(
  `µs per message (${READERS} readers, one event each per turn): min ${runs[0].toFixed(2)}, median ${runs[4].toFixed(2)}; ${sent} sent`,
);
bridge.inboxes.dispose();
host.close();
