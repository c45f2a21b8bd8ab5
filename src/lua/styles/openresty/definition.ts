import { requiredModules } from "../lua-source.js";
import type { StyleDefinition } from "../style-runtime.js";

/** The `ngx` fields whose use marks a script as OpenResty style even without a `require`. */
const NGX_USE = /\bngx\s*\.\s*(?:log|exit|sleep|say|var|req|thread|timer|shared|now|time)\b/;

/** The OpenResty style: a script that requires `resty.*`, or uses `ngx.*`. */
export const openrestyStyle = {
  name: "openresty",
  recognize: (code) =>
    requiredModules(code).some((name) => name.startsWith("resty."))
      ? "requires"
      : NGX_USE.test(code)
        ? "uses"
        : null,
  async create(host, options) {
    const { OpenRestyStyle } = await import("./openresty-style.js");
    return new OpenRestyStyle(host, options.serverOptions, {
      ...(options.worker !== undefined ? { worker: options.worker } : {}),
      ...(options.sharedDicts !== undefined ? { sharedDicts: options.sharedDicts } : {}),
    });
  },
} as const satisfies StyleDefinition;
