import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { HandshakeError } from "../../../src/protocol/errors.js";
import {
  buildErrorResponse,
  buildUpgradeResponse,
  computeAcceptKey,
  generateKey,
  type HeaderMap,
  isValidKey,
  parseUpgradeRequest,
  parseUpgradeResponse,
  splitHeaderList,
} from "../../../src/protocol/handshake.js";

/** RFC 6455 §1.3's example key and accept value. */
const KEY = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

function request(overrides: Record<string, string | string[] | undefined> = {}): HeaderMap {
  return {
    host: "example.com",
    upgrade: "websocket",
    connection: "Upgrade",
    "sec-websocket-key": KEY,
    "sec-websocket-version": "13",
    ...overrides,
  };
}

function rejects(
  fn: () => unknown,
  status: number,
  headers?: Record<string, string>,
): HandshakeError {
  let caught: unknown;
  assert.throws(fn, (error: unknown) => {
    caught = error;
    return error instanceof HandshakeError && error.status === status;
  });
  const error = caught as HandshakeError;
  if (headers) assert.deepEqual(error.headers, headers);
  return error;
}

describe("computeAcceptKey", () => {
  it("computes the RFC 6455 §1.3 example", () => {
    assert.equal(computeAcceptKey(KEY), ACCEPT);
  });
});

describe("isValidKey", () => {
  it("accepts 16 bytes in base64", () => {
    assert.equal(isValidKey(KEY), true);
    assert.equal(isValidKey(Buffer.alloc(16, 0xff).toString("base64")), true);
    assert.equal(isValidKey("AAAAAAAAAAAAAAAAAAAAAA=="), true);
  });
  it("rejects other lengths, padding and alphabets", () => {
    for (const key of [
      "",
      Buffer.alloc(15).toString("base64"),
      Buffer.alloc(17).toString("base64"),
      "dGhlIHNhbXBsZSBub25jZQ=",
      "dGhlIHNhbXBsZSBub25jZB==", // last character leaves non-zero padding bits
      "dGhlIHNhbXBsZSBub25j-Q==",
      `${KEY} `,
    ]) {
      assert.equal(isValidKey(key), false, JSON.stringify(key));
    }
  });
});

describe("generateKey", () => {
  it("base64-encodes 16 random bytes into a valid key", () => {
    let asked = 0;
    const key = generateKey((size) => {
      asked = size;
      return Buffer.alloc(size, 0xab);
    });
    assert.equal(asked, 16);
    assert.equal(isValidKey(key), true);
    assert.deepEqual(Buffer.from(key, "base64"), Buffer.alloc(16, 0xab));
  });
});

describe("splitHeaderList", () => {
  it("splits on commas, trims and drops empty items", () => {
    assert.deepEqual(splitHeaderList(" a ,b,, c\t,"), ["a", "b", "c"]);
    assert.deepEqual(splitHeaderList(""), []);
  });
});

describe("parseUpgradeRequest", () => {
  it("returns the key, offered subprotocols, extensions and origin of a valid request", () => {
    const result = parseUpgradeRequest(
      "GET",
      "1.1",
      request({
        "sec-websocket-protocol": "chat, superchat",
        "sec-websocket-extensions": "permessage-deflate; client_max_window_bits",
        origin: "https://example.com",
      }),
    );
    assert.deepEqual(result, {
      key: KEY,
      protocols: ["chat", "superchat"],
      extensions: "permessage-deflate; client_max_window_bits",
      origin: "https://example.com",
    });
  });

  it("defaults to no subprotocols, no extensions and no origin", () => {
    assert.deepEqual(parseUpgradeRequest("GET", "1.1", request()), {
      key: KEY,
      protocols: [],
      extensions: "",
      origin: "",
    });
  });

  it("refuses a method other than GET with 405 and Allow: GET", () => {
    for (const method of ["POST", "HEAD", "get", "CONNECT"]) {
      rejects(() => parseUpgradeRequest(method, "1.1", request()), 405, { Allow: "GET" });
    }
  });

  it("refuses HTTP/1.0 and older with 400, accepts later versions", () => {
    rejects(() => parseUpgradeRequest("GET", "1.0", request()), 400);
    rejects(() => parseUpgradeRequest("GET", "0.9", request()), 400);
    for (const version of ["1.2", "2.0", "3"])
      assert.equal(parseUpgradeRequest("GET", version, request()).key, KEY);
  });

  it("refuses a request without Host with 400", () => {
    rejects(() => parseUpgradeRequest("GET", "1.1", request({ host: undefined })), 400);
  });

  it("accepts Upgrade: websocket in any case and inside a list", () => {
    for (const upgrade of ["WebSocket", "WEBSOCKET", "h2c, websocket", " websocket "]) {
      assert.equal(parseUpgradeRequest("GET", "1.1", request({ upgrade })).key, KEY, upgrade);
    }
  });

  it("refuses a missing or different Upgrade with 400", () => {
    for (const upgrade of [undefined, "", "h2c", "websockets", "web socket"]) {
      rejects(() => parseUpgradeRequest("GET", "1.1", request({ upgrade })), 400);
    }
  });

  it("accepts Connection: Upgrade in any case, in a list, and split over repeated headers", () => {
    for (const connection of [
      "upgrade",
      "UPGRADE",
      "keep-alive, Upgrade",
      "Upgrade,keep-alive",
      ["keep-alive", "Upgrade"],
    ]) {
      assert.equal(
        parseUpgradeRequest("GET", "1.1", request({ connection })).key,
        KEY,
        String(connection),
      );
    }
  });

  it("refuses a Connection header without the Upgrade token with 400", () => {
    for (const connection of [undefined, "keep-alive", "upgrades", "close"]) {
      rejects(() => parseUpgradeRequest("GET", "1.1", request({ connection })), 400);
    }
  });

  it("refuses a missing or other Sec-WebSocket-Version with 426 and Sec-WebSocket-Version: 13", () => {
    for (const version of [undefined, "", "8", "12", "14", "13, 8"]) {
      const error = rejects(
        () => parseUpgradeRequest("GET", "1.1", request({ "sec-websocket-version": version })),
        426,
        { "Sec-WebSocket-Version": "13" },
      );
      assert.match(error.message, version ? /unsupported/ : /missing/);
    }
  });

  it("accepts the version and key with surrounding whitespace", () => {
    const result = parseUpgradeRequest(
      "GET",
      "1.1",
      request({ "sec-websocket-version": " 13 ", "sec-websocket-key": ` ${KEY} ` }),
    );
    assert.equal(result.key, KEY);
  });

  it("refuses a missing or invalid Sec-WebSocket-Key with 400", () => {
    for (const key of [
      undefined,
      "",
      "short",
      Buffer.alloc(20).toString("base64"),
      "!!!!!!!!!!!!!!!!!!!!!!==",
    ]) {
      rejects(() => parseUpgradeRequest("GET", "1.1", request({ "sec-websocket-key": key })), 400);
    }
  });

  it("parses subprotocols from a list and from repeated headers, skipping empty items", () => {
    const fromList = parseUpgradeRequest(
      "GET",
      "1.1",
      request({ "sec-websocket-protocol": " a , b.v2,,c " }),
    );
    assert.deepEqual(fromList.protocols, ["a", "b.v2", "c"]);
    const repeated = parseUpgradeRequest(
      "GET",
      "1.1",
      request({ "sec-websocket-protocol": ["x", "y, z"] }),
    );
    assert.deepEqual(repeated.protocols, ["x", "y", "z"]);
  });

  it("refuses subprotocol names that are not tokens with 400", () => {
    for (const protocol of ["a b", "chat/1", '"quoted"', "a;b", "é"]) {
      rejects(
        () => parseUpgradeRequest("GET", "1.1", request({ "sec-websocket-protocol": protocol })),
        400,
      );
    }
  });

  it("refuses a subprotocol offered twice with 400", () => {
    rejects(
      () => parseUpgradeRequest("GET", "1.1", request({ "sec-websocket-protocol": "chat, chat" })),
      400,
    );
  });
});

describe("buildUpgradeResponse", () => {
  it("builds the 101 response with the accept value", () => {
    assert.equal(
      buildUpgradeResponse(KEY),
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${ACCEPT}\r\n\r\n`,
    );
  });

  it("adds the chosen subprotocol, extensions and extra headers", () => {
    const response = buildUpgradeResponse(KEY, {
      protocol: "chat",
      extensions: "permessage-deflate",
      headers: { "X-Server": "moonsocket" },
    });
    assert.equal(
      response,
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${ACCEPT}\r\nSec-WebSocket-Protocol: chat\r\n` +
        "Sec-WebSocket-Extensions: permessage-deflate\r\nX-Server: moonsocket\r\n\r\n",
    );
  });

  it("leaves out empty or undefined options", () => {
    assert.equal(
      buildUpgradeResponse(KEY, { protocol: "", extensions: undefined, headers: undefined }),
      buildUpgradeResponse(KEY),
    );
  });
});

describe("buildErrorResponse", () => {
  it("builds a plain-text response with its status text, length and headers", () => {
    const response = buildErrorResponse(426, "use version 13", { "Sec-WebSocket-Version": "13" });
    assert.equal(
      response,
      "HTTP/1.1 426 Upgrade Required\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n" +
        "Content-Length: 15\r\nSec-WebSocket-Version: 13\r\n\r\nuse version 13\n",
    );
  });

  it("counts the body in UTF-8 bytes and names unknown statuses 'Error'", () => {
    const response = buildErrorResponse(499, "é");
    assert.match(response, /^HTTP\/1\.1 499 Error\r\n/);
    assert.match(response, /Content-Length: 3\r\n/);
  });

  it("knows the usual refusal statuses", () => {
    for (const [status, text] of [
      [400, "Bad Request"],
      [403, "Forbidden"],
      [404, "Not Found"],
      [405, "Method Not Allowed"],
      [408, "Request Timeout"],
      [429, "Too Many Requests"],
      [431, "Request Header Fields Too Large"],
      [500, "Internal Server Error"],
      [503, "Service Unavailable"],
    ] as const) {
      assert.ok(buildErrorResponse(status, "x").startsWith(`HTTP/1.1 ${status} ${text}\r\n`));
    }
  });
});

describe("parseUpgradeResponse", () => {
  function response(overrides: Record<string, string | undefined> = {}): HeaderMap {
    return {
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-accept": ACCEPT,
      ...overrides,
    };
  }

  it("accepts a valid 101 response and returns the subprotocol and extensions", () => {
    assert.deepEqual(parseUpgradeResponse(101, response(), KEY, []), {
      protocol: "",
      extensions: "",
    });
    const result = parseUpgradeResponse(
      101,
      response({
        "sec-websocket-protocol": "chat",
        "sec-websocket-extensions": "permessage-deflate",
      }),
      KEY,
      ["superchat", "chat"],
    );
    assert.deepEqual(result, { protocol: "chat", extensions: "permessage-deflate" });
  });

  it("accepts the tokens in any case and the accept value with whitespace", () => {
    const headers = response({
      upgrade: "WebSocket",
      connection: "keep-alive, UPGRADE",
      "sec-websocket-accept": ` ${ACCEPT} `,
    });
    assert.equal(parseUpgradeResponse(101, headers, KEY, []).protocol, "");
  });

  it("refuses a status other than 101, with that status", () => {
    for (const status of [200, 301, 400, 403, 426, 500])
      rejects(() => parseUpgradeResponse(status, response(), KEY, []), status);
  });

  it("refuses a missing Upgrade or Connection header (status 0)", () => {
    rejects(() => parseUpgradeResponse(101, response({ upgrade: undefined }), KEY, []), 0);
    rejects(() => parseUpgradeResponse(101, response({ upgrade: "h2c" }), KEY, []), 0);
    rejects(() => parseUpgradeResponse(101, response({ connection: undefined }), KEY, []), 0);
    rejects(() => parseUpgradeResponse(101, response({ connection: "keep-alive" }), KEY, []), 0);
  });

  it("refuses a wrong or missing Sec-WebSocket-Accept (status 0)", () => {
    rejects(
      () => parseUpgradeResponse(101, response({ "sec-websocket-accept": undefined }), KEY, []),
      0,
    );
    rejects(
      () =>
        parseUpgradeResponse(
          101,
          response({ "sec-websocket-accept": computeAcceptKey("x") }),
          KEY,
          [],
        ),
      0,
    );
    rejects(() => parseUpgradeResponse(101, response(), "AAAAAAAAAAAAAAAAAAAAAA==", []), 0);
  });

  it("refuses a subprotocol that was not offered (status 0)", () => {
    rejects(
      () => parseUpgradeResponse(101, response({ "sec-websocket-protocol": "chat" }), KEY, []),
      0,
    );
    rejects(
      () =>
        parseUpgradeResponse(101, response({ "sec-websocket-protocol": "chat" }), KEY, [
          "superchat",
        ]),
      0,
    );
  });
});
