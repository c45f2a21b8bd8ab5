import type { WebSocketServer } from "../server/server.js";

/** Explains a listen error in the user's terms (a port in use, a privileged port). */
export function describeListenError(
  error: NodeJS.ErrnoException,
  port: number,
  host: string,
): string {
  if (error.code === "EADDRINUSE")
    return `port ${port} on ${host} is already in use: stop the other server or pick another port with --port`;
  if (error.code === "EACCES")
    return `no permission to listen on port ${port}: use a port above 1023`;
  if (error.code === "EADDRNOTAVAIL" || error.code === "ENOTFOUND")
    return `cannot listen on ${host}: no such local address (try --host 127.0.0.1)`;
  return error.message;
}

/**
 * The URL clients connect to, for banners: the server's URL with its first endpoint path
 * (`--path /chat` → ws://127.0.0.1:8085/chat), or with `/` when every path is served.
 */
export function describeEndpoint(server: WebSocketServer): string {
  const [first] = server.endpointPaths ?? [];
  return first === undefined ? server.url : `${server.url.replace(/\/$/, "")}${first}`;
}

/**
 * Starts `server`, prints where it listens, and on SIGINT/SIGTERM shuts it down gracefully
 * (clients closed with 1001). Resolves with the process exit code.
 */
export async function runUntilSignal(
  server: WebSocketServer,
  command: string,
  banner?: (url: string) => string,
): Promise<number> {
  try {
    await server.listen();
  } catch (error) {
    const { port, host } = server.options;
    process.stderr.write(
      `moonsocket ${command}: ${describeListenError(error as NodeJS.ErrnoException, port, host)}\n`,
    );
    return 1;
  }
  const url = describeEndpoint(server);
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        process.stderr.write(`moonsocket ${command}: ${signal} again, exiting now\n`);
        process.exit(1);
      }
      stopping = true;
      server.close().then(
        () => resolve(0),
        (error: unknown) => {
          process.stderr.write(`moonsocket ${command}: shutdown failed: ${String(error)}\n`);
          resolve(1);
        },
      );
    };
    process.on("SIGINT", () => stop("SIGINT"));
    process.on("SIGTERM", () => stop("SIGTERM"));
    // The banner comes only once the signal handlers are in place: a supervisor (or a test)
    // that waits for it and then sends SIGTERM must get a graceful shutdown, not the default
    // action of a signal that arrived a moment too early.
    process.stdout.write(banner ? banner(url) : `moonsocket ${command} listening on ${url}\n`);
  });
}
