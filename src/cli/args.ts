/**
 * Command-line parsing for the `moonsocket` commands, on top of `node:util` `parseArgs`.
 *
 * A command's options are defined once; from that definition come the typed values, the
 * validation (numbers, byte sizes, durations, choices) with messages meant for users, and
 * the `--help` text.
 *
 * @example
 * ```ts
 * const echo = defineCommand({
 *   name: "echo",
 *   description: "Run a WebSocket echo server.",
 *   options: {
 *     port: { type: "number", short: "p", integer: true, min: 0, max: 65535, default: 8085,
 *             description: "TCP port to listen on" },
 *     maxPayload: { type: "bytes", default: 64 * 1024 * 1024, description: "Largest message accepted" },
 *     deflate: { type: "boolean", description: "Offer permessage-deflate" },
 *   },
 * });
 * const { help, values } = parseCommandArgs(echo, process.argv.slice(3));
 * if (help) { process.stdout.write(formatHelp(echo)); process.exit(0); }
 * values.port; // number
 * ```
 *
 * Option keys are camelCase in code and kebab-case on the command line (`maxPayload` is
 * `--max-payload`). `--help`/`-h` is always accepted. A boolean `--x` can be turned off with
 * `--no-x`. After `--`, everything is positional.
 *
 * @module
 */

import { type ParseArgsConfig, parseArgs } from "node:util";

/** Value types: `bytes` is a size in bytes, `duration` a time in milliseconds. */
export type OptionType = "string" | "boolean" | "number" | "bytes" | "duration";

/** The definition of one option. */
export interface OptionSpec {
  /** How the value is read; see {@link parseBytes} and {@link parseDuration}. */
  readonly type: OptionType;
  /** What the option does, for `--help`; mention the unit where it is not obvious. */
  readonly description: string;
  /** One-letter alias, e.g. `"p"` for `-p`. */
  readonly short?: string;
  /** May be given more than once; the value is then an array (default `[]`). */
  readonly multiple?: boolean;
  /**
   * Value when the option is absent: bytes for `bytes`, milliseconds for `duration`; an array
   * if `multiple`. Without one, the value is `undefined` (booleans: `false`; `multiple`: `[]`).
   */
  readonly default?: string | number | boolean | readonly string[] | readonly number[];
  /**
   * Name of the value in `--help`, e.g. `"host"` → `--host <host>`. Default: the choices
   * (`<text|json>`), else from the type (`<n>`, `<bytes>`, `<duration>`, `<value>`).
   */
  readonly metavar?: string;
  /** For `string`: the only accepted values (shown as the metavar in `--help`). */
  readonly choices?: readonly string[];
  /** For `number`, `bytes`, `duration`: smallest accepted value (in the option's unit). */
  readonly min?: number;
  /** For `number`, `bytes`, `duration`: largest accepted value (in the option's unit). */
  readonly max?: number;
  /** For `number`: only whole numbers are accepted (bytes and durations always are whole). */
  readonly integer?: boolean;
}

/** A positional argument, for the usage line, `--help` and the count check. */
export interface PositionalSpec {
  /** Shown in the usage line, e.g. `"script.lua"` or `"URL"`. */
  readonly name: string;
  /** For `--help`; positionals without one are only shown in the usage line. */
  readonly description?: string;
  /** Must be given. Default `false`. Required positionals come before optional ones. */
  readonly required?: boolean;
  /** Takes all remaining arguments (only the last positional). Default `false`. */
  readonly variadic?: boolean;
}

/** The definition of one command. */
export interface CommandSpec {
  /** The command as typed after the program name, e.g. `"echo"`; `""` for the bare program. */
  readonly name: string;
  /** Program name used in messages and usage. Default `"moonsocket"`. */
  readonly program?: string;
  /** One or two sentences for `--help`. */
  readonly description: string;
  /** Options by camelCase key; the flag is the key in kebab-case. */
  readonly options: Readonly<Record<string, OptionSpec>>;
  /** Positional arguments. Default: none accepted. */
  readonly positionals?: readonly PositionalSpec[];
  /** Example command lines for `--help`. */
  readonly examples?: readonly string[];
}

type ScalarOf<O extends OptionSpec> = O["type"] extends "boolean"
  ? boolean
  : O["type"] extends "string"
    ? O extends { readonly choices: readonly (infer C extends string)[] }
      ? C
      : string
    : number;

/** The parsed type of one option: arrays for `multiple`, `undefined` when absent without default. */
export type OptionValue<O extends OptionSpec> = O extends { readonly multiple: true }
  ? ScalarOf<O>[]
  : O["type"] extends "boolean"
    ? boolean
    : O extends { readonly default: string | number | boolean }
      ? ScalarOf<O>
      : ScalarOf<O> | undefined;

/** Parsed values of a command, keyed like its options. */
export type OptionValues<S extends CommandSpec> = {
  -readonly [K in keyof S["options"]]: OptionValue<S["options"][K]>;
};

/** What {@link parseCommandArgs} returns. */
export interface ParsedArgs<S extends CommandSpec> {
  /** `--help` or `-h` was given: print {@link formatHelp} and exit 0 (nothing was validated). */
  readonly help: boolean;
  /** Option values, defaults applied. */
  readonly values: OptionValues<S>;
  /** Positional arguments in order. */
  readonly positionals: string[];
}

/**
 * A mistake on the command line. The message is written for the user, starts with the
 * command (`moonsocket echo: …`) and says what to do; print it and exit with {@link exitCode}.
 */
export class ArgsError extends Error {
  override readonly name = "ArgsError";
  /** Machine-readable code, for tests and callers that branch on it. */
  readonly code = "ERR_MOONSOCKET_ARGS";
  /** The exit status for a usage error. */
  readonly exitCode = 2;
}

/**
 * Returns `spec` unchanged, typed precisely (literal option types, choices), so that
 * {@link parseCommandArgs} can type the values. Checks the definition itself.
 * @throws {TypeError} for a broken definition: bad `short`, duplicate flag, reserved `help` or `version`.
 */
export function defineCommand<const S extends CommandSpec>(spec: S): S {
  checkSpec(spec);
  return spec;
}

/**
 * Parses `argv` (the arguments after the command name) against `spec`.
 * @throws {ArgsError} for an unknown option, a missing or malformed value, a value out of range
 *   or not among the choices, a wrong number of positionals. Not thrown when `--help` is given.
 * @throws {TypeError} if the definition itself is broken (see {@link defineCommand}).
 */
export function parseCommandArgs<const S extends CommandSpec>(
  spec: S,
  argv: readonly string[],
): ParsedArgs<S> {
  checkSpec(spec);
  const prefix = formatCommandLine(spec);
  const seeHelp = `see '${formatCommandLine(spec)} --help'`;
  const byFlag = new Map<string, [key: string, option: OptionSpec]>();
  const shorts = new Set(["h"]);
  const config: NonNullable<ParseArgsConfig["options"]> = {
    help: { type: "boolean", short: "h" },
  };
  for (const [key, option] of Object.entries(spec.options)) {
    const flag = toFlag(key);
    byFlag.set(flag, [key, option]);
    if (option.short !== undefined) shorts.add(option.short);
    config[flag] = {
      type: option.type === "boolean" ? "boolean" : "string",
      ...(option.short === undefined ? {} : { short: option.short }),
    };
  }

  // strict: false so that we, not parseArgs, word the errors (and can offer `--no-x`).
  const { tokens } = parseArgs({
    args: [...argv],
    options: config,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });

  const values: Record<string, unknown> = {};
  const positionals: string[] = [];
  let help = false;
  let firstError: ArgsError | undefined;
  const fail = (message: string) => {
    firstError ??= new ArgsError(`${prefix}: ${message}`);
  };

  for (const token of tokens) {
    if (token.kind === "positional") {
      positionals.push(token.value);
      continue;
    }
    if (token.kind !== "option") continue;
    // An undefined short flag comes back named by its letter; do not mistake it for a long flag.
    const isLong = token.rawName.startsWith("--") || shorts.has(token.rawName.slice(1));
    if (isLong && token.name === "help") {
      help = true;
      continue;
    }
    const known = isLong ? byFlag.get(token.name) : undefined;
    if (known === undefined) {
      const negated =
        isLong && token.name.startsWith("no-") ? byFlag.get(token.name.slice(3)) : undefined;
      if (negated !== undefined && negated[1].type === "boolean" && token.value === undefined) {
        values[negated[0]] = false;
        continue;
      }
      const hint = suggestFlag(token.name, [...byFlag.keys()]);
      fail(
        `unknown option ${token.rawName}${hint === undefined ? "" : ` (did you mean --${hint}?)`}; ${seeHelp}`,
      );
      continue;
    }
    const [key, option] = known;
    const display = `--${token.name}`;
    if (option.type === "boolean") {
      if (token.value !== undefined) {
        fail(`${display} does not take a value (got "${token.value}")`);
      } else {
        values[key] = true;
      }
      continue;
    }
    const raw = token.value;
    // parseArgs takes the next word as the value even if it looks like an option
    // (`--port --host x`); that is nearly always a forgotten value.
    if (
      raw === undefined ||
      (token.inlineValue === false && raw.startsWith("-") && raw !== "-" && !/^-\d/.test(raw))
    ) {
      fail(`${display} needs a value (${formatMetavar(option)}); ${seeHelp}`);
      continue;
    }
    const parsed = convertValue(option, raw);
    if (typeof parsed === "string") {
      fail(`${display} ${parsed}, got ${JSON.stringify(raw)}`);
      continue;
    }
    if (option.multiple === true) {
      const list = (values[key] as unknown[] | undefined) ?? [];
      list.push(parsed.value);
      values[key] = list;
    } else {
      values[key] = parsed.value;
    }
  }

  for (const [key, option] of Object.entries(spec.options)) {
    if (key in values) continue;
    if (option.default !== undefined) {
      values[key] = Array.isArray(option.default) ? [...option.default] : option.default;
    } else if (option.multiple === true) {
      values[key] = [];
    } else if (option.type === "boolean") {
      values[key] = false;
    } else {
      values[key] = undefined;
    }
  }

  const result = { help, values: values as OptionValues<S>, positionals };
  if (help) return result;
  if (firstError !== undefined) throw firstError;

  const specs = spec.positionals ?? [];
  const required = specs.filter((p) => p.required === true);
  if (positionals.length < required.length) {
    const missing = required[positionals.length]!;
    throw new ArgsError(`${prefix}: missing ${missing.name}; ${seeHelp}`);
  }
  const variadic = specs[specs.length - 1]?.variadic === true;
  if (!variadic && positionals.length > specs.length) {
    const extra = positionals[specs.length]!;
    throw new ArgsError(
      `${prefix}: unexpected argument ${JSON.stringify(extra)}` +
        (extra.startsWith("-") ? " (options after '--' are taken as arguments)" : "") +
        `; ${seeHelp}`,
    );
  }
  return result;
}

/**
 * Returns the `--help` text: usage line, description, arguments, an aligned option list with
 * defaults, and examples. Lines are wrapped at `width` columns (default 80). Ends with a newline.
 */
export function formatHelp(spec: CommandSpec, width = 80): string {
  const lines: string[] = [];
  const usage = [formatCommandLine(spec)];
  if (Object.keys(spec.options).length > 0) usage.push("[options]");
  for (const p of spec.positionals ?? []) {
    const name = p.variadic === true ? `${p.name}...` : p.name;
    usage.push(p.required === true ? name : `[${name}]`);
  }
  lines.push(`Usage: ${usage.join(" ")}`, "");
  lines.push(...wrap(spec.description, width), "");

  const described = (spec.positionals ?? []).filter((p) => p.description !== undefined);
  if (described.length > 0) {
    lines.push("Arguments:");
    lines.push(
      ...formatTable(
        described.map((p) => [p.name, p.description ?? ""]),
        width,
      ),
      "",
    );
  }

  lines.push("Options:", ...formatOptions(spec, width));

  if (spec.examples !== undefined && spec.examples.length > 0) {
    lines.push("", "Examples:", ...spec.examples.map((example) => `  ${example}`));
  }
  return `${lines.join("\n")}\n`;
}

/**
 * The option list of {@link formatHelp} on its own: one aligned row per option with its
 * default, then `--help` and `--version`. Lines are wrapped at `width` columns (default 80).
 */
export function formatOptions(spec: CommandSpec, width = 80): string[] {
  const rows: [string, string][] = [];
  for (const [key, option] of Object.entries(spec.options)) {
    const flag = toFlag(key);
    const short = option.short === undefined ? "    " : `-${option.short}, `;
    const names =
      option.type === "boolean"
        ? `${short}--${option.default === true ? `[no-]${flag}` : flag}`
        : `${short}--${flag} <${formatMetavar(option)}>`;
    const notes: string[] = [];
    const shownDefault = formatDefault(option);
    if (shownDefault !== undefined) notes.push(`default: ${shownDefault}`);
    if (option.multiple === true) notes.push("repeatable");
    const text =
      notes.length > 0 ? `${option.description} (${notes.join("; ")})` : option.description;
    rows.push([names, text]);
  }
  rows.push(["-h, --help", "Show this help and exit"]);
  rows.push(["    --version", "Print the version and exit"]);
  return formatTable(rows, width);
}

/**
 * True when `argv` asks for the version: `--version` before any `--`. Like `--help`, it wins
 * over everything else on the line, which is therefore not validated.
 */
export function isVersionRequested(argv: readonly string[]): boolean {
  for (const arg of argv) {
    if (arg === "--") return false;
    if (arg === "--version") return true;
  }
  return false;
}

const BYTE_UNITS: Readonly<Record<string, number>> = {
  "": 1,
  b: 1,
  k: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  // SI units mean powers of 1000; spelled out so that `64KB` does not silently mean 65536.
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
};

/**
 * Parses a size in bytes: `65536`, `64KiB`, `16MiB`, `1GiB`, and the short forms `64k`, `16m`,
 * `1g` (powers of 1024, case-insensitive); `kB`/`MB`/`GB` are powers of 1000. Fractions are
 * allowed (`1.5MiB`) and rounded down to whole bytes.
 * @returns the number of bytes, or `undefined` if `text` is not a size.
 */
export function parseBytes(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)$/i.exec(text.trim());
  if (match === null) return undefined;
  const unit = BYTE_UNITS[match[2]!.toLowerCase()];
  if (unit === undefined) return undefined;
  const bytes = Math.floor(Number(match[1]) * unit);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

const DURATION_UNITS: Readonly<Record<string, number>> = {
  "": 1,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Parses a duration in milliseconds: `1500`, `1500ms`, `30s`, `1.5s`, `5m`, `1h`. Fractions
 * are rounded to whole milliseconds.
 * @returns the number of milliseconds, or `undefined` if `text` is not a duration.
 */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)$/i.exec(text.trim());
  if (match === null) return undefined;
  const unit = DURATION_UNITS[match[2]!.toLowerCase()];
  if (unit === undefined) return undefined;
  const ms = Math.round(Number(match[1]) * unit);
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/** Formats bytes the way {@link parseBytes} reads them back: `64KiB`, `16MiB`, `1000`. */
export function formatBytes(bytes: number): string {
  for (const [unit, size] of [
    ["GiB", 1024 ** 3],
    ["MiB", 1024 ** 2],
    ["KiB", 1024],
  ] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return String(bytes);
}

/** Formats milliseconds the way {@link parseDuration} reads them back: `30s`, `5m`, `1500ms`. */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1000],
  ] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/** Converts one raw value; returns the problem as text ("expects a number") when it fails. */
function convertValue(option: OptionSpec, raw: string): { value: string | number } | string {
  switch (option.type) {
    case "string":
      if (option.choices !== undefined && !option.choices.includes(raw)) {
        return `expects one of ${option.choices.join(", ")}`;
      }
      return { value: raw };
    case "number": {
      const value = raw.trim() === "" ? Number.NaN : Number(raw);
      if (!Number.isFinite(value)) return "expects a number";
      if (option.integer === true && !Number.isInteger(value)) return "expects a whole number";
      return checkRange(option, value, String);
    }
    case "bytes": {
      const value = parseBytes(raw);
      if (value === undefined) return "expects a size in bytes such as 65536, 64KiB or 16MiB";
      return checkRange(option, value, formatBytes);
    }
    case "duration": {
      const value = parseDuration(raw);
      if (value === undefined) return "expects a duration such as 1500ms, 30s or 5m";
      return checkRange(option, value, formatDuration);
    }
    default:
      return "cannot take a value";
  }
}

function checkRange(
  option: OptionSpec,
  value: number,
  show: (n: number) => string,
): { value: number } | string {
  const { min, max } = option;
  if ((min !== undefined && value < min) || (max !== undefined && value > max)) {
    if (min !== undefined && max !== undefined)
      return `expects a value from ${show(min)} to ${show(max)}`;
    if (min !== undefined) return `expects a value of at least ${show(min)}`;
    return `expects a value of at most ${show(max!)}`;
  }
  return { value };
}

function checkSpec(spec: CommandSpec): void {
  const shorts = new Set<string>(["h"]);
  for (const [key, option] of Object.entries(spec.options)) {
    if (key === "help" || key === "version") {
      throw new TypeError(`option '${key}' is reserved: --${key} is built in`);
    }
    if (!/^[a-z][a-zA-Z0-9]*$/.test(key)) {
      throw new TypeError(`option key ${JSON.stringify(key)} must be camelCase`);
    }
    if (option.short !== undefined) {
      if (!/^[a-zA-Z0-9]$/.test(option.short) || shorts.has(option.short)) {
        throw new TypeError(
          `option ${key}: short flag ${JSON.stringify(option.short)} is invalid or taken`,
        );
      }
      shorts.add(option.short);
    }
  }
  const positionals = spec.positionals ?? [];
  positionals.forEach((p, i) => {
    if (p.variadic === true && i !== positionals.length - 1) {
      throw new TypeError(`positional ${p.name}: only the last positional may be variadic`);
    }
    if (p.required === true && i > 0 && positionals[i - 1]?.required !== true) {
      throw new TypeError(`positional ${p.name}: required positionals must come first`);
    }
  });
}

/** `maxPayload` → `max-payload`. */
function toFlag(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

function formatCommandLine(spec: CommandSpec): string {
  return [spec.program ?? "moonsocket", spec.name].filter((part) => part !== "").join(" ");
}

function formatMetavar(option: OptionSpec): string {
  if (option.metavar !== undefined) return option.metavar;
  if (option.choices !== undefined) return option.choices.join("|");
  switch (option.type) {
    case "number":
      return "n";
    case "bytes":
      return "bytes";
    case "duration":
      return "duration";
    default:
      return "value";
  }
}

function formatDefault(option: OptionSpec): string | undefined {
  const value = option.default;
  if (value === undefined || value === false) return undefined;
  if (Array.isArray(value)) {
    return value.length === 0 ? undefined : value.map((v) => formatScalar(option, v)).join(", ");
  }
  return formatScalar(option, value as string | number | boolean);
}

function formatScalar(option: OptionSpec, value: string | number | boolean): string {
  if (typeof value === "number" && option.type === "bytes") return formatBytes(value);
  if (typeof value === "number" && option.type === "duration") return formatDuration(value);
  if (value === "") return '""';
  return String(value);
}

/** Two aligned columns, the second wrapped to fit `width`. */
function formatTable(rows: readonly (readonly [string, string])[], width: number): string[] {
  const left = Math.max(...rows.map(([name]) => name.length));
  const indent = 2 + left + 2;
  const textWidth = Math.max(20, width - indent);
  const out: string[] = [];
  for (const [name, text] of rows) {
    const wrapped = wrap(text, textWidth);
    out.push(`  ${name.padEnd(left)}  ${wrapped[0] ?? ""}`.trimEnd());
    for (const line of wrapped.slice(1)) out.push(`${" ".repeat(indent)}${line}`);
  }
  return out;
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter((w) => w !== "")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === "" ? word : `${line} ${word}`;
    }
  }
  if (line !== "") lines.push(line);
  return lines;
}

/** The closest known flag (edit distance ≤ 2, or a prefix match), for "did you mean". */
function suggestFlag(name: string, flags: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const flag of flags) {
    const distance =
      flag.startsWith(name) && name.length >= 3 ? 1 : measureEditDistance(name, flag);
    if (distance < bestDistance) {
      best = flag;
      bestDistance = distance;
    }
  }
  return best;
}

function measureEditDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
