import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  CHECK_COMMAND,
  type CheckOutcome,
  describeReadError,
  formatReport,
} from "../../../src/cli/check.js";
import { lintScript } from "../../../src/cli/check-lint.js";
import { SERVE_COMMAND } from "../../../src/cli/serve.js";

describe("lintScript: functions the sandbox lacks", () => {
  it("names the function, not just its library, with its line", () => {
    const findings = lintScript(
      'local ok = true\nos.execute("ls")\nlocal f = io.open("x")\nprint(debug.getinfo(1))\n',
      "callback",
    );
    assert.deepEqual(
      findings.map((finding) => [finding.line, finding.severity, finding.message]),
      [
        [
          2,
          "warning",
          "os.execute is not available in the sandbox (os keeps only clock, date, difftime and time)",
        ],
        [3, "warning", "the io library is not available in the sandbox (io.open)"],
        [
          4,
          "warning",
          "debug.getinfo is not available in the sandbox (debug keeps only traceback)",
        ],
      ],
    );
  });

  it("reports each function of a line once, and ignores comments and the functions the sandbox keeps", () => {
    const findings = lintScript(
      "os.exit(1) os.getenv('A') os.exit(2)\n-- os.execute in a comment\nlocal t = os.time() .. debug.traceback()\n",
      "callback",
    );
    assert.deepEqual(
      findings.map((finding) => finding.message.split(" ")[0]),
      ["os.exit", "os.getenv"],
    );
  });

  it("dofile, loadfile, setfenv, string.dump, package.loadlib and ffi", () => {
    const source = [
      'dofile("a.lua")',
      'loadfile("a.lua")',
      "setfenv(1, {})",
      "string.dump(f)",
      'package.loadlib("x", "y")',
      'local ffi = require "ffi"',
    ].join("\n");
    assert.deepEqual(
      lintScript(source, "coroutine").map((finding) => [finding.line, finding.message]),
      [
        [
          1,
          "dofile is not available in the sandbox (require reads modules from the script's folder)",
        ],
        [
          2,
          "loadfile is not available in the sandbox (require reads modules from the script's folder)",
        ],
        [3, 'setfenv does not exist in Lua 5.4: use _ENV or load(chunk, name, "t", env)'],
        [4, "string.dump is not available in the sandbox"],
        [5, "package.loadlib is not available in the sandbox"],
        [6, `require "ffi" fails: LuaJIT's ffi is not available (moonsocket runs Lua 5.4)`],
      ],
    );
  });

  it("an OpenResty handler that never reads is a warning", () => {
    const [finding] = lintScript(
      'local wb = require("resty.websocket.server"):new()\n',
      "openresty",
    );
    assert.match(finding?.message ?? "", /never calls wb:recv_frame/);
  });
});

const clean: CheckOutcome = {
  style: "callback",
  findings: [],
  logged: [],
  loadError: null,
  strict: false,
};

describe("formatReport", () => {
  it("a script that loads: OK with its style, every line prefixed by the path", () => {
    assert.deepEqual(formatReport("dir/app.lua", clean), {
      lines: ["dir/app.lua: OK (callback style)"],
      ok: true,
    });
  });

  it("warnings: findings with their line, then what serve logged, counted in the verdict", () => {
    const report = formatReport("app.lua", {
      ...clean,
      findings: [{ line: 3, severity: "warning", message: "os.exit is not available" }],
      logged: [{ level: "warn", message: "the script defines no main" }],
    });
    assert.deepEqual(report, {
      lines: [
        "app.lua:3: warning: os.exit is not available",
        "app.lua: warning: the script defines no main",
        "app.lua: OK (callback style, 2 warnings)",
      ],
      ok: true,
    });
  });

  it("--strict with a warning: FAILED, and no OK anywhere", () => {
    const report = formatReport("app.lua", {
      ...clean,
      findings: [{ line: 1, severity: "warning", message: "os.exit is not available" }],
      strict: true,
    });
    assert.equal(report.ok, false);
    assert.equal(
      report.lines.at(-1),
      "app.lua: FAILED (callback style, 1 warning; --strict treats warnings as errors)",
    );
    assert.ok(report.lines.every((line) => !line.includes("OK")));
  });

  it("a load error: serve's text, each of its lines prefixed, reported once though it was logged too", () => {
    const report = formatReport("app.lua", {
      ...clean,
      style: "coroutine",
      logged: [
        { level: "error", message: "Lua error in a coroutine: app.lua:2: boom" },
        { level: "warn", message: "http.listen at 'x' failed: bad address" },
      ],
      loadError:
        "error while loading the script: app.lua:2: boom\nstack traceback:\n\tapp.lua:2: in main chunk",
    });
    assert.deepEqual(report, {
      lines: [
        "app.lua: warning: http.listen at 'x' failed: bad address",
        "app.lua: error while loading the script: app.lua:2: boom",
        "app.lua: stack traceback:",
        "app.lua: \tapp.lua:2: in main chunk",
        "app.lua: FAILED (coroutine style, 1 error, 1 warning)",
      ],
      ok: false,
    });
  });

  it("an error serve logs while loading (the load itself went on) fails the check", () => {
    const report = formatReport("app.lua", {
      ...clean,
      logged: [{ level: "error", message: "Lua error in timer 1: app.lua:4: oops" }],
    });
    assert.equal(report.ok, false);
    assert.equal(report.lines.at(-1), "app.lua: FAILED (callback style, 1 error)");
  });

  it("names where a coroutine script would listen", () => {
    const report = formatReport("app.lua", {
      ...clean,
      style: "coroutine",
      listens: ["127.0.0.1:8080"],
    });
    assert.deepEqual(report.lines, [
      "app.lua: would listen on 127.0.0.1:8080 (check opens no port)",
      "app.lua: OK (coroutine style)",
    ]);
  });
});

describe("describeReadError", () => {
  const errno = (code: string) => Object.assign(new Error(`${code}: raw`), { code });

  it("says why in one sentence, without the raw error code", () => {
    assert.equal(
      describeReadError("missing.lua", errno("ENOENT")),
      "cannot read missing.lua: no such file",
    );
    assert.equal(describeReadError("dir", errno("EISDIR")), "cannot read dir: it is a folder");
    assert.equal(
      describeReadError("x.lua", errno("EACCES")),
      "cannot read x.lua: permission denied",
    );
  });
});

describe("check's limits are serve's", () => {
  it("the same CPU budget, memory limit and script limits, with the same defaults", () => {
    for (const key of [
      "cpuBudget",
      "memoryLimit",
      "maxTimers",
      "maxListeners",
      "maxOutgoing",
    ] as const) {
      assert.equal(CHECK_COMMAND.options[key], SERVE_COMMAND.options[key], key);
    }
  });
});
