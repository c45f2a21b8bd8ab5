/**
 * Reads and checks the `--tls-cert` and `--tls-key` files before the server uses them, so that
 * a wrong file is reported as one line naming the file and the problem instead of an OpenSSL
 * error or a stack trace.
 *
 * @module
 */

import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";
import { ArgsError } from "./args.js";

/** PEM contents of a certificate (chain) and its private key, checked to belong together. */
export interface TlsFiles {
  readonly cert: Buffer;
  readonly key: Buffer;
}

/**
 * Reads `certFile` and `keyFile` and checks them: each exists and is readable, the certificate
 * is a PEM certificate, the key a PEM private key without a passphrase, and the key is the
 * certificate's. `command` starts the message (`moonsocket serve: …`).
 * @throws {ArgsError} (exit 2) naming the file and what is wrong, e.g.
 *   `--tls-key key.pem: not a PEM private key`, `--tls-cert cert.pem does not match --tls-key key.pem`.
 */
export function loadTlsFiles(command: string, certFile: string, keyFile: string): TlsFiles {
  const fail = (problem: string) => new ArgsError(`moonsocket ${command}: ${problem}`);
  const cert = readFlagFile("--tls-cert", certFile, fail);
  const key = readFlagFile("--tls-key", keyFile, fail);

  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(cert);
  } catch {
    throw fail(`--tls-cert ${certFile}: not a PEM certificate${hintSwapped(cert, "cert")}`);
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ERR_MISSING_PASSPHRASE") {
      throw fail(
        `--tls-key ${keyFile}: the key is encrypted with a passphrase; ` +
          `decrypt it first (openssl pkey -in ${keyFile} -out plain-key.pem)`,
      );
    }
    throw fail(`--tls-key ${keyFile}: not a PEM private key${hintSwapped(key, "key")}`);
  }
  if (!certificate.checkPrivateKey(privateKey)) {
    throw fail(`--tls-cert ${certFile} does not match --tls-key ${keyFile}`);
  }
  try {
    // Anything OpenSSL still refuses (a key type it cannot use for TLS, say).
    createSecureContext({ cert, key });
  } catch (error) {
    throw fail(`--tls-cert ${certFile} with --tls-key ${keyFile}: ${(error as Error).message}`);
  }
  return { cert, key };
}

function readFlagFile(flag: string, file: string, fail: (problem: string) => Error): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw fail(`${flag} ${file}: no such file`);
    if (code === "EISDIR") throw fail(`${flag} ${file}: is a folder, not a file`);
    if (code === "EACCES") throw fail(`${flag} ${file}: permission denied`);
    throw fail(`${flag} ${file}: cannot read it (${(error as Error).message})`);
  }
}

/** A hint when the file holds what the other flag expects (the two given the wrong way round). */
function hintSwapped(contents: Buffer, expected: "cert" | "key"): string {
  const text = contents.toString("latin1");
  if (expected === "cert" && /-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text))
    return " (it holds a private key: are --tls-cert and --tls-key swapped?)";
  if (expected === "key" && text.includes("-----BEGIN CERTIFICATE-----"))
    return " (it holds a certificate: are --tls-cert and --tls-key swapped?)";
  return "";
}
