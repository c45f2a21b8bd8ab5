/**
 * `moonsocket bench` as a user runs it: short runs against `moonsocket echo`, a `ws` echo
 * server and a `ws` broadcasting server, checked through `--json`; a server that corrupts
 * echoes; an unreachable URL; the progress lines and the table.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, it } from "node:test";
import { type WebSocket, WebSocketServer as WsServer } from "ws";
import { type CliRun, runCli } from "../helpers/cli-process.js";
import { Resources, withTimeout } from "../helpers/net-helpers.js";

const resources = new Resources();
afterEach(() => resources.closeAll());

/** Short runs keep the suite quick; the figures only need to be sane. */
const SHORT = ["--duration", "1500ms", "--warmup", "300ms"];

type Run = CliRun;

function run(args: string[]): Run {
  return runCli(resources, args);
}

async function finished(proc: Run, ms = 20_000): Promise<number | string> {
  return withTimeout(proc.exited, ms, `moonsocket bench to exit (stderr: ${proc.stderr()})`);
}

/** The fields of `--json` that the tests look at. */
interface BenchJson {
  mode: string;
  connections: number;
  pipeline: number;
  size: number;
  binary: boolean;
  measuredMs: number;
  messages: number;
  messagesPerSecond: number;
  megabytesPerSecond: number;
  latencyUs: { p50: number; p90: number; p99: number; max: number; count: number };
  opened: number;
  failed: number;
  closed: number;
  errors: number;
  protocolErrors: number;
  broadcast: {
    intervalMs: number;
    sent: number;
    incomplete: number;
    echoesToSender: number;
  } | null;
  cpu: {
    benchPercent: number;
    serverPercent: number | null;
    othersPercent: number | null;
    cores: number;
  } | null;
  messagesPerServerCpuSecond: number | null;
  firstError: string | null;
  connectError: string | null;
  benchLimited: boolean;
  ok: boolean;
}

async function benchJson(
  args: string[],
): Promise<{ code: number | string; result: BenchJson; proc: Run }> {
  const proc = run(["bench", "--json", ...args]);
  const code = await finished(proc);
  const lines = proc
    .stdout()
    .split("\n")
    .filter((line) => line !== "");
  assert.equal(lines.length, 1, `exactly one JSON line on stdout, got: ${proc.stdout()}`);
  return { code, result: JSON.parse(lines[0]!) as BenchJson, proc };
}

/** Rates positive, no errors, every connection open, percentiles in order. */
function assertSane(result: BenchJson, connections: number): void {
  assert.ok(result.messagesPerSecond > 0, "rate > 0");
  assert.ok(result.megabytesPerSecond > 0, "MB/s > 0");
  assert.ok(result.messages > 0);
  assert.ok(result.measuredMs >= 1000, `measured ${result.measuredMs} ms`);
  assert.equal(result.errors, 0, result.firstError ?? "");
  assert.equal(result.protocolErrors, 0);
  assert.equal(result.failed, 0);
  assert.equal(result.closed, 0);
  assert.equal(result.opened, connections);
  const l = result.latencyUs;
  assert.ok(l.count > 0);
  assert.ok(
    l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max,
    `ordered percentiles: ${JSON.stringify(l)}`,
  );
  assert.ok(result.cpu !== null && result.cpu.benchPercent > 0);
  assert.equal(result.ok, true);
}

async function startWsServer(
  onConnection?: (ws: WebSocket, wss: WsServer) => void,
): Promise<string> {
  const wss = new WsServer({ port: 0, host: "127.0.0.1", perMessageDeflate: false });
  resources.add(wss, (s) => {
    for (const client of s.clients) client.terminate();
    return new Promise((resolve) => s.close(() => resolve(undefined)));
  });
  wss.on("connection", (ws) => {
    ws.on("error", () => {});
    if (onConnection !== undefined) onConnection(ws, wss);
    else ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
  return `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`;
}

/** Starts `moonsocket echo --port 0`; resolves with its URL and pid. */
async function startMoonsocketEcho(): Promise<{ url: string; pid: number }> {
  const proc = run(["echo", "--port", "0", "--log-level", "warn"]);
  const url = await withTimeout(
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const match = /listening on (ws:\/\/127\.0\.0\.1:\d+\/)/.exec(proc.stdout());
        if (match) resolve(match[1]!);
      };
      proc.child.stdout!.on("data", check);
      void proc.exited.then((code) => reject(new Error(`echo exited ${code}: ${proc.stderr()}`)));
    }),
    5000,
    "the echo server's banner",
  );
  return { url, pid: proc.child.pid! };
}

describe("moonsocket bench --mode echo", () => {
  it("against moonsocket echo: sane figures, server CPU with --pid, exit 0", async () => {
    const { url, pid } = await startMoonsocketEcho();
    const { code, result, proc } = await benchJson([
      ...SHORT,
      "-c",
      "20",
      "--pid",
      String(pid),
      url,
    ]);
    assert.equal(code, 0, proc.stderr());
    assertSane(result, 20);
    assert.equal(result.mode, "echo");
    assert.equal(result.size, 64);
    assert.equal(result.pipeline, 1);
    assert.equal(result.broadcast, null);
    if (process.platform === "linux") {
      assert.ok(
        result.cpu!.serverPercent !== null && result.cpu!.serverPercent > 0,
        "server CPU sampled",
      );
      assert.ok(
        result.messagesPerServerCpuSecond !== null && result.messagesPerServerCpuSecond > 0,
      );
    }
  });

  it("against a ws echo server: pipelined 1 KiB binary messages", async () => {
    const url = await startWsServer();
    const { code, result, proc } = await benchJson([
      ...SHORT,
      "-c",
      "10",
      "-p",
      "8",
      "-s",
      "1KiB",
      "--binary",
      url,
    ]);
    assert.equal(code, 0, proc.stderr());
    assertSane(result, 10);
    assert.equal(result.size, 1024);
    assert.equal(result.binary, true);
    assert.ok(
      Math.abs(result.megabytesPerSecond * 1e6 - result.messagesPerSecond * 1024) <
        result.megabytesPerSecond * 1e4,
    );
  });

  it("--threads 2 splits the connections over two threads and adds up the results", async () => {
    const url = await startWsServer();
    const { code, result, proc } = await benchJson([
      ...SHORT,
      "--threads",
      "2",
      "-c",
      "9",
      "-p",
      "2",
      url,
    ]);
    assert.equal(code, 0, proc.stderr());
    assertSane(result, 9);
    assert.equal(result.connections, 9);
    assert.equal((result as BenchJson & { threads: number }).threads, 2);
  });

  it("sends --header and --subprotocol with every handshake", async () => {
    const seen: string[] = [];
    const wss = new WsServer({
      port: 0,
      host: "127.0.0.1",
      handleProtocols: (protocols) => (protocols.has("echo.v1") ? "echo.v1" : false),
      verifyClient: ({ req }: { req: http.IncomingMessage }) => {
        seen.push(`${req.headers["x-bench"]}`);
        return req.headers["x-bench"] === "yes";
      },
    });
    resources.add(wss, (s) => {
      for (const client of s.clients) client.terminate();
      return new Promise((resolve) => s.close(() => resolve(undefined)));
    });
    wss.on("connection", (ws) => {
      ws.on("error", () => {});
      ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
    });
    await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
    const url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`;
    const args = [
      ...SHORT,
      "-c",
      "3",
      "-H",
      "X-Bench: yes",
      "--subprotocol",
      "other",
      "--subprotocol",
      "echo.v1",
      url,
    ];
    const { code, result, proc } = await benchJson(args);
    assert.equal(code, 0, proc.stderr());
    assertSane(result, 3);
    assert.deepEqual(seen, ["yes", "yes", "yes"]);
  });

  it("checks every echo: a server that alters some of them makes errors and exit 1", async () => {
    let count = 0;
    const url = await startWsServer((ws) =>
      ws.on("message", (data: Buffer, isBinary) => {
        const copy = Buffer.from(data);
        if (++count % 50 === 0) copy[0] = copy[0]! ^ 1;
        ws.send(copy, { binary: isBinary });
      }),
    );
    const { code, result, proc } = await benchJson([...SHORT, "-c", "5", url]);
    assert.equal(code, 1);
    assert.ok(result.errors > 0, "errors counted");
    assert.equal(result.ok, false);
    assert.match(result.firstError ?? "", /different bytes/);
    assert.match(proc.stderr(), /messages were wrong/);
  });

  it("echoes split into fragments with pings between them are reassembled and pongs sent", async () => {
    let pongs = 0;
    const url = await startWsServer((ws) => {
      ws.on("pong", () => pongs++);
      ws.on("message", (data: Buffer, isBinary) => {
        const half = data.length >> 1;
        ws.send(data.subarray(0, half), { binary: isBinary, fin: false });
        ws.ping();
        ws.send(data.subarray(half), { binary: isBinary, fin: true });
      });
    });
    const { code, result, proc } = await benchJson([...SHORT, "-c", "4", "-s", "300", url]);
    assert.equal(code, 0, proc.stderr());
    assertSane(result, 4);
    assert.ok(pongs > 0, "pings answered");
  });

  it("prints a table on stdout, and one progress line per second with --progress", async () => {
    const url = await startWsServer();
    const proc = run(["bench", "--progress", "-c", "4", "-d", "2s", "-w", "200ms", url]);
    assert.equal(await finished(proc), 0, proc.stderr());
    const table = proc.stdout();
    assert.match(
      table,
      /^moonsocket bench echo ws:\/\/127\.0\.0\.1:\d+\/\n4 connections, pipeline 1, 64 B text/,
    );
    for (const row of [
      "messages/s",
      "MB/s",
      "echo latency",
      "p50",
      "p99",
      "connections",
      "errors",
      "cpu",
    ]) {
      assert.ok(table.includes(row), `table has ${row}`);
    }
    const progress = proc
      .stderr()
      .split("\n")
      .filter((line) => /^\[\s*\d+s\]/.test(line));
    assert.ok(progress.length >= 1, `progress lines: ${proc.stderr()}`);
    assert.match(progress.at(-1)!, /open 4\/4 .* msg\/s .*errors 0 .*bench cpu \d+%/);
  });

  it("without --progress and not on a terminal, stderr stays quiet", async () => {
    const url = await startWsServer();
    const proc = run(["bench", "-c", "2", "-d", "1200ms", "-w", "100ms", url]);
    assert.equal(await finished(proc), 0, proc.stderr());
    assert.equal(proc.stderr(), "");
  });
});

describe("moonsocket bench --mode broadcast", () => {
  /** A ws server that relays every message to every client, the sender included. */
  function broadcaster(): Promise<string> {
    return startWsServer((ws, wss) =>
      ws.on("message", (data, isBinary) => {
        for (const client of wss.clients) client.send(data, { binary: isBinary });
      }),
    );
  }

  it("closed loop: deliveries, fan-out latency, copies to the sender counted apart", async () => {
    const url = await broadcaster();
    const { code, result, proc } = await benchJson([
      ...SHORT,
      "--mode",
      "broadcast",
      "-c",
      "20",
      "-p",
      "2",
      url,
    ]);
    assert.equal(code, 0, proc.stderr());
    assertSane(result, 21);
    assert.equal(result.mode, "broadcast");
    assert.ok(result.broadcast !== null && result.broadcast.sent > 0);
    assert.equal(result.broadcast.incomplete, 0);
    assert.ok(result.broadcast.echoesToSender > 0);
    // Every measured broadcast reached all 20 receivers.
    assert.ok(
      result.messages >= result.latencyUs.count * 20 - 40 * 20,
      `${result.messages} deliveries`,
    );
  });

  it("open loop every 20 ms", async () => {
    const url = await broadcaster();
    const { code, result, proc } = await benchJson([
      ...SHORT,
      "--mode",
      "broadcast",
      "-c",
      "5",
      "--interval",
      "20",
      url,
    ]);
    assert.equal(code, 0, proc.stderr());
    assertSane(result, 6);
    // About 50 broadcasts a second to 5 receivers: 250 deliveries/s.
    assert.ok(
      result.messagesPerSecond > 100 && result.messagesPerSecond < 400,
      `${result.messagesPerSecond}/s`,
    );
    assert.equal(result.broadcast!.intervalMs, 20);
  });

  it("refuses --threads (exit 2)", async () => {
    const proc = run(["bench", "--mode", "broadcast", "--threads", "2", "ws://127.0.0.1:1/"]);
    assert.equal(await finished(proc), 2);
    assert.match(proc.stderr(), /--threads works with --mode echo only/);
  });

  it("refuses a --size below 16 (exit 2)", async () => {
    const proc = run(["bench", "--mode", "broadcast", "-s", "8", "ws://127.0.0.1:1/"]);
    assert.equal(await finished(proc), 2);
    assert.match(proc.stderr(), /--size 16 or more/);
  });
});

describe("moonsocket bench --mode broadcast against moonsocket echo --broadcast", () => {
  it("every receiver gets every broadcast: sane figures, exit 0", async () => {
    const proc = run(["echo", "--broadcast", "--port", "0", "--log-level", "warn"]);
    const url = await withTimeout(
      new Promise<string>((resolve) => {
        proc.child.stdout!.on("data", () => {
          const match = /listening on (ws:\/\/\S+)/.exec(proc.stdout());
          if (match) resolve(match[1]!);
        });
      }),
      10_000,
      "the echo --broadcast banner",
    );
    const {
      code,
      result,
      proc: bench,
    } = await benchJson([...SHORT, "--mode", "broadcast", "-c", "10", url]);
    assert.equal(code, 0, bench.stderr());
    assertSane(result, 11);
    assert.equal(result.broadcast!.incomplete, 0);
    // echo --broadcast relays to the sender too.
    assert.ok(result.broadcast!.echoesToSender > 0);
  });
});

describe("moonsocket bench: broadcast mismatches say what differed", () => {
  /**
   * A relaying server whose first receiver gets the `nth` broadcast changed by `alter`
   * (which may return null to drop it).
   */
  function faultyBroadcaster(nth: number, alter: (data: Buffer) => Buffer | null): Promise<string> {
    let first: WebSocket | null = null;
    let count = 0;
    return startWsServer((ws, wss) => {
      first ??= ws;
      ws.on("message", (data: Buffer, isBinary) => {
        for (const client of wss.clients) {
          if (client === first && ++count === nth) {
            const changed = alter(Buffer.from(data));
            if (changed !== null) client.send(changed, { binary: isBinary });
          } else {
            client.send(data, { binary: isBinary });
          }
        }
      });
    });
  }

  async function firstProblem(url: string): Promise<string> {
    // Open loop: a lost broadcast must not stall the run until it expires.
    const { code, result } = await benchJson([
      ...SHORT,
      "--mode",
      "broadcast",
      "--interval",
      "5",
      "-c",
      "3",
      url,
    ]);
    assert.equal(code, 1);
    assert.ok(result.errors > 0);
    return result.firstError ?? "";
  }

  it("a changed byte: where, and the expected and received bytes from there", async () => {
    const url = await faultyBroadcaster(5, (data) => {
      data[40] = data[40] === 0x41 ? 0x42 : 0x41;
      return data;
    });
    assert.match(
      await firstProblem(url),
      /^broadcast \d+ differs from what was sent from byte 40 of 64: expected ".+", got "[AB].*"$/,
    );
  });

  it("a lost broadcast: the sequence number expected and the one received", async () => {
    const url = await faultyBroadcaster(5, () => null);
    assert.match(
      await firstProblem(url),
      /^expected broadcast (\d+), got broadcast \d+ \(1 lost, or reordered\)$/,
    );
  });

  it("a shortened delivery: the sizes and the first bytes of both", async () => {
    const url = await faultyBroadcaster(5, (data) => data.subarray(0, 20));
    assert.match(
      await firstProblem(url),
      /^a delivery differs in size or type: expected broadcast \d+, 64 bytes of text "[0-9a-f]{16}.+"…; got 20 bytes of text "[0-9a-f]{16}.+"$/,
    );
  });
});

describe("moonsocket bench failures", () => {
  async function freePort(): Promise<number> {
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", () => resolve()));
    const { port } = probe.address() as AddressInfo;
    await new Promise((resolve) => probe.close(resolve));
    return port;
  }

  it("an unreachable URL: a clear message and exit 1", async () => {
    const port = await freePort();
    const proc = run(["bench", "-c", "3", "-d", "1s", `ws://127.0.0.1:${port}/`]);
    assert.equal(await finished(proc), 1);
    assert.equal(
      proc.stderr(),
      `moonsocket bench: cannot connect to ws://127.0.0.1:${port}/: connection refused — is the server running?\n`,
    );
    assert.equal(proc.stdout(), "");
  });

  it("an unreachable URL with --json: the JSON says ok false, exit 1", async () => {
    const port = await freePort();
    const { code, result } = await benchJson(["-c", "2", "-d", "1s", `ws://127.0.0.1:${port}/`]);
    assert.equal(code, 1);
    assert.equal(result.ok, false);
    assert.equal(result.opened, 0);
    assert.equal(result.failed, 2);
    assert.match(result.connectError ?? "", /ECONNREFUSED/);
  });

  it("a server that refuses the upgrade: the status in the message, exit 1", async () => {
    const server = http.createServer((_request, response) => response.writeHead(404).end());
    resources.add(server, (s) => new Promise((resolve) => s.close(resolve)));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    const { port } = server.address() as AddressInfo;
    const proc = run(["bench", "-c", "2", "-d", "1s", `ws://127.0.0.1:${port}/`]);
    assert.equal(await finished(proc), 1);
    assert.match(proc.stderr(), /cannot connect to .*: server answered 404/);
  });

  it("a server that closes connections during the run: counted, exit 1", async () => {
    const url = await startWsServer((ws) => {
      let n = 0;
      ws.on("message", (data, isBinary) => {
        if (++n === 20) ws.close(4000, "enough");
        else ws.send(data, { binary: isBinary });
      });
    });
    const { code, result } = await benchJson([...SHORT, "-c", "3", url]);
    assert.equal(code, 1);
    assert.equal(result.closed, 3);
    assert.match(result.firstError ?? "", /closed a connection with 4000 \(enough\)/);
  });

  it("stops as soon as the server has closed every connection, saying why", async () => {
    // Like the demo without its room token: every connection closed right after the upgrade.
    const url = await startWsServer((ws) => ws.close(4001, "invalid token"));
    // A duration no test could wait for: the run must end because nothing is left.
    const proc = run(["bench", "-c", "5", "-d", "10m", url]);
    assert.equal(await finished(proc, 30_000), 1);
    assert.match(
      proc.stderr(),
      /^moonsocket bench: stopped (before measuring|after [\d.]+ s of measuring): every connection is gone \(closed by the server\)$/m,
    );
    assert.match(proc.stderr(), /closed a connection with 4001 \(invalid token\)/);
    assert.match(proc.stdout(), /stopped early\s+every connection is gone/);
  });

  it("broadcast: stops once the sender is gone", async () => {
    let connections = 0;
    // The sender connects last: close it, keep the receivers.
    const url = await startWsServer((ws) => {
      if (++connections === 4) ws.close(4002, "no senders here");
    });
    const proc = run(["bench", "--mode", "broadcast", "-c", "3", "-d", "10m", url]);
    assert.equal(await finished(proc, 30_000), 1);
    assert.match(
      proc.stderr(),
      /stopped (before measuring|after [\d.]+ s of measuring): the sender's connection is gone \(closed by the server\): nothing more to broadcast/,
    );
  });

  it("--help exits 0 and shows the options and examples", async () => {
    const proc = run(["bench", "--help"]);
    assert.equal(await finished(proc), 0);
    const help = proc.stdout();
    assert.match(help, /^Usage: moonsocket bench \[options\] URL/);
    for (const flag of [
      "--mode",
      "--connections",
      "--pipeline",
      "--size",
      "--duration",
      "--warmup",
      "--binary",
      "--interval",
      "--pid",
      "--json",
      "--progress",
    ]) {
      assert.ok(help.includes(flag), `help mentions ${flag}`);
    }
    assert.match(help, /Examples:/);
  });
});
