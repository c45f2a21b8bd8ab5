import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

/**
 * A fresh key and self-signed certificate for CN=localhost (valid one day), made with the
 * system's openssl; or, when openssl cannot be used, the reason (for a test skip message).
 * `dir` holds cert.pem and key.pem, for tests that pass file paths.
 */
export function makeCertificate(): { cert: Buffer; key: Buffer; dir: string } | string {
  const dir = mkdtempSync(path.join(tmpdir(), "moonsocket-cert-"));
  const keyFile = path.join(dir, "key.pem");
  const certFile = path.join(dir, "cert.pem");
  const result = spawnSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-subj",
      "/CN=localhost",
      "-days",
      "1",
      "-keyout",
      keyFile,
      "-out",
      certFile,
    ],
    { stdio: "pipe", timeout: 20_000 },
  );
  if (result.error !== undefined || result.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    return `openssl is not usable here (${result.error?.message ?? result.stderr.toString().trim()})`;
  }
  return { cert: readFileSync(certFile), key: readFileSync(keyFile), dir };
}
