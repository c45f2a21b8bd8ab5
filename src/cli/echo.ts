import { WebSocketServer } from "../server/server.js";
import { defineCommand, formatHelp, parseCommandArgs } from "./args.js";
import { runUntilSignal } from "./lifecycle.js";
import { SERVER_FLAGS, type ServerFlagValues, toServerOptions } from "./server-flags.js";

export const ECHO_COMMAND = defineCommand({
  name: "echo",
  description:
    "A built-in echo server: every text and binary message is sent back as received, on any path. " +
    "For conformance and benchmark runs, and for testing WebSocket clients. With --broadcast, every " +
    "message goes to every connected client instead (the sender too): a target for " +
    "'moonsocket bench --mode broadcast'.",
  options: {
    ...SERVER_FLAGS,
    broadcast: {
      type: "boolean",
      description:
        "relay every message to every connected client, the sender included, framed once",
    },
  },
  examples: [
    "moonsocket echo --port 9001 --deflate",
    "moonsocket echo --max-payload 64MiB",
    "moonsocket echo --broadcast   # then: moonsocket bench --mode broadcast ws://127.0.0.1:8085/",
  ],
});

/** `moonsocket echo`: resolves with the exit code once the server has shut down. */
export async function runEcho(argv: readonly string[]): Promise<number> {
  const { help, values } = parseCommandArgs(ECHO_COMMAND, argv);
  if (help) {
    process.stdout.write(formatHelp(ECHO_COMMAND));
    return 0;
  }
  const options = toServerOptions("echo", values as ServerFlagValues);
  // Without a folder of its own, the echo server's page is the built-in console.
  options.consolePage = options.staticDir === undefined;
  const server = new WebSocketServer(options);
  server.addHooks({
    onMessage: values.broadcast
      ? (_client, data, isBinary) => {
          server.broadcast(data, isBinary);
        }
      : (client, data, isBinary) => {
          client.send(data, isBinary);
        },
  });
  const page = options.consolePage ? "for a console" : "in a browser";
  return runUntilSignal(
    server,
    "echo",
    (url) => `moonsocket echo listening on ${url} (open ${url.replace(/^ws/, "http")} ${page})\n`,
  );
}
