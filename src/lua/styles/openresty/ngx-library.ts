import { createHash, createHmac } from "node:crypto";
import type { LuaHost } from "../../host/lua-host.js";
import { type HostFunction, luaMulti } from "../../vm/engine.js";
import { formatCookieTime, formatDate } from "./ngx-time.js";
import {
  execRegex,
  MATCH_LIMIT_MESSAGE,
  type MatchBudget,
  RegexError,
  substituteRegex,
} from "./regex.js";

const EMPTY = Buffer.alloc(0);

/**
 * The host functions behind the parts of `ngx` that need no request: clocks and dates,
 * digests, base64 and `ngx.re` (see runtime/resty/ngx.lua).
 */
export function createNgxLibrary(host: LuaHost): Record<string, HostFunction> {
  // A costly ngx.re match may take half of what is left of the CPU budget (see
  // regex-limit.ts): the other half lets the script handle the error, as under PCRE's limit.
  const regexBudget: MatchBudget = () => host.engine.budgetLeftMs() / 2;
  // Logged at most once a second (a script may retry in a loop), counted every time.
  let lastLogged = Number.NEGATIVE_INFINITY;
  let unlogged = 0;
  const regexFailure = (error: RegexError, pattern: Buffer) => {
    if (error.message === MATCH_LIMIT_MESSAGE) {
      const now = performance.now();
      unlogged++;
      if (now - lastLogged >= 1000) {
        host.reportLimit(`ngx.re: a match ran out of CPU budget (${MATCH_LIMIT_MESSAGE})`, {
          kind: "ERR_LUA_REGEX_LIMIT",
          pattern: pattern.toString("latin1").slice(0, 200),
          hits: unlogged,
        });
        lastLogged = now;
        unlogged = 0;
      } else {
        host.countLimit();
      }
    }
    return luaMulti(false, error.message, error.raise);
  };
  return {
    time: () => Math.floor(Date.now() / 1000),
    today: () => formatDate(new Date(), false).slice(0, 10),
    localtime: () => formatDate(new Date(), false),
    utctime: () => formatDate(new Date(), true),
    http_time: (args) => new Date(args.number(1) * 1000).toUTCString(),
    cookie_time: (args) => formatCookieTime(new Date(args.number(1) * 1000)),
    parse_http_time: (args) => {
      const ms = Date.parse(args.string(1));
      return Number.isNaN(ms) ? null : Math.floor(ms / 1000);
    },
    md5: (args) =>
      createHash("md5")
        .update(args.optBytes(1) ?? EMPTY)
        .digest("hex"),
    md5_bin: (args) =>
      createHash("md5")
        .update(args.optBytes(1) ?? EMPTY)
        .digest(),
    sha1_bin: (args) =>
      createHash("sha1")
        .update(args.optBytes(1) ?? EMPTY)
        .digest(),
    hmac_sha1: (args) => createHmac("sha1", args.bytes(1)).update(args.bytes(2)).digest(),
    crc32: (args) => crc32(args.optBytes(1) ?? EMPTY),
    encode_base64: (args) => {
      const encoded = (args.optBytes(1) ?? EMPTY).toString("base64");
      return args.boolean(2) ? encoded.replace(/=+$/, "") : encoded;
    },
    decode_base64: (args) => {
      const text = args.bytes(1).toString("latin1");
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.replace(/=+$/, "").length % 4 === 1)
        return null;
      return Buffer.from(text, "base64");
    },
    re_exec: (args) => {
      try {
        const m = execRegex(
          args.bytes(1),
          args.bytes(2),
          args.string(3),
          args.integer(4) - 1,
          regexBudget,
        );
        if (m === null) return null;
        return luaMulti(m.positions, m.names);
      } catch (error) {
        if (error instanceof RegexError) return regexFailure(error, args.bytes(2));
        throw error;
      }
    },
    re_sub: (args) => {
      try {
        const [result, count] = substituteRegex(
          args.bytes(1),
          args.bytes(2),
          args.bytes(3),
          args.string(4),
          args.boolean(5),
          regexBudget,
        );
        return luaMulti(result, count);
      } catch (error) {
        if (error instanceof RegexError) return regexFailure(error, args.bytes(2));
        throw error;
      }
    },
  };
}

let crcTable: Uint32Array | null = null;

/** CRC-32 (IEEE), as ngx.crc32_long. */
function crc32(bytes: Buffer): number {
  if (crcTable === null) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = crcTable[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
