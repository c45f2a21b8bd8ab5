/**
 * What every engine's {@link LuaRef} has in common: its type, its released state and its short
 * form in `console.log`, written once; each engine says where the value lives and how to free it.
 *
 * @module
 */

import type { LuaRef, LuaTypeName } from "./engine.js";

/** The engine-neutral half of a {@link LuaRef}. */
export abstract class LuaRefBase implements LuaRef {
  readonly type: Exclude<LuaTypeName, "nil">;
  /** @internal set once a coroutine resumed from the host has finished or failed */ finished = false;
  /** @internal */ isReleased = false;

  constructor(type: Exclude<LuaTypeName, "nil">) {
    this.type = type;
  }

  /** Whether the engine holding the value is closed (which releases every ref). */
  protected abstract get engineClosed(): boolean;
  /** Frees the value in its engine (called once). */
  protected abstract freeInEngine(): void;

  get released(): boolean {
    return this.isReleased || this.engineClosed;
  }

  release(): void {
    if (this.isReleased) return;
    this.isReleased = true;
    this.freeInEngine();
  }

  /** Short form in `console.log` and assertion messages instead of the whole engine. */
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `LuaRef<${this.type}${this.released ? ", released" : ""}>`;
  }
}
