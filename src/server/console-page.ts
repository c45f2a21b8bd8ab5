/**
 * The built-in console page: a WebSocket test client served at `/` when a server has no
 * static folder of its own (`ServerOptions.consolePage`), like websocketd's dev console.
 *
 * The page is one self-contained HTML document (inline CSS and JavaScript, an inline SVG
 * favicon, system fonts), so nothing is fetched from anywhere; a Content-Security-Policy with
 * the hashes of its own style and script keeps it that way. It never uses `innerHTML`: what a
 * server sends is shown with `textContent`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { StaticHandler } from "./static-files.js";

/** URL paths the console page answers (any query string is ignored). */
export const CONSOLE_PAGE_PATHS: readonly string[] = ["/", "/index.html"];

const STYLE = `
:root {
  color-scheme: dark light;
  --bg: #0f1222; --panel: #161a30; --line: #272c4e; --field: #0b0e1b; --text: #e8e9f3;
  --muted: #8d92b6; --accent: #f5c542; --accent-text: #1a1a1a; --in: #7fd1b9; --out: #f5c542;
  --event: #a9b1ff; --err: #ff8080; --focus: #8ab4ff;
}
@media (prefers-color-scheme: light) {
  :root {
    --bg: #f6f7fb; --panel: #ffffff; --line: #dde0ee; --field: #ffffff; --text: #1b1e2e;
    --muted: #62678a; --accent: #d9a400; --accent-text: #1a1a1a; --in: #0f7a5f;
    --out: #8a5d00; --event: #4350c4; --err: #c62828; --focus: #2f5fd0;
  }
}
* { box-sizing: border-box; }
html, body { height: 100%; }
body {
  margin: 0; display: flex; flex-direction: column; background: var(--bg); color: var(--text);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
}
header, .panel { padding: 10px 16px; border-bottom: 1px solid var(--line); background: var(--panel); }
header { display: flex; align-items: center; gap: 12px; flex-wrap: wrap; }
h1 { font-size: 17px; margin: 0; font-weight: 650; }
h1 .moon { color: var(--accent); }
#status {
  margin-left: auto; font-size: 13px; padding: 2px 10px; border-radius: 999px;
  border: 1px solid var(--line); color: var(--muted); white-space: nowrap;
}
#status.open { color: var(--in); border-color: var(--in); }
#status.closed { color: var(--err); border-color: var(--err); }
#status.connecting { color: var(--accent); border-color: var(--accent); }
form { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-end; margin: 0; }
label { display: flex; flex-direction: column; gap: 3px; font-size: 12px; color: var(--muted); }
.grow { flex: 3 1 16em; min-width: 0; }
.protocols { flex: 1 1 10em; min-width: 0; }
.buttons { display: flex; gap: 8px; }
input[type="text"], textarea {
  width: 100%; padding: 8px 10px; border-radius: 7px; border: 1px solid var(--line);
  background: var(--field); color: var(--text); font: 14px/1.4 ui-monospace, "SF Mono", Menlo, Consolas, monospace;
}
textarea { resize: vertical; min-height: 2.6em; max-height: 40vh; }
button {
  padding: 8px 14px; border-radius: 7px; border: 1px solid var(--line); background: var(--field);
  color: var(--text); font: inherit; font-size: 14px; cursor: pointer; white-space: nowrap;
}
button.primary { background: var(--accent); border-color: var(--accent); color: var(--accent-text); font-weight: 600; }
button:disabled { opacity: 0.45; cursor: default; }
:focus-visible { outline: 2px solid var(--focus); outline-offset: 1px; }
fieldset { border: 0; margin: 0; padding: 0; display: flex; gap: 2px; }
fieldset label { flex-direction: row; align-items: center; gap: 5px; font-size: 13px; color: var(--text); padding: 6px 8px 6px 0; }
.hint { font-size: 12px; color: var(--muted); margin: 6px 0 0; }
.problem { font-size: 13px; color: var(--err); margin: 6px 0 0; }
.problem:empty { display: none; }
.toolbar { display: flex; align-items: center; gap: 10px; padding: 6px 16px; font-size: 13px; color: var(--muted); }
.toolbar button { padding: 3px 10px; font-size: 13px; margin-left: auto; }
#log {
  flex: 1; min-height: 8em; overflow-y: auto; margin: 0; padding: 0 16px 16px; list-style: none;
  font: 13px/1.45 ui-monospace, "SF Mono", Menlo, Consolas, monospace;
}
#log li {
  display: grid; grid-template-columns: 12ch 5ch 10ch 10ch minmax(0, 1fr); gap: 0 10px;
  padding: 4px 0; border-bottom: 1px solid var(--line);
}
#log .meta { color: var(--muted); white-space: nowrap; }
#log .size { text-align: right; }
#log .data { white-space: pre-wrap; overflow-wrap: anywhere; }
#log .empty { color: var(--muted); font-style: italic; }
#log .more { display: block; color: var(--muted); font-style: italic; }
#log li.in .dir, #log li.in .data { color: var(--in); }
#log li.out .dir { color: var(--out); }
#log li.event .data { color: var(--event); }
#log li.error .data, #log li.close.unclean .data { color: var(--err); }
#log li.binary .data { letter-spacing: 0.02em; }
@media (max-width: 640px) {
  header, .panel, .toolbar { padding-left: 10px; padding-right: 10px; }
  #connect-form .grow { flex-basis: 100%; }
  .protocols { flex-basis: 7em; }
  button { padding: 8px 10px; }
  #log { padding: 0 10px 10px; }
  #log li { grid-template-columns: auto auto auto 1fr; }
  #log .size { text-align: left; }
  #log .data { grid-column: 1 / -1; }
}
`;

const SCRIPT = `
"use strict";
(function () {
  var MAX_ENTRIES = 2000;         // older log entries are dropped beyond this
  var PREVIEW_TEXT_CHARS = 1000;  // a longer text message is shown cut, with its full size
  var PREVIEW_BINARY_BYTES = 256; // likewise for binary, shown as hex
  var $ = function (id) { return document.getElementById(id); };
  var encoder = new TextEncoder();
  var socket = null;
  var reconnectPending = false;
  var sentHistory = [];
  var historyIndex = 0;
  var pinnedToBottom = true; // the log follows new entries unless the user scrolled up

  function defaultUrl() {
    var path = document.querySelector('meta[name="moonsocket-endpoint"]').content || "/";
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  }

  function clock() {
    var now = new Date();
    var pad = function (n, w) { return String(n).padStart(w, "0"); };
    return pad(now.getHours(), 2) + ":" + pad(now.getMinutes(), 2) + ":" +
      pad(now.getSeconds(), 2) + "." + pad(now.getMilliseconds(), 3);
  }

  function bytes(n) { return n.toLocaleString("en-US") + " B"; }

  function toHex(view) {
    var parts = new Array(view.length);
    for (var i = 0; i < view.length; i++) parts[i] = view[i].toString(16).padStart(2, "0");
    return parts.join(" ");
  }

  /** Bytes of hex digits (spaces and 0x prefixes allowed), or a message saying what is wrong. */
  function parseHex(input) {
    var digits = input.replace(/\\b0x/gi, "").replace(/\\s+/g, "");
    var bad = digits.search(/[^0-9a-fA-F]/);
    if (bad >= 0) {
      return { error: "not hex: '" + digits.charAt(bad) + "' (use 0-9 and a-f, spaces allowed, e.g. 48 69 21)" };
    }
    if (digits.length % 2 === 1) {
      return { error: "odd number of hex digits (" + digits.length + "): each byte takes two" };
    }
    var out = new Uint8Array(digits.length / 2);
    for (var i = 0; i < out.length; i++) out[i] = parseInt(digits.substr(i * 2, 2), 16);
    return { bytes: out };
  }

  function span(className, text) {
    var element = document.createElement("span");
    element.className = className;
    element.textContent = text;
    return element;
  }

  function addEntry(direction, type, size, content, note) {
    var log = $("log");
    var entry = document.createElement("li");
    entry.className = direction + " " + type;
    entry.dataset.direction = direction;
    entry.dataset.type = type;
    if (size !== null) entry.dataset.size = String(size);
    var arrow = direction === "in" ? "\\u2193 in" : direction === "out" ? "\\u2191 out" : "\\u2022";
    entry.append(
      span("meta time", clock()),
      span("meta dir", arrow),
      span("meta type", type),
      span("meta size", size === null ? "" : bytes(size)),
    );
    var data = span("data", content);
    if (content === "" && size === 0) data.append(span("empty", "(empty)"));
    if (note) data.append(span("more", note));
    entry.append(data);
    log.append(entry);
    while (log.children.length > MAX_ENTRIES) log.firstElementChild.remove();
    $("count").textContent = log.children.length === 1 ? "1 entry" : log.children.length + " entries";
    if (pinnedToBottom) log.scrollTop = log.scrollHeight;
    return entry;
  }

  function logMessage(direction, data) {
    if (typeof data === "string") {
      var size = encoder.encode(data).length;
      var cut = data.length > PREVIEW_TEXT_CHARS;
      // Not between the two halves of a surrogate pair (an emoji, say).
      var end = /[\\ud800-\\udbff]/.test(data.charAt(PREVIEW_TEXT_CHARS - 1)) ? PREVIEW_TEXT_CHARS - 1 : PREVIEW_TEXT_CHARS;
      addEntry(direction, "text", size, cut ? data.slice(0, end) : data,
        cut ? "\\u2026 cut: " + end.toLocaleString("en-US") + " of " +
          data.length.toLocaleString("en-US") + " characters shown" : "");
      return;
    }
    var view = new Uint8Array(data);
    var shown = view.subarray(0, PREVIEW_BINARY_BYTES);
    addEntry(direction, "binary", view.length, toHex(shown),
      view.length > shown.length ? "\\u2026 cut: " + bytes(shown.length) + " of " + bytes(view.length) + " shown" : "");
  }

  function logEvent(type, text) { return addEntry("event", type, null, text, ""); }

  function setStatus(state, text) {
    $("status").className = state;
    $("status").textContent = text;
    var open = state === "open";
    $("send").disabled = !open;
    $("disconnect").disabled = !(open || state === "connecting");
    $("connect").textContent = socket === null && !reconnectPending && state === "idle" ? "Connect" : "Reconnect";
  }

  /** What is wrong with a WebSocket URL, or "" (browsers would take a relative one). */
  function urlProblem(url) {
    var parsed;
    try {
      parsed = new URL(url);
    } catch (error) {
      return "not a URL: '" + url + "' (expected ws://host:port/path or wss://\u2026)";
    }
    if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
      return "the URL must start with ws:// or wss://, not " + parsed.protocol + "//";
    }
    return "";
  }

  function showProblem(id, text) { $(id).textContent = text; }

  function connect() {
    showProblem("connect-problem", "");
    if (socket !== null) {
      // Reconnect: close this connection first, so its close is logged before the next open.
      reconnectPending = true;
      if (socket.readyState === WebSocket.CONNECTING || socket.readyState === WebSocket.OPEN) {
        socket.close(1000, "reconnecting");
      }
      return;
    }
    var url = $("url").value.trim();
    var problem = urlProblem(url);
    if (problem) {
      showProblem("connect-problem", problem);
      logEvent("error", "cannot connect: " + problem);
      setStatus("closed", "not connected");
      return;
    }
    var protocols = $("protocols").value.split(/[\\s,]+/).filter(Boolean);
    var next;
    try {
      next = new WebSocket(url, protocols);
    } catch (error) {
      showProblem("connect-problem", error.message);
      logEvent("error", "cannot connect: " + error.message);
      setStatus("closed", "not connected");
      return;
    }
    socket = next;
    next.binaryType = "arraybuffer";
    setStatus("connecting", "connecting\\u2026");
    logEvent("connecting", "connecting to " + url + (protocols.length ? " (subprotocols offered: " + protocols.join(", ") + ")" : ""));
    next.onopen = function () {
      setStatus("open", next.protocol ? "open \\u00b7 " + next.protocol : "open");
      logEvent("open", "open: subprotocol " + (next.protocol ? "'" + next.protocol + "'" : "none") +
        (next.extensions ? ", extensions: " + next.extensions : ""));
      $("message").focus();
    };
    next.onmessage = function (event) { logMessage("in", event.data); };
    next.onerror = function () {
      logEvent("error", "error: the connection failed or broke (browsers give no detail; the server log may say why)");
    };
    next.onclose = function (event) {
      var entry = logEvent("close", "closed: code " + event.code +
        (event.reason ? ", reason '" + event.reason + "'" : ", no reason") +
        (event.wasClean ? ", clean (wasClean: true)" : ", not clean (wasClean: false)"));
      entry.dataset.code = String(event.code);
      entry.dataset.reason = event.reason;
      if (!event.wasClean) entry.classList.add("unclean");
      socket = null;
      setStatus("closed", "closed \\u00b7 " + event.code);
      if (reconnectPending) {
        reconnectPending = false;
        connect();
      }
    };
  }

  function send() {
    var text = $("message").value;
    var binary = $("kind-binary").checked;
    if (socket === null || socket.readyState !== WebSocket.OPEN) {
      showProblem("send-problem", "not connected: press Connect first");
      return;
    }
    if (binary) {
      var parsed = parseHex(text);
      if (parsed.error) {
        showProblem("send-problem", parsed.error);
        return;
      }
      socket.send(parsed.bytes);
      logMessage("out", parsed.bytes.buffer);
    } else {
      socket.send(text);
      logMessage("out", text);
    }
    showProblem("send-problem", "");
    if (text !== "" && sentHistory[sentHistory.length - 1] !== text) sentHistory.push(text);
    historyIndex = sentHistory.length;
    $("message").value = "";
  }

  function recall(step) {
    var index = historyIndex + step;
    if (index < 0 || index > sentHistory.length) return false;
    historyIndex = index;
    $("message").value = index === sentHistory.length ? "" : sentHistory[index];
    return true;
  }

  $("connect-form").addEventListener("submit", function (event) {
    event.preventDefault();
    connect();
  });
  $("disconnect").addEventListener("click", function () {
    if (socket !== null) socket.close(1000, "closed from the console");
  });
  $("send-form").addEventListener("submit", function (event) {
    event.preventDefault();
    send();
  });
  $("message").addEventListener("keydown", function (event) {
    var field = event.target;
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    } else if (event.key === "ArrowUp" && field.selectionStart === 0 && field.selectionEnd === 0) {
      if (recall(-1)) event.preventDefault();
    } else if (event.key === "ArrowDown" && field.selectionStart === field.value.length) {
      if (recall(1)) event.preventDefault();
    }
  });
  $("message").addEventListener("input", function () { showProblem("send-problem", ""); });
  $("kind").addEventListener("change", function () {
    showProblem("send-problem", "");
    $("message").placeholder = $("kind-binary").checked
      ? "hex bytes, e.g. 48 69 21"
      : "a text message \\u2014 Enter sends, Shift+Enter for a new line";
  });
  $("clear").addEventListener("click", function () {
    $("log").replaceChildren();
    $("count").textContent = "0 entries";
  });

  $("log").addEventListener("scroll", function () {
    var log = $("log");
    pinnedToBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  });
  // The log shrinks when a message under the form appears: stay at the bottom if it was.
  new ResizeObserver(function () {
    if (pinnedToBottom) $("log").scrollTop = $("log").scrollHeight;
  }).observe($("log"));

  $("url").value = defaultUrl();
  setStatus("idle", "not connected");
  connect();
})();
`;

/** A `'sha256-…'` CSP source for an inline element's exact text. */
function cspHash(text: string): string {
  return `'sha256-${createHash("sha256").update(text, "utf8").digest("base64")}'`;
}

/**
 * The page's Content-Security-Policy: only its own inline style and script run, images only
 * from `data:` (the favicon), and connections only to WebSocket URLs (any host, since the URL
 * field is editable).
 */
export const CONSOLE_PAGE_CSP = [
  "default-src 'none'",
  `script-src ${cspHash(SCRIPT)}`,
  `style-src ${cspHash(STYLE)}`,
  "img-src data:",
  "connect-src ws: wss:",
  "base-uri 'none'",
  "form-action 'none'",
].join("; ");

// A crescent moon; `#` is percent-encoded because it would end the data: URI.
const FAVICON =
  "data:image/svg+xml," +
  "%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'%3E" +
  "%3Cpath fill='%23f5c542' d='M20 3a13 13 0 1 0 9 22A11 11 0 0 1 20 3z'/%3E%3C/svg%3E";

/** Escapes text for an HTML attribute value in double quotes. */
function escapeAttribute(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");
}

/**
 * The console page's HTML. `endpointPath` is the path its URL field starts with (on the
 * page's own host); the user may edit it.
 */
export function renderConsolePage(endpointPath: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="moonsocket-endpoint" content="${escapeAttribute(endpointPath)}">
<title>moonsocket console</title>
<link rel="icon" href="${FAVICON}">
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1><span class="moon" aria-hidden="true">\u263e</span> moonsocket console</h1>
  <span id="status" role="status">not connected</span>
</header>
<section class="panel" aria-label="Connection">
  <form id="connect-form">
    <label class="grow">WebSocket URL<input id="url" type="text" autocomplete="off" spellcheck="false" inputmode="url"></label>
    <label class="protocols">Subprotocols (optional)<input id="protocols" type="text" autocomplete="off" spellcheck="false" placeholder="e.g. chat, json"></label>
    <span class="buttons">
      <button id="connect" class="primary" type="submit">Connect</button>
      <button id="disconnect" type="button" disabled>Disconnect</button>
    </span>
  </form>
  <p id="connect-problem" class="problem" role="alert"></p>
</section>
<section class="panel" aria-label="Send">
  <form id="send-form">
    <fieldset id="kind" aria-label="Message type">
      <label><input id="kind-text" type="radio" name="kind" value="text" checked>Text</label>
      <label><input id="kind-binary" type="radio" name="kind" value="binary">Binary (hex)</label>
    </fieldset>
    <label class="grow">Message<textarea id="message" rows="1" spellcheck="false" placeholder="a text message \u2014 Enter sends, Shift+Enter for a new line"></textarea></label>
    <button id="send" class="primary" type="submit" disabled>Send</button>
  </form>
  <p id="send-problem" class="problem" role="alert"></p>
  <p class="hint">Pings and pongs are answered by the browser itself: a page can neither send nor see them.</p>
</section>
<div class="toolbar"><span>Log</span><span id="count">0 entries</span><button id="clear" type="button">Clear log</button></div>
<ol id="log" role="log" aria-label="Messages and connection events"></ol>
<script>${SCRIPT}</script>
</body>
</html>
`;
}

/**
 * Creates a handler that serves the console page at {@link CONSOLE_PAGE_PATHS} (GET and HEAD;
 * 405 for other methods there) and resolves `false` for every other path, so the caller can
 * 404. The page is rendered once.
 */
export function createConsolePageHandler(endpointPath: string): StaticHandler {
  const body = Buffer.from(renderConsolePage(endpointPath), "utf8");
  return async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? "/").split("?", 1)[0];
    if (path === undefined || !CONSOLE_PAGE_PATHS.includes(path)) return false;
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { Allow: "GET, HEAD", "Content-Type": "text/plain; charset=utf-8" });
      res.end("Method Not Allowed\n");
      return true;
    }
    res.writeHead(200, {
      "Content-Type": "text/html; charset=utf-8",
      "Content-Length": body.length,
      "Content-Security-Policy": CONSOLE_PAGE_CSP,
      "X-Content-Type-Options": "nosniff",
      "Cache-Control": "no-cache",
    });
    res.end(req.method === "HEAD" ? undefined : body);
    return true;
  };
}
