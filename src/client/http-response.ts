import type { Socket } from "node:net";
import type { HeaderMap } from "../protocol/handshake.js";

/** A parsed HTTP response head. */
export interface ResponseHead {
  status: number;
  statusText: string;
  headers: Record<string, string>;
  /** Bytes after the head (the first WebSocket frames, if the server was quick). */
  rest: Buffer;
}

/**
 * Reads an HTTP/1.1 response head from accumulated bytes: null while incomplete, the head
 * once "\r\n\r\n" arrived. Throws on a malformed head or one over `maxBytes`.
 */
export function parseResponseHead(data: Buffer, maxBytes: number): ResponseHead | null {
  const end = data.indexOf("\r\n\r\n");
  if (end < 0) {
    if (data.length > maxBytes) throw new Error(`response head larger than ${maxBytes} bytes`);
    return null;
  }
  const lines = data.toString("latin1", 0, end).split("\r\n");
  const statusLine = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0] ?? "");
  if (statusLine === null)
    throw new Error(`malformed HTTP status line: ${JSON.stringify((lines[0] ?? "").slice(0, 80))}`);
  const headers: Record<string, string> = {};
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    if (colon <= 0)
      throw new Error(`malformed HTTP header line: ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  return {
    status: Number(statusLine[1]),
    statusText: statusLine[2] ?? "",
    headers: headers as HeaderMap as Record<string, string>,
    rest: data.subarray(end + 4),
  };
}

/**
 * Reads the body of a response that refused the upgrade (anything but 101), for its reason:
 * up to `Content-Length`, the end of a chunked body, or the end of the connection, at most
 * `maxBytes` (bytes), waiting at most `timeoutMs` (ms). Resolves with what arrived, as UTF-8
 * text; never rejects. Leaves the socket to the caller to destroy.
 */
export function readResponseBody(
  socket: Socket,
  head: ResponseHead,
  maxBytes: number,
  timeoutMs: number,
): Promise<string> {
  const declared = Number(head.headers["content-length"] ?? Number.NaN);
  const chunked = /\bchunked\b/i.test(head.headers["transfer-encoding"] ?? "");
  const wanted =
    Number.isInteger(declared) && declared >= 0 ? Math.min(declared, maxBytes) : maxBytes;
  let body = head.rest;
  const complete = () => body.length >= wanted || (chunked && decodeChunked(body) !== null);
  const text = () =>
    (chunked ? (decodeChunked(body) ?? body) : body).subarray(0, wanted).toString("utf8");
  if (complete() || socket.destroyed) return Promise.resolve(text());
  return new Promise((resolve) => {
    const finish = () => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("end", finish);
      socket.off("close", finish);
      socket.off("error", finish);
      resolve(text());
    };
    const onData = (chunk: Buffer) => {
      body = Buffer.concat([body, chunk]);
      if (complete()) finish();
    };
    const timer = setTimeout(finish, timeoutMs);
    socket.on("data", onData);
    socket.on("end", finish);
    socket.on("close", finish);
    socket.on("error", finish);
    socket.resume();
  });
}

/** The payload of a complete chunked body (RFC 9112 §7.1), or null while it is incomplete. */
function decodeChunked(data: Buffer): Buffer | null {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = data.indexOf("\r\n", at);
    if (lineEnd < 0) return null;
    const size = Number.parseInt(data.toString("latin1", at, lineEnd), 16);
    if (!Number.isFinite(size)) return Buffer.concat(parts);
    if (size === 0) return Buffer.concat(parts);
    const start = lineEnd + 2;
    if (data.length < start + size) return null;
    parts.push(data.subarray(start, start + size));
    at = start + size + 2;
  }
}
