import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";

/** One import line of a source file. */
export interface ImportEdge {
  /** The importing file, relative to the source root (`lua/vm/engine.ts`). */
  readonly from: string;
  /** The specifier as written (`./engine.js`, `node:fs`, `wasmoon`). */
  readonly specifier: string;
  /** The imported file relative to the source root, for a relative specifier; else null. */
  readonly to: string | null;
  /** 1-based line of the import. */
  readonly line: number;
}

/** Every `.ts` file under `root`, relative to it, `/`-separated. */
export function listSources(root: string): string[] {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(path.join(root, dir), { withFileTypes: true })) {
      const rel = dir === "" ? entry.name : `${dir}/${entry.name}`;
      if (entry.isDirectory()) walk(rel);
      else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts")) files.push(rel);
    }
  };
  walk("");
  return files.sort();
}

const STATIC_IMPORT = /^[ \t]*(?:import|export)\b[^;]*?\bfrom\s*["']([^"']+)["']/gm;
const BARE_IMPORT = /^[ \t]*import\s*["']([^"']+)["']/gm;
const DYNAMIC_IMPORT = /\bimport\(\s*["']([^"']+)["']\s*\)/g;

/**
 * The imports of `source` (file `from`): static, re-exports, side-effect and dynamic ones, type
 * imports included (a type-only circle is still a circle in the design).
 */
export function parseImports(from: string, source: string): ImportEdge[] {
  const edges: ImportEdge[] = [];
  for (const pattern of [STATIC_IMPORT, BARE_IMPORT, DYNAMIC_IMPORT]) {
    for (const match of source.matchAll(pattern)) {
      const specifier = match[1]!;
      const at = match.index + match[0].lastIndexOf(specifier);
      const line = source.slice(0, at).split("\n").length;
      let to: string | null = null;
      if (specifier.startsWith(".")) {
        to = path.posix.normalize(path.posix.join(path.posix.dirname(from), specifier));
        to = to.replace(/\.js$/, ".ts");
      }
      edges.push({ from, specifier, to, line });
    }
  }
  return edges;
}

/** The imports of every source file under `root`. */
export function readImportGraph(root: string): ImportEdge[] {
  return listSources(root).flatMap((file) =>
    parseImports(file, readFileSync(path.join(root, file), "utf8")),
  );
}

/**
 * The import circles between files, each as the files around it (`a.ts -> b.ts -> a.ts`);
 * one per strongly connected group, found by depth-first search.
 */
export function findCycles(edges: readonly ImportEdge[]): string[] {
  const next = new Map<string, string[]>();
  for (const edge of edges) {
    if (edge.to === null) continue;
    const list = next.get(edge.from) ?? [];
    if (!list.includes(edge.to)) list.push(edge.to);
    next.set(edge.from, list);
  }
  const cycles: string[] = [];
  const done = new Set<string>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const visit = (file: string) => {
    stack.push(file);
    onStack.add(file);
    for (const target of next.get(file) ?? []) {
      if (onStack.has(target)) {
        cycles.push([...stack.slice(stack.indexOf(target)), target].join(" -> "));
      } else if (!done.has(target)) {
        visit(target);
      }
    }
    stack.pop();
    onStack.delete(file);
    done.add(file);
  };
  for (const file of [...next.keys()].sort()) if (!done.has(file)) visit(file);
  return cycles;
}

/** A rule about which files may import what: returns why `edge` breaks it, or null. */
export type ImportRule = (edge: ImportEdge) => string | null;

/** Every import that breaks a rule, as `file:line imports specifier: why`. */
export function findViolations(
  edges: readonly ImportEdge[],
  rules: readonly ImportRule[],
): string[] {
  const found: string[] = [];
  for (const edge of edges) {
    for (const rule of rules) {
      const why = rule(edge);
      if (why !== null)
        found.push(`src/${edge.from}:${edge.line} imports "${edge.specifier}": ${why}`);
    }
  }
  return found;
}
