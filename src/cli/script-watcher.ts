/**
 * The file watching of `moonsocket serve --watch`: the script and every module it `require`s,
 * including modules required long after startup, with the changes of one save (or of several
 * files saved together) reported once.
 *
 * @module
 */

import { type Stats, statSync } from "node:fs";
import { stat } from "node:fs/promises";

/** Settings of {@link ScriptWatcher}, in milliseconds. */
export interface ScriptWatcherOptions {
  /** How often the files are polled. Default 300 ms. */
  readonly intervalMs?: number;
  /** Quiet time after the last change before `onChange` is called. Default 100 ms. */
  readonly debounceMs?: number;
}

/**
 * Watches files by polling them (which survives editors that save by renaming a new file over
 * the old one) and calls `onChange` with the files that changed, once they stop changing. A
 * file's state is taken when it is added, so an edit made right after is never missed.
 *
 * @example
 * ```ts
 * const watcher = new ScriptWatcher((files) => reload(files));
 * watcher.add("app.lua");
 * watcher.add("lib/util.lua"); // when the script requires it
 * ```
 */
export class ScriptWatcher {
  /** The last state seen of each file ("" while it does not exist). */
  private readonly states = new Map<string, string>();
  private readonly changed = new Set<string>();
  private readonly debounceMs: number;
  private readonly poller: NodeJS.Timeout;
  private debounce: NodeJS.Timeout | null = null;
  private polling = false;
  private closed = false;

  constructor(
    private readonly onChange: (files: readonly string[]) => void,
    options: ScriptWatcherOptions = {},
  ) {
    this.debounceMs = options.debounceMs ?? 100;
    this.poller = setInterval(() => void this.poll(), options.intervalMs ?? 300);
  }

  /** Starts watching `file`; a file already watched is left as it is. */
  add(file: string): void {
    if (this.closed || this.states.has(file)) return;
    let state = "";
    try {
      state = describeState(statSync(file));
    } catch {
      // Not there (yet): its creation counts as a change.
    }
    this.states.set(file, state);
  }

  /** The files watched, in the order they were added. */
  get files(): readonly string[] {
    return [...this.states.keys()];
  }

  /** Stops watching; no `onChange` is called afterwards. */
  close(): void {
    this.closed = true;
    clearInterval(this.poller);
    if (this.debounce !== null) clearTimeout(this.debounce);
  }

  private async poll(): Promise<void> {
    // A slow file system must not pile up polls.
    if (this.polling) return;
    this.polling = true;
    try {
      for (const [file, before] of this.states) {
        const now = await stat(file).then(describeState, () => "");
        if (this.closed) return;
        if (now === before) continue;
        this.states.set(file, now);
        this.changed.add(file);
        if (this.debounce !== null) clearTimeout(this.debounce);
        this.debounce = setTimeout(() => this.report(), this.debounceMs);
      }
    } finally {
      this.polling = false;
    }
  }

  private report(): void {
    this.debounce = null;
    if (this.closed || this.changed.size === 0) return;
    const files = [...this.changed];
    this.changed.clear();
    this.onChange(files);
  }
}

/** What tells one version of a file from the next: inode (a rename over it), mtime, size. */
function describeState(stats: Stats): string {
  return `${stats.ino}:${stats.mtimeMs}:${stats.size}`;
}
