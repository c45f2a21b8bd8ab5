import { parseWorkerCount } from "../cluster/workers.js";
import { createLogger } from "../observability/logger.js";
import type { ServerOptions } from "../server/server-options.js";
import { SERVER_DEFAULTS } from "../server/server-options.js";
import { assertStaticFolder } from "../server/static-root.js";
import { ArgsError, type OptionSpec } from "./args.js";
import { loadTlsFiles } from "./tls-files.js";

/** The flags every serving command shares: address, TLS, limits, logging. */
export const SERVER_FLAGS = {
  port: {
    type: "number",
    integer: true,
    min: 0,
    max: 65535,
    default: SERVER_DEFAULTS.port,
    description: "TCP port to listen on (0 picks a free one)",
    short: "p",
  },
  host: {
    type: "string",
    default: SERVER_DEFAULTS.host,
    description: "address to listen on (0.0.0.0 for every interface)",
    metavar: "host",
  },
  path: {
    type: "string",
    multiple: true,
    description: "WebSocket endpoint path; default: every path",
    metavar: "path",
  },
  static: {
    type: "string",
    description: "folder of static files to serve over HTTP",
    metavar: "dir",
  },
  tlsCert: {
    type: "string",
    description: "PEM certificate file: serve https and wss",
    metavar: "file",
  },
  tlsKey: { type: "string", description: "PEM private key file for --tls-cert", metavar: "file" },
  deflate: { type: "boolean", description: "negotiate permessage-deflate compression (RFC 7692)" },
  maxPayload: {
    type: "bytes",
    min: 0,
    default: SERVER_DEFAULTS.maxPayload,
    description: "largest message accepted, after inflation; larger → close 1009",
  },
  maxConnections: {
    type: "number",
    integer: true,
    min: 1,
    default: SERVER_DEFAULTS.maxConnections,
    description: "most simultaneous clients; more → close 1013",
  },
  handshakeTimeout: {
    type: "duration",
    min: 1,
    default: SERVER_DEFAULTS.handshakeTimeout,
    description: "time allowed for the HTTP upgrade request",
  },
  idleTimeout: {
    type: "duration",
    min: 0,
    default: SERVER_DEFAULTS.idleTimeout,
    description: "close a silent client with 1008 after this (0: never)",
  },
  pingInterval: {
    type: "duration",
    min: 0,
    default: SERVER_DEFAULTS.pingInterval,
    description: "ping a silent client after this (0: never)",
  },
  closeTimeout: {
    type: "duration",
    min: 1,
    default: SERVER_DEFAULTS.closeTimeout,
    description: "time allowed for the close handshake",
  },
  origin: {
    type: "string",
    multiple: true,
    description: "allowed Origin; default: any",
    metavar: "url",
  },
  maxBuffered: {
    type: "bytes",
    min: 1,
    default: SERVER_DEFAULTS.maxBufferedBytes,
    description: "unsent bytes allowed per client; more → close 1008",
  },
  maxHeaderBytes: {
    type: "bytes",
    min: 1024,
    default: SERVER_DEFAULTS.maxHeaderBytes,
    description: "largest HTTP request head; larger → 431",
  },
  maxHeaders: {
    type: "number",
    integer: true,
    min: 1,
    default: SERVER_DEFAULTS.maxHeaderCount,
    description: "most HTTP request headers; more → 431",
  },
  logLevel: {
    type: "string",
    choices: ["debug", "info", "warn", "error"],
    default: "info",
    description: "lowest log level written",
  },
  logFormat: {
    type: "string",
    choices: ["text", "json"],
    default: "text",
    description: "log line format",
  },
} as const satisfies Record<string, OptionSpec>;

/** Parsed values of SERVER_FLAGS. */
export interface ServerFlagValues {
  port: number;
  host: string;
  path: string[];
  static: string | undefined;
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  deflate: boolean;
  maxPayload: number;
  maxConnections: number;
  handshakeTimeout: number;
  idleTimeout: number;
  pingInterval: number;
  closeTimeout: number;
  origin: string[];
  maxBuffered: number;
  maxHeaderBytes: number;
  maxHeaders: number;
  logLevel: "debug" | "info" | "warn" | "error";
  logFormat: "text" | "json";
}

/** Turns the shared flags into server options; throws ArgsError for inconsistent ones. */
export function toServerOptions(command: string, values: ServerFlagValues): ServerOptions {
  if ((values.tlsCert === undefined) !== (values.tlsKey === undefined)) {
    throw new ArgsError(
      `moonsocket ${command}: --tls-cert and --tls-key go together; give both or neither`,
    );
  }
  const tls =
    values.tlsCert !== undefined && values.tlsKey !== undefined
      ? loadTlsFiles(command, values.tlsCert, values.tlsKey)
      : undefined;
  const options: ServerOptions = {
    port: values.port,
    host: values.host,
    maxPayload: values.maxPayload,
    maxConnections: values.maxConnections,
    handshakeTimeout: values.handshakeTimeout,
    idleTimeout: values.idleTimeout,
    pingInterval: values.pingInterval,
    closeTimeout: values.closeTimeout,
    allowedOrigins: values.origin,
    maxBufferedBytes: values.maxBuffered,
    maxHeaderBytes: values.maxHeaderBytes,
    maxHeaderCount: values.maxHeaders,
    perMessageDeflate: values.deflate,
    logger: createLogger({ level: values.logLevel, format: values.logFormat }),
  };
  if (values.path.length > 0) options.path = values.path;
  if (values.static !== undefined) {
    try {
      assertStaticFolder(values.static);
    } catch (error) {
      throw new ArgsError(`moonsocket ${command}: ${(error as Error).message}`);
    }
    options.staticDir = values.static;
  }
  if (tls !== undefined) options.tls = tls;
  return options;
}

/** `--workers N|auto` (serve only): worker processes sharing the port. */
export const WORKERS_FLAG = {
  type: "string",
  default: "1",
  description:
    "worker processes sharing the port and acting as one server (auto: one per core); 1 runs in this process",
  metavar: "n|auto",
} as const satisfies OptionSpec;

/**
 * Reads `--workers`.
 * @throws {ArgsError} (exit code 2) for anything but a whole number from 1 or `auto`.
 */
export function readWorkerCount(command: string, text: string): number {
  try {
    return parseWorkerCount(text);
  } catch (error) {
    throw new ArgsError(`moonsocket ${command}: ${(error as Error).message}`);
  }
}
