// The echo, dashboard and script-style examples driven in Chromium, as users see them; and
// every example page (the chat demo too) checked for errors and for phone-sized screens.
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Browser, Page } from "playwright-core";
import {
  EXAMPLES_DIR,
  launchBrowser,
  openPage,
  pageErrors,
  type RunningExample,
  startExample,
} from "../helpers/browser.js";
import { horizontalOverflow, recordProblems } from "./page-problems.js";

const TIMEOUT = 5000;

describe("examples in the browser", () => {
  let browser: Browser;
  const running: RunningExample[] = [];

  async function serve(name: string): Promise<RunningExample> {
    const example = await startExample(name);
    running.push(example);
    return example;
  }

  async function open(url: string): Promise<Page> {
    const page = await openPage(browser, url);
    page.setDefaultTimeout(TIMEOUT);
    return page;
  }

  async function send(page: Page, text: string): Promise<void> {
    await page.fill("#message", text);
    await page.press("#message", "Enter");
  }

  const line = (page: Page, text: string) => page.locator("#log li", { hasText: text });

  before(async () => {
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await Promise.all(running.map((example) => example.stop()));
  });

  it("echo: the page echoes what is typed, and shows open/close", async () => {
    const echo = await serve("echo");
    const page = await open(echo.httpUrl);
    await page.locator("#status.open").waitFor();
    await send(page, "hello moon");
    await line(page, "You said: hello moon").waitFor();
    assert.deepEqual(await page.locator("#log li.sent").allInnerTexts(), ["hello moon"]);
    await send(page, "ünïcødé ☾");
    await page.locator("#log li.received", { hasText: "You said: ünïcødé ☾" }).waitFor();
    assert.equal(await page.inputValue("#message"), "");

    await page.click("#toggle");
    await page.locator("#status.closed").waitFor();
    await line(page, "Connection closed (1000").waitFor();
    assert.equal(await page.isDisabled("#send"), true);
    await page.click("#toggle");
    await page.locator("#status.open").waitFor();
    await send(page, "again");
    await line(page, "You said: again").waitFor();
    assert.deepEqual(pageErrors(page), []);
    await page.context().close();
  });

  it("dashboard: a newcomer gets the history at once and the chart updates live", async () => {
    const dashboard = await serve("dashboard");
    const page = await open(dashboard.httpUrl);
    await page.locator("#status.open").waitFor();
    // The history (60 samples) is drawn at once: a polyline per series with 60 points.
    await page.waitForFunction("document.body.dataset.seq !== undefined");
    for (const key of ["cpu", "rps", "temp"]) {
      assert.equal(await page.getAttribute(`#chart-${key}`, "data-points"), "60");
      const points = await page.getAttribute(`#chart-${key} polyline.series`, "points");
      assert.equal(points?.trim().split(/\s+/).length, 60);
      assert.match((await page.textContent(`#value-${key}`)) ?? "", /^\d+(\.\d+)?/);
    }
    const first = Number(await page.getAttribute("body", "data-seq"));
    const chartBefore = await page.getAttribute("#chart-cpu polyline.series", "points");
    // A new sample each second: the chart moves and the latest sample number grows.
    await page.waitForFunction(`Number(document.body.dataset.seq) >= ${first + 2}`, undefined, {
      timeout: 4000,
    });
    assert.notEqual(await page.getAttribute("#chart-cpu polyline.series", "points"), chartBefore);
    assert.equal(await page.getAttribute("#chart-cpu", "data-points"), "60", "a sliding window");
    assert.equal(
      await page.getAttribute("#value-cpu", "data-seq"),
      await page.getAttribute("body", "data-seq"),
    );
    // A second page sees the same latest samples as the first.
    const other = await open(dashboard.httpUrl);
    await other.waitForFunction("document.body.dataset.seq !== undefined");
    assert.ok(Number(await other.getAttribute("body", "data-seq")) >= first + 2);
    for (const p of [page, other]) assert.deepEqual(pageErrors(p), []);
    await page.context().close();
    await other.context().close();
  });

  it("callback-style: WebSocketServer's join announcements and a broadcast chat", async () => {
    const example = await serve("callback-style");
    const first = await open(example.httpUrl);
    await line(first, "Welcome, you are ClientID 0").waitFor();
    const second = await open(example.httpUrl);
    await line(second, "Welcome, you are ClientID 1; 2 client(s) online").waitFor();
    await line(first, "ClientID 1 just joined the server").waitFor();
    await send(first, "hi everyone");
    await line(second, "ClientID 0: hi everyone").waitFor();
    await line(first, "ClientID 0: hi everyone").waitFor();
    await send(second, "/who");
    await line(second, "Online: ClientID 0, ClientID 1").waitFor();
    await second.context().close();
    await line(first, "ClientID 1 left").waitFor();
    assert.doesNotMatch((await first.locator("#log li").allTextContents()).join("\n"), /Online:/);
    assert.deepEqual(pageErrors(first), []);
    await first.context().close();
  });

  it("coroutine-style: a silly script serves the page and broadcasts through a channel", async () => {
    const example = await serve("coroutine-style");
    const first = await open(example.httpUrl);
    assert.match(await first.title(), /coroutine style/);
    await line(first, "you are guest1").waitFor();
    const second = await open(example.httpUrl);
    await line(second, "you are guest2").waitFor();
    await line(first, "guest2 joined").waitFor();
    await send(second, "from a coroutine");
    await line(first, "guest2: from a coroutine").waitFor();
    await line(second, "guest2: from a coroutine").waitFor();
    // The announcement went through the channel before that message: only to the others.
    assert.equal(await line(second, "guest2 joined").count(), 0, "the newcomer knows already");
    await second.context().close();
    await line(first, "guest2 left").waitFor();
    // Requests the handler leaves unanswered and that no file matches: 404.
    const missing = await first.request.get(`${example.httpUrl}no-such-file`);
    assert.equal(missing.status(), 404);
    assert.deepEqual(pageErrors(first), []);
    await first.context().close();
  });

  it("openresty-style: echo to the sender, broadcast to the others, with ngx.log", async () => {
    const example = await serve("openresty-style");
    const first = await open(example.httpUrl);
    await line(first, "welcome, you are #1").waitFor();
    const second = await open(example.httpUrl);
    await line(second, "welcome, you are #2").waitFor();
    await line(first, "#2 joined").waitFor();
    await send(first, "frame one");
    await line(first, "echo: frame one").waitFor();
    await line(second, "#1: frame one").waitFor();
    assert.doesNotMatch(
      (await first.locator("#log li").allTextContents()).join("\n"),
      /#1: frame one/,
    );
    await second.context().close();
    await line(first, "#2 left").waitFor();
    assert.match(example.log(), /connection #1 says: frame one/);
    assert.match(example.log(), /connection #2 closed/);
    assert.deepEqual(pageErrors(first), []);
    await first.context().close();
  });

  it("script-style pages: one log line per outage, not one per reconnection attempt", async () => {
    for (const name of ["callback-style", "coroutine-style", "openresty-style"]) {
      const example = await startExample(name);
      const page = await open(example.httpUrl);
      await page.locator("#status.open").waitFor();
      await example.stop();
      // The page retries every 2 s: once the second retry starts, the first has failed.
      for (let retry = 0; retry < 2; retry++)
        await page.waitForEvent("websocket", { timeout: 15_000 });
      await page.locator("#status.closed", { hasText: "reconnecting" }).waitFor();
      assert.equal(await line(page, "Connection closed").count(), 1, `${name}: one line`);
      assert.deepEqual(pageErrors(page), []);
      await page.context().close();
    }
  });

  // Every folder of examples/ with a server.lua, so a new example is checked too.
  const examples = readdirSync(EXAMPLES_DIR).filter((name) =>
    existsSync(join(EXAMPLES_DIR, name, "server.lua")),
  );

  /** Brings a freshly loaded example page to where a user starts using it. */
  async function ready(name: string, page: Page): Promise<void> {
    if (name === "chat") {
      await page.fill("#name", "newcomer");
      await page.click("#join button");
      await line(page, "You joined as newcomer.").waitFor();
    } else {
      await page.locator("#status.open").waitFor();
    }
  }

  it("every example page loads without errors or 404s, and fits a phone's width (390 and 320 px)", async () => {
    assert.ok(examples.length >= 7, `examples found: ${examples.join(", ")}`);
    for (const name of examples) {
      const example = await serve(name);
      const context = await browser.newContext({ viewport: { width: 1000, height: 640 } });
      const page = await context.newPage();
      page.setDefaultTimeout(TIMEOUT);
      const problems = recordProblems(page);
      // networkidle: after the page's own requests, the browser's one for a favicon.
      await page.goto(example.httpUrl, { waitUntil: "networkidle" });
      await ready(name, page);
      const icon = await page.getAttribute("link[rel=icon]", "href");
      assert.match(icon ?? "", /^data:/, `${name}: an inline favicon, nothing to fetch`);

      for (const [width, height] of [
        [390, 844],
        [320, 568],
      ] as const) {
        await page.setViewportSize({ width, height });
        assert.equal(
          await horizontalOverflow(page),
          0,
          `${name}: no sideways scrolling at ${width} px`,
        );
      }
      await page.waitForLoadState("networkidle");
      assert.deepEqual(problems, [], `${name}: problems in the browser`);
      await context.close();
    }
  });
});
