#!/usr/bin/env node
/**
 * Interleaved A/B echo runs for profiling work: each repetition runs every named server once, in
 * order, so that drift of a busy machine touches each alike. The figure is messages per server
 * CPU-second (wsload's rate ÷ its `--pid` CPU share), the median over the repetitions.
 *
 *   node bench/ab.mjs [--mode echo|broadcast] [--depth 1] [--reps 3] [--duration 5] [--size 64]
 *                     [--connections 100] NAME=COMMAND ...
 *
 * `--mode broadcast` runs `wsload broadcast -t 0` (`--connections` receivers, `--depth`
 * broadcasts outstanding); the figure is then deliveries per server CPU-second.
 *
 * COMMAND runs in a shell, pinned to core 1, with `{port}` replaced by a free port; a NAME that
 * starts with `raw:` is driven with `wsload --raw` (plain TCP echo). wsload runs on core 0.
 */
import { spawn } from "node:child_process";
import { connect, createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";

const WSLOAD = process.env.WSLOAD ?? "/work/shared/tools/wsload/wsload";
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    mode: { type: "string", default: "echo" },
    depth: { type: "string", default: "1" },
    reps: { type: "string", default: "3" },
    duration: { type: "string", default: "5" },
    size: { type: "string", default: "64" },
    connections: { type: "string", default: "100" },
  },
});
const servers = positionals.map((spec) => {
  const eq = spec.indexOf("=");
  return { name: spec.slice(0, eq), cmd: spec.slice(eq + 1) };
});

function freePort() {
  return new Promise((done) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => done(port));
    });
  });
}

function canConnect(port) {
  return new Promise((done) => {
    const socket = connect(port, "127.0.0.1");
    socket.on("connect", () => done(socket.destroy() || true));
    socket.on("error", () => done(false));
  });
}

function run(argv) {
  return new Promise((done) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (c) => (out += c));
    child.stderr.on("data", (c) => (out += c));
    child.on("close", () => done(out));
  });
}

async function once(server) {
  const port = await freePort();
  const child = spawn(
    "taskset",
    ["-c", "1", "sh", "-c", `exec ${server.cmd.replaceAll("{port}", port)}`],
    {
      stdio: ["ignore", "ignore", "inherit"],
    },
  );
  for (let i = 0; i < 200 && !(await canConnect(port)); i++) await sleep(50);
  const raw = server.name.startsWith("raw:") ? ["--raw"] : [];
  const out = await run([
    "taskset",
    "-c",
    "0",
    WSLOAD,
    values.mode,
    ...(values.mode === "broadcast" ? ["-t", "0"] : []),
    ...raw,
    "-c",
    values.connections,
    "-p",
    values.depth,
    "-s",
    values.size,
    "-d",
    values.duration,
    "-w",
    "2",
    "--pid",
    String(child.pid),
    `ws://127.0.0.1:${port}/`,
  ]);
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((done) => child.on("exit", done));
    child.kill("SIGTERM");
    await exited;
  }
  const line = out.split("\n").find((l) => l.startsWith("RESULT")) ?? "";
  const field = (k) => Number(new RegExp(`\\b${k}=([\\d.]+)`).exec(line)?.[1] ?? NaN);
  const rate = field("rate");
  const cpu = field("cpu_server");
  const errors = field("errors");
  if (!line || errors)
    process.stderr.write(`ab: ${server.name}: ${line ? `errors=${errors}` : out}\n`);
  return {
    rate,
    cpu,
    perCpu: rate / (cpu / 100),
    others: field("cpu_others"),
    wsload: field("cpu_wsload"),
  };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results = new Map(servers.map((s) => [s.name, []]));
for (let rep = 0; rep < Number(values.reps); rep++) {
  for (const server of servers) {
    const r = await once(server);
    results.get(server.name).push(r);
    process.stderr.write(
      `rep ${rep + 1} ${server.name}: ${Math.round(r.perCpu)} msgs/CPU-s (rate ${r.rate}, server ${r.cpu}%, wsload ${r.wsload}%, others ${r.others}%)\n`,
    );
  }
}
const base = median(results.get(servers[0].name).map((r) => r.perCpu));
console.log(
  `${values.mode}, depth ${values.depth}, ${values.size} B, ${values.connections} conns, ${values.reps} × ${values.duration} s`,
);
console.log("| server | msgs per server CPU-s (median) | µs per msg | runs | ÷ first |");
console.log("|---|---:|---:|---|---:|");
for (const [name, rs] of results) {
  const m = median(rs.map((r) => r.perCpu));
  console.log(
    `| ${name} | ${Math.round(m).toLocaleString("en")} | ${(1e6 / m).toFixed(1)} | ${rs.map((r) => `${Math.round(r.perCpu / 1000)}k`).join(" ")} | ${(m / base).toFixed(2)}× |`,
  );
}
