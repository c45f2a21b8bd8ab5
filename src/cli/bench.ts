/**
 * `moonsocket bench URL`: a load generator for any WebSocket server, measuring what wsload
 * measures (`/work/shared/tools/wsload`): echo throughput and round-trip latency with every echo
 * checked byte for byte, or broadcast fan-out. The engine is in `bench-engine.ts`, the output in
 * `bench-report.ts`.
 *
 * @module
 */

import { existsSync } from "node:fs";
import { ArgsError, defineCommand, formatHelp, parseCommandArgs } from "./args.js";
import type { BenchOptions, BenchProgress, BenchResult } from "./bench-engine.js";
import { runBenchmark } from "./bench-engine.js";
import { formatJson, formatProgress, formatSummary } from "./bench-report.js";
import { runThreaded } from "./bench-threads.js";
import { parseHeaders, parseWebSocketUrl } from "./connect.js";
import { explainConnectError } from "./connect-errors.js";

/** Largest message size accepted: wsload's frame limit. */
const MAX_SIZE = 64 * 1024 * 1024;

/** The definition of `moonsocket bench`: options, help text, examples. */
export const BENCH_COMMAND = defineCommand({
  name: "bench",
  description:
    "Load-test a WebSocket server. echo mode: every connection keeps --pipeline messages of --size bytes " +
    "in flight and checks every echo byte for byte; reports messages/s, MB/s and the round-trip latency " +
    "(p50/p90/p99/max). broadcast mode: --connections receivers and one sender whose messages start with " +
    "their sequence number (16 hex digits) and which the server must relay to everyone " +
    "('moonsocket echo --broadcast' does); reports " +
    "deliveries/s and the fan-out latency (send → last receiver). Measures after a warm-up, like wsload, " +
    "and stops early once the server has closed the connections that traffic needs; " +
    "it reports its own CPU use: at 90 % or more of a core the bench, not the server, was the limit. " +
    "A progress line goes to stderr (in place on a terminal), the summary table (or --json) to stdout. " +
    "Exit status: 0 on success; 1 when a connection failed or was closed by the server, or a message " +
    "was wrong; 2 for a usage error.",
  positionals: [
    { name: "URL", required: true, description: "ws:// or wss:// address of the server" },
  ],
  options: {
    mode: {
      type: "string",
      short: "m",
      choices: ["echo", "broadcast"],
      default: "echo",
      description: "traffic pattern",
    },
    connections: {
      type: "number",
      short: "c",
      integer: true,
      min: 1,
      max: 1_000_000,
      default: 100,
      description: "connections (broadcast: receivers, plus one sender)",
    },
    pipeline: {
      type: "number",
      short: "p",
      integer: true,
      min: 1,
      max: 1_000_000,
      default: 1,
      description:
        "echo: messages in flight per connection; broadcast closed loop: broadcasts outstanding",
    },
    size: {
      type: "bytes",
      short: "s",
      min: 0,
      max: MAX_SIZE,
      default: 64,
      description: "payload bytes per message (broadcast: at least 16)",
    },
    duration: {
      type: "duration",
      short: "d",
      min: 100,
      default: 10_000,
      description: "measured time",
    },
    warmup: {
      type: "duration",
      short: "w",
      min: 0,
      default: 2000,
      description: "time after all connections are open and before measuring",
    },
    binary: {
      type: "boolean",
      short: "B",
      description: "binary messages (default: text messages of printable ASCII)",
    },
    interval: {
      type: "duration",
      short: "t",
      min: 0,
      default: 0,
      description:
        "broadcast: send one message every this many ms (0: closed loop, --pipeline outstanding)",
    },
    threads: {
      type: "number",
      short: "T",
      integer: true,
      min: 1,
      max: 64,
      default: 1,
      description: "echo: split the connections over this many threads, to use more than one core",
    },
    header: {
      type: "string",
      short: "H",
      multiple: true,
      metavar: "Name: value",
      description: "extra request header for every connection",
    },
    subprotocol: {
      type: "string",
      multiple: true,
      metavar: "protocol",
      description: "subprotocol to offer on every connection, in order of preference",
    },
    insecure: {
      type: "boolean",
      short: "k",
      description: "wss://: accept any certificate (self-signed test servers)",
    },
    pid: {
      type: "number",
      integer: true,
      min: 1,
      description:
        "the server's process id: report its CPU use and messages per server CPU-second (Linux)",
    },
    json: { type: "boolean", description: "print one JSON object instead of the table" },
    progress: {
      type: "boolean",
      description: "print a progress line every second even when stderr is not a terminal",
    },
    quiet: { type: "boolean", short: "q", description: "no progress line" },
  },
  examples: [
    "moonsocket bench ws://127.0.0.1:9001/",
    "moonsocket bench -c 100 -p 16 -s 1KiB -d 5s --pid $(pgrep -f 'moonsocket echo') ws://127.0.0.1:9001/",
    "moonsocket bench --mode broadcast -c 1000 --interval 100 ws://127.0.0.1:8085/room",
    "moonsocket bench --threads 2 -c 200 -p 16 ws://127.0.0.1:9001/",
    "moonsocket bench --json -d 2s -w 500ms ws://127.0.0.1:9001/ | jq .messagesPerSecond",
  ],
});

/** `moonsocket bench`: resolves with the exit code once the run is reported. */
export async function runBench(argv: readonly string[]): Promise<number> {
  const { help, values, positionals } = parseCommandArgs(BENCH_COMMAND, argv);
  if (help) {
    process.stdout.write(formatHelp(BENCH_COMMAND));
    return 0;
  }
  const url = parseWebSocketUrl("bench", positionals[0]!);
  const headers = parseHeaders("bench", values.header);
  if (values.mode === "broadcast" && values.size < 16) {
    throw new ArgsError(
      "moonsocket bench: --mode broadcast needs --size 16 or more (the sequence number takes 16 bytes)",
    );
  }
  if (values.mode === "broadcast" && values.threads > 1) {
    throw new ArgsError(
      "moonsocket bench: --threads works with --mode echo only (a broadcast has a single sender)",
    );
  }
  if (
    values.pid !== undefined &&
    process.platform === "linux" &&
    !existsSync(`/proc/${values.pid}/stat`)
  ) {
    throw new ArgsError(`moonsocket bench: --pid ${values.pid}: no such process`);
  }

  const stderr = process.stderr;
  const inPlace = stderr.isTTY === true && !values.quiet;
  const lines = !inPlace && values.progress && !values.quiet;
  let progressShown = false;
  const onProgress = (progress: BenchProgress) => {
    if (inPlace) {
      stderr.write(`\r${formatProgress(progress, values.mode)}\x1b[K`);
      progressShown = true;
    } else if (lines) {
      stderr.write(`${formatProgress(progress, values.mode)}\n`);
    }
  };

  const options: BenchOptions = {
    url,
    mode: values.mode,
    connections: values.connections,
    pipeline: values.pipeline,
    size: values.size,
    binary: values.binary,
    durationMs: values.duration,
    warmupMs: values.warmup,
    intervalMs: values.interval,
    headers,
    protocols: values.subprotocol,
    rejectUnauthorized: !values.insecure,
    ...(values.pid === undefined ? {} : { pid: values.pid }),
    onProgress,
  };
  const run = values.threads > 1 ? runThreaded(options, values.threads) : runBenchmark(options);
  // Ctrl-C ends the run early; what was measured so far is still reported.
  const interrupt = () => run.stop();
  process.once("SIGINT", interrupt);
  const result = await run.done;
  process.removeListener("SIGINT", interrupt);
  if (progressShown) stderr.write("\r\x1b[K");

  const code = decideExitCode(result);
  if (values.json) process.stdout.write(formatJson(result, code));
  else if (result.opened > 0) process.stdout.write(formatSummary(result));
  const connectProblem =
    result.connectError === null ? null : await explainConnectError(result.connectError, url);
  for (const problem of describeProblems(result, connectProblem))
    stderr.write(`moonsocket bench: ${problem}\n`);
  return code;
}

/** 0 when every connection opened and stayed open and every message was right, else 1. */
export function decideExitCode(result: BenchResult): number {
  const bad =
    result.opened === 0 ||
    result.failed > 0 ||
    result.closed > 0 ||
    result.errors > 0 ||
    result.protocolErrors > 0;
  return bad ? 1 : 0;
}

/** What went wrong, for stderr, one sentence each; `connectProblem` explains a failed connection. */
function describeProblems(result: BenchResult, connectProblem: string | null): string[] {
  const problems: string[] = [];
  const total = result.connections + (result.mode === "broadcast" ? 1 : 0);
  const why = connectProblem === null ? "" : `: ${connectProblem}`;
  if (result.opened === 0) {
    problems.push(`cannot connect to ${result.url}${why}`);
    return problems;
  }
  if (result.stopReason !== null) {
    const when =
      result.measuredMs > 0
        ? `after ${(result.measuredMs / 1000).toFixed(1)} s of measuring`
        : "before measuring";
    problems.push(`stopped ${when}: ${result.stopReason}`);
  }
  if (result.failed > 0) problems.push(`${result.failed} of ${total} connections failed${why}`);
  if (result.closed > 0)
    problems.push(`the server closed ${result.closed} connections during the run`);
  if (result.errors > 0)
    problems.push(
      `${result.errors} ${result.mode === "broadcast" ? "deliveries" : "messages"} were wrong`,
    );
  if (result.protocolErrors > 0) problems.push(`${result.protocolErrors} protocol errors`);
  if (
    (result.errors > 0 || result.protocolErrors > 0 || result.closed > 0) &&
    result.firstError !== null
  ) {
    problems.push(`first problem: ${result.firstError}`);
  }
  return problems;
}
