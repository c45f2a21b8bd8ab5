/**
 * Serves files from one folder over plain HTTP (`--static DIR`): GET and HEAD, `index.html` for
 * directories, conditional requests, and no way out of the folder.
 *
 * Path safety is layered: every URL segment is percent-decoded on its own and refused if it
 * decodes to `..`, `.`, or holds `/`, `\` or NUL; dotfiles are never served; and the file is
 * opened first and served only if what was opened lies inside the folder (see
 * {@link StaticRoot}), so no symlink, however and whenever placed, leads out of it.
 *
 * @module
 */

import type { Stats } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { StaticRoot } from "./static-root.js";

/** Options of {@link createStaticHandler}. */
export interface StaticHandlerOptions {
  /** File served for a directory. Default `"index.html"`. */
  readonly index?: string;
  /** Send a weak `ETag` (from size and mtime) and honour `If-None-Match`. Default `true`. */
  readonly etag?: boolean;
  /**
   * `Cache-Control` header value, or `false` to send none. Default `"no-cache"`: browsers may
   * keep files but revalidate each time, which suits a front end edited during development.
   */
  readonly cacheControl?: string | false;
}

/**
 * Handles one request. Resolves `true` once it has answered (a file, 304, 301 to add the
 * trailing slash of a directory, 400 for a malformed or hostile path, 405 for another method
 * on an existing file, 500 if the file could not be opened), and `false` without touching
 * `res` when there is no such file, so the caller can 404 or try something else. For a file
 * it resolves when the body has been sent or the transfer was abandoned; it never rejects.
 */
export type StaticHandler = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

const TEXT = "; charset=utf-8";
const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".html": `text/html${TEXT}`,
  ".htm": `text/html${TEXT}`,
  ".js": `text/javascript${TEXT}`,
  ".mjs": `text/javascript${TEXT}`,
  ".css": `text/css${TEXT}`,
  ".json": `application/json${TEXT}`,
  ".map": `application/json${TEXT}`,
  ".svg": `image/svg+xml${TEXT}`,
  ".txt": `text/plain${TEXT}`,
  ".md": `text/markdown${TEXT}`,
  // Served as plain text so a browser shows a script instead of downloading it.
  ".lua": `text/plain${TEXT}`,
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".gif": "image/gif",
  ".ico": "image/x-icon",
  ".webp": "image/webp",
  ".avif": "image/avif",
  ".woff": "font/woff",
  ".woff2": "font/woff2",
  ".ttf": "font/ttf",
  ".otf": "font/otf",
  ".wasm": "application/wasm",
};

/**
 * Returns the `Content-Type` for a file name from its extension (case-insensitive), with
 * `; charset=utf-8` on text types, or `application/octet-stream` when the extension is unknown.
 */
export function getContentType(fileName: string): string {
  return CONTENT_TYPES[path.extname(fileName).toLowerCase()] ?? "application/octet-stream";
}

/**
 * Creates a handler serving the files under `rootDir`.
 * @throws {Error} "static folder DIR does not exist" (or "is not a folder"), checked now so a
 *   wrong `--static` fails at startup rather than on the first request.
 */
export function createStaticHandler(
  rootDir: string,
  options: StaticHandlerOptions = {},
): StaticHandler {
  const root = StaticRoot.open(rootDir);
  const index = options.index ?? "index.html";
  const useEtag = options.etag ?? true;
  const cacheControl = options.cacheControl ?? "no-cache";

  return async (req, res) => {
    const target = splitUrlPath(req.url ?? "/");
    if (target === "bad") {
      sendStatus(res, 400, "Bad Request");
      return true;
    }
    if (target === undefined) return false;

    let found: Found | undefined;
    try {
      found = await findFile(root, target, index);
    } catch {
      sendStatus(res, 500, "Internal Server Error");
      return true;
    }
    if (found === undefined) return false;
    if (req.method !== "GET" && req.method !== "HEAD") {
      if (found.kind === "file") await found.handle.close().catch(() => {});
      sendStatus(res, 405, "Method Not Allowed", { Allow: "GET, HEAD" });
      return true;
    }
    if (found.kind === "directory") {
      // Relative links in the index page need the slash; the Location is rebuilt from the
      // checked segments, never copied from the request (`//evil.example/` would be an open
      // redirect).
      const query = (req.url ?? "").match(/\?[^#]*/)?.[0] ?? "";
      res.writeHead(301, {
        Location: `${encodeSegments(target.segments)}/${query}`,
        "Content-Length": 0,
      });
      res.end();
      return true;
    }
    await sendFile(req, res, found, { useEtag, cacheControl });
    return true;
  };
}

/**
 * Answers with an open file (200 or 304), from its descriptor only, and closes it. Never
 * rejects: a failure before the headers is a 500, after them a cut connection.
 */
async function sendFile(
  req: IncomingMessage,
  res: ServerResponse,
  { handle, stats, name }: OpenFile,
  { useEtag, cacheControl }: { useEtag: boolean; cacheControl: string | false },
): Promise<void> {
  try {
    const headers: Record<string, string | number> = {
      "Last-Modified": stats.mtime.toUTCString(),
      "X-Content-Type-Options": "nosniff",
    };
    if (cacheControl !== false) headers["Cache-Control"] = cacheControl;
    const etag = useEtag ? `W/"${stats.size.toString(16)}-${stats.mtimeMs.toString(16)}"` : "";
    if (useEtag) headers.ETag = etag;

    if (isNotModified(req, stats, useEtag ? etag : undefined)) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    headers["Content-Type"] = getContentType(name);
    headers["Content-Length"] = stats.size;
    res.writeHead(200, headers);
    if (req.method === "HEAD" || stats.size === 0) {
      res.end();
      return;
    }
    const stream = handle.createReadStream({ start: 0, end: stats.size - 1, autoClose: false });
    try {
      await pipeline(stream, res);
    } catch {
      // A client that went away, or a read error after the headers were sent: pipeline has
      // destroyed the response (the client sees a truncated body); nothing else to do.
    }
  } catch {
    if (!res.headersSent) sendStatus(res, 500, "Internal Server Error");
    else res.destroy();
  } finally {
    await handle.close().catch(() => {});
  }
}

interface UrlPath {
  /** Decoded segments, empty ones dropped. */
  readonly segments: readonly string[];
  /** The path ends with `/` (or is `/`): a directory may be answered with its index. */
  readonly trailingSlash: boolean;
}

/**
 * Splits and decodes the path part of a request target. Returns `"bad"` for malformed or
 * hostile paths (→ 400), or `undefined` for paths this handler never serves (dotfiles, or a
 * target that is not origin-form such as `*`).
 */
function splitUrlPath(url: string): UrlPath | "bad" | undefined {
  const end = url.search(/[?#]/);
  const rawPath = end === -1 ? url : url.slice(0, end);
  if (!rawPath.startsWith("/")) return undefined;
  const segments: string[] = [];
  let dotfile = false;
  for (const raw of rawPath.split("/")) {
    let segment: string;
    try {
      segment = decodeURIComponent(raw);
    } catch {
      return "bad";
    }
    if (segment === "") continue;
    // After decoding, a segment must name one entry: `%2f`, `\` (a separator on Windows), NUL
    // and dot segments are how traversal attempts look, so they get a 400 rather than a lookup.
    if (segment === "." || segment === ".." || /[/\\\0]/.test(segment)) return "bad";
    if (segment.startsWith(".")) dotfile = true;
    segments.push(segment);
  }
  return dotfile ? undefined : { segments, trailingSlash: rawPath.endsWith("/") };
}

/** A regular file inside the root, open, with the name that gives its content type. */
interface OpenFile {
  readonly kind: "file";
  readonly handle: FileHandle;
  readonly stats: Stats;
  readonly name: string;
}

type Found = OpenFile | { readonly kind: "directory" };

/**
 * Opens the file the URL names inside `root` (the index file for a directory named with its
 * trailing slash); `{ kind: "directory" }` for a directory named without it.
 */
async function findFile(
  root: StaticRoot,
  { segments, trailingSlash }: UrlPath,
  index: string,
): Promise<Found | undefined> {
  if (trailingSlash) {
    // The index first: one open for the commonest page request, and no need to open (read)
    // the folder itself.
    const indexEntry = await root.open([...segments, index]);
    if (indexEntry?.kind === "file") return { ...indexEntry, name: index };
  }
  const entry = await root.open(segments);
  if (entry?.kind === "file") return { ...entry, name: segments[segments.length - 1] ?? "" };
  return entry?.kind === "directory" && !trailingSlash ? entry : undefined;
}

function isNotModified(req: IncomingMessage, stats: Stats, etag: string | undefined): boolean {
  // RFC 9110 §13.1.2: when If-None-Match is present, If-Modified-Since is ignored.
  const ifNoneMatch = req.headers["if-none-match"];
  if (ifNoneMatch !== undefined) {
    if (etag === undefined) return false;
    const opaque = etag.slice(2);
    return ifNoneMatch
      .split(",")
      .map((tag) => tag.trim())
      .some((tag) => tag === "*" || tag === etag || tag === opaque);
  }
  const ifModifiedSince = req.headers["if-modified-since"];
  if (ifModifiedSince === undefined) return false;
  const since = Date.parse(ifModifiedSince);
  // HTTP dates have one-second resolution, so compare the mtime truncated to the second.
  return !Number.isNaN(since) && Math.floor(stats.mtimeMs / 1000) * 1000 <= since;
}

function encodeSegments(segments: readonly string[]): string {
  return `/${segments.map(encodeURIComponent).join("/")}`;
}

function sendStatus(
  res: ServerResponse,
  status: number,
  text: string,
  extra: Record<string, string> = {},
): void {
  const body = `${text}\n`;
  res.writeHead(status, {
    ...extra,
    "Content-Type": `text/plain${TEXT}`,
    "Content-Length": Buffer.byteLength(body),
  });
  res.end(body);
}
