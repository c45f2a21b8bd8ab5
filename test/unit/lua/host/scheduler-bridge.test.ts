/**
 * The scheduler bridge: a coroutine stopped by the CPU budget in the entry that handed readers
 * their events must not make the bridge hand them out again when it goes on with the rest.
 */
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { LuaHost } from "../../../../src/lua/host/lua-host.js";
import { SchedulerBridge } from "../../../../src/lua/host/scheduler-bridge.js";
import type { LuaValue } from "../../../../src/lua/vm/engine.js";
import { captureLogger } from "../../../helpers/net-helpers.js";

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

function emptyScriptPath(): string {
  const scriptPath = path.join(mkdtempSync(path.join(tmpdir(), "moonsocket-bridge-")), "app.lua");
  writeFileSync(scriptPath, "-- empty\n");
  return scriptPath;
}

describe("SchedulerBridge", () => {
  it("after a CPU-budget abort, the other readers woken in the same entry get their event once", async () => {
    const host = await LuaHost.create({
      scriptPath: emptyScriptPath(),
      logger: captureLogger().logger,
      cpuBudgetMs: 30,
    });
    try {
      const failed: LuaValue[] = [];
      const bridge = new SchedulerBridge(host, (context) => failed.push(context));
      host.engine.run(
        `local sched = require "moonsocket.scheduler"
        got = {}
        sched.open_socket(1)
        sched.open_socket(2)
        sched.spawn(function()
          sched.read(1)
          while true do end
        end, 1)
        sched.spawn(function()
          while true do
            local kind, data = sched.read(2)
            if kind == nil then return end
            got[#got + 1] = tostring(data)
          end
        end, 2)`,
        "=setup",
      );
      bridge.run();
      const got = () => String(host.engine.run("return table.concat(got, ',')", "=got")[0]);
      // Both readers are woken in one entry; the first one spins until the budget stops it.
      bridge.inboxes.deliver(1, 1, Buffer.from("spin"), true);
      bridge.inboxes.deliver(2, 1, Buffer.from("a"), true);
      await turn();
      // The spinner's connection is blamed (the budget may fire once more past its coroutine).
      assert.deepEqual(
        failed.filter((context) => context !== null),
        [1],
      );
      assert.equal(got(), "a");
      bridge.inboxes.deliver(2, 1, Buffer.from("b"), true);
      await turn();
      assert.equal(got(), "a,b");
    } finally {
      host.close();
    }
  });
});
