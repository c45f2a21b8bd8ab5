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
