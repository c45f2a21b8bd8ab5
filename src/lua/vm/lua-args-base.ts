/**
 * What every engine's {@link LuaArgs} view has in common: the optional readers and the
 * argument error, written once over the accessors each engine reads its own stack with.
 *
 * @module
 */

import type { LuaArgs, LuaRef, LuaTypeName, LuaValue } from "./engine.js";

/** A bad argument to a host function; becomes a Lua error at the caller's position. */
export class LuaArgError extends Error {}

/** The engine-neutral half of a {@link LuaArgs} view. */
export abstract class LuaArgsBase implements LuaArgs {
  abstract readonly count: number;
  abstract readonly name: string;
  abstract type(i: number): LuaTypeName;
  abstract isNil(i: number): boolean;
  abstract bytes(i: number): Buffer;
  abstract bytesView(i: number): Buffer;
  abstract string(i: number): string;
  abstract integer(i: number): number;
  abstract number(i: number): number;
  abstract boolean(i: number): boolean;
  abstract table(i: number): { [key: string]: LuaValue } | LuaValue[];
  abstract value(i: number): LuaValue;
  abstract ref(i: number): LuaRef;

  optBytes(i: number): Buffer | undefined {
    return this.isNil(i) ? undefined : this.bytes(i);
  }

  optString(i: number): string | undefined {
    return this.isNil(i) ? undefined : this.string(i);
  }

  optInteger(i: number): number | undefined {
    return this.isNil(i) ? undefined : this.integer(i);
  }

  optNumber(i: number): number | undefined {
    return this.isNil(i) ? undefined : this.number(i);
  }

  optTable(i: number): { [key: string]: LuaValue } | LuaValue[] | undefined {
    return this.isNil(i) ? undefined : this.table(i);
  }

  argError(i: number, message: string): never {
    throw new LuaArgError(`bad argument #${i} to '${this.name}' (${message})`);
  }
}
