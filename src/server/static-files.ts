/**
 * Serves files from one folder over plain HTTP (`--static DIR`): GET and HEAD, `index.html` for
 * directories, conditional requests, and no way out of the folder.
 *
 * Path safety is layered: every URL segment is percent-decoded on its own and refused if it
 * decodes to `..`, `.`, or holds `/`, `\` or NUL; dotfiles are never served; the result is
 * resolved with `realpath` and must still lie inside the (realpath of the) root, so a symlink
 * pointing outside is refused too; the file is opened with `O_NOFOLLOW` so it cannot be
 * swapped for a symlink between the check and the open.
 *
 * @module
 */

import { constants, realpathSync, type Stats, statSync } from "node:fs";
import { type FileHandle, open, realpath, stat } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import path from "node:path";
import { pipeline } from "node:stream/promises";

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
 * @throws {Error} if `rootDir` does not exist or is not a directory (checked now, so a wrong
 *   `--static` fails at startup rather than on the first request).
 */
export function createStaticHandler(
  rootDir: string,
  options: StaticHandlerOptions = {},
): StaticHandler {
  const root = realpathSync(rootDir);
  if (!statSync(root).isDirectory()) throw new Error(`${rootDir} is not a directory`);
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
    const { segments } = target;

    const found = await resolveFile(root, target, index);
    if (found === undefined) return false;
    if (req.method !== "GET" && req.method !== "HEAD") {
      sendStatus(res, 405, "Method Not Allowed", { Allow: "GET, HEAD" });
      return true;
    }
    if (found.kind === "directory") {
      // Relative links in the index page need the slash; the Location is rebuilt from the
      // checked segments, never copied from the request (`//evil.example/` would be an open
      // redirect).
      const query = (req.url ?? "").match(/\?[^#]*/)?.[0] ?? "";
      res.writeHead(301, { Location: `${encodeSegments(segments)}/${query}`, "Content-Length": 0 });
      res.end();
      return true;
    }

    let file: FileHandle;
    try {
      // O_NOFOLLOW: the path was checked symlink-free by realpath; refuse it if it became one.
      file = await open(found.path, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0));
    } catch (error) {
      if (isMissing(error)) return false;
      sendStatus(res, 500, "Internal Server Error");
      return true;
    }
    try {
      const stats = await file.stat();
      if (!stats.isFile()) return false;
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
        return true;
      }
      headers["Content-Type"] = getContentType(found.name);
      headers["Content-Length"] = stats.size;
      res.writeHead(200, headers);
      if (req.method === "HEAD" || stats.size === 0) {
        res.end();
        return true;
      }
      const stream = file.createReadStream({ start: 0, end: stats.size - 1, autoClose: false });
      try {
        await pipeline(stream, res);
      } catch {
        // A client that went away, or a read error after the headers were sent: pipeline has
        // destroyed the response (the client sees a truncated body); nothing else to do.
      }
      return true;
    } catch {
      if (!res.headersSent) sendStatus(res, 500, "Internal Server Error");
      else res.destroy();
      return true;
    } finally {
      await file.close().catch(() => {});
    }
  };
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

type Found =
  | { readonly kind: "file"; readonly path: string; readonly name: string }
  | { readonly kind: "directory" };

/** Resolves the segments to a regular file inside `root` (index file for a directory). */
async function resolveFile(
  root: string,
  { segments, trailingSlash }: UrlPath,
  index: string,
): Promise<Found | undefined> {
  const target = await realpathInside(root, path.join(root, ...segments));
  if (target === undefined) return undefined;
  if (target.stats.isDirectory()) {
    if (!trailingSlash) {
      return { kind: "directory" };
    }
    const indexTarget = await realpathInside(root, path.join(target.path, index));
    if (indexTarget === undefined || !indexTarget.stats.isFile()) return undefined;
    return { kind: "file", path: indexTarget.path, name: index };
  }
  if (!target.stats.isFile()) return undefined;
  return { kind: "file", path: target.path, name: segments[segments.length - 1] ?? "" };
}

/** The real path of `candidate` and its stats, if it exists and lies inside `root`. */
async function realpathInside(
  root: string,
  candidate: string,
): Promise<{ path: string; stats: Stats } | undefined> {
  let real: string;
  try {
    real = await realpath(candidate);
  } catch {
    return undefined;
  }
  const relative = path.relative(root, real);
  if (relative === ".." || relative.startsWith(`..${path.sep}`) || path.isAbsolute(relative)) {
    return undefined;
  }
  // A symlink inside the root may still point at a dotfile (or into a dot folder) inside it.
  if (relative !== "" && relative.split(path.sep).some((part) => part.startsWith("."))) {
    return undefined;
  }
  try {
    return { path: real, stats: await stat(real) };
  } catch {
    return undefined;
  }
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

function isMissing(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return (
    code === "ENOENT" ||
    code === "ENOTDIR" ||
    code === "ELOOP" ||
    code === "EACCES" ||
    code === "EPERM" ||
    code === "EISDIR"
  );
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
