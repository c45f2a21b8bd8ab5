import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  Counter,
  Gauge,
  MetricsError,
  MetricsRegistry,
  PROMETHEUS_CONTENT_TYPE,
} from "../../../src/observability/metrics.js";

describe("MetricsRegistry.render", () => {
  it("renders an empty registry as an empty string", () => {
    assert.equal(new MetricsRegistry().render(), "");
  });

  it("renders counters and gauges with HELP and TYPE, in registration order", () => {
    const registry = new MetricsRegistry();
    const messages = registry.counter({ name: "ws_messages_total", help: "Messages received." });
    const open = registry.gauge({ name: "ws_connections", help: "Open connections." });
    messages.inc();
    messages.inc(41);
    open.inc();
    open.inc();
    open.dec();
    assert.equal(
      registry.render(),
      [
        "# HELP ws_messages_total Messages received.",
        "# TYPE ws_messages_total counter",
        "ws_messages_total 42",
        "# HELP ws_connections Open connections.",
        "# TYPE ws_connections gauge",
        "ws_connections 1",
        "",
      ].join("\n"),
    );
  });

  it("renders labelled children after one HELP/TYPE pair, labels in declared order", () => {
    const registry = new MetricsRegistry();
    const closes = registry.counter({
      name: "ws_closes_total",
      help: "Closes by code and reason.",
      labelNames: ["code", "reason"],
    });
    const tooBig = closes.labels({ reason: "too_big", code: "1009" });
    const policy = closes.labels({ code: "1008", reason: "policy" });
    tooBig.inc();
    tooBig.inc(2);
    policy.inc();
    assert.equal(
      registry.render(),
      [
        "# HELP ws_closes_total Closes by code and reason.",
        "# TYPE ws_closes_total counter",
        'ws_closes_total{code="1009",reason="too_big"} 3',
        'ws_closes_total{code="1008",reason="policy"} 1',
        "",
      ].join("\n"),
    );
  });

  it("returns the same child for the same label values", () => {
    const counter = new MetricsRegistry().counter({ name: "c", help: "h", labelNames: ["a"] });
    assert.equal(counter.labels({ a: "x" }), counter.labels({ a: "x" }));
    assert.notEqual(counter.labels({ a: "x" }), counter.labels({ a: "y" }));
  });

  it("escapes label values and help text", () => {
    const registry = new MetricsRegistry();
    const c = registry.counter({
      name: "c",
      help: 'back\\slash\nnewline "quotes"',
      labelNames: ["v"],
    });
    c.labels({ v: 'a"b\\c\nd' }).inc();
    assert.equal(
      registry.render(),
      [
        '# HELP c back\\\\slash\\nnewline "quotes"',
        "# TYPE c counter",
        'c{v="a\\"b\\\\c\\nd"} 1',
        "",
      ].join("\n"),
    );
  });

  it("shows a labelled counter's unlabelled series only once it is used", () => {
    const registry = new MetricsRegistry();
    const c = registry.counter({ name: "c", help: "h", labelNames: ["a"] });
    assert.equal(registry.render(), "# HELP c h\n# TYPE c counter\n");
    c.inc();
    assert.equal(registry.render(), "# HELP c h\n# TYPE c counter\nc 1\n");
  });

  it("evaluates a gauge callback at every scrape", () => {
    const registry = new MetricsRegistry();
    let size = 3;
    registry.gauge({ name: "clients", help: "Clients.", collect: () => size });
    assert.equal(registry.render(), "# HELP clients Clients.\n# TYPE clients gauge\nclients 3\n");
    size = 5;
    assert.equal(registry.render(), "# HELP clients Clients.\n# TYPE clients gauge\nclients 5\n");
  });

  it("leaves out a sample whose callback throws, and still renders the rest", () => {
    const registry = new MetricsRegistry();
    registry.gauge({
      name: "broken",
      help: "b",
      collect: () => {
        throw new Error("boom");
      },
    });
    registry.counter({ name: "ok_total", help: "o" }).inc();
    assert.equal(
      registry.render(),
      "# HELP broken b\n# TYPE broken gauge\n# HELP ok_total o\n# TYPE ok_total counter\nok_total 1\n",
    );
  });

  it("renders special and fractional values", () => {
    const registry = new MetricsRegistry();
    const g = registry.gauge({ name: "g", help: "h", labelNames: ["k"] });
    g.labels({ k: "pos" }).set(Number.POSITIVE_INFINITY);
    g.labels({ k: "neg" }).set(Number.NEGATIVE_INFINITY);
    g.labels({ k: "nan" }).set(Number.NaN);
    g.labels({ k: "frac" }).set(0.25);
    g.labels({ k: "dec" }).dec(2);
    g.labels({ k: "inc" }).inc(1.5);
    assert.equal(
      registry.render(),
      [
        "# HELP g h",
        "# TYPE g gauge",
        'g{k="pos"} +Inf',
        'g{k="neg"} -Inf',
        'g{k="nan"} NaN',
        'g{k="frac"} 0.25',
        'g{k="dec"} -2',
        'g{k="inc"} 1.5',
        "",
      ].join("\n"),
    );
  });

  it("exposes the 0.0.4 content type", () => {
    assert.equal(PROMETHEUS_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
  });
});

describe("metric validation", () => {
  it("rejects a duplicate name", () => {
    const registry = new MetricsRegistry();
    registry.counter({ name: "x", help: "h" });
    assert.throws(() => registry.gauge({ name: "x", help: "h" }), MetricsError);
  });

  it("rejects invalid metric and label names", () => {
    assert.throws(() => new Counter({ name: "9lives", help: "h" }), MetricsError);
    assert.throws(() => new Counter({ name: "has-dash", help: "h" }), MetricsError);
    assert.throws(
      () => new Gauge({ name: "g", help: "h", labelNames: ["__reserved"] }),
      MetricsError,
    );
    assert.throws(() => new Gauge({ name: "g", help: "h", labelNames: ["a:b"] }), MetricsError);
    assert.throws(() => new Gauge({ name: "g", help: "h", labelNames: ["a", "a"] }), MetricsError);
    assert.doesNotThrow(() => new Counter({ name: "ns:sub_total", help: "h" }));
  });

  it("rejects wrong label sets", () => {
    const c = new Counter({ name: "c", help: "h", labelNames: ["a", "b"] });
    assert.throws(() => c.labels({ a: "1" }), /takes labels \{a, b\}, got \{a\}/);
    assert.throws(() => c.labels({ a: "1", c: "2" }), MetricsError);
    assert.throws(() => new Counter({ name: "d", help: "h" }).labels({ a: "1" }), MetricsError);
  });

  it("rejects a negative or NaN counter increment", () => {
    const c = new Counter({ name: "c", help: "h", labelNames: ["a"] });
    assert.throws(() => c.inc(-1), MetricsError);
    assert.throws(() => c.inc(Number.NaN), MetricsError);
    assert.throws(() => c.labels({ a: "x" }).inc(-1), MetricsError);
    assert.equal(c.value, 0);
  });

  it("finds metrics by name", () => {
    const registry = new MetricsRegistry();
    const c = registry.counter({ name: "c", help: "h" });
    assert.equal(registry.get("c"), c);
    assert.equal(registry.get("nope"), undefined);
  });
});
