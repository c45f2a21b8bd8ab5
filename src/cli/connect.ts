/**
 * `moonsocket connect URL`: a WebSocket client for people and for scripts.
 *
 * In a terminal it is interactive: a prompt, each line typed is sent, every message received is
 * shown with its type (`< text: hello`, `< binary (5 bytes): 68656c6c6f`, `< ping`), and
 * Ctrl-D or Ctrl-C closes the connection with 1000. With stdin not a terminal (a pipe, a file,
 * a script) it is a filter: each input line is sent, each message received is written to stdout
 * on a line of its own without decoration, and when the input ends it waits for the replies
 * still coming (until `--wait` passes without a message), then closes with 1000.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import readline from "node:readline";
import { type CloseInfo, connect, type Message, type WebSocketClient } from "../client/client.js";
import { ArgsError, defineCommand, formatHelp, parseCommandArgs } from "./args.js";
import { explainConnectError } from "./connect-errors.js";

/** The definition of `moonsocket connect`: options, help text, examples. */
export const CONNECT_COMMAND = defineCommand({
  name: "connect",
  description:
    "Connect to a WebSocket server. In a terminal: type a line and press Enter to send it as a text " +
    "message; received messages are shown with their type ('< text: hi', '< binary (2 bytes): 6869', " +
    "'< ping'); Ctrl-D or Ctrl-C closes the connection with 1000. When stdin is not a terminal (a pipe or " +
    "a file): each input line is sent, and each message received is written to stdout as one line without " +
    "decoration (text as is, binary as hex, or raw bytes with --binary); at the end of the input it waits " +
    "until no message has arrived for --wait, then closes with 1000. " +
    "Exit status: 0 after a normal close (1000, or a close frame without a code); 1 when the connection " +
    "cannot be made, the handshake is refused, or the server closes with any other code or drops the " +
    "connection (the code is printed); 2 for a usage error.",
  positionals: [
    { name: "URL", required: true, description: "ws:// or wss:// address of the server" },
  ],
  options: {
    header: {
      type: "string",
      short: "H",
      multiple: true,
      metavar: "Name: value",
      description: 'extra request header, e.g. "Authorization: Bearer abc"',
    },
    subprotocol: {
      type: "string",
      multiple: true,
      metavar: "protocol",
      description: "subprotocol to offer, in order of preference",
    },
    deflate: { type: "boolean", description: "offer permessage-deflate compression (RFC 7692)" },
    insecure: {
      type: "boolean",
      short: "k",
      description: "wss://: accept any certificate (self-signed test servers); never in production",
    },
    binary: {
      type: "boolean",
      short: "b",
      description:
        "send each line as a binary message instead of text; without a terminal, also write binary " +
        "messages raw (their bytes, then a newline) instead of as hex",
    },
    wait: {
      type: "duration",
      min: 0,
      default: 1000,
      description:
        "without a terminal, after the input ends: close once no message has arrived for this long",
    },
  },
  examples: [
    "moonsocket connect ws://127.0.0.1:8085/",
    'moonsocket connect wss://example.com/chat -H "Authorization: Bearer abc" --subprotocol chat.v1',
    "moonsocket connect --insecure wss://localhost:8443/",
    "printf 'hello\\nworld\\n' | moonsocket connect ws://127.0.0.1:9001/",
    "moonsocket connect --wait 3s ws://127.0.0.1:8085/feed < /dev/null > feed.txt",
  ],
});

/** How much of a binary message the terminal shows (the rest is counted, not dumped). */
const TERMINAL_HEX_BYTES = 256;
/** Input lines are read only while the client has less than this unsent (bytes). */
const MAX_BUFFERED_INPUT = 4 * 1024 * 1024;

/** `moonsocket connect`: resolves with the exit code once the connection is closed. */
export async function runConnect(argv: readonly string[]): Promise<number> {
  const { help, values, positionals } = parseCommandArgs(CONNECT_COMMAND, argv);
  if (help) {
    process.stdout.write(formatHelp(CONNECT_COMMAND));
    return 0;
  }
  const url = parseWebSocketUrl("connect", positionals[0]!);
  const headers = parseHeaders("connect", values.header);
  let client: WebSocketClient;
  try {
    client = await connect(url, {
      headers,
      protocols: values.subprotocol,
      perMessageDeflate: values.deflate,
      rejectUnauthorized: !values.insecure,
    });
  } catch (error) {
    process.stderr.write(
      `moonsocket connect: cannot connect to ${url.href}: ${await explainConnectError(error, url)}\n`,
    );
    return 1;
  }
  const options = { binary: values.binary, waitMs: values.wait };
  return process.stdin.isTTY === true
    ? runInteractive(client, url, options)
    : runPiped(client, options);
}

interface SessionOptions {
  readonly binary: boolean;
  readonly waitMs: number;
}

/** A terminal session: prompt, decorated messages, Ctrl-D / Ctrl-C to close. */
async function runInteractive(
  client: WebSocketClient,
  url: URL,
  options: SessionOptions,
): Promise<number> {
  const out = process.stdout;
  const details = [
    client.protocol === "" ? "" : `subprotocol ${client.protocol}`,
    client.extensions === "" ? "" : `extensions ${client.extensions}`,
  ].filter((part) => part !== "");
  out.write(
    `connected to ${url.href}${details.length > 0 ? ` (${details.join(", ")})` : ""}\n` +
      `type a line and press Enter to send it${options.binary ? " (as binary)" : ""}; Ctrl-D or Ctrl-C closes\n`,
  );
  const rl = readline.createInterface({
    input: process.stdin,
    output: out,
    prompt: "> ",
    terminal: true,
  });
  let closing = false;
  let closedByUs = false;
  /** Prints above the prompt, keeping what the user is typing. */
  const show = (line: string) => {
    readline.clearLine(out, 0);
    readline.cursorTo(out, 0);
    out.write(`${line}\n`);
    if (!closing) rl.prompt(true);
  };
  const startClose = () => {
    if (closing) return;
    closing = true;
    closedByUs = true;
    show("closing…");
    void client.close(1000, "");
  };
  client.pingListener = (payload) => show(`< ping${describeControlPayload(payload)}`);
  client.pongListener = (payload) => show(`< pong${describeControlPayload(payload)}`);
  rl.on("line", (line) => {
    if (closing) return;
    try {
      client.send(options.binary ? Buffer.from(line, "utf8") : line, options.binary);
    } catch (error) {
      show(`cannot send: ${(error as Error).message}`);
    }
    rl.prompt();
  });
  rl.on("SIGINT", startClose);
  rl.on("close", startClose);
  rl.prompt();

  const reading = readMessages(client, (message) => show(formatForTerminal(message)));
  const info = await client.closed;
  const failure = await reading;
  closing = true;
  rl.removeListener("close", startClose);
  show(`closed ${info.code}${info.reason === "" ? "" : ` (${info.reason})`}`);
  rl.close();
  process.stdin.pause();
  if (failure !== null) {
    process.stderr.write(`moonsocket connect: ${failure}\n`);
    return 1;
  }
  return decideExitCode(info, closedByUs);
}

/** A pipe or file on stdin: plain output, close after the input ends and replies stop. */
async function runPiped(client: WebSocketClient, options: SessionOptions): Promise<number> {
  const out = process.stdout;
  let lastMessageAt = Date.now();
  let closedByUs = false;
  // The reader of our output went away (`| head -1`): nothing more to say, close normally.
  out.on("error", () => {
    closedByUs = true;
    if (client.isOpen) void client.close(1000, "");
  });
  const reading = readMessages(client, (message) => {
    lastMessageAt = Date.now();
    if (!message.isBinary) out.write(`${message.text()}\n`);
    else if (options.binary) out.write(Buffer.concat([message.data, NEWLINE]));
    else out.write(`${message.data.toString("hex")}\n`);
  });

  const input = readline.createInterface({
    input: process.stdin,
    crlfDelay: Number.POSITIVE_INFINITY,
  });
  const inputDone = (async () => {
    for await (const line of input) {
      if (!client.isOpen) break;
      client.send(options.binary ? Buffer.from(line, "utf8") : line, options.binary);
      // Do not read a large input faster than the connection can take it.
      while (client.isOpen && client.bufferedAmount > MAX_BUFFERED_INPUT) await waitFor(5);
    }
  })();

  // Ctrl-C (SIGINT) closes at once, without waiting for more input or replies.
  const interrupt = () => {
    closedByUs = true;
    void client.close(1000, "");
  };
  process.once("SIGINT", interrupt);
  const closedFirst = await Promise.race([
    client.closed.then(() => true),
    inputDone.then(() => false),
  ]);
  if (!closedFirst) {
    // The input ended: wait for the replies still coming, i.e. until `wait` passes in silence.
    const endedAt = Date.now();
    let quietSince = Math.max(endedAt, lastMessageAt);
    while (client.isOpen) {
      quietSince = Math.max(quietSince, lastMessageAt);
      const left = quietSince + options.waitMs - Date.now();
      if (left <= 0) break;
      await Promise.race([waitFor(Math.min(left, 50)), client.closed]);
    }
    if (client.isOpen) {
      closedByUs = true;
      await client.close(1000, "");
    }
  }
  const info = await client.closed;
  const failure = await reading;
  process.removeListener("SIGINT", interrupt);
  input.close();
  process.stdin.destroy();
  if (failure !== null) {
    process.stderr.write(`moonsocket connect: ${failure}\n`);
    return 1;
  }
  const code = decideExitCode(info, closedByUs);
  if (code !== 0) process.stderr.write(`moonsocket connect: ${describeClose(info, closedByUs)}\n`);
  return code;
}

const NEWLINE = Buffer.from("\n");

/** Reads every message into `onMessage`; resolves with a description of a protocol error, or null. */
async function readMessages(
  client: WebSocketClient,
  onMessage: (message: Message) => void,
): Promise<string | null> {
  try {
    for await (const message of client) onMessage(message);
    return null;
  } catch (error) {
    const info = await client.closed;
    return `the server broke the protocol: ${(error as Error).message} (closed with ${info.code})`;
  }
}

/** 0 for a normal close (1000, or 1005: a close frame without a code), 1 otherwise. */
function decideExitCode(info: CloseInfo, closedByUs: boolean): number {
  if (closedByUs) return info.wasClean ? 0 : 1;
  return info.code === 1000 || info.code === 1005 ? 0 : 1;
}

function describeClose(info: CloseInfo, closedByUs: boolean): string {
  if (closedByUs) return `the server did not complete the close handshake (${info.code})`;
  if (info.code === 1006) return "the connection was lost without a close frame (1006)";
  return `the server closed the connection with ${info.code}${info.reason === "" ? "" : ` (${info.reason})`}`;
}

/** `< text: hello`, `< binary (5 bytes): 68656c6c6f` (long binaries shortened). */
export function formatForTerminal(message: Message): string {
  if (!message.isBinary) return `< text: ${message.text()}`;
  const { data } = message;
  const shown = data.subarray(0, TERMINAL_HEX_BYTES).toString("hex");
  const more =
    data.length > TERMINAL_HEX_BYTES ? `… (${data.length - TERMINAL_HEX_BYTES} more bytes)` : "";
  return `< binary (${data.length} byte${data.length === 1 ? "" : "s"}): ${shown}${more}`;
}

function describeControlPayload(payload: Buffer): string {
  return payload.length === 0 ? "" : ` (${payload.length} bytes): ${payload.toString("hex")}`;
}

/**
 * Reads a ws:// or wss:// URL.
 * @throws {ArgsError} for anything else; for http:// and https:// the message gives the
 *   ws:// or wss:// URL meant.
 */
export function parseWebSocketUrl(command: string, text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ArgsError(
      `moonsocket ${command}: ${JSON.stringify(text)} is not a URL; expected ws://host:port/path or wss://…`,
    );
  }
  if (url.protocol === "http:" || url.protocol === "https:") {
    const twin = `${url.protocol === "https:" ? "wss" : "ws"}:${url.href.slice(url.protocol.length)}`;
    throw new ArgsError(
      `moonsocket ${command}: ${url.protocol}// is not a WebSocket URL; use ${twin}`,
    );
  }
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new ArgsError(
      `moonsocket ${command}: unsupported URL scheme ${url.protocol} (use ws:// or wss://)`,
    );
  }
  if (url.hash !== "")
    throw new ArgsError(`moonsocket ${command}: a WebSocket URL cannot have a #fragment`);
  return url;
}

/**
 * Turns `--header "Name: value"` options into a header object.
 * @throws {ArgsError} for a header without a name or colon, or with a line break.
 */
export function parseHeaders(command: string, list: readonly string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const item of list) {
    const colon = item.indexOf(":");
    const name = colon > 0 ? item.slice(0, colon).trim() : "";
    if (name === "" || !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(name) || /[\r\n]/.test(item)) {
      throw new ArgsError(
        `moonsocket ${command}: --header expects "Name: value", got ${JSON.stringify(item)}`,
      );
    }
    headers[name] = item.slice(colon + 1).trim();
  }
  return headers;
}

function waitFor(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
