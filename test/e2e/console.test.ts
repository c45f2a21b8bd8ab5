// The built-in console page driven in Chromium, as served by `moonsocket serve app.lua`.
// UPDATE_CONSOLE_SCREENSHOT=1 also rewrites docs/console.png (the README's picture).
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { launchBrowser } from "../helpers/browser.js";
import { withTimeout } from "../helpers/net-helpers.js";
import { type RunningScript, startScript } from "../helpers/script-server.js";

const TIMEOUT = 5000;
const MAIN = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));

// Echoes text as text and binary as binary; "bye" makes the server close with 4000.
const ECHO_SCRIPT = `
function main(id, message, is_binary)
  if message == "bye" then _close(id, 4000, "bye") return end
  if is_binary then _sendBinary(id, message) else _send(id, message) end
end
`;

/** A page with what went wrong in it recorded: script errors, console errors, HTTP errors. */
interface WatchedPage {
  page: Page;
  problems: string[];
}

async function openWatched(
  browser: Browser,
  url: string,
  viewport = { width: 1000, height: 700 },
): Promise<WatchedPage> {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const problems: string[] = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console: ${message.text()}`);
  });
  page.on("response", (response) => {
    if (response.status() >= 400) problems.push(`HTTP ${response.status()} ${response.url()}`);
  });
  await page.goto(url);
  return { page, problems };
}

async function send(page: Page, text: string, kind: "text" | "binary" = "text"): Promise<void> {
  await page.check(kind === "binary" ? "#kind-binary" : "#kind-text");
  await page.fill("#message", text);
  await page.press("#message", "Enter");
}

/** Log entries of a direction and type (`in`/`out`/`event`; `text`/`binary`/`open`/`close`…). */
function entries(page: Page, direction: string, type: string) {
  return page.locator(`#log li[data-direction="${direction}"][data-type="${type}"]`);
}

/** The size, data and "cut" note of the `index`-th entry of a kind (negative: from the end). */
async function entry(page: Page, direction: string, type: string, index = -1) {
  const all = entries(page, direction, type);
  const count = await all.count();
  const item = all.nth(index < 0 ? count + index : index);
  return {
    size: await item.locator(".size").textContent(),
    data: await item.locator(".data").evaluate((node) => node.firstChild?.textContent ?? ""),
    note: await item.locator(".more").allTextContents(),
  };
}

/** The type of every event entry, in order. */
function eventTypes(page: Page): Promise<string[]> {
  return page.locator('#log li[data-direction="event"] .type').allTextContents();
}

describe("the console page in the browser", () => {
  let browser: Browser;
  let dir: string;
  let child: ChildProcess | undefined;
  let consoleUrl: string;
  let scriptServer: RunningScript | undefined;

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "moonsocket-console-e2e-"));
    const script = path.join(dir, "app.lua");
    writeFileSync(script, ECHO_SCRIPT);
    const started = spawn(
      process.execPath,
      [MAIN, "serve", script, "--port", "0", "--log-level", "warn"],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    child = started;
    let stdout = "";
    consoleUrl = await withTimeout(
      new Promise<string>((resolve, reject) => {
        started.stdout.on("data", (chunk: Buffer) => {
          stdout += chunk.toString();
          const match = /\(open (http:\/\/\S+) for a console\)/.exec(stdout);
          if (match) resolve(match[1]!);
        });
        started.once("exit", (code) => reject(new Error(`serve exited with ${code}`)));
      }),
      10_000,
      "the serve banner",
    );
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await scriptServer?.stop();
    if (child !== undefined && child.exitCode === null) {
      const exited = new Promise((resolve) => child?.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it("connects on load, echoes text and hex binary with type and size, shows the close, reconnects", async () => {
    const { page, problems } = await openWatched(browser, consoleUrl);
    await page.locator("#status.open").waitFor();
    const port = new URL(consoleUrl).port;
    assert.equal(await page.inputValue("#url"), `ws://127.0.0.1:${port}/`);
    assert.match((await entry(page, "event", "open")).data, /subprotocol none/);

    await send(page, "hello moon");
    await entries(page, "in", "text").first().waitFor();
    assert.deepEqual(await entry(page, "out", "text"), {
      size: "10 B",
      data: "hello moon",
      note: [],
    });
    assert.deepEqual(await entry(page, "in", "text"), {
      size: "10 B",
      data: "hello moon",
      note: [],
    });
    assert.equal(await page.inputValue("#message"), "", "the field is cleared after sending");

    // The size is in bytes, not characters.
    await send(page, "☾ moon");
    await entries(page, "in", "text").nth(1).waitFor();
    assert.equal((await entry(page, "in", "text")).size, "8 B");

    await send(page, "de ad BE 0xef 00", "binary");
    await entries(page, "in", "binary").first().waitFor();
    assert.deepEqual(await entry(page, "in", "binary"), {
      size: "5 B",
      data: "de ad be ef 00",
      note: [],
    });

    // Bad hex is refused with a reason and kept in the field to fix; nothing is sent.
    await send(page, "12 zz", "binary");
    assert.match((await page.textContent("#send-problem")) ?? "", /^not hex: 'z'/);
    await send(page, "abc", "binary");
    assert.match((await page.textContent("#send-problem")) ?? "", /odd number of hex digits \(3\)/);
    assert.equal(await page.inputValue("#message"), "abc");
    assert.equal(await entries(page, "out", "binary").count(), 1);

    // Long messages are cut in the log, with their full size.
    await send(page, "ab".repeat(300), "binary");
    await entries(page, "in", "binary").nth(1).waitFor();
    const longBinary = await entry(page, "in", "binary");
    assert.equal(longBinary.size, "300 B");
    assert.equal(longBinary.data, Array(256).fill("ab").join(" "));
    assert.deepEqual(longBinary.note, ["… cut: 256 B of 300 B shown"]);
    await send(page, "x".repeat(3000));
    await entries(page, "in", "text").nth(2).waitFor();
    const longText = await entry(page, "in", "text");
    assert.equal(longText.size, "3,000 B");
    assert.equal(longText.data.length, 1000);
    assert.deepEqual(longText.note, ["… cut: 1,000 of 3,000 characters shown"]);
    // A cut never splits an emoji's surrogate pair.
    await send(page, `${"x".repeat(999)}😀y`);
    await entries(page, "in", "text").nth(3).waitFor();
    const emoji = await entry(page, "in", "text");
    assert.equal(emoji.data, "x".repeat(999));
    assert.deepEqual(emoji.note, ["… cut: 999 of 1,002 characters shown"]);
    assert.equal(emoji.size, "1,004 B");

    // The server closes with a code and a reason.
    await send(page, "bye");
    await entries(page, "event", "close").first().waitFor();
    const close = entries(page, "event", "close").first();
    assert.equal(await close.getAttribute("data-code"), "4000");
    assert.equal(await close.getAttribute("data-reason"), "bye");
    assert.match((await close.textContent()) ?? "", /code 4000, reason 'bye', clean/);
    await page.locator("#status.closed").waitFor();
    assert.equal(await page.isDisabled("#send"), true);

    // Reconnect after the close, then again from an open connection (Enter in the URL field):
    // the old connection's close is logged before the new one opens.
    await page.click("#connect");
    await entries(page, "event", "open").nth(1).waitFor();
    await send(page, "again");
    await entries(page, "in", "text").nth(4).waitFor();
    assert.equal((await entry(page, "in", "text")).data, "again");
    await page.press("#url", "Enter");
    await entries(page, "event", "open").nth(2).waitFor();
    assert.deepEqual((await eventTypes(page)).slice(-3), ["close", "connecting", "open"]);
    assert.equal(await entries(page, "event", "close").last().getAttribute("data-code"), "1000");

    await page.click("#clear");
    assert.equal(await page.locator("#log li").count(), 0);
    assert.equal(await page.textContent("#count"), "0 entries");
    assert.deepEqual(problems, []);
    await page.context().close();
  });

  it("makes the README's picture (with UPDATE_CONSOLE_SCREENSHOT=1)", async (t) => {
    if (process.env.UPDATE_CONSOLE_SCREENSHOT !== "1") {
      t.skip("set UPDATE_CONSOLE_SCREENSHOT=1 to rewrite docs/console.png");
      return;
    }
    const context = await browser.newContext({
      viewport: { width: 1000, height: 560 },
      colorScheme: "dark",
    });
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT);
    await page.goto(consoleUrl);
    await page.locator("#status.open").waitFor();
    await send(page, '{"op":"join","room":"moon"}');
    await send(page, "48 69 21 00 ff", "binary");
    await entries(page, "in", "binary").first().waitFor();
    await send(page, "bye", "text");
    await entries(page, "event", "close").first().waitFor();
    await page.click("#connect");
    await entries(page, "event", "open").nth(1).waitFor();
    await send(page, "hello again");
    await entries(page, "in", "text").nth(1).waitFor();
    const docs = fileURLToPath(new URL("../../../docs/", import.meta.url));
    mkdirSync(docs, { recursive: true });
    await page.screenshot({ path: `${docs}console.png` });
    await context.close();
  });

  it("Disconnect closes with 1000; a bad URL is refused with a message", async () => {
    const { page, problems } = await openWatched(browser, consoleUrl);
    await page.locator("#status.open").waitFor();
    await page.click("#disconnect");
    await page.locator("#status.closed").waitFor();
    assert.equal(await entries(page, "event", "close").getAttribute("data-code"), "1000");
    await page.fill("#url", "not a url");
    await page.click("#connect");
    assert.equal(
      await page.textContent("#connect-problem"),
      "not a URL: 'not a url' (expected ws://host:port/path or wss://…)",
    );
    await page.fill("#url", consoleUrl);
    await page.press("#url", "Enter");
    assert.equal(
      await page.textContent("#connect-problem"),
      "the URL must start with ws:// or wss://, not http://",
    );
    assert.equal(await entries(page, "event", "error").count(), 2);
    assert.equal(await entries(page, "event", "connecting").count(), 1, "no attempt was made");
    assert.deepEqual(problems, []);
    await page.context().close();
  });

  it("shows the negotiated subprotocol, and a refused one as an error and an unclean close", async () => {
    scriptServer = await startScript(path.join(dir, "app.lua"), {
      serverOptions: { consolePage: true, protocols: ["chat.v2", "chat.v1"] },
    });
    const { page } = await openWatched(browser, scriptServer.url.replace(/^ws/, "http"));
    await page.locator("#status.open").waitFor();
    await page.fill("#protocols", "chat.v1, other");
    await page.click("#connect");
    await entries(page, "event", "open").nth(1).waitFor();
    assert.match((await entry(page, "event", "open")).data, /subprotocol 'chat\.v1'/);
    assert.equal(await page.textContent("#status"), "open · chat.v1");

    // The server speaks neither: it answers without a protocol and Chromium fails the
    // connection (RFC 6455 §4.1), which the page reports.
    await page.fill("#protocols", "other");
    await page.click("#connect");
    await entries(page, "event", "error").first().waitFor();
    await page.locator("#status.closed").waitFor();
    const close = entries(page, "event", "close").last();
    assert.equal(await close.getAttribute("data-code"), "1006");
    assert.match((await close.textContent()) ?? "", /not clean \(wasClean: false\)/);
    await page.context().close();
  });

  it("fits a phone-sized screen without sideways scrolling", async () => {
    const { page, problems } = await openWatched(browser, consoleUrl, { width: 360, height: 740 });
    await page.locator("#status.open").waitFor();
    await send(page, "y".repeat(400));
    await entries(page, "in", "text").first().waitFor();
    const overflow = await page.evaluate<number>(
      "document.documentElement.scrollWidth - document.documentElement.clientWidth",
    );
    assert.equal(overflow, 0);
    for (const id of ["#url", "#message", "#send", "#connect", "#disconnect"]) {
      const box = await page.locator(id).boundingBox();
      assert.ok(box !== null && box.x >= 0 && box.x + box.width <= 360, `${id} is on screen`);
    }
    assert.deepEqual(problems, []);
    await page.context().close();
  });
});
