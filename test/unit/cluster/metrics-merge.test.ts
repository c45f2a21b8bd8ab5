import assert from "node:assert/strict";
import { test } from "node:test";
import { mergeWorkerMetrics } from "../../../src/cluster/metrics-merge.js";

const page = (connections: number, received: number, closes: number) => `# HELP c_total Closes.
# TYPE c_total counter
c_total{reason="idle"} ${closes}
# HELP conn Connected now.
# TYPE conn gauge
conn ${connections}
# HELP rx_total Received.
# TYPE rx_total counter
rx_total ${received}
# HELP mem Memory.
# TYPE mem gauge
mem{kind="lua"} +Inf
`;

test("counters are summed over the workers, gauges kept per worker with a worker label", () => {
  const merged = mergeWorkerMetrics([
    { worker: 1, text: page(3, 10, 1) },
    { worker: 2, text: page(4, 5, 2) },
  ]);
  assert.equal(
    merged,
    `# HELP c_total Closes.
# TYPE c_total counter
c_total{reason="idle"} 3
# HELP conn Connected now.
# TYPE conn gauge
conn{worker="1"} 3
conn{worker="2"} 4
# HELP rx_total Received.
# TYPE rx_total counter
rx_total 15
# HELP mem Memory.
# TYPE mem gauge
mem{worker="1",kind="lua"} +Inf
mem{worker="2",kind="lua"} +Inf
`,
  );
});

test("no workers, no page", () => {
  assert.equal(mergeWorkerMetrics([]), "");
});
