/**
 * The built `moonsocket` command as a user runs it, for integration tests: a child process
 * with its output collected, its exit awaited, and its banner waited for.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { PATIENCE_MS, type Resources, waitUntil, withTimeout } from "./net-helpers.js";

/** The compiled CLI entry point. */
export const CLI_MAIN = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));

/** A running `moonsocket` process. */
export interface CliRun {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (or the signal name) when the process ends. */
  readonly exited: Promise<number | string>;
}

/**
 * Spawns `moonsocket ARGS…` (stdin from `input`, or closed); `resources` kills it after the
 * test if it is still running.
 */
export function runCli(resources: Resources, args: readonly string[], input?: string): CliRun {
  const child = spawn(process.execPath, [CLI_MAIN, ...args], {
    stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  if (input !== undefined) child.stdin!.end(input);
  const exited = new Promise<number | string>((resolve) =>
    child.on("exit", (code, signal) => resolve(code ?? signal ?? -1)),
  );
  resources.add(child, (c) => {
    if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    return exited;
  });
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

/** Waits for the process to exit (a safety net: PATIENCE_MS) and resolves with its exit code. */
export function exitCode(run: CliRun, ms = PATIENCE_MS): Promise<number | string> {
  return withTimeout(run.exited, ms, `moonsocket to exit (stderr: ${run.stderr()})`);
}

/**
 * Waits until stdout says "listening on ws://…" and resolves with that URL (path included).
 * Rejects if the process exits first.
 */
export async function waitForBanner(run: CliRun, ms = PATIENCE_MS): Promise<string> {
  let url = "";
  let exited = false;
  void run.exited.then(() => {
    exited = true;
  });
  await waitUntil(
    () => {
      const match = /listening on (wss?:\/\/\S+)/.exec(run.stdout());
      if (match) url = match[1]!;
      return url !== "" || exited;
    },
    ms,
    "the listening banner",
  );
  if (url === "") throw new Error(`moonsocket exited before listening: ${run.stderr()}`);
  return url;
}
