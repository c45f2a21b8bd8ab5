/**
 * The bound on ngx.re match time: patterns that cannot blow up run in place on any subject,
 * ambiguous ones are matched under the budget, and a match that runs out of it fails with PCRE's
 * match limit error instead of blocking the server.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  execRegex,
  RegexError,
  substituteRegex,
} from "../../../../../src/lua/styles/openresty/regex.js";
import { execBounded, inPlaceLength } from "../../../../../src/lua/styles/openresty/regex-limit.js";
import { threadCpuTimeMs } from "../../../../../src/lua/vm/cpu-budget.js";

const b = (text: string) => Buffer.from(text, "latin1");

/** Runs `fn` and returns its error's message and how long it took. */
function failure(fn: () => unknown): { message: string; ms: number } {
  const started = threadCpuTimeMs();
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof RegexError, String(error));
    return { message: error.message, ms: threadCpuTimeMs() - started };
  }
  assert.fail("expected the match limit error");
}

describe("inPlaceLength", () => {
  it("a literal or a pattern with one final repetition runs in place on megabytes", () => {
    assert.equal(inPlaceLength("hello", true).length, Number.POSITIVE_INFINITY);
    assert.ok(inPlaceLength("hello", false).length > 1e6);
    assert.ok(inPlaceLength("\\d+", false).length > 1e6);
  });

  it("nested or repeated ambiguous repetitions only on short subjects", () => {
    for (const source of ["(a+)+$", "(a|a)*b", "(\\w+\\s?)*$", "(.*a){20}"]) {
      assert.ok(inPlaceLength(source, false).length < 16, source);
    }
  });

  it("polynomial patterns on subjects up to a size that keeps them fast", () => {
    const quadratic = inPlaceLength("a*b", false).length;
    const cubic = inPlaceLength(".*a.*b", false).length;
    assert.ok(quadratic > 1000 && quadratic < 1e5, String(quadratic));
    assert.ok(cubic < quadratic, `${cubic} < ${quadratic}`);
  });

  it("anchoring removes the factor of the start positions", () => {
    assert.ok(inPlaceLength("a*b", true).length > inPlaceLength("a*b", false).length);
  });

  it("a variable lookbehind makes the whole subject count", () => {
    assert.equal(inPlaceLength("(?<=a+)b", false).wholeSubject, true);
    assert.equal(inPlaceLength("ab", false).wholeSubject, false);
  });
});

describe("execBounded", () => {
  it("returns what exec returns", () => {
    const regex = /(\d+)-(\d+)/dg;
    const m = execBounded(regex, "tel 123-456", 100);
    assert.ok(m !== null && m !== "timeout");
    assert.deepEqual([...m], ["123-456", "123", "456"]);
    assert.equal(execBounded(/x/dg, "abc", 100), null);
  });

  it("interrupts a runaway match at the timeout", () => {
    const started = threadCpuTimeMs();
    assert.equal(execBounded(/^(a+)+$/, `${"a".repeat(40)}!`, 50), "timeout");
    assert.ok(threadCpuTimeMs() - started < 1000);
  });
});

describe("execRegex under a budget", () => {
  const hostile: Array<[string, string]> = [
    ["^(a+)+$", `${"a".repeat(40)}!`],
    ["(a|a)*b", "a".repeat(40)],
    ["(\\w+\\s?)*$", `${"hello world foo bar ".repeat(5)}!`],
    ["a*b", "a".repeat(1 << 20)],
  ];
  for (const [pattern, subject] of hostile) {
    it(`/${pattern}/ fails with the match limit error within the budget`, () => {
      const { message, ms } = failure(() => execRegex(b(subject), b(pattern), "jo", 0, () => 50));
      assert.equal(message, "pcre_exec() failed: -8");
      assert.ok(ms < 500, `took ${ms} ms`);
    });
  }

  it("a spent budget fails a costly match at once, and leaves cheap ones alone", () => {
    const { ms } = failure(() => execRegex(b(`${"a".repeat(40)}!`), b("^(a+)+$"), "", 0, () => 0));
    assert.ok(ms < 50);
    assert.deepEqual(execRegex(b("x 42"), b("\\d+"), "", 0, () => 0)?.positions, [2, 4]);
  });

  it("ambiguous patterns still match correctly on the bounded path", () => {
    const m = execRegex(b(`${"ab".repeat(100)}c`), b("(a|b)+c"), "", 0, () => 1000);
    assert.deepEqual(m?.positions, [0, 201, 199, 200]);
    assert.deepEqual(substituteRegex(b("aaab aab"), b("(a|aa)+b"), b("<$0>"), "", true), [
      b("<aaab> <aab>"),
      2,
    ]);
  });

  it("gsub fails as a whole when one of its matches runs out", () => {
    const subject = b(`ok ${"a".repeat(40)}`);
    const { message } = failure(() =>
      substituteRegex(subject, b("(a+)+!|ok"), b("x"), "", true, () => 50),
    );
    assert.equal(message, "pcre_exec() failed: -8");
  });
});
