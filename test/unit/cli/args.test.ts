import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  ArgsError,
  defineCommand,
  formatBytes,
  formatDuration,
  formatHelp,
  isVersionRequested,
  parseBytes,
  parseCommandArgs,
  parseDuration,
} from "../../../src/cli/args.js";

const echo = defineCommand({
  name: "echo",
  description: "Run a WebSocket echo server that sends every message back as received.",
  options: {
    port: {
      type: "number",
      short: "p",
      integer: true,
      min: 0,
      max: 65535,
      default: 8085,
      description: "TCP port to listen on",
    },
    host: { type: "string", metavar: "host", default: "127.0.0.1", description: "Address to bind" },
    deflate: { type: "boolean", description: "Offer permessage-deflate" },
    maxPayload: {
      type: "bytes",
      default: 64 * 1024 * 1024,
      description: "Largest message accepted",
    },
    idleTimeout: {
      type: "duration",
      default: 30_000,
      description: "Ping a silent client after this long",
    },
    origin: { type: "string", multiple: true, description: "Allowed Origin header value" },
    logFormat: {
      type: "string",
      choices: ["text", "json"],
      default: "text",
      description: "Log line format",
    },
    ratio: { type: "number", description: "A fraction" },
  },
});

const connect = defineCommand({
  name: "connect",
  description: "Open an interactive WebSocket client.",
  options: {
    header: { type: "string", short: "H", multiple: true, description: "Extra request header" },
  },
  positionals: [{ name: "URL", required: true, description: "ws:// or wss:// address" }],
});

function errorOf(fn: () => unknown): ArgsError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ArgsError, `expected ArgsError, got ${String(error)}`);
    return error;
  }
  assert.fail("expected an ArgsError");
}

describe("parseCommandArgs: values", () => {
  it("applies defaults when nothing is given", () => {
    const { help, values, positionals } = parseCommandArgs(echo, []);
    assert.equal(help, false);
    assert.deepEqual(values, {
      port: 8085,
      host: "127.0.0.1",
      deflate: false,
      maxPayload: 67108864,
      idleTimeout: 30000,
      origin: [],
      logFormat: "text",
      ratio: undefined,
    });
    assert.deepEqual(positionals, []);
  });

  it("reads every type, long and short, with = or a separate word", () => {
    const { values } = parseCommandArgs(echo, [
      "-p",
      "9000",
      "--host=0.0.0.0",
      "--deflate",
      "--max-payload",
      "16MiB",
      "--idle-timeout=5m",
      "--origin",
      "http://a",
      "--origin=http://b",
      "--log-format",
      "json",
      "--ratio",
      "-0.5",
    ]);
    assert.deepEqual(values, {
      port: 9000,
      host: "0.0.0.0",
      deflate: true,
      maxPayload: 16 * 1024 * 1024,
      idleTimeout: 300_000,
      origin: ["http://a", "http://b"],
      logFormat: "json",
      ratio: -0.5,
    });
  });

  it("types the values from the definition", () => {
    const { values } = parseCommandArgs(echo, []);
    const port: number = values.port;
    const deflate: boolean = values.deflate;
    const format: "text" | "json" = values.logFormat;
    const origins: string[] = values.origin;
    // @ts-expect-error an option without a default may be undefined
    const ratio: number = values.ratio;
    assert.deepEqual([port, deflate, format, origins, ratio], [8085, false, "text", [], undefined]);
  });

  it("accepts -p9000 and lets the last of a repeated single option win", () => {
    assert.equal(parseCommandArgs(echo, ["-p9000"]).values.port, 9000);
    assert.equal(parseCommandArgs(echo, ["--port", "1", "--port", "2"]).values.port, 2);
  });

  it("turns a boolean off with --no-x", () => {
    const spec = defineCommand({
      name: "t",
      description: "d",
      options: { color: { type: "boolean", default: true, description: "Colour output" } },
    });
    assert.equal(parseCommandArgs(spec, []).values.color, true);
    assert.equal(parseCommandArgs(spec, ["--no-color"]).values.color, false);
    assert.equal(parseCommandArgs(spec, ["--color"]).values.color, true);
  });

  it("returns positionals, and everything after -- as positionals", () => {
    const parsed = parseCommandArgs(connect, ["ws://x", "-H", "A: 1"]);
    assert.deepEqual(parsed.positionals, ["ws://x"]);
    assert.deepEqual(parsed.values.header, ["A: 1"]);
    assert.deepEqual(parseCommandArgs(connect, ["--", "--weird"]).positionals, ["--weird"]);
  });

  it("takes any number of arguments for a variadic positional", () => {
    const spec = defineCommand({
      name: "check",
      description: "d",
      options: {},
      positionals: [{ name: "script.lua", required: true, variadic: true }],
    });
    assert.deepEqual(parseCommandArgs(spec, ["a.lua", "b.lua", "c.lua"]).positionals, [
      "a.lua",
      "b.lua",
      "c.lua",
    ]);
  });

  it("copies array defaults so callers cannot change the definition", () => {
    const spec = defineCommand({
      name: "t",
      description: "d",
      options: { tag: { type: "string", multiple: true, default: ["a"], description: "Tags" } },
    });
    parseCommandArgs(spec, []).values.tag.push("b");
    assert.deepEqual(parseCommandArgs(spec, []).values.tag, ["a"]);
  });
});

describe("parseCommandArgs: errors", () => {
  it("rejects a non-number with a clear message", () => {
    const error = errorOf(() => parseCommandArgs(echo, ["--port", "abc"]));
    assert.equal(error.message, 'moonsocket echo: --port expects a number, got "abc"');
    assert.equal(error.exitCode, 2);
    assert.equal(error.code, "ERR_MOONSOCKET_ARGS");
    assert.equal(error.name, "ArgsError");
  });

  it("names the long flag even when the short one was used", () => {
    assert.equal(
      errorOf(() => parseCommandArgs(echo, ["-p", "x"])).message,
      'moonsocket echo: --port expects a number, got "x"',
    );
  });

  it("rejects empty, infinite, fractional and out-of-range numbers", () => {
    assert.match(
      errorOf(() => parseCommandArgs(echo, ["--port="])).message,
      /expects a number, got ""$/,
    );
    assert.match(
      errorOf(() => parseCommandArgs(echo, ["--ratio", "Infinity"])).message,
      /expects a number/,
    );
    assert.equal(
      errorOf(() => parseCommandArgs(echo, ["--port", "80.5"])).message,
      'moonsocket echo: --port expects a whole number, got "80.5"',
    );
    assert.equal(
      errorOf(() => parseCommandArgs(echo, ["--port", "70000"])).message,
      'moonsocket echo: --port expects a value from 0 to 65535, got "70000"',
    );
  });

  it("words range errors for byte sizes and durations in their units", () => {
    const spec = defineCommand({
      name: "t",
      description: "d",
      options: {
        size: { type: "bytes", min: 1024, description: "s" },
        wait: { type: "duration", max: 60_000, description: "w" },
      },
    });
    assert.equal(
      errorOf(() => parseCommandArgs(spec, ["--size", "10"])).message,
      'moonsocket t: --size expects a value of at least 1KiB, got "10"',
    );
    assert.equal(
      errorOf(() => parseCommandArgs(spec, ["--wait", "2m"])).message,
      'moonsocket t: --wait expects a value of at most 1m, got "2m"',
    );
  });

  it("rejects malformed byte sizes and durations", () => {
    assert.equal(
      errorOf(() => parseCommandArgs(echo, ["--max-payload", "lots"])).message,
      'moonsocket echo: --max-payload expects a size in bytes such as 65536, 64KiB or 16MiB, got "lots"',
    );
    assert.equal(
      errorOf(() => parseCommandArgs(echo, ["--idle-timeout", "soon"])).message,
      'moonsocket echo: --idle-timeout expects a duration such as 1500ms, 30s or 5m, got "soon"',
    );
  });

  it("rejects a value outside the choices", () => {
    assert.equal(
      errorOf(() => parseCommandArgs(echo, ["--log-format", "xml"])).message,
      'moonsocket echo: --log-format expects one of text, json, got "xml"',
    );
  });

  it("rejects an unknown flag, suggesting a close one and --help", () => {
    assert.equal(
      errorOf(() => parseCommandArgs(echo, ["--prot", "80"])).message,
      "moonsocket echo: unknown option --prot (did you mean --port?); see 'moonsocket echo --help'",
    );
    assert.equal(
      errorOf(() => parseCommandArgs(echo, ["--verbose"])).message,
      "moonsocket echo: unknown option --verbose; see 'moonsocket echo --help'",
    );
    assert.match(errorOf(() => parseCommandArgs(echo, ["-x"])).message, /unknown option -x;/);
    assert.match(
      errorOf(() => parseCommandArgs(echo, ["--no-port"])).message,
      /unknown option --no-port/,
    );
  });

  it("does not confuse an unknown short flag with a one-letter long option", () => {
    const spec = defineCommand({
      name: "t",
      description: "d",
      options: { v: { type: "boolean", description: "v" } },
    });
    assert.equal(parseCommandArgs(spec, ["--v"]).values.v, true);
    assert.match(errorOf(() => parseCommandArgs(spec, ["-v"])).message, /unknown option -v/);
  });

  it("rejects a missing value", () => {
    assert.equal(
      errorOf(() => parseCommandArgs(echo, ["--port"])).message,
      "moonsocket echo: --port needs a value (n); see 'moonsocket echo --help'",
    );
    assert.match(
      errorOf(() => parseCommandArgs(echo, ["--host", "--deflate"])).message,
      /--host needs a value \(host\)/,
    );
  });

  it("rejects a value on a boolean", () => {
    assert.equal(
      errorOf(() => parseCommandArgs(echo, ["--deflate=yes"])).message,
      'moonsocket echo: --deflate does not take a value (got "yes")',
    );
  });

  it("checks the number of positionals", () => {
    assert.equal(
      errorOf(() => parseCommandArgs(connect, [])).message,
      "moonsocket connect: missing URL; see 'moonsocket connect --help'",
    );
    assert.equal(
      errorOf(() => parseCommandArgs(connect, ["ws://a", "ws://b"])).message,
      "moonsocket connect: unexpected argument \"ws://b\"; see 'moonsocket connect --help'",
    );
    assert.match(
      errorOf(() => parseCommandArgs(echo, ["extra"])).message,
      /unexpected argument "extra"/,
    );
  });

  it("uses the bare program name for a command without a name", () => {
    const spec = defineCommand({ name: "", description: "d", options: {} });
    assert.equal(
      errorOf(() => parseCommandArgs(spec, ["--x"])).message,
      "moonsocket: unknown option --x; see 'moonsocket --help'",
    );
  });
});

describe("--help", () => {
  it("is reported without validating anything else", () => {
    assert.equal(parseCommandArgs(echo, ["--help"]).help, true);
    assert.equal(parseCommandArgs(echo, ["-h"]).help, true);
    assert.equal(parseCommandArgs(echo, ["--port", "abc", "--bogus", "--help"]).help, true);
    assert.equal(parseCommandArgs(connect, ["-h"]).help, true);
    assert.deepEqual(parseCommandArgs(connect, ["--", "--help"]).positionals, ["--help"]);
  });

  it("generates usage, description, aligned options with defaults, and examples", () => {
    const spec = defineCommand({
      name: "serve",
      description: "Serve a Lua script over WebSocket.",
      options: {
        port: { type: "number", short: "p", default: 8085, description: "TCP port" },
        static: { type: "string", metavar: "dir", description: "Folder of static files" },
        watch: { type: "boolean", description: "Reload on change" },
        color: { type: "boolean", default: true, description: "Colour output" },
        maxPayload: { type: "bytes", default: 65536, description: "Largest message" },
        closeTimeout: { type: "duration", default: 5000, description: "Close wait" },
        origin: { type: "string", multiple: true, description: "Allowed origin" },
        logFormat: {
          type: "string",
          choices: ["text", "json"],
          default: "text",
          description: "Log format",
        },
      },
      positionals: [{ name: "script.lua", description: "The script (default: the demo)" }],
      examples: ["moonsocket serve chat.lua --static public"],
    });
    assert.equal(
      formatHelp(spec),
      [
        "Usage: moonsocket serve [options] [script.lua]",
        "",
        "Serve a Lua script over WebSocket.",
        "",
        "Arguments:",
        "  script.lua  The script (default: the demo)",
        "",
        "Options:",
        "  -p, --port <n>                  TCP port (default: 8085)",
        "      --static <dir>              Folder of static files",
        "      --watch                     Reload on change",
        "      --[no-]color                Colour output (default: true)",
        "      --max-payload <bytes>       Largest message (default: 64KiB)",
        "      --close-timeout <duration>  Close wait (default: 5s)",
        "      --origin <value>            Allowed origin (repeatable)",
        "      --log-format <text|json>    Log format (default: text)",
        "  -h, --help                      Show this help and exit",
        "      --version                   Print the version and exit",
        "",
        "Examples:",
        "  moonsocket serve chat.lua --static public",
        "",
      ].join("\n"),
    );
  });

  it("wraps long descriptions under their column", () => {
    const spec = defineCommand({
      name: "x",
      description: "d",
      options: {
        a: { type: "boolean", description: "one two three four five six seven eight nine ten" },
      },
    });
    const lines = formatHelp(spec, 40).split("\n");
    const start = lines.indexOf("Options:");
    assert.deepEqual(lines.slice(start + 1, start + 5), [
      "      --a        one two three four five",
      "                 six seven eight nine",
      "                 ten",
      "  -h, --help     Show this help and exit",
    ]);
  });

  it("shows a required and a variadic positional in the usage line", () => {
    const spec = defineCommand({
      name: "check",
      description: "d",
      options: {},
      positionals: [{ name: "script.lua", required: true, variadic: true }],
    });
    assert.match(formatHelp(spec), /^Usage: moonsocket check script\.lua\.\.\.\n/);
  });
});

describe("--version", () => {
  it("is requested by --version anywhere before --, whatever else is on the line", () => {
    assert.equal(isVersionRequested(["--version"]), true);
    assert.equal(isVersionRequested(["--port", "abc", "--bogus", "--version"]), true);
    assert.equal(isVersionRequested(["--port", "8085"]), false);
    assert.equal(isVersionRequested(["--", "--version"]), false);
    assert.equal(isVersionRequested(["--versions"]), false);
  });

  it("cannot be redefined by a command", () => {
    assert.throws(
      () =>
        defineCommand({
          name: "x",
          description: "d",
          options: { version: { type: "boolean", description: "v" } },
        }),
      /option 'version' is reserved/,
    );
  });
});

describe("defineCommand", () => {
  it("rejects broken definitions", () => {
    const base = { name: "t", description: "d" };
    assert.throws(
      () => defineCommand({ ...base, options: { help: { type: "boolean", description: "h" } } }),
      TypeError,
    );
    assert.throws(
      () =>
        defineCommand({ ...base, options: { "max-payload": { type: "bytes", description: "m" } } }),
      TypeError,
    );
    assert.throws(
      () =>
        defineCommand({
          ...base,
          options: { host: { type: "string", short: "h", description: "h" } },
        }),
      TypeError,
    );
    assert.throws(
      () =>
        defineCommand({
          ...base,
          options: {
            a: { type: "string", short: "x", description: "a" },
            b: { type: "string", short: "x", description: "b" },
          },
        }),
      TypeError,
    );
    assert.throws(
      () =>
        defineCommand({
          ...base,
          options: {},
          positionals: [{ name: "a", variadic: true }, { name: "b" }],
        }),
      TypeError,
    );
    assert.throws(
      () =>
        defineCommand({
          ...base,
          options: {},
          positionals: [{ name: "a" }, { name: "b", required: true }],
        }),
      TypeError,
    );
  });
});

describe("parseBytes", () => {
  it("reads plain numbers and binary units", () => {
    const cases: [string, number][] = [
      ["65536", 65536],
      ["0", 0],
      ["64KiB", 65536],
      ["64kib", 65536],
      ["16MiB", 16 * 1024 * 1024],
      ["1GiB", 1024 ** 3],
      ["64k", 65536],
      ["64K", 65536],
      ["16m", 16 * 1024 * 1024],
      ["2g", 2 * 1024 ** 3],
      ["100b", 100],
      ["1.5MiB", 1572864],
      ["0.5k", 512],
      [" 8 KiB ", 8192],
      ["1kB", 1000],
      ["2MB", 2_000_000],
      ["1GB", 1_000_000_000],
    ];
    for (const [text, bytes] of cases) assert.equal(parseBytes(text), bytes, text);
  });

  it("rejects anything else", () => {
    for (const text of [
      "",
      "abc",
      "-1",
      "1e3",
      "0x10",
      "64 KiB B",
      "64TiB",
      "1.",
      "Infinity",
      "99999999999999999999",
    ]) {
      assert.equal(parseBytes(text), undefined, text);
    }
  });
});

describe("parseDuration", () => {
  it("reads milliseconds and units", () => {
    const cases: [string, number][] = [
      ["1500", 1500],
      ["1500ms", 1500],
      ["30s", 30_000],
      ["1.5s", 1500],
      ["5m", 300_000],
      ["1h", 3_600_000],
      ["0", 0],
      ["0.4ms", 0],
    ];
    for (const [text, ms] of cases) assert.equal(parseDuration(text), ms, text);
  });

  it("rejects anything else", () => {
    for (const text of ["", "soon", "-5s", "5d", "1e3", "5 minutes"]) {
      assert.equal(parseDuration(text), undefined, text);
    }
  });
});

describe("formatBytes and formatDuration", () => {
  it("use the largest exact unit and read back", () => {
    assert.equal(formatBytes(65536), "64KiB");
    assert.equal(formatBytes(16 * 1024 * 1024), "16MiB");
    assert.equal(formatBytes(1024 ** 3), "1GiB");
    assert.equal(formatBytes(1000), "1000");
    assert.equal(formatBytes(0), "0");
    assert.equal(formatDuration(30_000), "30s");
    assert.equal(formatDuration(300_000), "5m");
    assert.equal(formatDuration(7_200_000), "2h");
    assert.equal(formatDuration(1500), "1500ms");
    assert.equal(formatDuration(0), "0ms");
    for (const n of [65536, 1000, 3 * 1024 ** 2]) assert.equal(parseBytes(formatBytes(n)), n);
    for (const n of [1500, 30_000, 90_000]) assert.equal(parseDuration(formatDuration(n)), n);
  });
});
