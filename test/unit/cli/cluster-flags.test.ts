import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { ArgsError } from "../../../src/cli/args.js";
import { createBusFactory } from "../../../src/cli/cluster-flags.js";
import { parseImports } from "../../helpers/import-graph.js";

/** src/, found from dist/test/unit/cli where this test runs. */
const SRC = fileURLToPath(new URL("../../../../src/", import.meta.url));

/** Every file the CLI loads before it runs a command: static imports only, from cli/main.ts. */
function staticallyLoaded(entry: string): Map<string, string[]> {
  const seen = new Map<string, string[]>();
  const pending = [entry];
  while (pending.length > 0) {
    const file = pending.pop()!;
    if (seen.has(file)) continue;
    // A dynamic import() is loaded only when that line runs: leave it out.
    const source = readFileSync(path.join(SRC, file), "utf8").replace(/\bimport\([^)]*\)/g, "");
    const edges = parseImports(file, source);
    seen.set(
      file,
      edges.map((edge) => edge.specifier),
    );
    for (const edge of edges) if (edge.to !== null) pending.push(edge.to);
  }
  return seen;
}

test("a single node never loads the Redis client: the CLI reaches it only through --redis", () => {
  const loaded = staticallyLoaded("cli/main.ts");
  assert.ok(loaded.has("cli/serve.ts") && loaded.has("cli/cluster-flags.ts"), "walked the CLI");
  const redis = [...loaded].filter(([, specifiers]) =>
    specifiers.some((s) => s.startsWith("@redis/") || s === "redis"),
  );
  assert.deepEqual(
    redis.map(([file]) => file),
    [],
  );
  assert.equal(loaded.has("cluster/redis-bus.ts"), false);
});

test("no --redis: no bus", async () => {
  assert.equal(await createBusFactory("serve", { redis: undefined, history: 0 }), undefined);
});

test("a malformed --redis URL is an ArgsError (exit 2) naming the problem, never the password", async () => {
  await assert.rejects(
    createBusFactory("serve", { redis: "redis://user:hunter2@host:99999", history: 0 }),
    (error: unknown) => {
      assert.ok(error instanceof ArgsError);
      assert.equal(error.exitCode, 2);
      assert.match(
        error.message,
        /^moonsocket serve: --redis: invalid Redis URL "redis:\/\/user:\*\*\*@host:99999"/,
      );
      assert.doesNotMatch(error.message, /hunter2/);
      return true;
    },
  );
});
