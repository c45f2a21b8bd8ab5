// The built-in demo (examples/chat) driven in Chromium, as users see it.
// UPDATE_DEMO_SCREENSHOT=1 also rewrites docs/demo.png (the README's picture).
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import {
  launchBrowser,
  openPage,
  pageErrors,
  type RunningExample,
  startExample,
} from "../helpers/browser.js";

const TIMEOUT = 5000;

/** Opens the chat page and joins as `name` with `token`. */
async function join(browser: Browser, url: string, name: string, token = "moon"): Promise<Page> {
  const page = await openPage(browser, url);
  page.setDefaultTimeout(TIMEOUT);
  await page.fill("#name", name);
  await page.fill("#token", token);
  await page.click("#join button");
  return page;
}

async function joined(page: Page, name: string): Promise<void> {
  await page.locator("#log li", { hasText: `You joined as ${name}.` }).waitFor();
}

async function say(page: Page, text: string): Promise<void> {
  await page.fill("#text", text);
  await page.press("#text", "Enter");
}

function logLine(page: Page, text: string) {
  return page.locator("#log li", { hasText: text });
}

async function logText(page: Page): Promise<string> {
  return (await page.locator("#log li").allTextContents()).join("\n");
}

describe("demo chat in the browser", () => {
  let browser: Browser;
  let chat: RunningExample;
  let alice: Page;
  let bob: Page;

  before(async () => {
    browser = await launchBrowser();
    chat = await startExample("chat");
  });

  after(async () => {
    await browser?.close();
    await chat?.stop();
  });

  it("serves the page and lets two users chat", async () => {
    alice = await join(browser, chat.httpUrl, "alice");
    await joined(alice, "alice");
    bob = await join(browser, chat.httpUrl, "bob");
    await joined(bob, "bob");
    await logLine(alice, "bob joined.").waitFor();
    await alice.locator("#users li", { hasText: "bob" }).waitFor();
    assert.deepEqual(await bob.locator("#users li").allInnerTexts(), ["alice", "bob"]);
    assert.equal(await alice.textContent("#status"), "connected");
    assert.equal(await alice.isVisible("#join"), false, "the join form is gone");

    await say(alice, "Hi Bob! This room runs on a 90-line Lua script.");
    await logLine(bob, "alice: Hi Bob! This room runs").waitFor();
    await logLine(alice, "alice: Hi Bob! This room runs").waitFor();
    assert.equal(await alice.inputValue("#text"), "", "the box is cleared after sending");
    await say(bob, "Nice. Is it the callback style, like WebSocketServer?");
    await logLine(alice, "bob: Nice. Is it the callback style").waitFor();
    await say(alice, "Yes: main, on_connect, on_disconnect, _send and _sendAll.");
    await logLine(bob, "alice: Yes: main").waitFor();
    await say(bob, "/w alice Psst, try /w for private messages");
    await logLine(alice, "bob → alice (private): Psst").waitFor();

    // The README's picture: Alice's page, in the middle of the conversation.
    await alice.fill("#text", "Works like a charm");
    await alice.setViewportSize({ width: 960, height: 440 });
    const png = await alice.screenshot();
    assert.ok(png.length > 10_000, "a real picture");
    if (process.env.UPDATE_DEMO_SCREENSHOT === "1") {
      const docs = fileURLToPath(new URL("../../../docs/", import.meta.url));
      mkdirSync(docs, { recursive: true });
      writeFileSync(`${docs}demo.png`, png);
    }
    await alice.fill("#text", "");
  });

  it("delivers a private message (/w name text) to its target only", async () => {
    const carol = await join(browser, chat.httpUrl, "carol");
    await joined(carol, "carol");
    await say(alice, "/w bob the secret is 42");
    await logLine(bob, "alice → bob (private): the secret is 42").waitFor();
    await logLine(alice, "alice → bob (private): the secret is 42").waitFor();
    await say(alice, "public again");
    await logLine(carol, "alice: public again").waitFor();
    assert.doesNotMatch(await logText(carol), /secret|Psst/);

    // Clicking a name in the list starts a private message to them.
    await carol.click("#users li:has-text('bob')");
    assert.equal(await carol.inputValue("#text"), "/w bob ");
    // A whisper to nobody is refused with a visible error.
    await say(carol, "/w nobody psst");
    await carol.locator("#log li.error", { hasText: "no user named 'nobody'" }).waitFor();

    // Leaving shows on the others' pages.
    await carol.context().close();
    await logLine(alice, "carol left.").waitFor();
    await alice.waitForFunction("document.querySelectorAll('#users li').length === 2");
  });

  it("replays the recent history to a page that joins later", async () => {
    const dave = await join(browser, chat.httpUrl, "dave");
    await joined(dave, "dave");
    const history = await logText(dave);
    assert.match(history, /alice: Hi Bob![\s\S]*bob: Nice\.[\s\S]*alice: public again/);
    assert.doesNotMatch(history, /secret|Psst/, "private messages are not in the history");
    assert.ok(history.indexOf("alice: Hi Bob!") < history.indexOf("You joined as dave."));
    await logLine(bob, "dave joined.").waitFor();
    assert.deepEqual(pageErrors(dave), []);
    await dave.context().close();
  });

  it("refuses a bad room token with a visible reason", async () => {
    const page = await join(browser, chat.httpUrl, "mallory", "not-the-token");
    await page.locator("#log li.error", { hasText: "invalid token" }).waitFor();
    assert.match((await page.textContent("#status")) ?? "", /disconnected \(4001: invalid token/);
    assert.equal(await page.isVisible("#join"), true, "the join form is back");
    assert.equal(await page.isVisible("#say"), false);
    assert.doesNotMatch(await logText(page), /Hi Bob/, "no history without the token");

    // With the right token, a taken nickname is refused.
    await page.fill("#name", "alice");
    await page.fill("#token", "moon");
    await page.click("#join button");
    await page.locator("#log li.error", { hasText: "nickname 'alice' is taken" }).waitFor();
    for (const p of [page, alice, bob]) assert.deepEqual(pageErrors(p), []);
    await page.context().close();
  });
});
