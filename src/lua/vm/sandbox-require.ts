/**
 * `require` confined to the script folder: module name → file, refusing anything that could
 * name a file elsewhere.
 *
 * A name is dot-separated components (`a.b` → `a/b.lua`, then `a/b/init.lua`, as Lua's
 * `package.path` default does). Refused outright: empty components (so `..x`, `a..b`, `.a`), and
 * `/`, `\`, `:` or NUL anywhere (so `../x`, `/etc/passwd`, `C:x`). A candidate file is then
 * resolved through symlinks and must still lie inside the (resolved) script folder.
 *
 * @module
 */

import { readFileSync, realpathSync, statSync } from "node:fs";
import { join, sep } from "node:path";

/** A module file found in the script folder. */
export interface ScriptModule {
  readonly found: true;
  /** File contents. */
  readonly source: Buffer;
  /** Path relative to the script folder, `/`-separated (`lib/util.lua`). */
  readonly relativePath: string;
}

/** Why no module file was loaded; `message` reads like Lua's searcher messages. */
export interface ScriptModuleMiss {
  readonly found: false;
  readonly message: string;
}

const FORBIDDEN = /[/\\:\0]/;

/** True when `name` is a module name that can only designate a file under the script folder. */
export function isSafeModuleName(name: string): boolean {
  if (name.length === 0 || FORBIDDEN.test(name)) return false;
  return name.split(".").every((part) => part.length > 0);
}

/**
 * Finds and reads module `name` under `scriptDir`.
 * Never throws for a bad name or a missing file: it reports a miss.
 */
export function findScriptModule(
  scriptDir: string | undefined,
  name: string,
): ScriptModule | ScriptModuleMiss {
  if (scriptDir === undefined) {
    return { found: false, message: "no script folder to search" };
  }
  if (!isSafeModuleName(name)) {
    return {
      found: false,
      message: `invalid module name '${name}' (no '/', '\\', ':' or empty components allowed)`,
    };
  }
  let root: string;
  try {
    root = realpathSync(scriptDir);
  } catch {
    return { found: false, message: `script folder '${scriptDir}' not found` };
  }
  const base = name.split(".").join("/");
  const misses: string[] = [];
  for (const relativePath of [`${base}.lua`, `${base}/init.lua`]) {
    let real: string;
    try {
      real = realpathSync(join(root, relativePath));
    } catch {
      misses.push(`no file '${relativePath}' in the script folder`);
      continue;
    }
    // A symlink may point anywhere; only its target counts.
    if (!real.startsWith(root + sep)) {
      return { found: false, message: `module '${name}' resolves outside the script folder` };
    }
    if (!statSync(real).isFile()) {
      misses.push(`no file '${relativePath}' in the script folder`);
      continue;
    }
    return { found: true, source: readFileSync(real), relativePath };
  }
  return { found: false, message: misses.join("\n\t") };
}
