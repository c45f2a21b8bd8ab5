#!/usr/bin/env node
/**
 * Echo, broadcast and idle-memory benchmarks of moonsocket against `ws`, driven by wsload
 * (../shared/tools/wsload). See bench/README.md for what is measured and why.
 *
 *   node bench/run.mjs [--quick] [--servers a,b] [--scenarios x,y] [--reps 3] [--duration 10]
 *                      [--warmup 2] [--connections 100] [--hold-connections 2000] [--out file]
 *
 * Every run starts the server fresh on a free port, pinned to core 1, and wsload pinned to
 * core 0. Runs are interleaved (rep → scenario → server) so that slow drift of the machine
 * touches every server alike; the figures reported are medians over the repetitions.
 */
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  accessSync,
  constants,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { cpus } from "node:os";
import { dirname, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const MOONSOCKET_CLI = "dist/src/cli/main.js";
/** The TS API's broadcast server: imports the built library. */
const TS_BROADCAST_SERVER = "bench/ts-broadcast-server.mjs";

/**
 * The servers under test. Adding one is one line: a name, a command line run from the repo root
 * with `{port}` where the TCP port goes, and optionally extra environment variables. The server
 * must listen on 127.0.0.1, print a line containing its `ws://host:port/` URL on stdout once it
 * accepts connections, and exit on SIGTERM. `cmd` echoes every message (the echo and hold
 * scenarios); `broadcastCmd` sends every message to every client (the broadcast scenarios) and
 * accepts {@link BROADCAST_MAX_CONNECTIONS}. A server runs only the scenarios it has a command for.
 */
// biome-ignore format: one line per server keeps adding one a one-line change
const SERVERS = [
  { name: "net", broadcastCmd: ["node", "bench/net-broadcast-server.mjs", "--host", "127.0.0.1", "--port", "{port}"] },
  { name: "moonsocket", cmd: ["node", MOONSOCKET_CLI, "echo", "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warn"], broadcastCmd: ["node", MOONSOCKET_CLI, "echo", "--broadcast", "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warn", "--max-connections", "{maxConnections}"] },
  { name: "ws", cmd: ["node", "bench/ws-echo-server.mjs", "--host", "127.0.0.1", "--port", "{port}"], broadcastCmd: ["node", "bench/ws-echo-server.mjs", "--broadcast", "--host", "127.0.0.1", "--port", "{port}"], env: { WS_NO_BUFFER_UTIL: "1" } },
  { name: "ws+bufferutil", cmd: ["node", "bench/ws-echo-server.mjs", "--host", "127.0.0.1", "--port", "{port}"] },
  { name: "ts-api", broadcastCmd: ["node", TS_BROADCAST_SERVER, "--host", "127.0.0.1", "--port", "{port}", "--max-connections", "{maxConnections}"] },
  { name: "lua-callback", cmd: ["node", MOONSOCKET_CLI, "serve", "bench/lua/echo-callback.lua", "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warn"], broadcastCmd: ["node", MOONSOCKET_CLI, "serve", "bench/lua/broadcast-callback.lua", "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warn", "--max-connections", "{maxConnections}"] },
  { name: "lua-coroutine", cmd: ["node", MOONSOCKET_CLI, "serve", "bench/lua/echo-coroutine.lua", "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warn"] },
  { name: "lua-openresty", cmd: ["node", MOONSOCKET_CLI, "serve", "bench/lua/echo-openresty.lua", "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warn"] },
  // The same three on the optional native engine (needs build/Release/lua_engine.node).
  { name: "lua-callback-native", cmd: ["node", MOONSOCKET_CLI, "serve", "bench/lua/echo-callback.lua", "--lua-engine", "native", "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warn"] },
  { name: "lua-coroutine-native", cmd: ["node", MOONSOCKET_CLI, "serve", "bench/lua/echo-coroutine.lua", "--lua-engine", "native", "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warn"] },
  { name: "lua-openresty-native", cmd: ["node", MOONSOCKET_CLI, "serve", "bench/lua/echo-openresty.lua", "--lua-engine", "native", "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warn"] },
];

/** Servers run by default; the others only when named in --servers. */
const DEFAULT_SERVERS = [
  "net",
  "moonsocket",
  "ws",
  "ws+bufferutil",
  "ts-api",
  "lua-callback",
  "lua-coroutine",
  "lua-openresty",
];

/**
 * Reference servers: every result gets a column with its ratio to each of these that ran the
 * same kind of scenario (`net` is the broadcast limit; `ws+bufferutil` runs echo only).
 */
const REFERENCE_SERVERS = ["net", "ws", "ws+bufferutil"];

const ECHO_SIZES_BYTES = [64, 1024, 64 * 1024];
const ECHO_DEPTHS = [1, 16];

/** Broadcast: receivers (the sender comes on top), broadcasts outstanding, payload bytes. */
const BROADCAST_RECEIVERS = [1000, 10_000];
const BROADCAST_DEPTHS = [1, 16];
const BROADCAST_SIZE_BYTES = 64;
/** `--max-connections` of the broadcast servers: the most receivers, the sender, and room. */
const BROADCAST_MAX_CONNECTIONS = Math.max(...BROADCAST_RECEIVERS) * 2;
/**
 * File descriptors a run needs beyond one per connection (Node's own, wsload's epoll, pipes).
 * Each process needs its own; they inherit the harness's limit.
 */
const SPARE_FILE_DESCRIPTORS = 256;
/**
 * Memory to have free per broadcast receiver, both ends together: a server holds 7–12 KiB per
 * connection (the hold scenario), wsload a few, and the kernel's socket buffers fill under
 * load; this leaves a wide margin (1 GB for 10,000 receivers).
 */
const MEMORY_PER_RECEIVER_KIB = 100;

/** Core for the server, core for wsload (`taskset -c`). */
const SERVER_CPU = "1";
const WSLOAD_CPU = "0";

const SERVER_START_TIMEOUT_MS = 20_000;
const SERVER_STOP_TIMEOUT_MS = 10_000;
/** wsload gives up on connections after 60 s; allow that plus the measured time. */
const WSLOAD_SLACK_MS = 90_000;
/** Above this, the figure is wsload's limit rather than the server's (see wsload's README). */
const WSLOAD_SATURATED_PERCENT = 90;
/** Above this, other work on the machine disturbed the run. */
const OTHERS_BUSY_PERCENT = 25;
const RETRY_PAUSE_MS = 5_000;

// ---------------------------------------------------------------------------------------------
// options

const { values: opts } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    servers: { type: "string" },
    scenarios: { type: "string" },
    reps: { type: "string" },
    duration: { type: "string" },
    warmup: { type: "string" },
    connections: { type: "string" },
    "hold-connections": { type: "string" },
    retries: { type: "string" },
    live: { type: "boolean", default: false },
    out: { type: "string" },
    report: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});

if (opts.help) {
  process.stdout.write(
    [
      "usage: node bench/run.mjs [options]",
      "  --quick                  1 rep, 3 s measured, 1 s warm-up, 500 idle connections",
      `  --servers a,b            servers to run (known: ${SERVERS.map((s) => s.name).join(", ")})`,
      "  --scenarios x,y          scenarios or kinds to run (e.g. echo-64B-p16,broadcast,hold; default: all)",
      "  --reps N                 repetitions, medians taken over them [3]",
      "  --duration S             measured seconds per echo run [10]",
      "  --warmup S               wsload warm-up seconds [2]",
      "  --connections N          echo connections [100]",
      "  --hold-connections N     idle connections in the hold scenario [2000]",
      "  --retries N              reruns of a run disturbed by other work on the machine [1]",
      "  --live                   run the servers from the working tree, not from a snapshot",
      "  --out FILE               JSON results [bench/results/latest.json]",
      "  --report FILE            print the tables of an earlier JSON result; run nothing",
      "",
    ].join("\n"),
  );
  process.exit(0);
}

function positiveNumber(name, text, fallback, integer = false) {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    fail(`--${name} must be a positive ${integer ? "integer" : "number"}, got '${text}'`);
  }
  return value;
}

function fail(message) {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(2);
}

/** With --report, the settings, servers and scenarios come from the earlier result. */
const loaded = opts.report ? JSON.parse(readFileSync(resolve(REPO, opts.report), "utf8")) : null;

const settings = loaded?.settings ?? {
  reps: positiveNumber("reps", opts.reps, opts.quick ? 1 : 3, true),
  durationS: positiveNumber("duration", opts.duration, opts.quick ? 3 : 10),
  warmupS: positiveNumber("warmup", opts.warmup, opts.quick ? 1 : 2),
  connections: positiveNumber("connections", opts.connections, 100, true),
  retries: opts.retries === "0" ? 0 : positiveNumber("retries", opts.retries, 1, true),
  holdConnections: positiveNumber(
    "hold-connections",
    opts["hold-connections"],
    opts.quick ? 500 : 2000,
    true,
  ),
  /** Seconds the idle connections are held after the warm-up (memory is read before that). */
  holdS: opts.quick ? 1 : 2,
};

const serverNames = loaded
  ? loaded.settings.servers.map((s) => s.name)
  : opts.servers
    ? opts.servers
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean)
    : DEFAULT_SERVERS;
const servers = serverNames.map(
  (name) =>
    SERVERS.find((s) => s.name === name) ??
    (loaded ? { name, cmd: [], broadcastCmd: [] } : null) ??
    fail(`unknown server '${name}' (known: ${SERVERS.map((s) => s.name).join(", ")})`),
);

const allScenarios = [
  ...ECHO_SIZES_BYTES.flatMap((size) =>
    ECHO_DEPTHS.map((depth) => ({
      name: `echo-${formatSize(size)}-p${depth}`,
      kind: "echo",
      size,
      depth,
    })),
  ),
  ...BROADCAST_RECEIVERS.flatMap((receivers) =>
    BROADCAST_DEPTHS.map((depth) => ({
      name: `broadcast-${receivers}-p${depth}`,
      kind: "broadcast",
      size: BROADCAST_SIZE_BYTES,
      receivers,
      depth,
    })),
  ),
  { name: "hold", kind: "hold" },
];
const scenarioNames = loaded
  ? loaded.settings.scenarios
  : opts.scenarios
    ? opts.scenarios
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean)
    : allScenarios.map((s) => s.name);
/** A kind (`echo`, `broadcast`, `hold`) stands for all its scenarios. */
const scenarios = scenarioNames.flatMap((name) => {
  const ofKind = allScenarios.filter((s) => s.kind === name);
  if (ofKind.length > 0) return ofKind;
  return [
    allScenarios.find((s) => s.name === name) ??
      fail(
        `unknown scenario '${name}' (known: echo, broadcast, hold, ${allScenarios.map((s) => s.name).join(", ")})`,
      ),
  ];
});

/** The command `server` runs for `scenario`, or undefined when it has none for that kind. */
function commandFor(server, scenario) {
  const cmd = scenario.kind === "broadcast" ? server.broadcastCmd : server.cmd;
  return cmd?.length ? cmd : undefined;
}

/** The (scenario, server) pairs that run, in run order within one repetition. */
const plan = scenarios.flatMap((scenario) =>
  servers.filter((server) => commandFor(server, scenario)).map((server) => ({ scenario, server })),
);
if (!loaded && plan.length === 0)
  fail("none of the servers named has a command for those scenarios");

const outFile = resolve(REPO, opts.out ?? "bench/results/latest.json");

// ---------------------------------------------------------------------------------------------
// helpers

function formatSize(bytes) {
  if (bytes % 1024 === 0) return `${bytes / 1024}KiB`;
  return `${bytes}B`;
}

function log(message) {
  process.stderr.write(`${message}\n`);
}

function median(numbers) {
  const sorted = numbers.filter((n) => Number.isFinite(n)).sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function sleep(ms) {
  return new Promise((done) => setTimeout(done, ms));
}

/** A TCP port that was free a moment ago (the server binds it right after). */
function findFreePort() {
  return new Promise((done, reject) => {
    const probe = createServer();
    probe.unref();
    probe.on("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => done(port));
    });
  });
}

function commandExists(name) {
  return spawnSync("sh", ["-c", `command -v ${name}`], { stdio: "ignore" }).status === 0;
}

// ---------------------------------------------------------------------------------------------
// wsload: built in place, or into .bench-tmp/ when the shared tree is read-only

function findWsload() {
  if (process.env.WSLOAD) return process.env.WSLOAD;
  const dir = resolve(REPO, "../shared/tools/wsload");
  const source = resolve(dir, "wsload.c");
  if (!existsSync(source))
    fail(`wsload source not found at ${source} (set WSLOAD=/path/to/wsload to use a built one)`);
  const inPlace = resolve(dir, "wsload");
  const fresh = (binary) =>
    existsSync(binary) && statSync(binary).mtimeMs >= statSync(source).mtimeMs;
  if (fresh(inPlace)) return inPlace;
  let writable = true;
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    writable = false;
  }
  if (
    writable &&
    spawnSync("make", ["-C", dir], { stdio: ["ignore", "ignore", "inherit"] }).status === 0 &&
    fresh(inPlace)
  )
    return inPlace;
  const tmp = resolve(REPO, ".bench-tmp/wsload/wsload");
  if (fresh(tmp)) return tmp;
  mkdirSync(dirname(tmp), { recursive: true });
  log(`bench: building wsload into ${relative(REPO, tmp)} (${dir} is not writable)`);
  const gcc = spawnSync("gcc", ["-O2", "-g", "-Wall", "-Wextra", "-std=gnu11", "-o", tmp, source], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  if (gcc.status !== 0) fail("could not build wsload");
  return tmp;
}

/** `RESULT key=value ...` → object; numbers where the value is numeric. */
function parseResultLine(stdout) {
  const line = stdout.split("\n").find((l) => l.startsWith("RESULT "));
  if (!line) return null;
  const fields = {};
  for (const pair of line.slice("RESULT ".length).trim().split(/\s+/)) {
    const eq = pair.indexOf("=");
    if (eq < 0) continue;
    const key = pair.slice(0, eq);
    const text = pair.slice(eq + 1);
    const value = Number(text);
    fields[key] = text !== "" && Number.isFinite(value) ? value : text;
  }
  return fields;
}

function runWsload(wsload, args, timeoutMs) {
  return new Promise((done) => {
    const child = spawn("taskset", ["-c", WSLOAD_CPU, wsload, ...args], {
      cwd: REPO,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
    });
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => {
      stderr += `\nbench: wsload did not finish in ${timeoutMs} ms; killed\n`;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      done({ code, signal, stdout, stderr });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// servers: started fresh per run; only the PID we spawned is ever signalled

/** Servers currently running, so that Ctrl-C stops them. */
const running = new Set();

function keepTail(text, maxChars = 4000) {
  return text.length > maxChars ? text.slice(-maxChars) : text;
}

/** Where the server commands run: the repo, or a snapshot of its build (see takeSnapshot). */
let serverCwd = REPO;

/**
 * Copies the build (dist/src), the Lua runtime it reads at run time (src/lua/runtime),
 * package.json and bench/ into .bench-tmp/snapshot, so that a
 * rebuild by someone else during a long run does not change the code under test halfway.
 * Modules still resolve from the repo's node_modules (the snapshot lies inside the repo).
 * Returns a SHA-256 over the copied build, recorded with the results.
 */
function takeSnapshot() {
  const snapshot = resolve(REPO, ".bench-tmp/snapshot");
  rmSync(snapshot, { recursive: true, force: true });
  mkdirSync(snapshot, { recursive: true });
  if (existsSync(resolve(REPO, "dist/src"))) {
    cpSync(resolve(REPO, "dist/src"), resolve(snapshot, "dist/src"), { recursive: true });
  }
  cpSync(resolve(REPO, "src/lua/runtime"), resolve(snapshot, "src/lua/runtime"), {
    recursive: true,
  });
  cpSync(resolve(REPO, "package.json"), resolve(snapshot, "package.json"));
  const addon = "build/Release/lua_engine.node";
  if (existsSync(resolve(REPO, addon))) cpSync(resolve(REPO, addon), resolve(snapshot, addon));
  cpSync(resolve(REPO, "bench"), resolve(snapshot, "bench"), {
    recursive: true,
    filter: (source) => !source.startsWith(resolve(REPO, "bench/results")),
  });
  return { dir: snapshot, distSha256: hashTree(resolve(snapshot, "dist/src")) };
}

function hashTree(dir) {
  if (!existsSync(dir)) return null;
  const hash = createHash("sha256");
  const walk = (d) => {
    for (const entry of readdirSync(d, { withFileTypes: true }).sort((a, b) =>
      a.name.localeCompare(b.name),
    )) {
      const path = resolve(d, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith(".js"))
        hash.update(relative(dir, path)).update(readFileSync(path));
    }
  };
  walk(dir);
  return hash.digest("hex");
}

async function startServer(server, scenario) {
  const port = await findFreePort();
  const argv = commandFor(server, scenario).map((part) =>
    part
      .replaceAll("{port}", String(port))
      .replaceAll("{maxConnections}", String(BROADCAST_MAX_CONNECTIONS)),
  );
  const child = spawn("taskset", ["-c", SERVER_CPU, ...argv], {
    cwd: serverCwd,
    env: { ...process.env, ...server.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const handle = { server, child, pid: child.pid, port, output: "", exited: null, argv };
  running.add(handle);
  const exited = new Promise((done) => {
    child.on("exit", (code, signal) => {
      handle.exited = { code, signal };
      running.delete(handle);
      done(handle.exited);
    });
  });
  handle.exitedPromise = exited;
  const listening = new Promise((done) => {
    let pending = "";
    child.stdout.on("data", (chunk) => {
      handle.output = keepTail(handle.output + chunk);
      pending += chunk;
      const match = /ws:\/\/[^\s/:]+:(\d+)/.exec(pending);
      if (match) {
        handle.port = Number(match[1]);
        pending = "";
        done(true);
      }
    });
  });
  child.stderr.on("data", (chunk) => {
    handle.output = keepTail(handle.output + chunk);
  });
  const started = await Promise.race([
    listening,
    exited.then(() => false),
    sleep(SERVER_START_TIMEOUT_MS).then(() => false),
  ]);
  if (!started) {
    await stopServer(handle);
    throw new Error(`${server.name} did not start (${argv.join(" ")}):\n${handle.output}`);
  }
  return handle;
}

/** SIGTERM, then SIGKILL after a grace period; resolves with how it exited. */
async function stopServer(handle) {
  if (handle.exited) return handle.exited;
  handle.child.kill("SIGTERM");
  const result = await Promise.race([
    handle.exitedPromise,
    sleep(SERVER_STOP_TIMEOUT_MS).then(() => null),
  ]);
  if (result) return result;
  log(
    `bench: ${handle.server.name} (pid ${handle.pid}) ignored SIGTERM for ${SERVER_STOP_TIMEOUT_MS} ms; sending SIGKILL`,
  );
  handle.child.kill("SIGKILL");
  return handle.exitedPromise;
}

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    for (const handle of running) handle.child.kill("SIGKILL");
    process.exit(130);
  });
}

// ---------------------------------------------------------------------------------------------
// one run

function wsloadArgs(scenario, pid, port) {
  const url = `ws://127.0.0.1:${port}/`;
  if (scenario.kind === "hold") {
    return [
      "hold",
      "-c",
      String(settings.holdConnections),
      "-d",
      String(settings.holdS),
      "-w",
      String(settings.warmupS),
      "--pid",
      String(pid),
      url,
    ];
  }
  // broadcast: -c receivers (wsload adds the sender), -p broadcasts outstanding (closed loop).
  return [
    scenario.kind,
    "-c",
    String(scenario.kind === "broadcast" ? scenario.receivers : settings.connections),
    "-p",
    String(scenario.depth),
    "-s",
    String(scenario.size),
    "-d",
    String(settings.durationS),
    "-w",
    String(settings.warmupS),
    "--pid",
    String(pid),
    url,
  ];
}

/**
 * What makes a run's figure doubtful. `problems` are failures of the server under test (wsload
 * errors, closed or failed connections, a crash); `warnings` are conditions of the measurement
 * (wsload saturated, other work on the machine).
 */
function assessRun(scenario, result, wsloadRun, serverExit, broadcastCounts) {
  const problems = [];
  const warnings = [];
  if (!result)
    return {
      problems: [`no RESULT line (wsload exit ${wsloadRun.code ?? wsloadRun.signal})`],
      warnings,
    };
  if (wsloadRun.code !== 0) problems.push(`wsload exit ${wsloadRun.code ?? wsloadRun.signal}`);
  if (result.errors > 0) problems.push(`errors=${result.errors}`);
  if (result.proto > 0) problems.push(`protocol_errors=${result.proto}`);
  if (result.failed > 0) problems.push(`failed=${result.failed}`);
  if (result.closed > 0) problems.push(`closed=${result.closed}`);
  // Not at every receiver within 5 s: late rather than lost when nothing arrived out of order
  // (a lost message shows as an error); their fan-out time is missing from the percentiles.
  if (broadcastCounts?.incomplete > 0)
    warnings.push(`late broadcasts (incomplete=${broadcastCounts.incomplete})`);
  const wanted = connectionsOf(scenario);
  if (result.opened + result.failed < wanted) problems.push(`opened=${result.opened}/${wanted}`);
  if (serverExit)
    problems.push(`server exited during the run (${serverExit.code ?? serverExit.signal})`);
  if (scenario.kind !== "hold" && !(result.cpu_server > 0))
    problems.push(`no server CPU figure (cpu_server=${result.cpu_server})`);
  if (scenario.kind !== "hold" && result.cpu_wsload >= WSLOAD_SATURATED_PERCENT)
    warnings.push(`wsload-bound (cpu_wsload=${result.cpu_wsload}%)`);
  if (result.cpu_others > OTHERS_BUSY_PERCENT)
    warnings.push(`disturbed (cpu_others=${result.cpu_others}%)`);
  return { problems, warnings };
}

/** Connections a scenario opens: broadcast's receivers plus the sender. */
function connectionsOf(scenario) {
  if (scenario.kind === "hold") return settings.holdConnections;
  if (scenario.kind === "broadcast") return scenario.receivers + 1;
  return settings.connections;
}

/**
 * `deliveries/s: … broadcasts sent: 9 incomplete: 0 echoes to sender: 9` (not in the RESULT
 * line): broadcasts sent, those not complete after 5 s, and copies the sender got back.
 */
function parseBroadcastCounts(stdout) {
  const match = /broadcasts sent:\s*(\d+)\s+incomplete:\s*(\d+)\s+echoes to sender:\s*(\d+)/.exec(
    stdout,
  );
  if (!match) return null;
  return { sent: Number(match[1]), incomplete: Number(match[2]), toSender: Number(match[3]) };
}

/** `server rss: before=… KiB after=… KiB -> 12.34 KiB per connection` */
function parseHoldMemory(stdout, result) {
  const match = /->\s*([\d.]+)\s*KiB per connection/.exec(stdout);
  if (match) return Number(match[1]);
  if (result && result.rss_after >= 0 && result.rss_before >= 0 && result.opened > 0)
    return (result.rss_after - result.rss_before) / result.opened;
  return null;
}

/**
 * The server's `moonsocket_lua_memory_bytes` (bytes allocated by its Lua state), or null for a
 * server without it. Exact, unlike RSS: it shows a Lua style's memory per connection.
 */
async function luaMemoryBytes(port) {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`, {
      signal: AbortSignal.timeout(2000),
    });
    const match = /^moonsocket_lua_memory_bytes (\d+)$/m.exec(await res.text());
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

async function runOnce(wsload, scenario, server, rep) {
  const handle = await startServer(server, scenario);
  const args = wsloadArgs(scenario, handle.pid, handle.port);
  const timeoutMs =
    ((scenario.kind === "hold" ? settings.holdS : settings.durationS) + settings.warmupS) * 1000 +
    WSLOAD_SLACK_MS;
  const luaBefore = scenario.kind === "hold" ? await luaMemoryBytes(handle.port) : null;
  const running = runWsload(wsload, args, timeoutMs);
  let luaAfter = null;
  if (luaBefore !== null) {
    // Read while the connections are held: they open at wsload's default 2000 a second, then
    // its warm-up passes and it reads the RSS; this reads halfway through the hold after that.
    const openingS = settings.holdConnections / 2000;
    await sleep((openingS + settings.warmupS + settings.holdS / 2) * 1000);
    luaAfter = await luaMemoryBytes(handle.port);
  }
  const wsloadRun = await running;
  const diedDuringRun = handle.exited;
  await stopServer(handle);
  const result = parseResultLine(wsloadRun.stdout);
  const broadcastCounts =
    scenario.kind === "broadcast" ? parseBroadcastCounts(wsloadRun.stdout) : undefined;
  const run = {
    scenario: scenario.name,
    server: server.name,
    rep,
    command: `taskset -c ${WSLOAD_CPU} wsload ${args.join(" ")}`,
    serverCommand: `taskset -c ${SERVER_CPU} ${handle.argv.join(" ")}`,
    result,
    ...assessRun(scenario, result, wsloadRun, diedDuringRun, broadcastCounts),
  };
  if (broadcastCounts) run.broadcasts = broadcastCounts;
  // Echo: echoes; broadcast: deliveries to receivers (the sender's copies are not counted).
  if (result && scenario.kind !== "hold") {
    run.rate = result.rate;
    run.cpuServerPercent = result.cpu_server;
    run.msgsPerCpuSecond = result.cpu_server > 0 ? result.rate / (result.cpu_server / 100) : null;
  }
  if (scenario.kind === "hold") {
    run.kibPerConnection = parseHoldMemory(wsloadRun.stdout, result);
    run.luaBytesPerConnection =
      luaBefore !== null && luaAfter !== null && result?.opened > 0
        ? (luaAfter - luaBefore) / result.opened
        : null;
  }
  if (run.problems.length > 0 || run.warnings.length > 0) {
    run.wsloadOutput = `${wsloadRun.stdout}${wsloadRun.stderr}`;
    run.serverOutput = handle.output;
  }
  return run;
}

/**
 * One run, repeated up to --retries times while other work on the machine disturbed it (the
 * machine may be shared); the least disturbed attempt is kept.
 */
async function runOne(wsload, scenario, server, rep) {
  const attempts = [];
  for (let attempt = 0; attempt <= settings.retries; attempt++) {
    if (attempt > 0) await sleep(RETRY_PAUSE_MS);
    const run = await runOnce(wsload, scenario, server, rep);
    attempts.push(run);
    if (run.problems.length > 0 || !run.warnings.some((w) => w.startsWith("disturbed"))) break;
  }
  const othersOf = (run) => run.result?.cpu_others ?? Number.POSITIVE_INFINITY;
  const best = attempts.reduce((a, b) => (othersOf(b) < othersOf(a) ? b : a));
  best.attempts = attempts.length;
  return best;
}

// ---------------------------------------------------------------------------------------------
// summary

/**
 * Notes of several runs, grouped by kind with their values and how many runs had them:
 * [["failed=22"], [], ["failed=37"]] → ["failed=22/37 in 2/3"].
 */
function countNotes(notesPerRun) {
  const groups = new Map();
  for (const notes of notesPerRun) {
    for (const note of notes) {
      const match = /^(.*?)(?: \(\w+=(.*)\)|=(.*))$/.exec(note);
      const key = match ? match[1] : note;
      const value = match ? (match[2] ?? match[3]) : undefined;
      const group = groups.get(key) ?? { values: [], runs: 0 };
      if (value !== undefined) group.values.push(value);
      group.runs += 1;
      groups.set(key, group);
    }
  }
  return [...groups].map(
    ([key, { values, runs }]) =>
      `${key}${values.length ? `=${values.join("/")}` : ""} in ${runs}/${notesPerRun.length}`,
  );
}

function summarize(runs) {
  const rows = [];
  for (const scenario of scenarios) {
    for (const server of servers) {
      const mine = runs.filter((r) => r.scenario === scenario.name && r.server === server.name);
      if (mine.length === 0) continue; // the server has no command for this kind of scenario
      const pick = (key) => median(mine.map((r) => (r.result ? r.result[key] : Number.NaN)));
      const row = {
        kind: scenario.kind,
        scenario: scenario.name,
        server: server.name,
        reps: mine.length,
        problems: countNotes(mine.map((r) => r.problems)),
        warnings: countNotes(mine.map((r) => r.warnings)),
      };
      if (scenario.kind !== "hold") {
        Object.assign(row, {
          size: scenario.size,
          depth: scenario.depth,
          ...(scenario.kind === "broadcast" && {
            receivers: scenario.receivers,
            incomplete: median(mine.map((r) => r.broadcasts?.incomplete ?? Number.NaN)),
          }),
          rate: median(mine.map((r) => r.rate)),
          cpuServerPercent: median(mine.map((r) => r.cpuServerPercent)),
          msgsPerCpuSecond: median(mine.map((r) => r.msgsPerCpuSecond ?? Number.NaN)),
          cpuWsloadPercent: pick("cpu_wsload"),
          cpuOthersPercent: pick("cpu_others"),
          p50us: pick("p50"),
          p99us: pick("p99"),
          perRep: mine.map((r) => ({
            rate: r.rate,
            cpuServerPercent: r.cpuServerPercent,
            msgsPerCpuSecond: r.msgsPerCpuSecond,
          })),
        });
      } else {
        Object.assign(row, {
          connections: settings.holdConnections,
          kibPerConnection: median(mine.map((r) => r.kibPerConnection ?? Number.NaN)),
          luaBytesPerConnection: median(mine.map((r) => r.luaBytesPerConnection ?? Number.NaN)),
          rssBeforeKiB: pick("rss_before"),
          rssAfterKiB: pick("rss_after"),
          perRep: mine.map((r) => r.kibPerConnection),
        });
      }
      rows.push(row);
    }
  }
  // Ratios to the reference servers, from the medians.
  for (const row of rows) {
    row.ratios = {};
    for (const ref of REFERENCE_SERVERS) {
      const base = rows.find((r) => r.scenario === row.scenario && r.server === ref);
      if (!base) continue;
      if (row.msgsPerCpuSecond != null && base.msgsPerCpuSecond)
        row.ratios[ref] = row.msgsPerCpuSecond / base.msgsPerCpuSecond;
      if (row.kibPerConnection != null && base.kibPerConnection)
        row.ratios[ref] = row.kibPerConnection / base.kibPerConnection;
    }
  }
  return rows;
}

function fmtInt(n) {
  return n == null ? "–" : Math.round(n).toLocaleString("en-US");
}

function fmtFixed(n, digits) {
  return n == null ? "–" : n.toFixed(digits);
}

function markdownTable(header, body) {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => String(r[i]).length)));
  const line = (cells) =>
    `| ${cells.map((c, i) => (i < 2 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join(" | ")} |`;
  const rule = `|${widths.map((w, i) => (i < 2 ? `-${"-".repeat(w)}-` : `-${"-".repeat(w)}:`)).join("|")}|`;
  return [line(header), rule, ...body.map(line)].join("\n");
}

function notesOf(row) {
  return [...row.problems.map((p) => `**${p}**`), ...row.warnings].join("; ");
}

/** A summary row's kind (rows of results written before broadcast existed have none). */
function kindOf(row) {
  return row.kind ?? (row.rate !== undefined ? "echo" : "hold");
}

/** The reference servers with a row among `rows`: a table's ratio columns. */
function refsIn(rows) {
  return REFERENCE_SERVERS.filter((ref) => rows.some((r) => r.server === ref));
}

function ratioCells(row, refs) {
  return refs.map((ref) => (row.ratios[ref] == null ? "–" : `${fmtFixed(row.ratios[ref], 2)}×`));
}

function renderMarkdown(rows) {
  const echoRows = rows.filter((r) => kindOf(r) === "echo");
  const broadcastRows = rows.filter((r) => kindOf(r) === "broadcast");
  const holdRows = rows.filter((r) => kindOf(r) === "hold");
  const parts = [];
  if (echoRows.length > 0) {
    const refs = refsIn(echoRows);
    const header = [
      "scenario",
      "server",
      "msgs/s",
      "server CPU %",
      "msgs per CPU-s",
      ...refs.map((r) => `÷ ${r}`),
      "wsload CPU %",
      "others CPU %",
      "p50 µs",
      "notes",
    ];
    const body = echoRows.map((r) => [
      r.scenario,
      r.server,
      fmtInt(r.rate),
      fmtInt(r.cpuServerPercent),
      fmtInt(r.msgsPerCpuSecond),
      ...ratioCells(r, refs),
      fmtInt(r.cpuWsloadPercent),
      fmtInt(r.cpuOthersPercent),
      fmtInt(r.p50us),
      notesOf(r),
    ]);
    parts.push(
      `Echo, ${settings.connections} connections, medians of ${settings.reps} run(s) of ${settings.durationS} s (text frames):\n\n${markdownTable(header, body)}`,
    );
  }
  if (broadcastRows.length > 0) {
    const refs = refsIn(broadcastRows);
    const header = [
      "scenario",
      "server",
      "deliveries/s",
      "server CPU %",
      "deliveries per CPU-s",
      ...refs.map((r) => `÷ ${r}`),
      "wsload CPU %",
      "others CPU %",
      "fan-out p50 µs",
      "fan-out p99 µs",
      "notes",
    ];
    const body = broadcastRows.map((r) => [
      r.scenario,
      r.server,
      fmtInt(r.rate),
      fmtInt(r.cpuServerPercent),
      fmtInt(r.msgsPerCpuSecond),
      ...ratioCells(r, refs),
      fmtInt(r.cpuWsloadPercent),
      fmtInt(r.cpuOthersPercent),
      fmtInt(r.p50us),
      fmtInt(r.p99us),
      notesOf(r),
    ]);
    parts.push(
      `Broadcast, ${BROADCAST_SIZE_BYTES} B text messages from one sender to N receivers (\`broadcast-N-pP\`: P broadcasts outstanding), medians of ${settings.reps} run(s) of ${settings.durationS} s; fan-out latency is from sending until the last receiver has the message:\n\n${markdownTable(header, body)}`,
    );
  }
  if (holdRows.length > 0) {
    const refs = refsIn(holdRows);
    const header = [
      "scenario",
      "server",
      "KiB per idle connection",
      ...refs.map((r) => `÷ ${r}`),
      "Lua bytes per connection",
      "RSS before KiB",
      "RSS after KiB",
      "notes",
    ];
    const body = holdRows.map((r) => [
      r.scenario,
      r.server,
      fmtFixed(r.kibPerConnection, 2),
      ...ratioCells(r, refs),
      fmtInt(r.luaBytesPerConnection),
      fmtInt(r.rssBeforeKiB),
      fmtInt(r.rssAfterKiB),
      notesOf(r),
    ]);
    parts.push(
      `Idle connections (${settings.holdConnections}), RSS growth per connection, medians of ${settings.reps} run(s):\n\n${markdownTable(header, body)}`,
    );
  }
  return `${parts.join("\n\n")}\n`;
}

function machineInfo() {
  const cpuinfo = existsSync("/proc/cpuinfo") ? readFileSync("/proc/cpuinfo", "utf8") : "";
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? cpus()[0]?.model ?? "unknown";
  const git = (args) => {
    const out = spawnSync("git", args, { cwd: REPO, encoding: "utf8" });
    return out.status === 0 ? out.stdout.trim() : null;
  };
  const nproc = spawnSync("nproc", { encoding: "utf8" });
  return {
    date: new Date().toISOString(),
    nproc: nproc.status === 0 ? Number(nproc.stdout.trim()) : cpus().length,
    cpuModel: model,
    node: process.version,
    commit: git(["rev-parse", "HEAD"]),
    dirtyWorkingTree: (git(["status", "--porcelain"]) ?? "") !== "",
    lscpu: spawnSync("lscpu", { encoding: "utf8" }).stdout?.trim() || null,
  };
}

/** This process's open-file limits (inherited by the servers and wsload it starts). */
function openFileLimits() {
  const line = readFileSync("/proc/self/limits", "utf8")
    .split("\n")
    .find((l) => l.startsWith("Max open files"));
  const [soft, hard] = (line ?? "")
    .split(/\s{2,}/)
    .slice(1, 3)
    .map((v) => (v === "unlimited" ? Number.POSITIVE_INFINITY : Number(v)));
  return { soft, hard };
}

function memAvailableKiB() {
  const match = /^MemAvailable:\s+(\d+) kB$/m.exec(readFileSync("/proc/meminfo", "utf8"));
  return match ? Number(match[1]) : null;
}

/**
 * Makes sure the largest broadcast scenario can run before any run starts: a file descriptor
 * per connection in the server and in wsload, a local port per connection, and memory. The
 * servers (Node) and wsload each raise their soft open-file limit to the hard one, which they
 * inherit from here; when that is too low this process raises its own with `prlimit` (which
 * needs root to go above the hard limit), else stops with what to do. Returns what it found.
 */
function ensureBroadcastResources() {
  const receivers = Math.max(0, ...plan.map(({ scenario }) => scenario.receivers ?? 0));
  if (receivers === 0) return null;
  const neededFiles = receivers + 1 + SPARE_FILE_DESCRIPTORS;
  const skip = "or leave the larger broadcast scenarios out with --scenarios";
  let limits = openFileLimits();
  if (!(limits.soft >= neededFiles)) {
    const soft = neededFiles;
    const hard = Math.max(limits.hard, neededFiles);
    spawnSync("prlimit", [`--pid=${process.pid}`, `--nofile=${soft}:${hard}`], { stdio: "ignore" });
    const raised = openFileLimits();
    if (raised.soft > limits.soft) log(`bench: raised the open-file limit to ${raised.soft}`);
    limits = raised;
  }
  if (!(limits.soft >= neededFiles))
    fail(
      `broadcast to ${receivers} receivers needs ${neededFiles} open files per process; the limit is ${limits.soft} (hard ${limits.hard}) and could not be raised: run 'ulimit -n ${neededFiles}' (as root for more than the hard limit) first, ${skip}`,
    );
  const [low, high] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8")
    .trim()
    .split(/\s+/)
    .map(Number);
  if (high - low + 1 < receivers + 1)
    fail(
      `broadcast to ${receivers} receivers needs ${receivers + 1} local ports; net.ipv4.ip_local_port_range has ${high - low + 1}: widen it, ${skip}`,
    );
  const neededKiB = receivers * MEMORY_PER_RECEIVER_KIB;
  const availableKiB = memAvailableKiB();
  if (availableKiB !== null && availableKiB < neededKiB)
    fail(
      `broadcast to ${receivers} receivers needs about ${Math.ceil(neededKiB / 1024)} MiB of free memory; ${Math.floor(availableKiB / 1024)} MiB available: ${skip}`,
    );
  return {
    receivers,
    openFilesNeeded: neededFiles,
    openFilesLimit: limits.soft,
    memoryNeededMiB: Math.ceil(neededKiB / 1024),
    memoryAvailableMiB: availableKiB === null ? null : Math.floor(availableKiB / 1024),
  };
}

// ---------------------------------------------------------------------------------------------
// main

async function main() {
  if (loaded) {
    process.stdout.write(renderMarkdown(summarize(loaded.runs)));
    return 0;
  }
  if (!commandExists("taskset"))
    fail("taskset not found (util-linux); it pins the server and wsload to separate cores");
  const usesBuild = (cmd) => cmd.includes(MOONSOCKET_CLI) || cmd.includes(TS_BROADCAST_SERVER);
  if (
    plan.some(({ scenario, server }) => usesBuild(commandFor(server, scenario))) &&
    !existsSync(resolve(REPO, MOONSOCKET_CLI))
  ) {
    fail(`${MOONSOCKET_CLI} not found: build first with 'npx tsc -b'`);
  }
  const broadcastResources = ensureBroadcastResources();
  const wsload = findWsload();
  const machine = machineInfo();
  if (broadcastResources) {
    machine.broadcastResources = broadcastResources;
    log(
      `bench: broadcast to up to ${broadcastResources.receivers} receivers: open files ${broadcastResources.openFilesLimit} (needs ${broadcastResources.openFilesNeeded}), memory ${broadcastResources.memoryAvailableMiB ?? "?"} MiB available (needs about ${broadcastResources.memoryNeededMiB})`,
    );
  }
  if (opts.live) {
    machine.distSha256 = hashTree(resolve(REPO, "dist/src"));
  } else {
    const snapshot = takeSnapshot();
    serverCwd = snapshot.dir;
    machine.distSha256 = snapshot.distSha256;
    log(`bench: servers run from a snapshot of the build in ${relative(REPO, snapshot.dir)}`);
  }
  const runsPerRep = plan.length;
  // wsload opens connections at 2000 a second before it warms up and measures.
  const runSeconds = plan.reduce(
    (sum, { scenario }) =>
      sum +
      (scenario.kind === "hold"
        ? settings.holdConnections / 2000 + settings.warmupS + settings.holdS + 1
        : connectionsOf(scenario) / 2000 + settings.warmupS + settings.durationS + 1),
    0,
  );
  log(
    `bench: wsload ${relative(REPO, wsload) || wsload}; ${machine.nproc} cores (${machine.cpuModel}), node ${machine.node}`,
  );
  log(
    `bench: servers ${servers.map((s) => s.name).join(", ")}; ${settings.reps} rep(s) × ${runsPerRep} runs (≈ ${Math.ceil((settings.reps * runSeconds) / 60)} min without retries)`,
  );
  if (machine.nproc < 2)
    log("bench: warning: fewer than 2 cores; server and wsload will share one");

  const runs = [];
  const startedAt = Date.now();
  for (let rep = 1; rep <= settings.reps; rep++) {
    for (const { scenario, server } of plan) {
      const run = await runOne(wsload, scenario, server, rep);
      runs.push(run);
      const figure =
        scenario.kind === "echo"
          ? `${fmtInt(run.rate)} msgs/s at ${fmtInt(run.cpuServerPercent)}% server CPU = ${fmtInt(run.msgsPerCpuSecond)} msgs/CPU-s (wsload ${run.result?.cpu_wsload ?? "?"}%)`
          : scenario.kind === "broadcast"
            ? `${fmtInt(run.rate)} deliveries/s at ${fmtInt(run.cpuServerPercent)}% server CPU = ${fmtInt(run.msgsPerCpuSecond)} deliveries/CPU-s, fan-out p50/p99 ${fmtInt(run.result?.p50)}/${fmtInt(run.result?.p99)} µs (wsload ${run.result?.cpu_wsload ?? "?"}%)`
            : `${fmtFixed(run.kibPerConnection, 2)} KiB per connection`;
      const notes = [
        ...run.problems.map((p) => `!! ${p}`),
        ...run.warnings,
        ...(run.attempts > 1 ? [`best of ${run.attempts} attempts`] : []),
      ];
      log(
        `[rep ${rep}/${settings.reps}] ${scenario.name.padEnd(19)} ${server.name.padEnd(14)} ${figure}${notes.length ? `  (${notes.join("; ")})` : ""}`,
      );
      if (run.problems.length && run.wsloadOutput)
        log(run.wsloadOutput.replace(/^/gm, "    | ").trimEnd());
    }
  }
  const rows = summarize(runs);
  const report = {
    machine,
    settings: {
      ...settings,
      servers: servers.map((s) => ({
        name: s.name,
        cmd: s.cmd?.join(" ") ?? null,
        broadcastCmd: s.broadcastCmd?.join(" ") ?? null,
        env: s.env ?? {},
      })),
      scenarios: scenarios.map((s) => s.name),
      serverCpu: SERVER_CPU,
      wsloadCpu: WSLOAD_CPU,
      wsload,
    },
    elapsedSeconds: Math.round((Date.now() - startedAt) / 1000),
    summary: rows,
    runs,
  };
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(outFile, `${JSON.stringify(report, null, 2)}\n`);
  log(`bench: wrote ${relative(REPO, outFile)}`);
  process.stdout.write(renderMarkdown(rows));
  return runs.some((r) => r.problems.length > 0) ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    for (const handle of running) handle.child.kill("SIGKILL");
    process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
