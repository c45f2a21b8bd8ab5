/**
 * Why a WebSocket connection could not be made, in the user's terms and with what to do: for
 * `moonsocket connect` and `moonsocket bench`.
 *
 * @module
 */

import { STATUS_CODES } from "node:http";
import net from "node:net";
import tls from "node:tls";
import { HandshakeError } from "../protocol/errors.js";

const TLS_CERTIFICATE_ERRORS = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/** What OpenSSL reports when the bytes that came back were not TLS (a plain HTTP server). */
const NOT_TLS_ERRORS = new Set([
  "ERR_SSL_WRONG_VERSION_NUMBER",
  "ERR_SSL_PACKET_LENGTH_TOO_LONG",
  "ERR_SSL_UNKNOWN_PROTOCOL",
  "ERR_SSL_HTTP_REQUEST",
]);

/** How much of a refusal's body is shown (characters). */
const MAX_REASON_CHARS = 200;
/** Time the probe for a TLS server behind a ws:// URL may take (ms). */
const TLS_PROBE_TIMEOUT_MS = 2000;

/**
 * Explains why a connection to `url` could not be made, with what to do:
 * "connection refused — is the server running?", "the server at 127.0.0.1:8085 does not speak
 * TLS: use ws://127.0.0.1:8085/", "server answered 403 Forbidden instead of 101 Switching
 * Protocols: origin not allowed".
 */
export function describeConnectError(error: unknown, url?: URL): string {
  if (error instanceof HandshakeError) return describeRefusal(error);
  if (!(error instanceof Error)) return String(error);
  const code = (error as NodeJS.ErrnoException).code;
  if (code !== undefined && NOT_TLS_ERRORS.has(code)) {
    return url === undefined
      ? "the server does not speak TLS: use ws://"
      : `the server at ${describeAddress(url)} does not speak TLS: use ${swapScheme(url, "ws:")}`;
  }
  switch (code) {
    case "ECONNREFUSED":
      return "connection refused — is the server running?";
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return "host not found — check the URL";
    case "ETIMEDOUT":
      return "timed out — is the address right and the port open?";
    case "ECONNRESET":
      return "the connection was reset by the server";
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      return "host unreachable";
    case "EMFILE":
      return "too many open files — raise the limit with 'ulimit -n'";
    case "EADDRNOTAVAIL":
      return "no free local address or port — too many connections at once?";
    case "EPROTO":
      return "the TLS handshake failed — is the server speaking wss://, or should the URL be ws://?";
    default:
      if (code !== undefined && TLS_CERTIFICATE_ERRORS.has(code)) {
        return `certificate rejected: ${error.message} — use --insecure for a test server with a self-signed certificate`;
      }
      return error.message;
  }
}

/**
 * {@link describeConnectError}, and for a ws:// URL whose server hung up without an HTTP
 * answer, a check of whether that server speaks TLS: then the sentence says to use wss://.
 */
export async function explainConnectError(error: unknown, url: URL): Promise<string> {
  if (
    url.protocol === "ws:" &&
    error instanceof HandshakeError &&
    error.status === 0 &&
    (await speaksTls(url))
  ) {
    return `the server at ${describeAddress(url)} seems to expect TLS: use ${swapScheme(url, "wss:")}`;
  }
  return describeConnectError(error, url);
}

/** "server answered 403 Forbidden instead of 101 Switching Protocols: origin not allowed". */
function describeRefusal(error: HandshakeError): string {
  if (error.status === 0) return error.message;
  const phrase = STATUS_CODES[error.status];
  const reason = error.body.replace(/\s+/g, " ").trim();
  const shown = reason.length > MAX_REASON_CHARS ? `${reason.slice(0, MAX_REASON_CHARS)}…` : reason;
  return (
    `server answered ${error.status}${phrase === undefined ? "" : ` ${phrase}`} instead of 101 Switching Protocols` +
    (shown === "" ? "" : `: ${shown}`)
  );
}

/** True when a TLS handshake with the server of `url` succeeds (any certificate). */
function speaksTls(url: URL): Promise<boolean> {
  const host = url.hostname.replace(/^\[|\]$/g, "");
  return new Promise((resolve) => {
    const socket = tls.connect({
      host,
      port: Number(url.port || 80),
      servername: net.isIP(host) ? "" : host,
      rejectUnauthorized: false,
    });
    const finish = (result: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => finish(false), TLS_PROBE_TIMEOUT_MS);
    socket.once("secureConnect", () => finish(true));
    socket.once("error", () => finish(false));
    socket.once("close", () => finish(false));
  });
}

/** `host:port` of `url`, the port spelled out even when it is the scheme's default. */
function describeAddress(url: URL): string {
  return `${url.hostname}:${url.port || (url.protocol === "wss:" ? "443" : "80")}`;
}

/** `url` with another scheme and the same address: ws://host:port/path ↔ wss://host:port/path. */
function swapScheme(url: URL, scheme: "ws:" | "wss:"): string {
  return `${scheme}//${describeAddress(url)}${url.pathname}${url.search}`;
}
