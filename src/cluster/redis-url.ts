/**
 * Parses and checks a `--redis` URL, so that a typo is one clear line at startup rather than a
 * retry loop against a host that does not exist.
 *
 * @module
 */

import { BusError } from "../server/bus.js";

/** A checked Redis URL. */
export interface RedisAddress {
  /** The URL to give the client (unchanged). */
  readonly url: string;
  /** True for `rediss://` (TLS). */
  readonly tls: boolean;
  readonly host: string;
  /** TCP port; default 6379. */
  readonly port: number;
  /** Database number; default 0. */
  readonly database: number;
  /** The URL without its password, for logs and errors. */
  readonly display: string;
}

const USAGE = "expected redis://[user:pass@]host:port[/db] or rediss://…";

/**
 * Checks `text` is `redis://[user:pass@]host[:port][/db]` or `rediss://…`.
 * @throws {BusError} `"bad-url"` with a one-line message naming what is wrong (the password is
 *   never included).
 */
export function parseRedisUrl(text: string): RedisAddress {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new BusError("bad-url", `invalid Redis URL ${quote(hidePassword(text))}: ${USAGE}`);
  }
  const display = hidePassword(text);
  const fail = (what: string): never => {
    throw new BusError("bad-url", `invalid Redis URL ${quote(display)}: ${what}; ${USAGE}`);
  };
  if (url.protocol !== "redis:" && url.protocol !== "rediss:") {
    fail(`unknown scheme ${quote(url.protocol.replace(/:$/, ""))}`);
  }
  if (url.hostname === "") fail("no host");
  const port = url.port === "" ? 6379 : Number(url.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) fail(`bad port ${quote(url.port)}`);
  const path = url.pathname.replace(/^\//, "");
  if (path !== "" && !/^\d{1,5}$/.test(path)) fail(`bad database ${quote(path)} (a number)`);
  if (url.search !== "" || url.hash !== "") fail("no query or fragment allowed");
  return {
    url: text,
    tls: url.protocol === "rediss:",
    host: url.hostname.replace(/^\[|\]$/g, ""),
    port,
    database: path === "" ? 0 : Number(path),
    display,
  };
}

/** `redis://user:secret@h` → `redis://user:***@h`; text that is not a URL is returned as is. */
function hidePassword(text: string): string {
  return text.replace(/^([a-z]+:\/\/[^:@/]*:)[^@/]*@/i, "$1***@");
}

function quote(text: string): string {
  return JSON.stringify(text);
}
