/**
 * A bound on the time of ngx.re matches. V8 runs RegExps by backtracking: `^(a+)+$` on forty
 * `a`s and a `!`, `(a|a)*b`, or even `a*b` on a megabyte of `a`s take from seconds to hours,
 * inside one host call that the Lua CPU hook cannot interrupt.
 *
 * Each compiled pattern gets a cost estimate ({@link inPlaceLength}): the subject length up to
 * which its worst case stays small. Shorter subjects are matched in place (the common case: a
 * plain `exec`). Longer ones are matched under a `vm` timeout ({@link execBounded}), which
 * interrupts a running RegExp (V8 checks for interrupts while backtracking) at a cost of about
 * 60 µs per match (a watchdog thread). A bounded match gets a share of what is left of the CPU
 * budget of the Lua entry that called it ({@link MatchBudget}); when that runs out, the match
 * fails with PCRE's "match limit" error (`pcre_exec() failed: -8`), which the script gets as
 * `nil, err` like under OpenResty. A script that keeps trying spends its budget and stops with
 * "cpu budget exceeded", as it would after a long loop of its own.
 *
 * V8's linear-time engine (`--enable-experimental-regexp-engine-on-excessive-backtracks`) is not
 * used: in Node 20 (V8 11.3) it refuses the `d` flag that every ngx.re RegExp needs for capture
 * offsets, as well as `i`, `u`, lookarounds (the translation of `^`, `$`, `\A`, `\z`),
 * backreferences and large counted repetitions; and V8's greedy loops (`a*b`) are quadratic
 * without counting as backtracks, so they never fall back to it anyway.
 *
 * @module
 */

import { type Context, createContext, Script } from "node:vm";
import { threadCpuTimeMs } from "../../vm/cpu-budget.js";

/**
 * Estimated steps (characters compared, backtracks: 0.5 to a few ns each) under which a match
 * runs in place: a few tens of milliseconds at worst.
 */
const IN_PLACE_STEPS = 3e7;
const LOG_IN_PLACE_STEPS = Math.log2(IN_PLACE_STEPS);

/** The error OpenResty returns when PCRE gives up (PCRE_ERROR_MATCHLIMIT). */
export const MATCH_LIMIT_MESSAGE = "pcre_exec() failed: -8";

/** What a part of a pattern may cost, as a function of the subject length n. */
interface Shape {
  /** Factors of n: unbounded repetitions, back references. */
  degree: number;
  /** log2 of the constant factors: bounded repetitions, optional parts, alternatives. */
  log: number;
  /** Matches in more than one way: repeating it is ambiguous. */
  variable: boolean;
  /** A repetition of something variable: exponential in n. */
  exponential: boolean;
  /**
   * Factors of n that do not count when this part ends the pattern: a final `x*` or `x+` of a
   * fixed `x` succeeds as soon as it has matched, it never backtracks into what follows.
   */
  trailing: number;
}

const FIXED: Shape = { degree: 0, log: 0, variable: false, exponential: false, trailing: 0 };

/** Parses a JavaScript RegExp source (as made by the PCRE translation) for its cost. */
class CostParser {
  private i = 0;
  atoms = 0;
  /** Has a lookbehind that can scan back a variable length (before the start position). */
  scansBack = false;

  constructor(private readonly src: string) {}

  /** `a|b|…` up to a `)` or the end. */
  alternation(): Shape & { branches: number } {
    const branches: Shape[] = [this.sequence()];
    while (this.src[this.i] === "|") {
      this.i++;
      branches.push(this.sequence());
    }
    if (branches.length === 1) return { ...branches[0]!, branches: 1 };
    let degree = 0;
    let log = 0;
    let exponential = false;
    for (const b of branches) {
      degree = Math.max(degree, b.degree);
      log = Math.max(log, b.log);
      exponential ||= b.exponential;
    }
    log += Math.log2(branches.length);
    return { degree, log, variable: true, exponential, trailing: 0, branches: branches.length };
  }

  private sequence(): Shape {
    const shape = { ...FIXED };
    const src = this.src;
    while (this.i < src.length && src[this.i] !== "|" && src[this.i] !== ")") {
      const item = this.quantified(this.atom());
      shape.degree += item.degree;
      shape.log += item.log;
      shape.variable ||= item.variable;
      shape.exponential ||= item.exponential;
      shape.trailing = item.trailing;
    }
    return shape;
  }

  private atom(): Shape {
    const src = this.src;
    const c = src[this.i]!;
    this.atoms++;
    if (c === "\\") {
      const d = src[this.i + 1] ?? "";
      if (/[1-9]/.test(d)) {
        // A back reference: compares up to n characters, in more than one way.
        this.i += 2;
        while (/[0-9]/.test(src[this.i] ?? "")) this.i++;
        return { ...FIXED, degree: 1, variable: true };
      }
      if (d === "k" && src[this.i + 2] === "<") {
        this.i = this.skipPast(">", this.i + 3);
        return { ...FIXED, degree: 1, variable: true };
      }
      if ((d === "u" || d === "p" || d === "P") && src[this.i + 2] === "{") {
        this.i = this.skipPast("}", this.i + 3);
      } else {
        const m = /^\\(?:x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|c[A-Za-z])/.exec(
          src.slice(this.i, this.i + 6),
        );
        this.i += m === null ? 2 : m[0].length;
      }
      return FIXED;
    }
    if (c === "[") {
      this.i++;
      while (this.i < src.length && src[this.i] !== "]") this.i += src[this.i] === "\\" ? 2 : 1;
      this.i++;
      return FIXED;
    }
    if (c === "(") {
      this.i++;
      let kind = "(";
      if (src[this.i] === "?") {
        const m = /^\?(?::|=|!|<=|<!|<[A-Za-z_$][\w$]*>)/.exec(src.slice(this.i, this.i + 64));
        kind = m?.[0] ?? "?";
        this.i += kind.length;
      }
      const inner = this.alternation();
      this.i++; // ")"
      // A lookbehind that can match different lengths may scan back before the start position.
      if ((kind === "?<=" || kind === "?<!") && inner.variable) this.scansBack = true;
      // The end of a lookaround may match and the lookaround fail all the same: no discount.
      const plain = !/^\?<?[=!]$/.test(kind);
      return { ...inner, trailing: plain && inner.branches === 1 ? inner.trailing : 0 };
    }
    this.i++;
    return FIXED;
  }

  /** Applies a quantifier after `item`, if there is one. */
  private quantified(item: Shape): Shape {
    const src = this.src;
    const c = src[this.i];
    let min: number;
    let max: number;
    if (c === "*" || c === "+" || c === "?") {
      min = c === "+" ? 1 : 0;
      max = c === "?" ? 1 : Number.POSITIVE_INFINITY;
      this.i++;
    } else if (c === "{") {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(src.slice(this.i, this.i + 32));
      if (m === null) return item;
      min = Number(m[1]);
      max = m[2] === undefined ? min : m[3] === "" ? Number.POSITIVE_INFINITY : Number(m[3]);
      this.i += m[0].length;
    } else {
      return item;
    }
    if (src[this.i] === "?") this.i++; // lazy
    if (max <= 1 && min === max) return item;
    const shape: Shape = {
      degree: item.degree,
      log: item.log,
      variable: item.variable || min !== max,
      exponential: item.exponential || (max > 1 && item.variable),
      trailing: 0,
    };
    if (max === Number.POSITIVE_INFINITY) {
      shape.degree++;
      if (min <= 1 && !item.variable) shape.trailing = 1;
    } else {
      shape.log += Math.log2(max + 1);
    }
    return shape;
  }

  private skipPast(end: string, from: number): number {
    const at = this.src.indexOf(end, from);
    return at < 0 ? this.src.length : at + 1;
  }
}

/** How long a subject a compiled pattern may run on in place, see {@link inPlaceLength}. */
export interface InPlaceLimit {
  /** Subject length (in string units) from the start position up to which a match runs in place. */
  readonly length: number;
  /** The length to check is the whole subject's: a lookbehind may scan back before the start. */
  readonly wholeSubject: boolean;
}

/**
 * The longest subject on which a RegExp's worst case stays under {@link IN_PLACE_STEPS}, from a
 * coarse bound: (subject length)^(unbounded repetitions + 1 for the start positions, unless
 * anchored) × the bounded repetitions and alternatives, or 4^(subject length) for a repetition
 * of something ambiguous (`(a+)+`, `(a|b)*`, `(.*a){20}`, a repeated back reference).
 */
export function inPlaceLength(source: string, sticky: boolean): InPlaceLimit {
  const parser = new CostParser(source);
  const shape = parser.alternation();
  // `^` and `\A` without the "m" option translate to this lookbehind: one start position.
  const anchored = sticky || (source.startsWith("(?<![\\s\\S])") && shape.branches === 1);
  let degree = shape.degree + (anchored ? 0 : 1);
  if (shape.branches === 1) degree -= shape.trailing;
  const room = LOG_IN_PLACE_STEPS - shape.log - Math.log2(parser.atoms + 1);
  let length: number;
  if (room < 0) {
    length = 0;
  } else if (shape.exponential) {
    length = 0;
    while (2 * (length + 1) + degree * Math.log2(length + 3) <= room) length++;
  } else if (degree <= 0) {
    length = Number.POSITIVE_INFINITY;
  } else {
    length = Math.max(0, Math.floor(2 ** (room / degree)) - 2);
  }
  return { length, wholeSubject: parser.scansBack };
}

/** Milliseconds that a match may still take: what is left of the CPU budget of the Lua entry. */
export type MatchBudget = () => number;

let sandbox: { context: Context; script: Script } | null = null;

/** Runs of a match that the machine starved of CPU (see {@link execBounded}). */
const MAX_STARVED_RUNS = 3;

/**
 * `regex.exec(text)`, or "timeout" when it ran for `timeoutMs` of CPU time: the exec runs
 * inside a `vm` script with a timeout, whose watchdog thread terminates it. That watchdog counts
 * wall-clock time; on a loaded machine a run that got less than half of its time on a core is
 * tried again (a RegExp cannot be resumed) with the CPU time still left, at most
 * {@link MAX_STARVED_RUNS} times: a match is not refused for time it never had, and all runs
 * together never use more than `timeoutMs` of CPU time.
 */
export function execBounded(
  regex: RegExp,
  text: string,
  timeoutMs: number,
): RegExpExecArray | null | "timeout" {
  sandbox ??= { context: createContext({ job: null }), script: new Script("job()") };
  const { context, script } = sandbox;
  const lastIndex = regex.lastIndex;
  context.job = () => {
    regex.lastIndex = lastIndex; // a run that was tried again starts where the first did
    return regex.exec(text);
  };
  let left = timeoutMs;
  try {
    for (let run = 1; ; run++) {
      const timeout = Math.max(1, Math.ceil(left));
      const cpuStart = threadCpuTimeMs();
      try {
        return script.runInContext(context, { timeout });
      } catch (error) {
        if ((error as { code?: unknown }).code !== "ERR_SCRIPT_EXECUTION_TIMEOUT") throw error;
        const used = threadCpuTimeMs() - cpuStart;
        left -= used;
        const starved = used < timeout / 2;
        if (!starved || run >= MAX_STARVED_RUNS || left < 1) return "timeout";
      }
    }
  } finally {
    context.job = null;
  }
}
