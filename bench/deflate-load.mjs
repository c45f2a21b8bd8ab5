#!/usr/bin/env node
// Load for a permessage-deflate echo server, with `ws` clients (wsload speaks no extensions).
//
//   node bench/deflate-load.mjs [options] ws://127.0.0.1:PORT/
//     --clients N     echo clients, each with one message in flight (default 100)
//     --size B        their message size in bytes (default 64)
//     --threshold B   clients compress messages of at least this size (default 0: all)
//     --streamer B    one more client echoing B-byte compressed messages (default 0: none)
//     --duration S    seconds measured, after a 2 s warm-up (default 10)
//     --pid PID       the server's process: CPU seconds it used while measuring, and
//                     messages per server CPU-second
//
// Prints one RESULT line: the echo clients' rate and latency percentiles (µs, from send to
// echo), the streamer's messages, and server CPU. Messages are text that compresses about
// 3:1, like chat or JSON, not zeros.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import WebSocket from "ws";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    clients: { type: "string", default: "100" },
    size: { type: "string", default: "64" },
    threshold: { type: "string", default: "0" },
    streamer: { type: "string", default: "0" },
    duration: { type: "string", default: "10" },
    pid: { type: "string" },
  },
});
const url = positionals[0] ?? "ws://127.0.0.1:8085/";
const clients = Number(values.clients);
const size = Number(values.size);
const threshold = Number(values.threshold);
const streamBytes = Number(values.streamer);
const duration = Number(values.duration) * 1000;
const WARMUP = 2000;

/** Words in a fixed pseudo-random order: compresses like prose, never like zeros. */
function text(bytes, seed) {
  const words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi".split(
    " ",
  );
  const parts = [];
  let length = 0;
  let x = seed;
  while (length < bytes) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    const word = `${words[x % words.length]}${x % 11 === 0 ? x % 100000 : ""} `;
    parts.push(word);
    length += word.length;
  }
  return Buffer.from(parts.join("").slice(0, bytes));
}

function cpuSeconds(pid) {
  // utime and stime of every thread of the process, in clock ticks (100 per second here).
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function open(deflateOptions) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: deflateOptions });
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

let measuring = false;
let stopped = false;
const latencies = [];
let echoes = 0;
let streamed = 0;

async function echoClient(index) {
  const ws = await open({ threshold });
  const payload = text(size, index + 1);
  let sentAt = 0;
  ws.on("message", () => {
    if (measuring) {
      latencies.push((performance.now() - sentAt) * 1000);
      echoes++;
    }
    if (stopped) return ws.close();
    sentAt = performance.now();
    ws.send(payload);
  });
  sentAt = performance.now();
  ws.send(payload);
}

async function streamClient() {
  const ws = await open({ threshold: 0 });
  const payload = text(streamBytes, 7);
  ws.on("message", () => {
    if (measuring) streamed++;
    if (stopped) return ws.close();
    ws.send(payload);
  });
  ws.send(payload);
}

await Promise.all(Array.from({ length: clients }, (_, i) => echoClient(i)));
if (streamBytes > 0) await streamClient();
await new Promise((resolve) => setTimeout(resolve, WARMUP));
const pid = values.pid;
const cpuBefore = pid ? cpuSeconds(pid) : 0;
const started = performance.now();
measuring = true;
await new Promise((resolve) => setTimeout(resolve, duration));
measuring = false;
const elapsed = (performance.now() - started) / 1000;
const cpu = pid ? cpuSeconds(pid) - cpuBefore : 0;
stopped = true;

latencies.sort((a, b) => a - b);
const at = (q) =>
  Math.round(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0);
const rate = echoes / elapsed;
const fields = [
  `clients=${clients}`,
  `size=${size}`,
  `streamer=${streamBytes}`,
  `rate=${Math.round(rate)}`,
  `p50=${at(0.5)}`,
  `p99=${at(0.99)}`,
  `max=${Math.round(latencies.at(-1) ?? 0)}`,
  `streamed=${streamed}`,
];
if (pid) {
  fields.push(`server_cpu=${cpu.toFixed(2)}`);
  fields.push(`per_cpu_s=${cpu > 0 ? Math.round(echoes / cpu) : 0}`);
}
console.log(`RESULT ${fields.join(" ")}`);
setTimeout(() => process.exit(0), 500).unref();
