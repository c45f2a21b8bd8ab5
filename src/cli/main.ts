#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ArgsError, formatOptions, isVersionRequested } from "./args.js";
import { runBench } from "./bench.js";
import { runCheck } from "./check.js";
import { runConnect } from "./connect.js";
import { runEcho } from "./echo.js";
import { runServe, SERVE_COMMAND } from "./serve.js";

/** The built-in demo: the chat example, shipped in the package. */
const DEMO = {
  script: fileURLToPath(new URL("../../../examples/chat/server.lua", import.meta.url)),
  staticDir: fileURLToPath(new URL("../../../examples/chat/public", import.meta.url)),
};

const COMMANDS: Record<
  string,
  { summary: string; run: (argv: readonly string[]) => Promise<number> }
> = {
  serve: {
    summary: "serve WebSockets whose logic is a Lua script (default: the chat demo)",
    // Without a script, serve runs the demo, as the bare program does.
    run: (argv) => runServe(argv, DEMO),
  },
  check: { summary: "load Lua scripts as serve would, without serving them", run: runCheck },
  echo: {
    summary: "run the built-in echo server (conformance, benchmarks, client testing)",
    run: runEcho,
  },
  connect: {
    summary: "connect to a WebSocket server: type lines to send, see what arrives",
    run: runConnect,
  },
  bench: {
    summary: "load-test a WebSocket server (echo or broadcast) and report rate and latency",
    run: runBench,
  },
};

function version(): string {
  const pkg = JSON.parse(
    readFileSync(new URL("../../../package.json", import.meta.url), "utf8"),
  ) as { version: string };
  return pkg.version;
}

function usage(): string {
  const lines = [
    "moonsocket — WebSocket server and client with application logic in Lua",
    "",
    "Usage: moonsocket [options]            serve the built-in chat demo on http://127.0.0.1:8085",
    "       moonsocket <command> [options]",
    "",
    "Commands:",
    ...Object.entries(COMMANDS).map(([name, { summary }]) => `  ${name.padEnd(10)} ${summary}`),
    "",
    "Options of the demo (the same as 'moonsocket serve'):",
    ...formatOptions(SERVE_COMMAND),
    "",
    "Run 'moonsocket <command> --help' for a command's options; 'moonsocket <command> --version'",
    "prints the version too.",
  ];
  return `${lines.join("\n")}\n`;
}

async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  // No command (nothing, or flags first): serve the built-in demo with any serve flags given.
  const isDemo = first === undefined || first.startsWith("-");
  if (first === "-v" || isVersionRequested(isDemo ? argv : rest)) {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  if (first === "--help" || first === "-h" || first === "help") {
    process.stdout.write(usage());
    return 0;
  }
  if (isDemo) return runServe(argv, DEMO);
  const command = COMMANDS[first];
  if (command === undefined) {
    process.stderr.write(
      `moonsocket: unknown command '${first}'; run 'moonsocket --help' for the list\n`,
    );
    return 2;
  }
  return command.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    if (code !== 0 || process.env.MOONSOCKET_EXIT_ON_DONE) process.exit(code);
  },
  (error: unknown) => {
    if (error instanceof ArgsError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(error.exitCode);
    }
    process.stderr.write(
      `moonsocket: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  },
);
