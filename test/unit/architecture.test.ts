import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import {
  findCycles,
  findViolations,
  type ImportEdge,
  type ImportRule,
  listSources,
  parseImports,
  readImportGraph,
} from "../helpers/import-graph.js";

// The house as STYLE.md draws it, checked on the import lines of every file under src/.

/** src/, found from dist/test/unit where this test runs. */
const SRC = fileURLToPath(new URL("../../../src/", import.meta.url));

const EVERY_FLOOR = [
  "protocol",
  "transport",
  "observability",
  "server",
  "client",
  "cluster",
  "lua",
  "cli",
];

/**
 * The folders each top-level folder may import from: protocol <- transport <- server/client
 * <- cluster, lua <- cli, observability usable from every floor above protocol.
 */
const MAY_IMPORT: Record<string, readonly string[]> = {
  protocol: [],
  observability: [],
  transport: ["protocol", "observability"],
  server: ["protocol", "transport", "observability"],
  client: ["protocol", "transport", "observability"],
  cluster: ["protocol", "transport", "observability", "server", "client"],
  lua: ["protocol", "transport", "observability", "server", "client", "cluster"],
  cli: EVERY_FLOOR,
  "index.ts": EVERY_FLOOR,
};

const floorOf = (file: string): string => file.split("/")[0]!;
const under = (file: string | null, folder: string): boolean =>
  file?.startsWith(`${folder}/`) === true;
/** The engine folder under lua/vm/ a file is in (`wasmoon`), or null. */
const engineOf = (file: string | null): string | null =>
  file !== null && /^lua\/vm\/[^/]+\//.test(file) ? file.split("/")[2]! : null;
/** The style folder under lua/styles/ a file is in (`coroutine`), or null. */
const styleOf = (file: string | null): string | null =>
  file !== null && /^lua\/styles\/[^/]+\//.test(file) ? file.split("/")[2]! : null;

/** The one file that knows the engine implementations. */
const ENGINE_FACTORY = "lua/vm/create-engine.ts";

const RULES: readonly ImportRule[] = [
  function floorsPointDown({ from, to }) {
    if (to === null) return null;
    const floor = floorOf(from);
    const target = floorOf(to);
    if (floor === target) return null;
    const allowed = MAY_IMPORT[floor];
    if (allowed === undefined) return `${floor}/ has no place in STYLE.md's layout`;
    return allowed.includes(target) ? null : `${floor}/ may not import from ${target}/`;
  },
  function vmKnowsNoHostOrStyle({ from, to }) {
    return under(from, "lua/vm") && under(to, "lua") && !under(to, "lua/vm")
      ? "lua/vm/ imports nothing from the rest of lua/ (the host and the styles build on it)"
      : null;
  },
  function engineInterfaceImportsNoImplementation({ from, to }) {
    return from === "lua/vm/engine.ts" && under(to, "lua")
      ? "the engine interface imports no implementation (the implementations import it)"
      : null;
  },
  function onlyWasmoonFolderImportsWasmoon({ from, specifier }) {
    return (specifier === "wasmoon" || specifier.startsWith("wasmoon/")) &&
      !under(from, "lua/vm/wasmoon")
      ? 'only lua/vm/wasmoon/ imports the "wasmoon" package'
      : null;
  },
  function enginesStayInTheirFolders({ from, to }) {
    const target = engineOf(to);
    if (target === null || engineOf(from) === target || from === ENGINE_FACTORY) return null;
    return under(from, "lua/vm")
      ? `one engine does not import another (lua/vm/${target}/)`
      : `engine implementations are reached through lua/vm/create-engine.ts, not lua/vm/${target}/`;
  },
  function hostKnowsNoStyle({ from, to }) {
    return under(from, "lua/host") &&
      (under(to, "lua/styles") || (to !== null && /^lua\/[^/]+\.ts$/.test(to)))
      ? "lua/host/ knows no style (the styles build on it)"
      : null;
  },
  function stylesUseServerClient({ from, to }) {
    return under(from, "lua/styles") && (under(to, "transport") || to === "protocol/connection.ts")
      ? "styles reach clients through ServerClient and the hub, not transport/ or protocol/connection"
      : null;
  },
  function stylesStayInTheirFolders({ from, to }) {
    const target = styleOf(to);
    return target !== null && styleOf(from) !== null && styleOf(from) !== target
      ? `one style does not import another's folder (lua/styles/${target}/)`
      : null;
  },
];

describe("architecture: the import lines of src/", () => {
  const edges = readImportGraph(SRC);

  it("finds the sources and their imports", () => {
    const files = new Set(edges.map((edge) => edge.from));
    for (const file of [
      "server/server.ts",
      "lua/vm/engine.ts",
      "lua/host/lua-host.ts",
      "cli/main.ts",
    ])
      assert.ok(files.has(file), `no imports read from src/${file}`);
  });

  it("every relative import names a file that exists", () => {
    const files = new Set(listSources(SRC));
    const missing = edges.filter((edge) => edge.to !== null && !files.has(edge.to));
    assert.deepEqual(
      missing.map((edge) => `src/${edge.from}:${edge.line} imports "${edge.specifier}"`),
      [],
    );
  });

  it("has no import circles", () => {
    assert.deepEqual(findCycles(edges), []);
  });

  it("keeps the folder direction of STYLE.md", () => {
    assert.deepEqual(findViolations(edges, RULES), []);
  });
});

describe("architecture checks catch what they are for", () => {
  const graph = (files: Record<string, string>): ImportEdge[] =>
    Object.entries(files).flatMap(([file, source]) => parseImports(file, source));

  it("reads static, type, re-export, side-effect and dynamic imports with their lines", () => {
    const edges = parseImports(
      "lua/a.ts",
      [
        'import { x } from "./b.js";',
        "import type {",
        "  Y,",
        '} from "../server/c.js";',
        'export { z } from "./d/e.js";',
        'import "node:fs";',
        'const m = await import("./f.js");',
      ].join("\n"),
    );
    assert.deepEqual(
      edges.map((edge) => [edge.to ?? edge.specifier, edge.line]),
      [
        ["lua/b.ts", 1],
        ["server/c.ts", 4],
        ["lua/d/e.ts", 5],
        ["node:fs", 6],
        ["lua/f.ts", 7],
      ],
    );
  });

  it("names the files of a circle, a type-only or dynamic one too", () => {
    const cycles = findCycles(
      graph({
        "lua/vm/engine.ts": 'const w = await import("./wasmoon/engine.js");',
        "lua/vm/wasmoon/engine.ts": 'import type { LuaEngine } from "../engine.js";',
        "server/server.ts": 'import type { H } from "./hooks.js";',
        "server/hooks.ts": 'import type { S } from "./server.js";',
        "server/ok.ts": 'import { S } from "./server.js";',
      }),
    );
    assert.deepEqual(cycles, [
      "lua/vm/engine.ts -> lua/vm/wasmoon/engine.ts -> lua/vm/engine.ts",
      "server/hooks.ts -> server/server.ts -> server/hooks.ts",
    ]);
  });

  it("names each import that runs against the folder direction, with its line and why", () => {
    const violations = findViolations(
      graph({
        "transport/pump.ts": '\nimport { S } from "../server/server.js";',
        "lua/vm/engine.ts": 'import { H } from "../host/lua-host.js";',
        "lua/host/lua-host.ts": 'import { LuaFactory } from "wasmoon";',
        "lua/styles/coroutine/x.ts": 'import { T } from "../../../transport/socket-transport.js";',
        "lua/styles/openresty/y.ts": 'import { C } from "../coroutine/x.js";',
        "lua/styles/callback/z.ts": 'import { W } from "../../vm/wasmoon/wasmoon-engine.js";',
        "cluster/bus.ts": 'import { L } from "../lua/script-app.js";',
        "cli/main.ts": 'import { L } from "../lua/script-app.js";',
      }),
      RULES,
    );
    assert.deepEqual(violations, [
      'src/transport/pump.ts:2 imports "../server/server.js": transport/ may not import from server/',
      'src/lua/vm/engine.ts:1 imports "../host/lua-host.js": lua/vm/ imports nothing from the rest of lua/ (the host and the styles build on it)',
      'src/lua/vm/engine.ts:1 imports "../host/lua-host.js": the engine interface imports no implementation (the implementations import it)',
      'src/lua/host/lua-host.ts:1 imports "wasmoon": only lua/vm/wasmoon/ imports the "wasmoon" package',
      'src/lua/styles/coroutine/x.ts:1 imports "../../../transport/socket-transport.js": styles reach clients through ServerClient and the hub, not transport/ or protocol/connection',
      'src/lua/styles/openresty/y.ts:1 imports "../coroutine/x.js": one style does not import another\'s folder (lua/styles/coroutine/)',
      'src/lua/styles/callback/z.ts:1 imports "../../vm/wasmoon/wasmoon-engine.js": engine implementations are reached through lua/vm/create-engine.ts, not lua/vm/wasmoon/',
      'src/cluster/bus.ts:1 imports "../lua/script-app.js": cluster/ may not import from lua/',
    ]);
  });
});
