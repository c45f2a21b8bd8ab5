import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Browser, chromium, type Page } from "playwright-core";
import { type RunningScript, startScript } from "./script-server.js";

/** Debian's Chromium, which the browser tests drive (CI installs it). */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

/** The repository's `examples/` folder (this file runs from dist/test/helpers/). */
export const EXAMPLES_DIR = fileURLToPath(new URL("../../../examples/", import.meta.url));

/** Launches headless Chromium; fails with what to install when it is missing. */
export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM_PATH}: the browser tests need it. ` +
        "Install it with `apt-get install chromium` (or set CHROMIUM_PATH).",
    );
  }
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}

/** An example app, served as `moonsocket serve examples/NAME/server.lua --static examples/NAME/public`. */
export interface RunningExample extends RunningScript {
  /** The page's address: http://127.0.0.1:PORT/ */
  httpUrl: string;
}

export async function startExample(name: string): Promise<RunningExample> {
  const dir = join(EXAMPLES_DIR, name);
  const running = await startScript(join(dir, "server.lua"), {
    // As `npm start` serves the chat demo: with the last 50 messages of each topic kept.
    serverOptions: {
      staticDir: join(dir, "public"),
      ...(name === "chat" ? { historyLength: 50 } : {}),
    },
  });
  return { ...running, httpUrl: running.url.replace(/^ws/, "http") };
}

/**
 * Opens `url` in a fresh browser context (its own storage, like another user), recording
 * uncaught script errors for {@link pageErrors}. `initScript` runs in the page before its own.
 */
export async function openPage(
  browser: Browser,
  url: string,
  options: { initScript?: string } = {},
): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1000, height: 640 } });
  const page = await context.newPage();
  if (options.initScript !== undefined) await page.addInitScript(options.initScript);
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(error.message));
  errorsOf.set(page, errors);
  await page.goto(url);
  return page;
}

const errorsOf = new WeakMap<Page, string[]>();

/** Uncaught errors of the scripts of a page opened with {@link openPage}. */
export function pageErrors(page: Page): string[] {
  return errorsOf.get(page) ?? [];
}

/**
 * An init script that delays every WebSocket message a page receives by `ms` (in order), as a
 * slow network would: edits made meanwhile are concurrent with the ones on their way.
 */
export function receiveLatency(ms: number): string {
  return `(() => {
    const property = Object.getOwnPropertyDescriptor(WebSocket.prototype, "onmessage");
    Object.defineProperty(WebSocket.prototype, "onmessage", {
      configurable: true,
      get() { return property.get.call(this); },
      set(handler) {
        property.set.call(this, typeof handler === "function"
          ? (event) => setTimeout(() => handler.call(this, event), ${ms})
          : handler);
      },
    });
  })();`;
}
