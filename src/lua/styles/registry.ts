/**
 * The script styles moonsocket runs, in the order detection asks them (SPEC §3). A fourth
 * style is a folder beside the others with its {@link StyleDefinition}, and one line here.
 *
 * @module
 */

import { callbackStyle } from "./callback/definition.js";
import { coroutineStyle } from "./coroutine/definition.js";
import { openrestyStyle } from "./openresty/definition.js";
import type { StyleDefinition } from "./style-runtime.js";

/** Every style but the default, in detection order: the first that claims a script gets it. */
export const STYLES = [
  openrestyStyle,
  coroutineStyle,
] as const satisfies readonly StyleDefinition[];

/** The style of a script that no other style claims. */
export const DEFAULT_STYLE = callbackStyle;

/** The name of a style moonsocket runs. */
export type ScriptStyle = (typeof STYLES)[number]["name"] | (typeof DEFAULT_STYLE)["name"];

/** The definition of style `name`. */
export function styleNamed(name: ScriptStyle): StyleDefinition {
  return STYLES.find((style) => style.name === name) ?? DEFAULT_STYLE;
}
