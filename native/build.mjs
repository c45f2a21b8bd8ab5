#!/usr/bin/env node
/**
 * `npm install` hook: builds the optional native Lua engine (native/lua_engine.c against
 * Debian's liblua5.4) with node-gyp, but only when Lua 5.4's headers are installed. It never
 * fails the install: without the headers, or if the build fails, it prints one line and the
 * WebAssembly engine (the default) is used as always.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const HINT = "apt-get install liblua5.4-dev, then npm rebuild";

if (process.env.MOONSOCKET_SKIP_NATIVE === "1") process.exit(0);
if (!luaHeadersPresent()) {
  console.log(`moonsocket: native Lua engine not built (no Lua 5.4 headers; optional: ${HINT})`);
  process.exit(0);
}
const nodeGyp = findNodeGyp();
if (nodeGyp === undefined) {
  console.log("moonsocket: native Lua engine not built (node-gyp not found; optional)");
  process.exit(0);
}
const build = spawnSync(process.execPath, [nodeGyp, "rebuild", ...nodeDirFlag()], {
  cwd: root,
  encoding: "utf8",
});
if (build.status === 0) {
  console.log("moonsocket: native Lua engine built (use it with --lua-engine native)");
} else {
  const output = `${build.stdout ?? ""}${build.stderr ?? ""}`.trim().split("\n").slice(-15);
  console.log(output.join("\n"));
  console.log(
    "moonsocket: native Lua engine build failed (see above); the WebAssembly engine works",
  );
}

/** True when lua.h of Lua 5.4 is where Debian puts it, or pkg-config knows lua5.4. */
function luaHeadersPresent() {
  if (existsSync("/usr/include/lua5.4/lua.h")) return true;
  const probe = spawnSync("pkg-config", ["--exists", "lua5.4"], { stdio: "ignore" });
  return probe.status === 0;
}

/**
 * Node's own headers, which npm points node-gyp at (npm_config_nodedir) when it runs this
 * script; run by hand, the headers installed beside node. Never a download.
 */
function nodeDirFlag() {
  if (process.env.npm_config_nodedir) return [];
  const prefix = join(dirname(process.execPath), "..");
  return existsSync(join(prefix, "include/node/node_api.h")) ? [`--nodedir=${prefix}`] : [];
}

/** node-gyp as npm runs it: npm tells its scripts where, else the copy bundled with npm. */
function findNodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    join(
      dirname(process.execPath),
      "../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js",
    ),
  ];
  return candidates.find((path) => path !== undefined && path !== "" && existsSync(path));
}
