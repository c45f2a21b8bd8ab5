/**
 * `--tls-cert` and `--tls-key` files that cannot be used: one line naming the file and what is
 * wrong, exit 2 (a bad command line), from `echo` and `serve` alike; no stack trace, no OpenSSL
 * error text.
 */
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import { exitCode, runCli, waitForBanner } from "../helpers/cli-process.js";
import { Resources } from "../helpers/net-helpers.js";
import { makeCertificate } from "../helpers/tls-cert.js";

const resources = new Resources();
afterEach(() => resources.closeAll());

const first = makeCertificate();
const second = makeCertificate();
const skip = typeof first === "string" ? first : typeof second === "string" ? second : false;

describe("TLS files on the command line", { skip }, () => {
  if (typeof first === "string" || typeof second === "string") return;
  const cert = join(first.dir, "cert.pem");
  const key = join(first.dir, "key.pem");
  const otherKey = join(second.dir, "key.pem");
  const scratch = mkdtempSync(join(tmpdir(), "moonsocket-tls-files-"));
  const notPem = join(scratch, "notes.txt");
  writeFileSync(notPem, "this is not a PEM file\n");
  const missing = join(scratch, "missing.pem");

  /** Runs `command` with the TLS flags; expects exit 2 and exactly one line on stderr. */
  async function refused(command: string[], certFile: string, keyFile: string): Promise<string> {
    const proc = runCli(resources, [
      ...command,
      "--port",
      "0",
      "--tls-cert",
      certFile,
      "--tls-key",
      keyFile,
    ]);
    assert.equal(await exitCode(proc), 2, proc.stderr());
    const lines = proc
      .stderr()
      .split("\n")
      .filter((line) => line !== "");
    assert.equal(lines.length, 1, `one line, got: ${proc.stderr()}`);
    assert.doesNotMatch(lines[0]!, /\bat \S+:\d+|error:[0-9A-F]{8}/, "no stack, no OpenSSL text");
    return lines[0]!;
  }

  for (const command of [["echo"], ["serve"]]) {
    const name = `moonsocket ${command[0]}`;

    it(`${name}: a key that does not belong to the certificate`, async () => {
      assert.equal(
        await refused(command, cert, otherKey),
        `${name}: --tls-cert ${cert} does not match --tls-key ${otherKey}`,
      );
    });

    it(`${name}: a file that is not a PEM key, or not a PEM certificate`, async () => {
      assert.equal(
        await refused(command, cert, notPem),
        `${name}: --tls-key ${notPem}: not a PEM private key`,
      );
      assert.equal(
        await refused(command, notPem, key),
        `${name}: --tls-cert ${notPem}: not a PEM certificate`,
      );
    });

    it(`${name}: certificate and key given the wrong way round`, async () => {
      assert.match(
        await refused(command, key, cert),
        new RegExp(`^${name}: --tls-cert ${key}: not a PEM certificate .*swapped`),
      );
    });

    it(`${name}: a file that does not exist`, async () => {
      assert.equal(
        await refused(command, missing, key),
        `${name}: --tls-cert ${missing}: no such file`,
      );
    });
  }

  it("a matching pair still serves wss://", async () => {
    const proc = runCli(resources, ["echo", "--port", "0", "--tls-cert", cert, "--tls-key", key]);
    assert.match(await waitForBanner(proc), /^wss:\/\/127\.0\.0\.1:\d+\/$/);
  });
});
