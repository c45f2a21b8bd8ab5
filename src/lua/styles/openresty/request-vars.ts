import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { HostReturn } from "../../vm/engine.js";
import { formatTimeLocal } from "./ngx-time.js";
import { firstHeader, type Request } from "./request.js";

// ngx.var and ngx.req of a request: what nginx's variables and request API say about it.

/** ngx.var.NAME of `request`: a string, or null when not set (or no request). */
export function requestVariable(
  request: Request | undefined,
  name: string,
  secure: boolean,
): string | null {
  if (request === undefined) return null;
  const req = request.req;
  const url = req.url ?? "/";
  const queryAt = url.indexOf("?");
  const path = queryAt < 0 ? url : url.slice(0, queryAt);
  const query = queryAt < 0 ? null : url.slice(queryAt + 1);
  switch (name) {
    case "remote_addr":
      return req.socket.remoteAddress ?? "";
    case "remote_port":
      return String(req.socket.remotePort ?? "");
    case "server_addr":
      return req.socket.localAddress ?? "";
    case "server_port":
      return String(req.socket.localPort ?? "");
    case "uri":
    case "document_uri":
      return decodePath(path);
    case "request_uri":
      return url;
    case "args":
    case "query_string":
      return query;
    case "is_args":
      return query === null ? "" : "?";
    case "host": {
      const host = firstHeader(req, "host");
      return host === undefined
        ? "localhost"
        : host
            .replace(/:\d*$/, "")
            .replace(/^\[(.*)\]$/, "[$1]")
            .toLowerCase();
    }
    case "hostname":
      return hostname();
    case "scheme":
      return secure ? "https" : "http";
    case "https":
      return secure ? "on" : "";
    case "request_method":
      return req.method ?? "GET";
    case "server_protocol":
      return `HTTP/${req.httpVersion}`;
    case "connection":
      return String(request.handle);
    case "request_id":
      request.requestId ??= randomBytes(16).toString("hex");
      return request.requestId;
    case "msec":
      return (Date.now() / 1000).toFixed(3);
    case "time_local":
      return formatTimeLocal(new Date());
    case "request_time":
      return ((Date.now() - request.startTime) / 1000).toFixed(3);
  }
  if (name.startsWith("http_")) {
    const value = req.headers[name.slice(5).replace(/_/g, "-").toLowerCase()];
    return value === undefined ? null : Array.isArray(value) ? value.join(", ") : value;
  }
  if (name.startsWith("arg_")) {
    if (query === null) return null;
    const wanted = name.slice(4).toLowerCase();
    for (const part of query.split("&")) {
      const eq = part.indexOf("=");
      const key = eq < 0 ? part : part.slice(0, eq);
      if (key.toLowerCase() === wanted) return eq < 0 ? "" : part.slice(eq + 1);
    }
    return null;
  }
  if (name.startsWith("cookie_")) {
    const cookie = req.headers.cookie;
    if (cookie === undefined) return null;
    const wanted = name.slice(7);
    for (const part of cookie.split(/;\s*/)) {
      const eq = part.indexOf("=");
      if (eq > 0 && part.slice(0, eq) === wanted) return part.slice(eq + 1);
    }
    return null;
  }
  return null;
}

/** ngx.req.* facts of `request`. */
export function requestInfo(request: Request | undefined, what: string): HostReturn {
  if (request === undefined) return null;
  const req = request.req;
  switch (what) {
    case "headers":
      return req.rawHeaders.map((item) => Buffer.from(item, "latin1"));
    case "args": {
      const url = req.url ?? "/";
      const queryAt = url.indexOf("?");
      return queryAt < 0 ? null : url.slice(queryAt + 1);
    }
    case "method":
      return req.method ?? "GET";
    case "http_version":
      return Number(req.httpVersion);
    case "start_time":
      return request.startTime / 1000;
    case "raw_header":
    case "raw_header_only": {
      let head =
        what === "raw_header" ? `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n` : "";
      for (let i = 0; i < req.rawHeaders.length; i += 2)
        head += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
      return Buffer.from(`${head}\r\n`, "latin1");
    }
  }
  return null;
}

/** nginx's $uri: the path with %XX decoded (left as is when malformed). */
function decodePath(path: string): string {
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}
