/**
 * The OpenResty-style loader's rewrite: top-level `local NAME = {}` lines become shared tables,
 * everything else is untouched and every line stays where it was.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { rewriteOpenRestyScript } from "../../../../../src/lua/styles/openresty/script-rewrite.js";

const PREFIX = "local _ENV, __ngx_shared = ...; ";

describe("rewriteOpenRestyScript", () => {
  it("puts the environment prologue in front of line 1 and keeps the line count", () => {
    const source = "local a = 1\nprint(a)\n";
    const out = rewriteOpenRestyScript(source);
    assert.equal(out, `${PREFIX}local a = 1\nprint(a)\n`);
    assert.equal(out.split("\n").length, source.split("\n").length);
  });

  it("shares a top-level `local NAME = {}`, with or without a comment", () => {
    const out = rewriteOpenRestyScript(
      "-- chat\nlocal clients = {}\nlocal rooms = { }  -- by name\r\nx()",
    );
    assert.deepEqual(out.split("\n"), [
      `${PREFIX}-- chat`,
      'local clients = __ngx_shared("clients")',
      'local rooms = __ngx_shared("rooms") -- by name\r',
      "x()",
    ]);
  });

  it("also on line 1", () => {
    assert.equal(
      rewriteOpenRestyScript("local clients = {}"),
      `${PREFIX}local clients = __ngx_shared("clients")`,
    );
  });

  it("leaves other declarations alone: indented, non-empty tables, several names, other values", () => {
    const lines = [
      "  local a = {}",
      "local b = {1}",
      "local c, d = {}, {}",
      "local e = {} x = 1",
      "local f = setmetatable({}, nil)",
      "locals = {}",
    ];
    const out = rewriteOpenRestyScript(lines.join("\n")).split("\n");
    assert.deepEqual(out.slice(1), lines.slice(1));
    assert.equal(out[0], PREFIX + lines[0]);
  });

  it("does not touch lines inside long strings, long comments or continued short strings", () => {
    const source = [
      "local s = [[",
      "local inside = {}",
      "]]",
      "--[==[",
      "local commented = {}",
      "]==]",
      'local q = "a\\',
      'local t = {}"',
      "local outside = {}",
    ].join("\n");
    const out = rewriteOpenRestyScript(source).split("\n");
    assert.equal(out[1], "local inside = {}");
    assert.equal(out[4], "local commented = {}");
    assert.equal(out[7], 'local t = {}"');
    assert.equal(out[8], 'local outside = __ngx_shared("outside")');
  });

  it("turns a #! first line into a comment and drops a UTF-8 byte order mark", () => {
    assert.equal(
      rewriteOpenRestyScript("#!/usr/bin/env lua\nx()"),
      `${PREFIX}--#!/usr/bin/env lua\nx()`,
    );
    assert.equal(rewriteOpenRestyScript("\xef\xbb\xbfx()"), `${PREFIX}x()`);
  });
});
