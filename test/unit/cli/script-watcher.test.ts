import assert from "node:assert/strict";
import { mkdtempSync, renameSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import { ScriptWatcher } from "../../../src/cli/script-watcher.js";

const watchers: ScriptWatcher[] = [];
afterEach(() => {
  for (const watcher of watchers.splice(0)) watcher.close();
});

/** A watcher polling every 20 ms whose reports are awaited one by one. */
function watch(): { watcher: ScriptWatcher; next: () => Promise<readonly string[]> } {
  const reports: (readonly string[])[] = [];
  const waiting: ((files: readonly string[]) => void)[] = [];
  const watcher = new ScriptWatcher(
    (files) => {
      const waiter = waiting.shift();
      if (waiter) waiter(files);
      else reports.push(files);
    },
    { intervalMs: 20, debounceMs: 40 },
  );
  watchers.push(watcher);
  const next = () => {
    const report = reports.shift();
    return report
      ? Promise.resolve(report)
      : new Promise<readonly string[]>((resolve) => waiting.push(resolve));
  };
  return { watcher, next };
}

function folder(): string {
  return mkdtempSync(join(tmpdir(), "moonsocket-watch-"));
}

describe("ScriptWatcher", () => {
  it("reports an edit made right after the file was added", async () => {
    const file = join(folder(), "app.lua");
    writeFileSync(file, "v1");
    const { watcher, next } = watch();
    watcher.add(file);
    writeFileSync(file, "version 2");
    assert.deepEqual(await next(), [file]);
  });

  it("reports files saved together once, and a file saved by renaming a new one over it", async () => {
    const dir = folder();
    const [a, b] = [join(dir, "a.lua"), join(dir, "b.lua")];
    writeFileSync(a, "a");
    writeFileSync(b, "b");
    const { watcher, next } = watch();
    watcher.add(a);
    watcher.add(b);
    writeFileSync(a, "a2");
    writeFileSync(b, "b2");
    assert.deepEqual([...(await next())].sort(), [a, b]);
    const temporary = join(dir, "a.lua.tmp");
    writeFileSync(temporary, "a3");
    renameSync(temporary, a);
    assert.deepEqual(await next(), [a]);
  });

  it("reports a watched file that did not exist yet once it is created", async () => {
    const file = join(folder(), "later.lua");
    const { watcher, next } = watch();
    watcher.add(file);
    writeFileSync(file, "now it exists");
    assert.deepEqual(await next(), [file]);
  });

  it("watches a file once however often it is added", () => {
    const file = join(folder(), "app.lua");
    writeFileSync(file, "x");
    const { watcher } = watch();
    watcher.add(file);
    watcher.add(file);
    assert.deepEqual(watcher.files, [file]);
  });
});
