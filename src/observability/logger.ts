/**
 * A small structured logger: one line per entry, as readable text or as JSON.
 *
 * ```text
 * 2026-11-22T01:02:03.456Z INFO  client connected id=3 origin="http://localhost:8085"
 * {"time":"2026-11-22T01:02:03.456Z","level":"info","msg":"client connected","id":3}
 * ```
 *
 * Methods of a disabled level are a shared no-op function, so `log.debug(...)` costs a call and
 * nothing else (callers that build expensive fields can check {@link Logger.isLevelEnabled}).
 *
 * @module
 */

import type { Writable } from "node:stream";

/** Severity levels, lowest first. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;

/** One of {@link LOG_LEVELS}. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Output formats: `text` for people, `json` (one object per line) for log collectors. */
export type LogFormat = "text" | "json";

/** Structured context attached to an entry, e.g. `{ id: 3, bytes: 1024 }`. */
export type LogFields = Readonly<Record<string, unknown>>;

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Lowest level written. Default `"info"`. */
  readonly level?: LogLevel;
  /** Line format. Default `"text"`. */
  readonly format?: LogFormat;
  /** Where lines are written. Default `process.stderr`. */
  readonly stream?: Writable;
  /**
   * Component name, written as `[name]` before the message in text and as `"name"` in JSON.
   * Default: none.
   */
  readonly name?: string;
  /** Clock in milliseconds since the epoch, for tests. Default `Date.now`. */
  readonly now?: () => number;
}

/** What {@link createLogger} returns. */
export interface Logger {
  /** The lowest level this logger writes. */
  readonly level: LogLevel;
  /** Writes a debug entry (skipped unless the level is `debug`). */
  debug(message: string, fields?: LogFields): void;
  /** Writes an info entry. */
  info(message: string, fields?: LogFields): void;
  /** Writes a warning. */
  warn(message: string, fields?: LogFields): void;
  /** Writes an error. An `Error` in the fields is written with its message (and stack in JSON). */
  error(message: string, fields?: LogFields): void;
  /** True if entries of `level` are written; use it to skip building costly fields. */
  isLevelEnabled(level: LogLevel): boolean;
  /**
   * Returns a logger that writes to the same place with the same settings and adds `fields` to
   * every entry (an entry's own fields win over the child's on a name clash).
   */
  child(fields: LogFields): Logger;
}

/** Checks a user-supplied level name (from a flag or an environment variable). */
export function isLogLevel(value: string): value is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(value);
}

/**
 * Creates a logger.
 * @throws {TypeError} if `level` or `format` is not one of the known names.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? "info";
  const format = options.format ?? "text";
  if (!isLogLevel(level)) throw new TypeError(`unknown log level ${JSON.stringify(level)}`);
  if (format !== "text" && format !== "json") {
    throw new TypeError(`unknown log format ${JSON.stringify(format)}`);
  }
  const sink: Sink = {
    level,
    format,
    stream: options.stream ?? process.stderr,
    name: options.name,
    now: options.now ?? Date.now,
  };
  return buildLogger(sink, {});
}

interface Sink {
  readonly level: LogLevel;
  readonly format: LogFormat;
  readonly stream: Writable;
  readonly name: string | undefined;
  readonly now: () => number;
}

const LEVEL_RANK: Readonly<Record<LogLevel, number>> = { debug: 0, info: 1, warn: 2, error: 3 };
const TEXT_LABEL: Readonly<Record<LogLevel, string>> = {
  debug: "DEBUG",
  info: "INFO ",
  warn: "WARN ",
  error: "ERROR",
};
/** Keys the JSON format owns; a field with one of these names is written with a `_` prefix. */
const RESERVED_KEYS = new Set(["time", "level", "name", "msg"]);

function skip(_message: string, _fields?: LogFields): void {}

function buildLogger(sink: Sink, bound: LogFields): Logger {
  const rank = LEVEL_RANK[sink.level];
  const method = (level: LogLevel) =>
    LEVEL_RANK[level] < rank
      ? skip
      : (message: string, fields?: LogFields) => {
          const merged = fields === undefined ? bound : { ...bound, ...fields };
          const line =
            sink.format === "json"
              ? formatJson(sink, level, message, merged)
              : formatText(sink, level, message, merged);
          sink.stream.write(line);
        };
  return {
    level: sink.level,
    debug: method("debug"),
    info: method("info"),
    warn: method("warn"),
    error: method("error"),
    isLevelEnabled: (level) => LEVEL_RANK[level] >= rank,
    child: (fields) => buildLogger(sink, { ...bound, ...fields }),
  };
}

function formatText(sink: Sink, level: LogLevel, message: string, fields: LogFields): string {
  let line = `${new Date(sink.now()).toISOString()} ${TEXT_LABEL[level]} `;
  if (sink.name !== undefined) line += `[${escapeControls(sink.name)}] `;
  line += escapeControls(message);
  for (const key of Object.keys(fields)) {
    const value = fields[key];
    if (value === undefined) continue;
    line += ` ${formatTextToken(key)}=${formatTextValue(value)}`;
  }
  return `${line}\n`;
}

function formatJson(sink: Sink, level: LogLevel, message: string, fields: LogFields): string {
  const entry: Record<string, unknown> = { time: new Date(sink.now()).toISOString(), level };
  if (sink.name !== undefined) entry.name = sink.name;
  entry.msg = message;
  for (const key of Object.keys(fields)) {
    entry[RESERVED_KEYS.has(key) ? `_${key}` : key] = fields[key];
  }
  try {
    return `${JSON.stringify(entry, replaceForJson)}\n`;
  } catch {
    // A cyclic object must not turn a log call into a crash; keep the entry, lose the fields.
    const { time, msg } = entry;
    return `${JSON.stringify({ time, level, name: sink.name, msg, fields: "[unserializable]" })}\n`;
  }
}

function replaceForJson(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Error) {
    const out: Record<string, unknown> = { name: value.name, message: value.message };
    const code = (value as { code?: unknown }).code;
    if (code !== undefined) out.code = code;
    out.stack = value.stack;
    return out;
  }
  return value;
}

/** Bare if it is a simple token, else a JSON string literal (quotes and escapes included). */
function formatTextToken(text: string): string {
  return /^[^\s"=\\\p{Cc}]+$/u.test(text) ? text : JSON.stringify(text);
}

function formatTextValue(value: unknown): string {
  switch (typeof value) {
    case "string":
      return formatTextToken(value);
    case "number":
    case "boolean":
    case "bigint":
      return String(value);
    case "symbol":
    case "function":
      return formatTextToken(String(value));
    default:
      break;
  }
  if (value === null) return "null";
  if (value instanceof Error) return formatTextToken(`${value.name}: ${value.message}`);
  try {
    return formatTextToken(JSON.stringify(value, replaceForJson) ?? String(value));
  } catch {
    return '"[unserializable]"';
  }
}

/** Keeps one entry on one line: a newline in a message could otherwise forge a log entry. */
function escapeControls(text: string): string {
  return text.replace(/\p{Cc}/gu, (c) => {
    if (c === "\n") return "\\n";
    if (c === "\r") return "\\r";
    if (c === "\t") return "\\t";
    return `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
  });
}
