// The built-in demo (examples/chat) driven in Chromium, as users see it.
// UPDATE_DEMO_SCREENSHOT=1 also rewrites docs/demo.png (the README's picture).
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import {
  launchBrowser,
  openPage,
  pageErrors,
  type RunningExample,
  startExample,
} from "../helpers/browser.js";
import { openClient, type TestClient } from "../helpers/script-server.js";
import { horizontalOverflow } from "./page-problems.js";

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

/** How many WebSocket connections the server has, as its `/healthz` reports. */
async function connections(example: RunningExample): Promise<number> {
  const response = await fetch(new URL("/healthz", example.httpUrl));
  return ((await response.json()) as { connections: number }).connections;
}

/**
 * Waits until `/healthz` counts `expected` connections (pages closed by earlier tests take a
 * moment to be noticed); fails with the last count if it never does.
 */
async function expectConnections(example: RunningExample, expected: number): Promise<void> {
  const deadline = Date.now() + TIMEOUT;
  let count = await connections(example);
  while (count !== expected && Date.now() < deadline) {
    await sleep(50);
    count = await connections(example);
  }
  assert.equal(count, expected, "connections counted by /healthz");
}

/** The next JSON message a raw client receives. */
async function nextMessage(client: TestClient): Promise<Record<string, unknown>> {
  return JSON.parse(await client.next(TIMEOUT)) as Record<string, unknown>;
}

/** The next JSON message of that type a raw client receives (skipping others). */
async function nextOfType(client: TestClient, type: string): Promise<Record<string, unknown>> {
  for (;;) {
    const message = await nextMessage(client);
    if (message.type === type) return message;
  }
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
    assert.equal(await alice.textContent("#status"), "joined as alice");
    assert.equal(await alice.getAttribute("#status", "class"), "open", "a green badge");
    assert.equal(await alice.isVisible("#join"), false, "the join form is gone");

    await say(alice, "Hi Bob! This room runs on a 120-line Lua script.");
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
    // A "/w" with no text is explained to its writer, not sent to everyone.
    await say(carol, "/w bob");
    await carol.locator("#log li.error", { hasText: "type /w name text" }).waitFor();
    assert.equal(await carol.inputValue("#text"), "/w bob", "kept, to finish it");
    await say(carol, "public from carol");
    await logLine(alice, "carol: public from carol").waitFor();
    assert.doesNotMatch(await logText(alice), /carol: \/w/);

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
    await logLine(page, "The room token was refused: check the room token field").waitFor();
    assert.equal(await page.textContent("#status"), "wrong room token");
    assert.doesNotMatch(await logText(page), /\?token|URL/, "no talk of URLs: it is a form field");
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

describe("demo chat: joining, refusals and small screens", () => {
  let browser: Browser;
  let chat: RunningExample;
  let erin: Page;

  before(async () => {
    browser = await launchBrowser();
    chat = await startExample("chat");
    erin = await join(browser, chat.httpUrl, "erin");
    await joined(erin, "erin");
  });

  after(async () => {
    await browser?.close();
    await chat?.stop();
  });

  it("opens one connection per page however often Join is pressed", async () => {
    const page = await openPage(browser, chat.httpUrl);
    page.setDefaultTimeout(TIMEOUT);
    await page.fill("#name", "frank");
    await page.dblclick("#join button");
    await joined(page, "frank");
    await expectConnections(chat, 2); // one for each of the two pages

    await say(erin, "only once, please");
    await say(erin, "and the next one");
    await logLine(page, "erin: and the next one").waitFor();
    assert.equal(await logLine(page, "erin: only once, please").count(), 1);
    assert.equal(await logLine(page, "You joined as frank.").count(), 1);
    await expectConnections(chat, 2);
    await page.context().close();
  });

  it("shows the joiner 'You joined as X.' and the others 'X joined.'", async () => {
    const gina = await join(browser, chat.httpUrl, "gina");
    await joined(gina, "gina");
    await logLine(erin, "gina joined.").waitFor();
    // The user list comes after the announcement on the same connection: by the time it
    // shows, an announcement to gina herself would have shown too.
    await gina.locator("#users li.me", { hasText: "gina" }).waitFor();
    assert.equal(await logLine(gina, "gina joined.").count(), 0);
    assert.equal(await logLine(erin, "You joined as").count(), 1, "erin's own line only");
    await gina.context().close();
  });

  it("shows a refused nickname as not joined, with the reason, and lets the user retry", async () => {
    const page = await join(browser, chat.httpUrl, "erin");
    await page.locator("#log li.error", { hasText: "nickname 'erin' is taken" }).waitFor();
    assert.equal(await page.textContent("#status"), "not joined");
    assert.equal(await page.getAttribute("#status", "class"), "closed", "a red badge, not green");
    assert.equal(await page.isVisible("#join"), true, "the join form stays");
    assert.equal(await page.isEnabled("#join button"), true);

    // Another nickname joins on the same connection (the token was accepted already).
    await page.fill("#name", "erin2");
    await page.click("#join button");
    await joined(page, "erin2");
    assert.equal(await page.textContent("#status"), "joined as erin2");
    await expectConnections(chat, 2); // erin's page and this one
    await page.context().close();
  });

  it("refuses a nickname with a space, in the page and in the script", async () => {
    const page = await join(browser, chat.httpUrl, "bob smith");
    await page
      .locator("#log li.error", { hasText: "nickname 'bob smith' is not allowed" })
      .waitFor();
    assert.match(await logText(page), /letters, digits, _ or - \(no spaces\)/);
    assert.equal(await page.textContent("#status"), "not joined");
    assert.equal(await page.getAttribute("#name", "aria-invalid"), "true");
    await expectConnections(chat, 1); // erin's: this page did not even connect
    await page.context().close();

    // The script is the authority: a client that skips the page's check is refused too.
    const client = await openClient(`${chat.url}chat?token=moon`);
    for (const name of ["bob smith", "tab\there", "x".repeat(25), "ünï", "", 42]) {
      client.send(JSON.stringify({ type: "hello", name }));
      const answer = await nextMessage(client);
      assert.equal(answer.type, "error", `${JSON.stringify(name)} refused`);
      assert.match(String(answer.message), /is not allowed|pick a nickname/);
    }
    client.send(JSON.stringify({ type: "hello", name: "Bob_Smith-2" }));
    assert.equal((await nextMessage(client)).type, "welcome");
    client.close();
  });

  it("tells the others when a client takes another nickname", async () => {
    const client = await openClient(`${chat.url}chat?token=moon`);
    client.send(JSON.stringify({ type: "hello", name: "ivan" }));
    assert.equal((await nextMessage(client)).type, "welcome");
    await logLine(erin, "ivan joined.").waitFor();
    client.send(JSON.stringify({ type: "hello", name: "ivan2" }));
    assert.equal((await nextOfType(client, "welcome")).name, "ivan2");
    await logLine(erin, "ivan2 joined.").waitFor();
    assert.match(await logText(erin), /ivan joined\.\nivan left\.\nivan2 joined\./);
    client.close();
    await logLine(erin, "ivan2 left.").waitFor();
  });

  it("puts the Online list below the messages on a phone-sized screen", async () => {
    const page = await openPage(browser, chat.httpUrl);
    page.setDefaultTimeout(TIMEOUT);
    await page.setViewportSize({ width: 390, height: 844 });
    assert.equal(await horizontalOverflow(page), 0, "the join form fits: no sideways scrolling");
    for (const field of ["#name", "#token", "#join button"]) {
      const box = await page.locator(field).boundingBox();
      assert.ok(box && box.x + box.width <= 390, `${field} is on screen`);
    }
    await page.fill("#name", "hana");
    await page.click("#join button");
    await joined(page, "hana");
    const log = await page.locator("#log").boundingBox();
    const online = await page.locator("aside").boundingBox();
    assert.ok(log && online);
    assert.ok(log.width >= 390 * 0.9, `the messages keep the width (${log.width}px of 390)`);
    assert.ok(online.y >= log.y + log.height - 1, "the Online list is below the messages");
    assert.ok(log.height > online.height * 2, "and the messages keep most of the height");
    await page.locator("#users li", { hasText: "hana" }).waitFor();
    assert.equal(await horizontalOverflow(page), 0);
    assert.deepEqual(pageErrors(page), []);
    await page.context().close();
  });
});
