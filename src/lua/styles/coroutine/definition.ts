import { requiredModules } from "../lua-source.js";
import type { StyleDefinition } from "../style-runtime.js";

/** The coroutine style (the `silly` framework): a script that requires `silly` or `silly.*`. */
export const coroutineStyle = {
  name: "coroutine",
  recognize: (code) =>
    requiredModules(code).some((name) => name === "silly" || name.startsWith("silly."))
      ? "requires"
      : null,
  async create(host, options) {
    const { CoroutineStyle } = await import("./coroutine-style.js");
    return new CoroutineStyle(host, options.serverOptions, {
      ...(options.portOverride !== undefined ? { portOverride: options.portOverride } : {}),
      ...(options.maxListeners !== undefined ? { maxListeners: options.maxListeners } : {}),
      ...(options.offline ? { offline: true } : {}),
    });
  },
} as const satisfies StyleDefinition;
