import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  diffCpu,
  parseMachineStat,
  parseProcessStat,
  readProcessCpu,
  sampleCpu,
} from "../../../src/cli/bench-cpu.js";

describe("bench CPU accounting", () => {
  it("reads utime + stime from /proc/PID/stat, even with spaces and ')' in the name", () => {
    const stat =
      "4242 (node (my) server) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 50 0 0 20 0 11 0 100 0 0";
    assert.equal(parseProcessStat(stat), 3);
    assert.equal(parseProcessStat("garbage"), null);
    assert.equal(parseProcessStat("1 (x) S 1 2"), null);
  });

  it("reads the busy time of /proc/stat without idle and iowait", () => {
    const stat = "cpu  100 10 50 9999 77 3 2 1 0 0\ncpu0 50 5 25 5000 40 1 1 0 0 0\nintr 1 2 3\n";
    assert.equal(parseMachineStat(stat), (100 + 10 + 50 + 3 + 2 + 1) / 100);
    assert.equal(parseMachineStat("nothing here"), null);
  });

  it("turns two samples into percent of one core, others never below 0", () => {
    const before = { wall: 10, self: 1, server: 2, machine: 5 };
    const after = { wall: 12, self: 2, server: 3.5, machine: 7 };
    const usage = diffCpu(before, after);
    assert.equal(usage.bench, 50);
    assert.equal(usage.server, 75);
    assert.equal(usage.others, 0);
    assert.ok(usage.cores >= 1);
    const noProc = diffCpu(
      { ...before, server: null, machine: null },
      { ...after, server: null, machine: null },
    );
    assert.equal(noProc.server, null);
    assert.equal(noProc.others, null);
  });

  it("samples this process, and reads its own /proc entry on Linux", {
    skip: process.platform !== "linux" && "Linux only",
  }, () => {
    const sample = sampleCpu(process.pid);
    assert.ok(sample.self > 0);
    assert.ok(sample.server !== null && sample.server >= 0);
    assert.ok(sample.machine !== null && sample.machine > 0);
    assert.equal(readProcessCpu(2 ** 30), null, "a process that does not exist");
  });
});
