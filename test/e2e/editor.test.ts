// The collaborative editor example driven in Chromium: pages converge on one text.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { Browser, Page } from "playwright-core";
import {
  launchBrowser,
  openPage,
  pageErrors,
  type RunningExample,
  receiveLatency,
  startExample,
} from "../helpers/browser.js";

const TIMEOUT = 5000;

/** The textarea's text once the page has no edit in flight. */
async function settledText(page: Page): Promise<string> {
  await page.locator("#doc[data-synced='true']").waitFor();
  return page.inputValue("#doc");
}

/** Waits until every page is settled on the same text; returns it. */
async function converged(pages: Page[], timeoutMs = 15_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const texts = await Promise.all(pages.map(settledText));
    if (texts.every((text) => text === texts[0])) return texts[0]!;
    if (Date.now() > deadline) assert.fail(`pages did not converge:\n${texts.join("\n----\n")}`);
    await sleep(50);
  }
}

/** Whether `needle`'s characters appear in `text` in order (interleaving allowed). */
function isSubsequence(needle: string, text: string): boolean {
  let at = 0;
  for (const char of text) if (char === needle[at]) at++;
  return at === needle.length;
}

describe("collaborative editor in the browser", () => {
  let browser: Browser;
  let editor: RunningExample;
  let a: Page;
  let b: Page;

  async function open(latencyMs = 0): Promise<Page> {
    const page = await openPage(browser, editor.httpUrl, {
      ...(latencyMs > 0 ? { initScript: receiveLatency(latencyMs) } : {}),
    });
    page.setDefaultTimeout(TIMEOUT);
    await page.locator("#doc:not([readonly])").waitFor();
    return page;
  }

  before(async () => {
    browser = await launchBrowser();
    editor = await startExample("editor");
    // A and B receive with 80 ms of latency: what they type while messages are on their way
    // is concurrent, and goes through the transformation on both sides.
    a = await open(80);
    b = await open(80);
  });

  after(async () => {
    await browser?.close();
    await editor?.stop();
  });

  it("shows the shared text and who is editing", async () => {
    const initial = await converged([a, b]);
    assert.match(initial, /Welcome to the moonsocket collaborative editor/);
    await a.locator("#count[data-count='2']").waitFor();
    await b.locator("#count[data-count='2']").waitFor();
    await a.fill("#name", "Ada");
    await a.press("#name", "Tab");
    await b.locator("#editors li", { hasText: "Ada" }).waitFor();
    await a.locator("#editors li.me", { hasText: "Ada (you)" }).waitFor();
  });

  it("shows what one page types on the other", async () => {
    await a.click("#doc");
    await a.keyboard.press("Control+End");
    await a.keyboard.type("typed in A");
    // While the edits arrive, B marks A as typing.
    await b.locator("#editors li.typing", { hasText: "Ada" }).waitFor();
    await b.waitForFunction("document.getElementById('doc').value.endsWith('typed in A')");
    const text = await converged([a, b]);
    assert.ok(text.endsWith("\ntyped in A"));
  });

  it("converges when both type at once, keeping every keystroke", async () => {
    const before = await converged([a, b]);
    // Different places: A at the start, B at the end; each caret stays where its typist is.
    await a.click("#doc");
    await a.keyboard.press("Control+Home");
    await b.click("#doc");
    await b.keyboard.press("Control+End");
    await Promise.all([
      a.keyboard.type("From A: ", { delay: 15 }),
      b.keyboard.type(" and from B.", { delay: 15 }),
    ]);
    const both = await converged([a, b]);
    assert.equal(both, `From A: ${before} and from B.`);

    // The same place: both at the end; the characters interleave but none is lost.
    await a.keyboard.press("Control+End");
    await Promise.all([
      a.keyboard.type("[aaaa]", { delay: 10 }),
      b.keyboard.type("{bbbb}", { delay: 10 }),
    ]);
    const same = await converged([a, b]);
    const tail = same.slice(both.length);
    assert.ok(same.startsWith(both));
    assert.equal(tail.length, 12);
    assert.ok(isSubsequence("[aaaa]", tail) && isSubsequence("{bbbb}", tail), tail);

    // Deleting on one side while the other types just before: A erases "From A: " with
    // Backspace while B types at the very start; the remote inserts move A's caret along.
    await a.keyboard.press("Control+Home");
    for (let i = 0; i < 8; i++) await a.keyboard.press("ArrowRight");
    await b.keyboard.press("Control+Home");
    await Promise.all([
      (async () => {
        for (let i = 0; i < 8; i++) await a.keyboard.press("Backspace", { delay: 10 });
      })(),
      b.keyboard.type("<B>", { delay: 10 }),
    ]);
    assert.equal(await converged([a, b]), `<B>${same.slice(8)}`);
  });

  it("gives a newcomer the current text and updates the editor count", async () => {
    const current = await converged([a, b]);
    const c = await open();
    assert.equal(await settledText(c), current);
    await a.locator("#count[data-count='3']").waitFor();
    await c.click("#doc");
    await c.keyboard.press("Control+End");
    await c.keyboard.type("!");
    assert.equal(await converged([a, b, c]), `${current}!`);
    await c.context().close();
    await a.locator("#count[data-count='2']").waitFor();
    for (const page of [a, b, c]) assert.deepEqual(pageErrors(page), []);
  });
});
