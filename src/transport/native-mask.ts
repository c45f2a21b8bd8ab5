import { createRequire } from "node:module";
import { setNativeUnmask } from "../protocol/mask.js";

/**
 * Uses `bufferutil` (an optional dependency, the same native helper `ws` uses) to unmask large
 * payloads when it is installed: about 15× faster than JavaScript at 64 KiB. Without it the
 * core's JavaScript unmasking is used. Set MOONSOCKET_NO_NATIVE=1 to force JavaScript.
 */
export function installNativeUnmask(): boolean {
  if (process.env.MOONSOCKET_NO_NATIVE === "1") return false;
  try {
    const bufferutil = createRequire(import.meta.url)("bufferutil") as {
      unmask?: (data: Uint8Array, key: Uint8Array) => void;
    };
    if (typeof bufferutil.unmask !== "function") return false;
    setNativeUnmask(bufferutil.unmask);
    return true;
  } catch {
    return false;
  }
}

installNativeUnmask();
