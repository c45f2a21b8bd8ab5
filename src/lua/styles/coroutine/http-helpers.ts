import { type IncomingMessage, type ServerResponse, STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import { HandshakeError } from "../../../protocol/errors.js";
import { parseUpgradeRequest } from "../../../protocol/handshake.js";
import type { WebSocketServer } from "../../../server/server.js";
import type { LuaArgs, LuaValue } from "../../vm/engine.js";

// The HTTP side of silly's http and websocket modules: listen addresses, request headers in
// silly's shape, upgrade checks in silly's words, and answers written by hand.

/** One `http.listen` of the script. */
export interface Listener {
  readonly id: number;
  readonly server: WebSocketServer;
  readonly secure: boolean;
}

/** One HTTP request being handled by a Lua handler (plain, or an upgrade not yet accepted). */
export interface HttpStream {
  readonly handle: number;
  readonly listener: Listener;
  readonly req: IncomingMessage;
  /** The response of a plain request. */
  readonly res: ServerResponse | null;
  /** The socket of an upgrade request (answered by hand until it is upgraded). */
  readonly socket: Socket | null;
  readonly head: Buffer;
  status: number;
  headers: Record<string, string | string[]>;
  /** `respond` was called. */
  responded: boolean;
  /** The status line and headers are committed (first write). */
  started: boolean;
  /** The response is complete (or the stream was upgraded). */
  ended: boolean;
  /** Body of an upgrade request's response, sent at its end. */
  readonly rawBody: Buffer[];
  /** Bytes in rawBody. */
  rawBodyBytes: number;
  /** The connection went away. */
  gone: boolean;
  /** The upgrade socket's close listener (until the stream is accepted). */
  onSocketClose: (() => void) | null;
}

/**
 * Parses a silly listen address: ":PORT" (on `defaultHost`), "IP:PORT", "HOST:PORT",
 * "[IPv6]:PORT". Returns the error text when it is not one.
 */
export function parseAddress(
  addr: string,
  defaultHost: string,
): { host: string; port: number } | string {
  const colon = addr.lastIndexOf(":");
  if (colon < 0) return `invalid address '${addr}' (use ":PORT" or "IP:PORT")`;
  let host = addr.slice(0, colon);
  const portText = addr.slice(colon + 1);
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535)
    return `invalid port in address '${addr}'`;
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  if (host === "" || host === "*") host = host === "*" ? "0.0.0.0" : defaultHost;
  return { host, port: Number(portText) };
}

/**
 * The request's headers as silly's `stream.header`: lower-case names, the value a string, or
 * a list when the header came more than once. Node's own `req.headers` (built for the
 * server's checks already) when no header repeats, the common case: no copy then.
 */
export function luaHeaders(req: IncomingMessage): { [key: string]: string | string[] } {
  const joined = req.headers;
  let names = 0;
  for (const name in joined) {
    if (name === "set-cookie") return distinctHeaders(req); // always a list in req.headers
    names++;
  }
  if (names * 2 === req.rawHeaders.length) return joined as { [key: string]: string };
  return distinctHeaders(req);
}

export function distinctHeaders(req: IncomingMessage): { [key: string]: string | string[] } {
  const header: { [key: string]: string | string[] } = {};
  for (const [name, values] of Object.entries(req.headersDistinct)) {
    if (values !== undefined) header[name] = values.length === 1 ? values[0]! : values;
  }
  return header;
}

/** What is wrong with an upgrade request the server refused, in the handshake's words. */
export function handshakeProblem(req: IncomingMessage): string | null {
  try {
    parseUpgradeRequest(req.method ?? "", req.httpVersion, req.headers);
    return null;
  } catch (error) {
    if (!(error instanceof HandshakeError)) throw error;
    return error.message;
  }
}

/**
 * Why silly's `websocket.upgrade` refuses a request with these Upgrade and Connection header
 * values, in silly's words; null when they are fine. A value of `undefined` (nil or false in
 * Lua) is not checked, `null` (a value that is no text: true, a function…) never matches.
 * Case-insensitive in ASCII only, as Lua's C-locale `string.lower` (a non-Unicode `i` regexp
 * never folds a non-ASCII letter into an ASCII one).
 */
export function upgradeProblem(
  upgrade: string | null | undefined,
  connection: string | null | undefined,
) {
  if (upgrade !== undefined && (upgrade === null || !/^websocket$/i.test(upgrade)))
    return "header upgrade mismatch";
  if (connection !== undefined && (connection === null || !/upgrade/i.test(connection)))
    return "header connection mismatch";
  return null;
}

/** Header value `i` as text (see upgradeProblem): undefined for nil and false, null for no text. */
export function checkedHeader(a: LuaArgs, i: number): string | null | undefined {
  const type = a.type(i);
  if (type === "string" || type === "number") return a.string(i);
  if (type === "nil" || (type === "boolean" && !a.boolean(i))) return undefined;
  return null;
}

/** Lua header table → node headers (values as latin1 so every byte goes out as given). */
export function toHeaders(
  table: { [key: string]: LuaValue } | LuaValue[],
): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  if (Array.isArray(table)) return headers;
  for (const [name, value] of Object.entries(table)) {
    if (Array.isArray(value)) headers[name] = value.map(headerText);
    else headers[name] = headerText(value);
  }
  return headers;
}

export function headerText(value: LuaValue): string {
  if (Buffer.isBuffer(value)) return value.toString("latin1");
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint")
    return String(value);
  return "";
}

export function sendPlain(res: ServerResponse, status: number, body: string): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res.writeHead(status, {
    "Content-Type": "text/plain; charset=utf-8",
    "Content-Length": Buffer.byteLength(body),
  });
  res.end(res.req.method === "HEAD" ? undefined : body);
}

/** Answers an upgrade request that was not upgraded, by hand, and closes the connection. */
export function writeRawResponse(
  stream: HttpStream,
  status: number,
  headers: Record<string, string | string[]>,
  body: Buffer,
): void {
  const socket = stream.socket;
  if (socket === null || socket.destroyed) return;
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Unknown"}\r\n`;
  let hasLength = false;
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (lower === "connection" || lower === "transfer-encoding") continue;
    if (lower === "content-length") hasLength = true;
    for (const item of Array.isArray(value) ? value : [value]) {
      if (/[\r\n]/.test(name) || /[\r\n]/.test(item)) continue;
      head += `${name}: ${item}\r\n`;
    }
  }
  if (!hasLength) head += `content-length: ${body.length}\r\n`;
  head += "connection: close\r\n\r\n";
  socket.end(Buffer.concat([Buffer.from(head, "latin1"), body]));
}
