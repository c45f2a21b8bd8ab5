/**
 * The command line as a new user first meets it: the top-level help, `--version` everywhere,
 * the demo served with or without the word `serve`, and banners that show the real `--path`.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { exitCode, runCli, waitForBanner } from "../helpers/cli-process.js";
import { httpRequest, Resources, waitUntil } from "../helpers/net-helpers.js";
import { openClient } from "../helpers/script-server.js";

const resources = new Resources();
afterEach(() => resources.closeAll());

const VERSION = (
  JSON.parse(
    readFileSync(fileURLToPath(new URL("../../../package.json", import.meta.url)), "utf8"),
  ) as { version: string }
).version;

describe("moonsocket --help and --version", () => {
  it("the top-level help lists --version and the demo's flags", async () => {
    const proc = runCli(resources, ["--help"]);
    assert.equal(await exitCode(proc), 0);
    const help = proc.stdout();
    assert.match(help, /--version/);
    for (const flag of ["--port", "--host", "--path", "--static", "--tls-cert", "--watch"]) {
      assert.ok(help.includes(flag), `help lists ${flag}`);
    }
  });

  for (const command of ["serve", "echo", "check", "connect", "bench"]) {
    it(`'moonsocket ${command} --version' prints the version and exits 0`, async () => {
      const proc = runCli(resources, [command, "--version"]);
      assert.equal(await exitCode(proc), 0, proc.stderr());
      assert.equal(proc.stdout(), `${VERSION}\n`);
      assert.equal(proc.stderr(), "");
    });
  }

  it("--version wins over the rest of the line, like --help", async () => {
    const proc = runCli(resources, ["--port", "0", "--version"]);
    assert.equal(await exitCode(proc), 0, proc.stderr());
    assert.equal(proc.stdout(), `${VERSION}\n`);
  });
});

describe("the demo", () => {
  /** The demo answers its page and its room token check, whichever way it was started. */
  async function assertServesDemo(args: string[]): Promise<void> {
    const proc = runCli(resources, args);
    const url = await waitForBanner(proc);
    const port = Number(new URL(url).port);
    await waitUntil(() => /script loaded/.test(proc.stderr()), 5000, "the script loaded line");
    assert.match(proc.stderr(), /script=\S*examples\/chat\/server\.lua/);
    const page = await httpRequest(port, "/");
    assert.equal(page.status, 200);
    assert.match(page.headers["content-type"] ?? "", /text\/html/);
    proc.child.kill("SIGTERM");
    assert.equal(await exitCode(proc), 0);
  }

  it("'moonsocket serve' without a script serves the demo, as its help says", async () => {
    await assertServesDemo(["serve", "--port", "0"]);
  });

  it("bare 'moonsocket' takes serve's flags, short ones included", async () => {
    await assertServesDemo(["-p", "0"]);
  });
});

describe("banners", () => {
  it("echo's banner shows the --path clients connect to", async () => {
    const proc = runCli(resources, ["echo", "--port", "0", "--path", "/chat"]);
    const url = await waitForBanner(proc);
    assert.match(url, /^ws:\/\/127\.0\.0\.1:\d+\/chat$/);
    const client = await openClient(url);
    client.send("hi");
    assert.equal(await client.next(10_000), "hi");
    client.close();
  });

  it("serve's banner shows the --path clients connect to", async () => {
    const dir = mkdtempSync(join(tmpdir(), "moonsocket-main-"));
    const script = join(dir, "app.lua");
    writeFileSync(script, "function main(id, m) _send(id, m) end\n");
    const proc = runCli(resources, ["serve", script, "--port", "0", "--path", "/room"]);
    const url = await waitForBanner(proc);
    assert.match(url, /^ws:\/\/127\.0\.0\.1:\d+\/room$/);
    const client = await openClient(url);
    client.send("hello");
    assert.equal(await client.next(10_000), "hello");
    client.close();
  });
});
