import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import {
  createLogger,
  isLogLevel,
  LOG_LEVELS,
  type LoggerOptions,
} from "../../../src/observability/logger.js";

const TIME = Date.parse("2026-11-22T01:02:03.456Z");

/** A logger writing into an array of lines, at a fixed time. */
function captureLogger(options: LoggerOptions = {}) {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(chunk.toString("utf8"));
      callback();
    },
  });
  const logger = createLogger({ now: () => TIME, ...options, stream });
  return { logger, lines };
}

describe("text format", () => {
  it("writes time, padded level, message and fields on one line", () => {
    const { logger, lines } = captureLogger();
    logger.info("message", { key: "value", key2: "quoted value" });
    assert.deepEqual(lines, [
      '2026-11-22T01:02:03.456Z INFO  message key=value key2="quoted value"\n',
    ]);
  });

  it("pads every level to the same width", () => {
    const { logger, lines } = captureLogger({ level: "debug" });
    logger.debug("d");
    logger.info("i");
    logger.warn("w");
    logger.error("e");
    assert.deepEqual(
      lines.map((line) => line.slice(25)),
      ["DEBUG d\n", "INFO  i\n", "WARN  w\n", "ERROR e\n"],
    );
  });

  it("formats numbers, booleans, null, objects, errors; skips undefined", () => {
    const { logger, lines } = captureLogger();
    logger.warn("m", {
      n: 3,
      f: 1.5,
      b: false,
      z: null,
      u: undefined,
      big: 10n,
      o: { a: 1 },
      empty: "",
      eq: "a=b",
      err: new RangeError("bad size"),
    });
    assert.equal(
      lines[0],
      '2026-11-22T01:02:03.456Z WARN  m n=3 f=1.5 b=false z=null big=10 o="{\\"a\\":1}" empty="" eq="a=b" err="RangeError: bad size"\n',
    );
  });

  it("keeps an entry on one line when message or values hold newlines", () => {
    const { logger, lines } = captureLogger();
    logger.info("line1\nFAKE ERROR x\r\u0007", { v: "a\nb" });
    assert.equal(
      lines[0],
      '2026-11-22T01:02:03.456Z INFO  line1\\nFAKE ERROR x\\r\\u0007 v="a\\nb"\n',
    );
  });

  it("shows the name in brackets", () => {
    const { logger, lines } = captureLogger({ name: "lua" });
    logger.error("boom");
    assert.equal(lines[0], "2026-11-22T01:02:03.456Z ERROR [lua] boom\n");
  });
});

describe("json format", () => {
  it("writes one object per line with time, level, msg and fields", () => {
    const { logger, lines } = captureLogger({ format: "json" });
    logger.info("client connected", { id: 3, origin: "http://x" });
    assert.equal(
      lines[0],
      '{"time":"2026-11-22T01:02:03.456Z","level":"info","msg":"client connected","id":3,"origin":"http://x"}\n',
    );
  });

  it("includes the name, serialises errors and bigints, prefixes clashing keys", () => {
    const { logger, lines } = captureLogger({ format: "json", name: "server" });
    const err = Object.assign(new Error("nope"), { code: "E_X" });
    logger.error("failed", { err, big: 2n, msg: "shadow", level: 9 });
    const entry = JSON.parse(lines[0] ?? "");
    assert.equal(entry.name, "server");
    assert.equal(entry.level, "error");
    assert.equal(entry.msg, "failed");
    assert.equal(entry._msg, "shadow");
    assert.equal(entry._level, 9);
    assert.equal(entry.big, "2");
    assert.equal(entry.err.message, "nope");
    assert.equal(entry.err.name, "Error");
    assert.equal(entry.err.code, "E_X");
    assert.match(entry.err.stack, /nope/);
  });

  it("survives a cyclic field", () => {
    const { logger, lines } = captureLogger({ format: "json" });
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    logger.info("m", { cyclic });
    const entry = JSON.parse(lines[0] ?? "");
    assert.equal(entry.msg, "m");
    assert.equal(entry.fields, "[unserializable]");
  });
});

describe("levels", () => {
  it("defaults to info", () => {
    const { logger, lines } = captureLogger();
    assert.equal(logger.level, "info");
    logger.debug("hidden");
    logger.info("shown");
    assert.equal(lines.length, 1);
  });

  it("drops entries below the level and reports enabled levels", () => {
    const { logger, lines } = captureLogger({ level: "warn" });
    logger.debug("x");
    logger.info("x");
    logger.warn("w");
    logger.error("e");
    assert.equal(lines.length, 2);
    assert.equal(logger.isLevelEnabled("info"), false);
    assert.equal(logger.isLevelEnabled("warn"), true);
    assert.equal(logger.isLevelEnabled("error"), true);
  });

  it("shares one no-op for disabled levels (nothing is built)", () => {
    const { logger } = captureLogger({ level: "error" });
    assert.equal(logger.debug, logger.info);
    assert.equal(logger.info, logger.warn);
    assert.notEqual(logger.warn, logger.error);
  });

  it("rejects unknown level and format names", () => {
    assert.throws(() => createLogger({ level: "verbose" as never }), TypeError);
    assert.throws(() => createLogger({ format: "xml" as never }), TypeError);
  });

  it("checks level names from user input", () => {
    assert.deepEqual([...LOG_LEVELS], ["debug", "info", "warn", "error"]);
    assert.equal(isLogLevel("warn"), true);
    assert.equal(isLogLevel("WARN"), false);
  });
});

describe("child", () => {
  it("adds bound fields before the entry's own, which win on a clash", () => {
    const { logger, lines } = captureLogger();
    const child = logger.child({ client: 7, path: "/ws" });
    child.info("hello", { path: "/other", n: 1 });
    assert.equal(lines[0], "2026-11-22T01:02:03.456Z INFO  hello client=7 path=/other n=1\n");
  });

  it("nests and keeps the parent's level, name and stream", () => {
    const { logger, lines } = captureLogger({ level: "warn", name: "srv", format: "json" });
    const grandchild = logger.child({ a: 1 }).child({ b: 2 });
    grandchild.info("dropped");
    grandchild.warn("kept");
    assert.equal(lines.length, 1);
    assert.deepEqual(JSON.parse(lines[0] ?? ""), {
      time: "2026-11-22T01:02:03.456Z",
      level: "warn",
      name: "srv",
      msg: "kept",
      a: 1,
      b: 2,
    });
    assert.equal(grandchild.level, "warn");
  });

  it("does not change the parent", () => {
    const { logger, lines } = captureLogger();
    logger.child({ a: 1 });
    logger.info("plain");
    assert.equal(lines[0], "2026-11-22T01:02:03.456Z INFO  plain\n");
  });
});

describe("defaults", () => {
  it("writes to process.stderr and uses the real clock", (t) => {
    const written: string[] = [];
    t.mock.method(process.stderr, "write", (chunk: string) => {
      written.push(chunk);
      return true;
    });
    createLogger().info("to stderr");
    t.mock.restoreAll();
    assert.equal(written.length, 1);
    assert.match(written[0] ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO {2}to stderr\n$/);
  });
});
