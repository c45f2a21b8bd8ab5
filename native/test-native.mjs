#!/usr/bin/env node
/**
 * The native engine's test pass: the Lua test files (unit tests of the engine, the sandbox and
 * the Lua runtime, and the Lua integration tests of every style) again, with
 * MOONSOCKET_LUA_ENGINE=native so that every engine they create is the native one.
 *
 * `npm test` runs it after the main pass and skips it (one line) when the addon is not built;
 * `npm run test:native` passes --require, and fails then instead.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const required = process.argv.includes("--require");

if (!existsSync(join(root, "build/Release/lua_engine.node"))) {
  console.log(
    "native Lua engine not built (apt-get install liblua5.4-dev, then npm rebuild): native pass skipped",
  );
  process.exit(required ? 1 : 0);
}
const files = [
  ...testFiles("dist/test/unit/lua", () => true),
  ...testFiles("dist/test/integration", (name) => name.startsWith("lua-")),
];
const run = spawnSync(process.execPath, ["--test", "--test-concurrency=2", ...files], {
  cwd: root,
  stdio: "inherit",
  env: { ...process.env, MOONSOCKET_LUA_ENGINE: "native" },
});
process.exit(run.status ?? 1);

/** The test files under `folder`, in every subfolder too, whose name `keep` accepts. */
function testFiles(folder, keep) {
  return readdirSync(join(root, folder), { recursive: true })
    .filter((name) => name.endsWith(".test.js") && keep(basename(name)))
    .map((name) => join(folder, name));
}
