/**
 * `ngx.re` for OpenResty-style scripts: PCRE patterns run on JavaScript's RegExp.
 *
 * Subjects and patterns are Lua byte strings. Without the `u` option a byte is a character, as in
 * PCRE without UTF-8 mode: both are decoded as latin1, so match positions are byte offsets and
 * any bytes (NUL, invalid UTF-8) are matched as themselves. With `u` they are UTF-8 text (a subject
 * that is not valid UTF-8 is an error, as in PCRE) and positions are converted back to bytes.
 *
 * The pattern is translated from PCRE syntax: `(?P<name>…)`, `(?'name'…)`, `(?P=name)`,
 * `\k{name}`, `\g{1}`; `\A`, `\z`, `\Z`; `\h`, `\H`, `\R`, `\e`, `\a`, `\x{…}`, `\Q…\E`; POSIX
 * classes (`[[:alpha:]]`); `(?#…)` comments; leading inline options (`(?i)`, `(?s)`, `(?m)`,
 * `(?x)`); and PCRE's meaning of `.` (any byte but `\n`), `$` (end, or before a final `\n`; with
 * `m`, before any `\n`), `^` and `\s` (ASCII white space only).
 *
 * Options (ngx.re's third argument): `i` caseless, `m` multi-line, `s` dot-all, `x` extended, `u`
 * / `U` UTF-8, `a` anchored, `j`, `o`, `D`, `J`, `d` accepted and ignored (JIT, compile-once
 * caching -- patterns are always cached here --, duplicate names, JavaScript compatibility, DFA).
 *
 * Not supported (the pattern fails to compile with an error naming the construct): possessive
 * quantifiers (`a*+`), atomic groups `(?>…)`, recursion and subroutine calls (`(?R)`, `(?1)`,
 * `(?&name)`), conditionals `(?(…)…)`, branch reset `(?|…)`, inline options other than at the
 * start of the pattern, `\G`, `\K`, `\C`, `\X`, backtracking verbs (`(*SKIP)`…). Caseless matching
 * of non-ASCII letters follows JavaScript (PCRE without UTF-8 only folds ASCII letters).
 *
 * @module
 */

import { isValidUtf8 } from "../../../protocol/utf8.js";
import {
  execBounded,
  type InPlaceLimit,
  inPlaceLength,
  MATCH_LIMIT_MESSAGE,
  type MatchBudget,
} from "./regex-limit.js";

export { MATCH_LIMIT_MESSAGE, type MatchBudget } from "./regex-limit.js";

/** A compiled pattern. */
interface Compiled {
  readonly regex: RegExp;
  readonly unicode: boolean;
  /** Named groups → group number. */
  readonly names: Record<string, number> | null;
  /** Subjects up to this long are matched in place, longer ones under a timeout. */
  readonly inPlace: InPlaceLimit;
}

/** An error in the pattern or the options; `raise` when OpenResty raises it instead of returning it. */
export class RegexError extends Error {
  readonly raise: boolean;
  constructor(message: string, raise = false) {
    super(message);
    this.raise = raise;
  }
}

const CACHE_LIMIT = 1024;
const cache = new Map<string, Compiled | RegexError>();

const POSIX_CLASSES: Record<string, string> = {
  alpha: "A-Za-z",
  digit: "0-9",
  alnum: "A-Za-z0-9",
  upper: "A-Z",
  lower: "a-z",
  space: "\\t\\n\\v\\f\\r ",
  blank: " \\t",
  punct: "!-\\/:-@\\[-`{-~",
  xdigit: "0-9A-Fa-f",
  word: "A-Za-z0-9_",
  cntrl: "\\x00-\\x1f\\x7f",
  print: " -~",
  graph: "!-~",
  ascii: "\\x00-\\x7f",
};

const JS_SYNTAX = new Set("^$\\.*+?()[]{}|/");
const SPACE = "\\t\\n\\v\\f\\r ";

interface Flags {
  caseless: boolean;
  multiline: boolean;
  dotall: boolean;
  extended: boolean;
  unicode: boolean;
  anchored: boolean;
}

function parseOptions(options: string): Flags {
  const flags: Flags = {
    caseless: false,
    multiline: false,
    dotall: false,
    extended: false,
    unicode: false,
    anchored: false,
  };
  for (const c of options) {
    switch (c) {
      case "i":
        flags.caseless = true;
        break;
      case "m":
        flags.multiline = true;
        break;
      case "s":
        flags.dotall = true;
        break;
      case "x":
        flags.extended = true;
        break;
      case "u":
      case "U":
        flags.unicode = true;
        break;
      case "a":
        flags.anchored = true;
        break;
      case "j":
      case "o":
      case "D":
      case "J":
      case "d":
        break;
      default:
        throw new RegexError(`unknown flag "${c}" (flags "${options}")`, true);
    }
  }
  return flags;
}

function unsupported(what: string): never {
  throw new RegexError(
    `${what} is not supported (moonsocket runs ngx.re on JavaScript regular expressions)`,
  );
}

/** An escape for one code point that is valid in both RegExp modes. */
function literal(codePoint: number, unicode: boolean): string {
  if (codePoint <= 0xff) return `\\x${codePoint.toString(16).padStart(2, "0")}`;
  if (unicode) return `\\u{${codePoint.toString(16)}}`;
  return `\\u${codePoint.toString(16).padStart(4, "0")}`;
}

/** Translates a PCRE pattern (already decoded) to a JavaScript RegExp source. */
export function translatePattern(pattern: string, flags: Flags): string {
  let p = pattern;
  // Leading inline options, e.g. (?i) or (?sm).
  for (let m = /^\(\?([imsxU]+)\)/.exec(p); m !== null; m = /^\(\?([imsxU]+)\)/.exec(p)) {
    for (const c of m[1]!) {
      if (c === "i") flags.caseless = true;
      else if (c === "m") flags.multiline = true;
      else if (c === "s") flags.dotall = true;
      else if (c === "x") flags.extended = true;
    }
    p = p.slice(m[0].length);
  }
  const u = flags.unicode;
  let out = "";
  let inClass = false;
  let classStart = -1;
  const n = p.length;
  let i = 0;
  while (i < n) {
    const c = p[i]!;
    if (c === "\\") {
      if (i + 1 >= n) throw new RegexError("\\ at end of pattern");
      const d = p[i + 1]!;
      i += 2;
      switch (d) {
        case "A":
          if (inClass) unsupported("\\A in a character class");
          out += "(?<![\\s\\S])";
          continue;
        case "z":
          out += "(?![\\s\\S])";
          continue;
        case "Z":
          out += "(?=\\n?(?![\\s\\S]))";
          continue;
        case "h":
          out += inClass ? "\\t " : "[\\t ]";
          continue;
        case "H":
          if (inClass) unsupported("\\H in a character class");
          out += "[^\\t ]";
          continue;
        case "R":
          if (inClass) unsupported("\\R in a character class");
          out += "(?:\\r\\n|[\\n\\v\\f\\r])";
          continue;
        case "s":
          out += inClass ? SPACE : `[${SPACE}]`;
          continue;
        case "S":
          out += inClass ? "\\S" : `[^${SPACE}]`;
          continue;
        case "e":
          out += "\\x1b";
          continue;
        case "a":
          out += "\\x07";
          continue;
        case "Q": {
          const end = p.indexOf("\\E", i);
          const text = end < 0 ? p.slice(i) : p.slice(i, end);
          for (const ch of text) out += literal(ch.codePointAt(0)!, u);
          i = end < 0 ? n : end + 2;
          continue;
        }
        case "E":
          continue;
        case "x": {
          if (p[i] === "{") {
            const end = p.indexOf("}", i);
            if (end < 0) throw new RegexError("missing } after \\x{");
            const value = Number.parseInt(p.slice(i + 1, end), 16);
            if (Number.isNaN(value)) throw new RegexError("bad \\x{...} escape");
            if (!u && value > 0xff)
              throw new RegexError("character value in \\x{...} sequence is too large");
            out += literal(value, u);
            i = end + 1;
          } else {
            out += "\\x";
          }
          continue;
        }
        case "g": {
          const m = /^(?:\{(-?\w+)\}|(\d+))/.exec(p.slice(i));
          if (m === null) throw new RegexError("a numbered reference must not be zero");
          const ref = m[1] ?? m[2]!;
          if (ref.startsWith("-")) unsupported("relative back reference \\g{-n}");
          out += /^\d+$/.test(ref) ? `\\${ref}` : `\\k<${ref}>`;
          i += m[0].length;
          continue;
        }
        case "k": {
          const m = /^(?:<(\w+)>|\{(\w+)\}|'(\w+)')/.exec(p.slice(i));
          if (m === null)
            throw new RegexError(
              "\\k is not followed by a braced, angle-bracketed, or quoted name",
            );
          out += `\\k<${m[1] ?? m[2] ?? m[3]}>`;
          i += m[0].length;
          continue;
        }
        case "G":
        case "K":
        case "C":
        case "X":
        case "N":
          unsupported(`\\${d}`);
          break;
        case "p":
        case "P":
          if (!u) unsupported(`\\${d} without the "u" option`);
          out += `\\${d}`;
          continue;
        default:
          if (/[0-9A-Za-z]/.test(d)) {
            out += `\\${d}`;
          } else if (!u || JS_SYNTAX.has(d) || (inClass && d === "-")) {
            out += `\\${d}`;
          } else {
            out += literal(d.codePointAt(0)!, u);
          }
          continue;
      }
    }
    if (inClass) {
      if (c === "[" && p[i + 1] === ":") {
        const m = /^\[:(\^?)([a-z]+):\]/.exec(p.slice(i));
        if (m !== null) {
          const ranges = POSIX_CLASSES[m[2]!];
          if (ranges === undefined) throw new RegexError(`unknown POSIX class name "${m[2]}"`);
          if (m[1] === "^") unsupported("a negated POSIX class inside a character class");
          out += ranges;
          i += m[0].length;
          continue;
        }
      }
      if (c === "]" && i > classStart) {
        inClass = false;
        out += "]";
        i++;
        continue;
      }
      if (c === "[" && u) {
        out += "\\[";
        i++;
        continue;
      }
      out += c === "]" ? "\\]" : c;
      i++;
      continue;
    }
    if (flags.extended) {
      if (c === " " || c === "\t" || c === "\n" || c === "\r" || c === "\f" || c === "\v") {
        i++;
        continue;
      }
      if (c === "#") {
        const end = p.indexOf("\n", i);
        i = end < 0 ? n : end + 1;
        continue;
      }
    }
    switch (c) {
      case "[": {
        inClass = true;
        out += "[";
        i++;
        if (p[i] === "^") {
          out += "^";
          i++;
        }
        // A ']' right after '[' or '[^' is a literal in PCRE.
        if (p[i] === "]") {
          out += "\\]";
          i++;
        }
        classStart = i;
        continue;
      }
      case ".":
        out += flags.dotall ? "[\\s\\S]" : "[^\\n]";
        i++;
        continue;
      case "$":
        out += flags.multiline ? "(?=\\n|(?![\\s\\S]))" : "(?=\\n?(?![\\s\\S]))";
        i++;
        continue;
      case "^":
        out += flags.multiline ? "(?:(?<![\\s\\S])|(?<=\\n))" : "(?<![\\s\\S])";
        i++;
        continue;
      case "(": {
        if (p[i + 1] === "*") unsupported("a backtracking verb");
        if (p[i + 1] !== "?") {
          out += "(";
          i++;
          continue;
        }
        const rest = p.slice(i + 2);
        let m: RegExpExecArray | null;
        if (rest.startsWith("#")) {
          const end = p.indexOf(")", i);
          if (end < 0) throw new RegexError("missing ) after comment");
          i = end + 1;
          continue;
        }
        if ((m = /^P<(\w+)>/.exec(rest)) !== null || (m = /^'(\w+)'/.exec(rest)) !== null) {
          out += `(?<${m[1]}>`;
          i += 2 + m[0].length;
          continue;
        }
        if ((m = /^P=(\w+)\)/.exec(rest)) !== null) {
          out += `\\k<${m[1]}>`;
          i += 2 + m[0].length;
          continue;
        }
        if (/^(?::|=|!|<=|<!|<\w)/.test(rest)) {
          out += "(?";
          i += 2;
          continue;
        }
        if (rest.startsWith(">")) unsupported("an atomic group (?>...)");
        if (rest.startsWith("|")) unsupported("a branch reset group (?|...)");
        if (rest.startsWith("(")) unsupported("a conditional group (?(...)...)");
        if (/^(?:R|[+-]?\d|&|P>)/.test(rest)) unsupported("recursion or a subroutine call");
        unsupported("an inline option group other than at the start of the pattern");
        break;
      }
      case "{": {
        const m = /^\{\d+(?:,\d*)?\}/.exec(p.slice(i));
        if (m !== null) {
          out += m[0];
          i += m[0].length;
          if (p[i] === "+") unsupported("a possessive quantifier");
        } else {
          out += "\\{";
          i++;
        }
        continue;
      }
      case "}":
        out += "\\}";
        i++;
        continue;
      case "]":
        out += "\\]";
        i++;
        continue;
      case "*":
      case "+":
      case "?":
        out += c;
        i++;
        if (p[i] === "+") unsupported("a possessive quantifier");
        continue;
      default: {
        const code = p.codePointAt(i)!;
        // Characters of the pattern beyond ASCII are literal text (bytes, or UTF-8 with "u").
        if (code > 0x7e || code < 0x20) {
          out += literal(code, u);
          i += code > 0xffff ? 2 : 1;
        } else {
          out += c;
          i++;
        }
      }
    }
  }
  if (inClass) throw new RegexError("missing terminating ] for character class");
  return out;
}

function compile(pattern: Buffer, options: string): Compiled {
  const key = `${options}\0${pattern.toString("latin1")}`;
  const hit = cache.get(key);
  if (hit !== undefined) {
    if (hit instanceof RegexError) throw hit;
    return hit;
  }
  let result: Compiled | RegexError;
  try {
    const flags = parseOptions(options);
    if (flags.unicode && !isValidUtf8(pattern))
      throw new RegexError("invalid UTF-8 string in the pattern");
    const text = pattern.toString(flags.unicode ? "utf8" : "latin1");
    const source = translatePattern(text, flags);
    let jsFlags = "d";
    jsFlags += flags.anchored ? "y" : "g";
    if (flags.caseless) jsFlags += "i";
    if (flags.unicode) jsFlags += "u";
    let regex: RegExp;
    try {
      regex = new RegExp(source, jsFlags);
    } catch (error) {
      // "Invalid regular expression: /…/dg: Unterminated group" → "Unterminated group".
      throw new RegexError(
        (error as Error).message.replace(/^Invalid regular expression: \/.*\/\w*: /s, ""),
      );
    }
    const names = groupNames(regex);
    result = {
      regex,
      unicode: flags.unicode,
      names,
      inPlace: inPlaceLength(source, flags.anchored),
    };
  } catch (error) {
    if (!(error instanceof RegexError)) throw error;
    if (error.raise) throw error;
    result = new RegexError(
      `failed to compile regex "${pattern.toString("latin1")}": ${error.message}`,
    );
  }
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(key, result);
  if (result instanceof RegexError) throw result;
  return result;
}

/** Named groups of a RegExp, by running it against nothing to read `groups`' keys in order. */
function groupNames(regex: RegExp): Record<string, number> | null {
  if (!regex.source.includes("(?<")) return null;
  const names: Record<string, number> = {};
  // Count capturing groups up to each name, skipping escapes, classes and non-capturing groups.
  const src = regex.source;
  let group = 0;
  let inClass = false;
  for (let i = 0; i < src.length; i++) {
    const c = src[i];
    if (c === "\\") {
      i++;
      continue;
    }
    if (inClass) {
      if (c === "]") inClass = false;
      continue;
    }
    if (c === "[") {
      inClass = true;
      continue;
    }
    if (c !== "(") continue;
    if (src[i + 1] !== "?") {
      group++;
      continue;
    }
    const m = /^\(\?<([A-Za-z_]\w*)>/.exec(src.slice(i));
    if (m !== null) {
      group++;
      names[m[1]!] = group;
    }
  }
  return Object.keys(names).length > 0 ? names : null;
}

/** A subject decoded for matching, with byte ↔ index conversion in UTF-8 mode. */
class Subject {
  readonly text: string;
  private readonly unicode: boolean;
  private offsets: Uint32Array | null = null;

  constructor(bytes: Buffer, unicode: boolean) {
    this.unicode = unicode;
    this.text = bytes.toString(unicode ? "utf8" : "latin1");
  }

  /** Byte offset of string index `index`. */
  byteAt(index: number): number {
    if (!this.unicode) return index;
    return this.table()[index]!;
  }

  /** String index of byte offset `offset` (the next character boundary at or after it). */
  indexAt(offset: number): number {
    if (!this.unicode) return offset;
    const table = this.table();
    let lo = 0;
    let hi = this.text.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (table[mid]! < offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private table(): Uint32Array {
    if (this.offsets !== null) return this.offsets;
    const text = this.text;
    const table = new Uint32Array(text.length + 1);
    let offset = 0;
    for (let i = 0; i < text.length; i++) {
      table[i] = offset;
      const code = text.charCodeAt(i);
      if (code < 0x80) offset += 1;
      else if (code < 0x800) offset += 2;
      else if (code >= 0xd800 && code <= 0xdbff) {
        // A surrogate pair: 4 bytes, counted on the high half.
        offset += 4;
        table[++i] = offset - 4;
      } else offset += 3;
    }
    table[text.length] = offset;
    return (this.offsets = table);
  }
}

let lastSubject: { bytes: Buffer; unicode: boolean; subject: Subject } | null = null;

function decode(bytes: Buffer, unicode: boolean): Subject {
  if (lastSubject !== null && lastSubject.unicode === unicode && lastSubject.bytes.equals(bytes))
    return lastSubject.subject;
  if (unicode && !isValidUtf8(bytes))
    throw new RegexError("pcre_exec() failed: -10 (bad UTF-8 string)");
  const subject = new Subject(bytes, unicode);
  lastSubject = { bytes, unicode, subject };
  return subject;
}

/** One match: capture positions as byte offsets, [start, end) per group, -1 when unmatched. */
export interface RegexMatch {
  positions: number[];
  names: Record<string, number> | null;
}

/** The bound for callers that bring none: a second, the default CPU budget. */
const defaultBudget: MatchBudget = () => 1000;

/**
 * Runs `pattern` on `subject` from byte offset `start` (0-based). Returns the match, or null.
 * A match that would take longer than `budget` allows fails with PCRE's match limit error (see
 * regex-limit.ts).
 * @throws {RegexError} on a bad pattern, option or subject, or the match limit.
 */
export function execRegex(
  subject: Buffer,
  pattern: Buffer,
  options: string,
  start: number,
  budget: MatchBudget = defaultBudget,
): RegexMatch | null {
  const compiled = compile(pattern, options);
  const text = decode(subject, compiled.unicode);
  if (start > subject.length) return null;
  const regex = compiled.regex;
  const from = text.indexAt(Math.max(0, start));
  const length = text.text.length - (compiled.inPlace.wholeSubject ? 0 : from);
  regex.lastIndex = from;
  let m: RegExpExecArray | null | "timeout";
  if (length <= compiled.inPlace.length) {
    m = regex.exec(text.text);
  } else {
    const left = budget();
    // Under a millisecond (the timeout's granularity) is as good as spent.
    m = left < 1 ? "timeout" : execBounded(regex, text.text, left);
  }
  if (m === "timeout") throw new RegexError(MATCH_LIMIT_MESSAGE);
  if (m === null) return null;
  const positions: number[] = [];
  const indices = m.indices!;
  for (let g = 0; g < m.length; g++) {
    const span = indices[g];
    if (span === undefined) positions.push(-1, -1);
    else positions.push(text.byteAt(span[0]), text.byteAt(span[1]));
  }
  return { positions, names: compiled.names };
}

/**
 * ngx.re.sub / gsub with a template replacement (`$0`, `$1`, `${1}`, `${name}`, `$$`). Returns
 * the new subject and the number of replacements.
 * @throws {RegexError} on a bad pattern, option, subject or template, or the match limit.
 */
export function substituteRegex(
  subject: Buffer,
  pattern: Buffer,
  template: Buffer,
  options: string,
  global: boolean,
  budget: MatchBudget = defaultBudget,
): [Buffer, number] {
  const compiled = compile(pattern, options);
  const parts = parseTemplate(template, compiled.names);
  const parts2: Buffer[] = [];
  let last = 0;
  let count = 0;
  let start = 0;
  while (start <= subject.length) {
    const m = execRegex(subject, pattern, options, start, budget);
    if (m === null) break;
    const [s, e] = [m.positions[0]!, m.positions[1]!];
    parts2.push(subject.subarray(last, s));
    for (const part of parts) {
      if (typeof part === "number") {
        const from = m.positions[2 * part];
        if (from !== undefined && from >= 0)
          parts2.push(subject.subarray(from, m.positions[2 * part + 1]));
      } else {
        parts2.push(part);
      }
    }
    count++;
    last = e;
    start = e;
    if (e === s) {
      if (start >= subject.length) break;
      const step = compiled.unicode ? utf8Length(subject[start]!) : 1;
      parts2.push(subject.subarray(start, start + step));
      start += step;
      last = start;
    }
    if (!global) break;
  }
  parts2.push(subject.subarray(last));
  return [Buffer.concat(parts2), count];
}

function utf8Length(lead: number): number {
  return lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
}

/** A template as literal byte runs and group numbers. */
function parseTemplate(
  template: Buffer,
  names: Record<string, number> | null,
): Array<Buffer | number> {
  const parts: Array<Buffer | number> = [];
  let run: number[] = [];
  const flush = () => {
    if (run.length > 0) parts.push(Buffer.from(run));
    run = [];
  };
  for (let i = 0; i < template.length; i++) {
    const b = template[i]!;
    if (b !== 0x24) {
      run.push(b);
      continue;
    }
    const next = template[i + 1];
    if (next === 0x24) {
      run.push(0x24);
      i++;
      continue;
    }
    let name: string | null = null;
    if (next !== undefined && next >= 0x30 && next <= 0x39) {
      let j = i + 1;
      while (j < template.length && template[j]! >= 0x30 && template[j]! <= 0x39) j++;
      name = template.toString("latin1", i + 1, j);
      i = j - 1;
    } else if (next === 0x7b) {
      const end = template.indexOf(0x7d, i + 2);
      if (end < 0)
        throw new RegexError(
          `the closing bracket in "${template.toString("latin1")}" variable is missing`,
        );
      name = template.toString("latin1", i + 2, end);
      i = end;
    }
    if (name === null || name === "")
      throw new RegexError(
        `invalid capturing variable name found in "${template.toString("latin1")}"`,
      );
    flush();
    if (/^\d+$/.test(name)) parts.push(Number(name));
    else if (names?.[name] !== undefined) parts.push(names[name]!);
    else
      throw new RegexError(
        `invalid capturing variable name found in "${template.toString("latin1")}"`,
      );
  }
  flush();
  return parts;
}
