/**
 * What a plain HTTP request gets besides the server's own routes (`/healthz`, `/metrics`):
 * the `staticDir` folder when there is one, else the built-in console page when
 * `consolePage` is on, else nothing (404).
 *
 * @module
 */

import { createConsolePageHandler } from "./console-page.js";
import type { ServerOptions } from "./server-options.js";
import { createStaticHandler, type StaticHandler } from "./static-files.js";

/**
 * Creates the page handler for a server's options, or null when it serves no pages. The
 * user's own folder wins over the console page. The console's URL field starts at the first
 * WebSocket endpoint path when paths are restricted, else `/`.
 * @throws {Error} if `staticDir` does not exist or is not a directory.
 */
export function createPageHandler(
  options: Pick<ServerOptions, "staticDir" | "consolePage" | "path">,
): StaticHandler | null {
  if (options.staticDir !== undefined) return createStaticHandler(options.staticDir);
  if (options.consolePage !== true) return null;
  const paths = options.path;
  const endpoint = (typeof paths === "string" ? paths : paths?.[0]) ?? "/";
  return createConsolePageHandler(endpoint);
}
