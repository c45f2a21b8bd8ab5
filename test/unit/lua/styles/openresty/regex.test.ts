/**
 * ngx.re's PCRE-on-RegExp layer: byte semantics, PCRE syntax translated, unsupported constructs
 * refused with a clear error.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  execRegex,
  RegexError,
  substituteRegex,
} from "../../../../../src/lua/styles/openresty/regex.js";

const b = (text: string, encoding: BufferEncoding = "latin1") => Buffer.from(text, encoding);

/** The captures of the first match from byte `start`, as latin1 strings (false when unmatched). */
function captures(
  subject: string,
  pattern: string,
  options = "",
  start = 0,
): Array<string | false> | null {
  const m = execRegex(b(subject), b(pattern), options, start);
  if (m === null) return null;
  const out: Array<string | false> = [];
  for (let i = 0; i < m.positions.length; i += 2) {
    const from = m.positions[i]!;
    out.push(from < 0 ? false : b(subject).toString("latin1", from, m.positions[i + 1]));
  }
  return out;
}

describe("execRegex", () => {
  it("matches bytes: NUL and invalid UTF-8 are characters like any other", () => {
    assert.deepEqual(captures("a\x00\xff\xfeb", "a(.)(..)b"), [
      "a\x00\xff\xfeb",
      "\x00",
      "\xff\xfe",
    ]);
  });

  it("positions are byte offsets, also in UTF-8 mode", () => {
    const subject = Buffer.from("é😀x", "utf8");
    const m = execRegex(subject, b("x"), "u", 0)!;
    assert.deepEqual(m.positions, [6, 7]);
    const dot = execRegex(subject, b("^(.)"), "u", 0)!;
    assert.deepEqual(dot.positions, [0, 2, 0, 2]);
    assert.throws(() => execRegex(b("\xff"), b("x"), "u", 0), RegexError);
  });

  it("starts at the given offset", () => {
    assert.deepEqual(captures("a1 a2", "a\\d", "", 1), ["a2"]);
  });

  it("PCRE's $, \\z, \\Z, \\A and . (which matches \\r)", () => {
    assert.deepEqual(captures("abc\n", "c$"), ["c"]);
    assert.equal(captures("abc\nx", "c$"), null);
    assert.deepEqual(captures("abc\nx", "c$", "m"), ["c"]);
    assert.equal(captures("abc\n", "c\\z"), null);
    assert.deepEqual(captures("abc\n", "c\\Z"), ["c"]);
    assert.equal(captures("xabc", "\\Aabc"), null);
    assert.deepEqual(captures("a\rb", "a.b"), ["a\rb"]);
    assert.equal(captures("a\nb", "a.b"), null);
    assert.deepEqual(captures("a\nb", "a.b", "s"), ["a\nb"]);
  });

  it("named groups in PCRE's spellings, and back references to them", () => {
    const m = execRegex(b("key=key"), b("(?P<k>\\w+)=(?P=k)"), "", 0)!;
    assert.deepEqual(m.names, { k: 1 });
    assert.deepEqual(captures("ab-ab", "(?'w'ab)-\\k{w}"), ["ab-ab", "ab"]);
  });

  it("POSIX classes, \\h, \\Q…\\E, comments, leading inline options, extended mode", () => {
    assert.deepEqual(captures("ab12", "[[:alpha:]]+([[:digit:]]+)"), ["ab12", "12"]);
    assert.deepEqual(captures("a \tb", "a\\h+b"), ["a \tb"]);
    assert.deepEqual(captures("1+1=2", "\\Q1+1\\E"), ["1+1"]);
    assert.deepEqual(captures("abc", "a(?#comment)b"), ["ab"]);
    assert.deepEqual(captures("ABC", "(?i)abc"), ["ABC"]);
    assert.deepEqual(captures("abc", "a b # letters\n c", "x"), ["abc"]);
  });

  it("\\s is ASCII white space only without UTF-8 (PCRE), not NBSP", () => {
    assert.equal(captures("a\xa0b", "a\\sb"), null);
    assert.deepEqual(captures("a\x0bb", "a\\sb"), ["a\x0bb"]);
  });

  it("anchored mode matches only at the start offset", () => {
    assert.equal(captures("xab", "ab", "a"), null);
    assert.deepEqual(captures("xab", "ab", "a", 1), ["ab"]);
  });

  it("refuses what RegExp cannot do, with an error naming it", () => {
    for (const pattern of ["a*+", "(?>a)", "(?R)", "(?(1)a|b)", "a(?i)b", "\\G", "(*SKIP)"]) {
      assert.throws(
        () => execRegex(b("a"), b(pattern), "", 0),
        (error: unknown) => {
          assert.ok(error instanceof RegexError && !error.raise, pattern);
          assert.match(error.message, /^failed to compile regex/);
          return true;
        },
      );
    }
    assert.throws(() => execRegex(b("a"), b("("), "", 0), /failed to compile regex "\(": /);
    assert.throws(
      () => execRegex(b("a"), b("a"), "q", 0),
      (error: unknown) => error instanceof RegexError && error.raise,
    );
  });
});

describe("substituteRegex", () => {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: ngx.re's template syntax, not JavaScript's.
  it("expands $0, $n, ${n}, ${name} and $$", () => {
    const [out, n] = substituteRegex(
      b("john smith"),
      b("(?<first>\\w+) (\\w+)"),
      // biome-ignore lint/suspicious/noTemplateCurlyInString: ngx.re's template syntax.
      b("$2, ${first} ($0) $$1"),
      "",
      false,
    );
    assert.equal(out.toString(), "smith, john (john smith) $1");
    assert.equal(n, 1);
  });

  it("replaces every match with global, empty matches included", () => {
    assert.deepEqual(substituteRegex(b("abc"), b("x*"), b("-"), "", true), [b("-a-b-c-"), 4]);
    assert.deepEqual(substituteRegex(b("a1b22"), b("\\d+"), b("#"), "", true), [b("a#b#"), 2]);
  });

  it("refuses a bad template", () => {
    assert.throws(
      () => substituteRegex(b("a"), b("a"), b("$x"), "", true),
      /invalid capturing variable name/,
    );
  });
});
