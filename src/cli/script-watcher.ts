/**
 * The file watching of `moonsocket serve --watch`: the script and every module it `require`s,
 * including modules required long after startup, with the changes of one save (or of several
 * files saved together) reported once.
 *
 * @module
 */

import { type StatsListener, unwatchFile, watchFile } from "node:fs";

/** Settings of {@link ScriptWatcher}, in milliseconds. */
export interface ScriptWatcherOptions {
  /** How often each file is polled. Default 300 ms. */
  readonly intervalMs?: number;
  /** Quiet time after the last change before `onChange` is called. Default 100 ms. */
  readonly debounceMs?: number;
}

/**
 * Watches files by polling them (which survives editors that save by renaming a new file over
 * the old one) and calls `onChange` with the files that changed, once they stop changing.
 *
 * @example
 * ```ts
 * const watcher = new ScriptWatcher((files) => reload(files));
 * watcher.add("app.lua");
 * watcher.add("lib/util.lua"); // when the script requires it
 * ```
 */
export class ScriptWatcher {
  private readonly listeners = new Map<string, StatsListener>();
  private readonly changed = new Set<string>();
  private readonly intervalMs: number;
  private readonly debounceMs: number;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly onChange: (files: readonly string[]) => void,
    options: ScriptWatcherOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? 300;
    this.debounceMs = options.debounceMs ?? 100;
  }

  /** Starts watching `file`; a file already watched is left as it is. */
  add(file: string): void {
    if (this.closed || this.listeners.has(file)) return;
    const listener: StatsListener = (current, previous) => {
      // A file that is still missing (polled before it was created) has not changed.
      if (current.mtimeMs === 0 && previous.mtimeMs === 0) return;
      this.changed.add(file);
      if (this.timer !== null) clearTimeout(this.timer);
      this.timer = setTimeout(() => this.report(), this.debounceMs);
    };
    this.listeners.set(file, listener);
    watchFile(file, { interval: this.intervalMs }, listener);
  }

  /** The files watched, in the order they were added. */
  get files(): readonly string[] {
    return [...this.listeners.keys()];
  }

  /** Stops watching every file; no `onChange` is called afterwards. */
  close(): void {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    for (const [file, listener] of this.listeners) unwatchFile(file, listener);
    this.listeners.clear();
  }

  private report(): void {
    this.timer = null;
    if (this.closed || this.changed.size === 0) return;
    const files = [...this.changed];
    this.changed.clear();
    this.onChange(files);
  }
}
