import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { describe, it } from "node:test";

/** src/protocol, found from dist/test/unit/protocol where this test runs. */
const PROTOCOL_DIR = new URL("../../../../src/protocol/", import.meta.url);

/**
 * STYLE.md: protocol/ is sans-I/O and imports nothing from Node but node:crypto. node:buffer
 * is allowed too: it is where the global Buffer lives, and utf8.ts needs its native isUtf8.
 */
const ALLOWED_NODE_MODULES = new Set(["node:crypto", "node:buffer"]);

describe("src/protocol layering", () => {
  const files = readdirSync(PROTOCOL_DIR).filter((name) => name.endsWith(".ts"));

  it("has sources to check", () => {
    assert.ok(files.includes("connection.ts") && files.length >= 10, files.join(", "));
  });

  for (const file of files) {
    it(`${file} imports only sibling modules and ${[...ALLOWED_NODE_MODULES].join(", ")}`, () => {
      const source = readFileSync(new URL(file, PROTOCOL_DIR), "utf8");
      const specifiers = [
        ...source.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s+"([^"]+)"/gms),
      ].map((m) => m[1]!);
      for (const specifier of [...source.matchAll(/\bimport\(\s*"([^"]+)"\s*\)/g)].map(
        (m) => m[1]!,
      ))
        specifiers.push(specifier);
      for (const specifier of specifiers) {
        const sibling = specifier.startsWith("./") && !specifier.slice(2).includes("/");
        assert.ok(sibling || ALLOWED_NODE_MODULES.has(specifier), `${file} imports ${specifier}`);
      }
    });
  }
});
