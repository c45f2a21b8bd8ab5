import { createHash } from "node:crypto";
import { HandshakeError } from "./errors.js";

/** §1.3: the GUID appended to the key before hashing. */
const WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/** §4.2.1: a key is 16 random bytes in base64: 22 characters and "==". */
const KEY_PATTERN = /^[+/0-9A-Za-z]{21}[AQgw]==$/;
/** RFC 7230 token, the grammar of subprotocol names (§4.1). */
const TOKEN_PATTERN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Request headers as node:http gives them: lower-case names; repeated ones joined or listed. */
export type HeaderMap = Readonly<Record<string, string | string[] | undefined>>;

/** What a valid upgrade request asked for. */
export interface UpgradeRequest {
  /** The Sec-WebSocket-Key, to compute the accept value from. */
  key: string;
  /** Subprotocols the client offered, in its order of preference. */
  protocols: string[];
  /** The raw Sec-WebSocket-Extensions value, or "" when absent. */
  extensions: string;
  /** The Origin header, or "" when absent. */
  origin: string;
}

/** Sec-WebSocket-Accept for a key (§4.2.2 step 5.4). */
export function computeAcceptKey(key: string): string {
  return createHash("sha1")
    .update(key + WEBSOCKET_GUID)
    .digest("base64");
}

/** Whether `key` is a well-formed Sec-WebSocket-Key (16 bytes, base64). */
export function isValidKey(key: string): boolean {
  return KEY_PATTERN.test(key);
}

function headerValue(headers: HeaderMap, name: string): string {
  const value = headers[name];
  if (value === undefined) return "";
  return Array.isArray(value) ? value.join(", ") : value;
}

/** Splits a comma-separated header into trimmed, non-empty items. */
export function splitHeaderList(value: string): string[] {
  const items: string[] = [];
  for (const item of value.split(",")) {
    const trimmed = item.trim();
    if (trimmed !== "") items.push(trimmed);
  }
  return items;
}

function hasToken(value: string, token: string): boolean {
  return splitHeaderList(value).some((item) => item.toLowerCase() === token);
}

/**
 * Validates a client's opening handshake (§4.2.1) and returns what it asked for. Throws a
 * HandshakeError carrying the HTTP status to answer with: 405 for a method other than GET,
 * 426 (with `Sec-WebSocket-Version: 13`) for another version, 400 for the rest.
 */
export function parseUpgradeRequest(
  method: string,
  httpVersion: string,
  headers: HeaderMap,
): UpgradeRequest {
  if (method !== "GET")
    throw new HandshakeError(405, `WebSocket handshake must use GET, not ${method}`, {
      Allow: "GET",
    });
  if (httpVersion !== "1.1" && !/^([2-9]|1\.[1-9])/.test(httpVersion)) {
    throw new HandshakeError(400, `WebSocket handshake needs HTTP/1.1, got HTTP/${httpVersion}`);
  }
  if (headerValue(headers, "host") === "") throw new HandshakeError(400, "missing Host header");
  if (!hasToken(headerValue(headers, "upgrade"), "websocket")) {
    throw new HandshakeError(400, "the Upgrade header must be 'websocket'");
  }
  if (!hasToken(headerValue(headers, "connection"), "upgrade")) {
    throw new HandshakeError(400, "the Connection header must include 'Upgrade'");
  }
  const version = headerValue(headers, "sec-websocket-version").trim();
  if (version !== "13") {
    throw new HandshakeError(
      426,
      version === ""
        ? "missing Sec-WebSocket-Version header"
        : `unsupported Sec-WebSocket-Version ${version}: use 13`,
      { "Sec-WebSocket-Version": "13" },
    );
  }
  const key = headerValue(headers, "sec-websocket-key").trim();
  if (!isValidKey(key))
    throw new HandshakeError(400, "Sec-WebSocket-Key must be 16 bytes in base64");
  const protocols = splitHeaderList(headerValue(headers, "sec-websocket-protocol"));
  for (const protocol of protocols) {
    if (!TOKEN_PATTERN.test(protocol))
      throw new HandshakeError(400, `invalid subprotocol name '${protocol}'`);
  }
  if (new Set(protocols).size !== protocols.length)
    throw new HandshakeError(400, "a subprotocol is offered twice");
  return {
    key,
    protocols,
    extensions: headerValue(headers, "sec-websocket-extensions"),
    origin: headerValue(headers, "origin"),
  };
}

/** Builds the 101 response (§4.2.2), ready to write to the socket. */
export function buildUpgradeResponse(
  key: string,
  options: {
    protocol?: string | undefined;
    extensions?: string | undefined;
    headers?: Record<string, string> | undefined;
  } = {},
): string {
  let response =
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
    `Sec-WebSocket-Accept: ${computeAcceptKey(key)}\r\n`;
  if (options.protocol) response += `Sec-WebSocket-Protocol: ${options.protocol}\r\n`;
  if (options.extensions) response += `Sec-WebSocket-Extensions: ${options.extensions}\r\n`;
  if (options.headers) {
    for (const [name, value] of Object.entries(options.headers))
      response += `${name}: ${value}\r\n`;
  }
  return `${response}\r\n`;
}

/** Builds a plain HTTP error response for a refused handshake, closing the connection. */
export function buildErrorResponse(
  status: number,
  message: string,
  headers: Record<string, string> = {},
): string {
  const body = `${message}\n`;
  let response = `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? "Error"}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n`;
  for (const [name, value] of Object.entries(headers)) response += `${name}: ${value}\r\n`;
  return `${response}\r\n${body}`;
}

const STATUS_TEXT: Record<number, string> = {
  400: "Bad Request",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  426: "Upgrade Required",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

/** A fresh Sec-WebSocket-Key from 16 random bytes (§4.1). */
export function generateKey(randomBytes: (size: number) => Buffer): string {
  return randomBytes(16).toString("base64");
}

/** What the server accepted, from a validated 101 response. */
export interface UpgradeResponse {
  protocol: string;
  extensions: string;
}

/**
 * Validates the server's 101 response on the client side (§4.1, the client's checks): status,
 * Upgrade, Connection, the accept value, and a subprotocol only among those offered.
 * Throws a HandshakeError (status 0 when the server answered 101 but broke a rule).
 */
export function parseUpgradeResponse(
  status: number,
  headers: HeaderMap,
  key: string,
  offeredProtocols: readonly string[],
): UpgradeResponse {
  if (status !== 101)
    throw new HandshakeError(
      status,
      `server answered ${status} instead of 101 Switching Protocols`,
    );
  if (!hasToken(headerValue(headers, "upgrade"), "websocket"))
    throw new HandshakeError(0, "server response lacks 'Upgrade: websocket'");
  if (!hasToken(headerValue(headers, "connection"), "upgrade"))
    throw new HandshakeError(0, "server response lacks 'Connection: Upgrade'");
  if (headerValue(headers, "sec-websocket-accept").trim() !== computeAcceptKey(key)) {
    throw new HandshakeError(0, "server sent a wrong Sec-WebSocket-Accept");
  }
  const protocol = headerValue(headers, "sec-websocket-protocol").trim();
  if (protocol !== "" && !offeredProtocols.includes(protocol)) {
    throw new HandshakeError(0, `server chose subprotocol '${protocol}', which was not offered`);
  }
  return { protocol, extensions: headerValue(headers, "sec-websocket-extensions") };
}
