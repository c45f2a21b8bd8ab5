/**
 * The CPU budget counts CPU time, not wall-clock time: a thread waiting for a core (a loaded
 * machine) neither runs out early nor gets more than its budget. A fake CPU clock makes these
 * exact; the real clock is checked against work done.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CpuBudget, threadCpuTimeMs } from "../../../../src/lua/vm/cpu-budget.js";

/** A CPU clock the test moves by hand, counting how often it is read. */
function fakeClock() {
  const clock = { ms: 1000, reads: 0, read: () => 0 };
  clock.read = () => {
    clock.reads++;
    return clock.ms;
  };
  return clock;
}

/** Blocks the thread without using CPU, as waiting for a core does. */
function waitOffCpu(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

describe("CpuBudget", () => {
  it("is not spent while the thread has used less CPU than the budget, however long it waited", () => {
    const clock = fakeClock();
    const budget = new CpuBudget(20, clock.read);
    assert.equal(budget.isSpent(), false); // starts it
    clock.ms += 5;
    waitOffCpu(40); // twice the budget in wall-clock time, 5 ms of CPU
    assert.equal(budget.isSpent(), false);
    assert.equal(budget.leftMs(), 15);
    clock.ms += 14;
    assert.equal(budget.isSpent(), false);
  });

  it("is spent once the CPU used reaches the budget", () => {
    const clock = fakeClock();
    const budget = new CpuBudget(20, clock.read);
    budget.start();
    clock.ms += 20;
    waitOffCpu(25);
    assert.equal(budget.isSpent(), true);
    assert.equal(budget.leftMs(), 0);
  });

  it("reads the CPU clock only once the wall clock says the budget may be spent", () => {
    const clock = fakeClock();
    const budget = new CpuBudget(60_000, clock.read);
    budget.start();
    const readsAtStart = clock.reads;
    for (let i = 0; i < 1000; i++) assert.equal(budget.isSpent(), false);
    assert.equal(clock.reads, readsAtStart);
  });

  it("starts over after reset", () => {
    const clock = fakeClock();
    const budget = new CpuBudget(10, clock.read);
    budget.start();
    clock.ms += 50;
    waitOffCpu(15);
    assert.equal(budget.isSpent(), true);
    budget.reset();
    assert.equal(budget.started, false);
    assert.equal(budget.isSpent(), false);
    assert.equal(budget.leftMs(), 10);
  });
});

describe("threadCpuTimeMs", () => {
  it("advances with work done on this thread and not while it waits", () => {
    const before = threadCpuTimeMs();
    waitOffCpu(60);
    const afterWait = threadCpuTimeMs();
    assert.ok(afterWait - before < 30, `advanced ${afterWait - before} ms while waiting`);
    let x = 0;
    while (threadCpuTimeMs() - afterWait < 20) x++;
    assert.ok(x > 0);
    assert.ok(threadCpuTimeMs() >= afterWait + 20);
  });
});
