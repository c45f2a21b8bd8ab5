/**
 * LuaHost timers, the clock behind `_setTimeout`, `time.sleep`, `ngx.sleep` and `ngx.timer`:
 * delays longer than Node's timers take (2^31 − 1 ms) and infinite ones.
 */
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, afterEach, before, beforeEach, describe, it, mock } from "node:test";
import { LuaHost } from "../../../../src/lua/host/lua-host.js";
import type { LuaRef } from "../../../../src/lua/vm/engine.js";
import { MetricsRegistry } from "../../../../src/observability/metrics.js";
import { captureLogger } from "../../../helpers/net-helpers.js";

const NODE_MAX_DELAY = 2 ** 31 - 1;

/** The path of an empty script in a folder of its own. */
function emptyScriptPath(): string {
  const scriptPath = path.join(mkdtempSync(path.join(tmpdir(), "moonsocket-timers-")), "app.lua");
  writeFileSync(scriptPath, "-- empty\n");
  return scriptPath;
}

describe("LuaHost timers", () => {
  let host: LuaHost;
  const fired = () => Number(host.engine.run("return fired", "=count")[0]);
  // A new reference each time: a timer owns (and releases) the one it is given.
  const bump = () => host.engine.run("return bump", "=bump")[0] as LuaRef;

  before(async () => {
    host = await LuaHost.create({
      scriptPath: emptyScriptPath(),
      logger: captureLogger().logger,
      metrics: new MetricsRegistry(),
    });
    host.engine.run("fired = 0; function bump() fired = fired + 1 end", "=bump");
  });
  after(() => host.close());
  beforeEach(() => {
    host.engine.run("fired = 0", "=reset");
    mock.timers.enable({ apis: ["setTimeout", "setInterval"] });
  });
  afterEach(() => mock.timers.reset());

  it("a delay past 2^31 − 1 ms fires when it is due, not after 1 ms", () => {
    host.setTimer(NODE_MAX_DELAY + 5000, bump(), false);
    mock.timers.tick(1000);
    assert.equal(fired(), 0);
    mock.timers.tick(NODE_MAX_DELAY - 1000);
    assert.equal(fired(), 0);
    mock.timers.tick(5000);
    assert.equal(fired(), 1);
  });

  it("an infinite delay never fires and can still be cancelled", () => {
    const id = host.setTimer(Number.POSITIVE_INFINITY, bump(), false);
    const every = host.setTimer(Number.POSITIVE_INFINITY, bump(), true);
    mock.timers.tick(NODE_MAX_DELAY);
    mock.timers.tick(NODE_MAX_DELAY);
    assert.equal(fired(), 0);
    assert.equal(host.cancelTimer(id), true);
    assert.equal(host.cancelTimer(every), true);
    assert.equal(host.cancelTimer(id), false);
  });

  it("a repeating timer with a period past 2^31 − 1 ms fires once per period until cancelled", () => {
    const period = NODE_MAX_DELAY + 1000;
    const id = host.setTimer(period, bump(), true);
    mock.timers.tick(NODE_MAX_DELAY);
    assert.equal(fired(), 0);
    mock.timers.tick(1000);
    assert.equal(fired(), 1);
    mock.timers.tick(NODE_MAX_DELAY);
    mock.timers.tick(1000);
    assert.equal(fired(), 2);
    assert.equal(host.cancelTimer(id), true);
    mock.timers.tick(NODE_MAX_DELAY);
    mock.timers.tick(1000);
    assert.equal(fired(), 2);
  });

  it("ordinary delays and intervals are unchanged", () => {
    host.setTimer(10, bump(), false);
    const id = host.setTimer(100, bump(), true);
    mock.timers.tick(10);
    assert.equal(fired(), 1);
    mock.timers.tick(290);
    assert.equal(fired(), 4);
    host.cancelTimer(id);
    mock.timers.tick(1000);
    assert.equal(fired(), 4);
  });

  it("a cancelled timer releases its Lua function at once, not when the JS GC runs", () => {
    const once = bump();
    const every = bump();
    const infinite = bump();
    const ids = [
      host.setTimer(60_000, once, false),
      host.setTimer(100, every, true),
      host.setTimer(Number.POSITIVE_INFINITY, infinite, false),
    ];
    for (const id of ids) assert.equal(host.cancelTimer(id), true);
    assert.deepEqual(
      [once, every, infinite].map((ref) => ref.released),
      [true, true, true],
    );
  });

  it("caps pending timers: the one past --max-timers is a Lua error, logged and counted", async () => {
    const log = captureLogger();
    const metrics = new MetricsRegistry();
    const capped = await LuaHost.create({
      scriptPath: emptyScriptPath(),
      logger: log.logger,
      metrics,
      maxTimers: 3,
    });
    try {
      const [results] = capped.engine.run(
        `local m = require "moonsocket"
        local ids, out = {}, {}
        for i = 1, 4 do
          local ok, id = pcall(function()
            local id = m.set_timeout(60000, function() end)
            return id
          end)
          out[#out + 1] = tostring(ok) .. " " .. tostring(id)
          if ok then ids[#ids + 1] = id end
        end
        m.cancel(ids[1])
        out[#out + 1] = tostring((pcall(m.set_timeout, 60000, function() end)))
        return table.concat(out, "\\n")`,
        "=capped",
      );
      const lines = String(results).split("\n");
      assert.deepEqual(lines.slice(0, 3), ["true 1", "true 2", "true 3"]);
      assert.equal(lines[3], "false capped:5: too many timers: 3 pending (--max-timers)");
      assert.equal(lines[4], "true");
      assert.equal(capped.pendingTimers, 3);
      assert.equal(
        log.lines().filter((line) => /WARN .*too many timers: 3 pending/.test(line)).length,
        1,
      );
      const text = metrics.render();
      assert.match(text, /^moonsocket_lua_timers 3$/m);
      assert.match(text, /^moonsocket_lua_timers_limit 3$/m);
      assert.match(text, /^moonsocket_lua_errors_total 1$/m);
    } finally {
      capped.close();
    }
  });
});
