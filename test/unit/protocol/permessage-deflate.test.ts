import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { HandshakeError } from "../../../src/protocol/errors.js";
import {
  acceptDeflateOffer,
  acceptDeflateResponse,
  buildDeflateOffer,
  type DeflateOptions,
  type DeflateParams,
  parseExtensions,
} from "../../../src/protocol/permessage-deflate.js";

function offersOf(header: string): Array<[string, Record<string, string | true>]> {
  return parseExtensions(header).map((offer) => [offer.name, Object.fromEntries(offer.params)]);
}

function accept(
  header: string,
  options: DeflateOptions = {},
): { params: DeflateParams; response: string } | null {
  return acceptDeflateOffer(parseExtensions(header), options);
}

const DEFAULTS: DeflateParams = {
  serverNoContextTakeover: false,
  clientNoContextTakeover: false,
  serverMaxWindowBits: 15,
  clientMaxWindowBits: 15,
};

function handshakeError(fn: () => unknown, status: number): void {
  assert.throws(fn, (error: unknown) => error instanceof HandshakeError && error.status === status);
}

describe("parseExtensions", () => {
  it("returns nothing for an empty or blank header", () => {
    assert.deepEqual(parseExtensions(""), []);
    assert.deepEqual(parseExtensions("  ,  , "), []);
  });

  it("parses names and parameters with and without values", () => {
    assert.deepEqual(
      offersOf("permessage-deflate; client_max_window_bits; server_max_window_bits=10"),
      [["permessage-deflate", { client_max_window_bits: true, server_max_window_bits: "10" }]],
    );
  });

  it("parses several offers in order, with spaces and tabs anywhere allowed", () => {
    assert.deepEqual(
      offersOf(
        "permessage-deflate ;\tserver_no_context_takeover , x-foo;a = 1 ;b,  permessage-deflate",
      ),
      [
        ["permessage-deflate", { server_no_context_takeover: true }],
        ["x-foo", { a: "1", b: true }],
        ["permessage-deflate", {}],
      ],
    );
  });

  it("accepts quoted-string values", () => {
    assert.deepEqual(
      offersOf('permessage-deflate; server_max_window_bits="10"; client_max_window_bits = "9"'),
      [["permessage-deflate", { server_max_window_bits: "10", client_max_window_bits: "9" }]],
    );
  });

  it("lower-cases extension and parameter names but keeps values", () => {
    assert.deepEqual(offersOf("PerMessage-Deflate; Client_Max_Window_Bits=Abc"), [
      ["permessage-deflate", { client_max_window_bits: "Abc" }],
    ]);
  });

  it("marks an offer that repeats a parameter, keeping the first value, without failing the header", () => {
    const [offer, next] = parseExtensions(
      "permessage-deflate; server_max_window_bits=10; server_max_window_bits=11, permessage-deflate",
    );
    assert.equal(offer!.duplicateParams, true);
    assert.equal(offer!.params.get("server_max_window_bits"), "10");
    assert.equal(next!.duplicateParams, undefined);
  });

  for (const header of [
    "permessage-deflate;",
    "permessage-deflate; ",
    "; permessage-deflate",
    "permessage deflate",
    "permessage-deflate; a b",
    "permessage-deflate; p=",
    'permessage-deflate; p="unterminated',
    'permessage-deflate; p="two words"',
    'permessage-deflate; p=""',
    "permessage-deflate=1",
    '"permessage-deflate"',
    "permessage-deflate; p==1",
    "permessage-deflate; p=1 2",
    "permessage-deflate; é",
  ]) {
    it(`refuses the malformed header ${JSON.stringify(header)} with 400`, () => {
      handshakeError(() => parseExtensions(header), 400);
    });
  }
});

describe("acceptDeflateOffer (server side)", () => {
  it("accepts nothing when nothing or something else is offered", () => {
    assert.equal(accept(""), null);
    assert.equal(accept("x-webkit-deflate-frame, foo; bar"), null);
  });

  it("accepts a plain offer with the defaults", () => {
    assert.deepEqual(accept("permessage-deflate"), {
      params: DEFAULTS,
      response: "permessage-deflate",
    });
  });

  it("takes the first acceptable permessage-deflate offer, skipping other extensions", () => {
    const result = accept(
      "foo, permessage-deflate; server_no_context_takeover, permessage-deflate",
    );
    assert.equal(result?.response, "permessage-deflate; server_no_context_takeover");
  });

  it("honours server_no_context_takeover", () => {
    assert.deepEqual(accept("permessage-deflate; server_no_context_takeover"), {
      params: { ...DEFAULTS, serverNoContextTakeover: true },
      response: "permessage-deflate; server_no_context_takeover",
    });
  });

  it("honours client_no_context_takeover", () => {
    assert.deepEqual(accept("permessage-deflate; client_no_context_takeover"), {
      params: { ...DEFAULTS, clientNoContextTakeover: true },
      response: "permessage-deflate; client_no_context_takeover",
    });
  });

  it("asks for no context takeover on either side when configured to", () => {
    assert.deepEqual(
      accept("permessage-deflate", {
        serverNoContextTakeover: true,
        clientNoContextTakeover: true,
      }),
      {
        params: { ...DEFAULTS, serverNoContextTakeover: true, clientNoContextTakeover: true },
        response: "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
      },
    );
  });

  for (let bits = 8; bits <= 15; bits++) {
    it(`honours server_max_window_bits=${bits}`, () => {
      assert.deepEqual(accept(`permessage-deflate; server_max_window_bits=${bits}`), {
        params: { ...DEFAULTS, serverMaxWindowBits: bits },
        response: `permessage-deflate; server_max_window_bits=${bits}`,
      });
    });

    it(`honours client_max_window_bits=${bits}`, () => {
      const result = accept(`permessage-deflate; client_max_window_bits=${bits}`);
      assert.deepEqual(result?.params, { ...DEFAULTS, clientMaxWindowBits: bits });
      assert.equal(
        result?.response,
        bits < 15 ? `permessage-deflate; client_max_window_bits=${bits}` : "permessage-deflate",
      );
    });
  }

  it("uses the smaller of the offered and the configured server window", () => {
    assert.equal(
      accept("permessage-deflate; server_max_window_bits=12", { serverMaxWindowBits: 10 })?.params
        .serverMaxWindowBits,
      10,
    );
    assert.equal(
      accept("permessage-deflate; server_max_window_bits=9", { serverMaxWindowBits: 10 })?.params
        .serverMaxWindowBits,
      9,
    );
  });

  it("announces a configured server window smaller than 15 even when not offered", () => {
    assert.deepEqual(accept("permessage-deflate", { serverMaxWindowBits: 11 }), {
      params: { ...DEFAULTS, serverMaxWindowBits: 11 },
      response: "permessage-deflate; server_max_window_bits=11",
    });
  });

  it("limits the client window when the client offered client_max_window_bits without a value", () => {
    assert.deepEqual(
      accept("permessage-deflate; client_max_window_bits", { clientMaxWindowBits: 10 }),
      {
        params: { ...DEFAULTS, clientMaxWindowBits: 10 },
        response: "permessage-deflate; client_max_window_bits=10",
      },
    );
    assert.deepEqual(accept("permessage-deflate; client_max_window_bits"), {
      params: DEFAULTS,
      response: "permessage-deflate",
    });
  });

  it("uses the smaller of the offered and the configured client window", () => {
    assert.equal(
      accept("permessage-deflate; client_max_window_bits=12", { clientMaxWindowBits: 10 })?.params
        .clientMaxWindowBits,
      10,
    );
    assert.equal(
      accept("permessage-deflate; client_max_window_bits=9", { clientMaxWindowBits: 10 })?.params
        .clientMaxWindowBits,
      9,
    );
  });

  it("declines an offer without client_max_window_bits when it must limit the client window (§7.1.2.2)", () => {
    assert.equal(accept("permessage-deflate", { clientMaxWindowBits: 10 }), null);
    const next = accept("permessage-deflate, permessage-deflate; client_max_window_bits", {
      clientMaxWindowBits: 10,
    });
    assert.equal(next?.response, "permessage-deflate; client_max_window_bits=10");
  });

  it("accepts every parameter at once", () => {
    const result = accept(
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=9",
    );
    assert.deepEqual(result, {
      params: {
        serverNoContextTakeover: true,
        clientNoContextTakeover: true,
        serverMaxWindowBits: 10,
        clientMaxWindowBits: 9,
      },
      response:
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=9",
    });
  });

  it("accepts quoted window sizes", () => {
    assert.equal(
      accept('permessage-deflate; server_max_window_bits="12"')?.params.serverMaxWindowBits,
      12,
    );
  });

  const declined = [
    "server_max_window_bits=7",
    "server_max_window_bits=16",
    "server_max_window_bits=abc",
    "server_max_window_bits=08",
    "server_max_window_bits=-9",
    "server_max_window_bits",
    "client_max_window_bits=7",
    "client_max_window_bits=16",
    "client_max_window_bits=abc",
    "server_no_context_takeover=1",
    "client_no_context_takeover=true",
    "server_no_context_takeover; server_no_context_takeover",
    "client_max_window_bits=10; client_max_window_bits=11",
    "unknown_param",
    "mux=1",
  ];
  for (const params of declined) {
    it(`declines an offer with ${params} and takes the next one`, () => {
      assert.equal(accept(`permessage-deflate; ${params}`), null);
      const result = accept(
        `permessage-deflate; ${params}, permessage-deflate; server_max_window_bits=9`,
      );
      assert.deepEqual(result, {
        params: { ...DEFAULTS, serverMaxWindowBits: 9 },
        response: "permessage-deflate; server_max_window_bits=9",
      });
    });
  }
});

describe("buildDeflateOffer (client side)", () => {
  it("offers client_max_window_bits without a value by default", () => {
    assert.equal(buildDeflateOffer({}), "permessage-deflate; client_max_window_bits");
  });

  it("includes every requested parameter", () => {
    assert.equal(
      buildDeflateOffer({
        serverNoContextTakeover: true,
        clientNoContextTakeover: true,
        serverMaxWindowBits: 10,
        clientMaxWindowBits: 9,
      }),
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=9",
    );
  });

  it("leaves out window sizes of 15, the default", () => {
    assert.equal(
      buildDeflateOffer({ serverMaxWindowBits: 15, clientMaxWindowBits: 15 }),
      "permessage-deflate; client_max_window_bits",
    );
  });

  it("produces an offer the server side accepts", () => {
    const options = {
      serverNoContextTakeover: true,
      serverMaxWindowBits: 11,
      clientMaxWindowBits: 12,
    };
    const result = accept(buildDeflateOffer(options));
    assert.deepEqual(result?.params, {
      serverNoContextTakeover: true,
      clientNoContextTakeover: false,
      serverMaxWindowBits: 11,
      clientMaxWindowBits: 12,
    });
    assert.deepEqual(acceptDeflateResponse(result!.response, options), result!.params);
  });
});

describe("acceptDeflateResponse (client side)", () => {
  it("returns null when the server declined compression", () => {
    assert.equal(acceptDeflateResponse("", {}), null);
    assert.equal(acceptDeflateResponse("  ", {}), null);
  });

  it("accepts a plain response with the defaults", () => {
    assert.deepEqual(acceptDeflateResponse("permessage-deflate", {}), DEFAULTS);
  });

  it("keeps its own offered client window when the server does not set one", () => {
    assert.equal(
      acceptDeflateResponse("permessage-deflate", { clientMaxWindowBits: 10 })?.clientMaxWindowBits,
      10,
    );
  });

  it("uses a client window the server lowered", () => {
    assert.equal(
      acceptDeflateResponse("permessage-deflate; client_max_window_bits=9", {})
        ?.clientMaxWindowBits,
      9,
    );
    assert.equal(
      acceptDeflateResponse("permessage-deflate; client_max_window_bits=10", {
        clientMaxWindowBits: 10,
      })?.clientMaxWindowBits,
      10,
    );
  });

  it("accepts server parameters it did not ask for (no context takeover, a smaller server window)", () => {
    assert.deepEqual(
      acceptDeflateResponse(
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=12",
        {},
      ),
      {
        ...DEFAULTS,
        serverNoContextTakeover: true,
        serverMaxWindowBits: 12,
      },
    );
  });

  it("applies client_no_context_takeover from the response or from its own options", () => {
    assert.equal(
      acceptDeflateResponse("permessage-deflate; client_no_context_takeover", {})
        ?.clientNoContextTakeover,
      true,
    );
    assert.equal(
      acceptDeflateResponse("permessage-deflate", { clientNoContextTakeover: true })
        ?.clientNoContextTakeover,
      true,
    );
  });

  it("accepts a server window at most the one requested", () => {
    assert.equal(
      acceptDeflateResponse("permessage-deflate; server_max_window_bits=10", {
        serverMaxWindowBits: 10,
      })?.serverMaxWindowBits,
      10,
    );
    assert.equal(
      acceptDeflateResponse("permessage-deflate; server_max_window_bits=9", {
        serverMaxWindowBits: 10,
      })?.serverMaxWindowBits,
      9,
    );
  });

  const failures: Array<[string, string, DeflateOptions]> = [
    ["an extension that was not offered", "x-webkit-deflate-frame", {}],
    ["two extensions", "permessage-deflate, permessage-deflate", {}],
    ["an invalid window size", "permessage-deflate; server_max_window_bits=7", {}],
    ["an unknown parameter", "permessage-deflate; foo", {}],
    [
      "a repeated parameter",
      "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
      {},
    ],
    ["client_max_window_bits without a value", "permessage-deflate; client_max_window_bits", {}],
    [
      "a client window larger than offered",
      "permessage-deflate; client_max_window_bits=12",
      { clientMaxWindowBits: 10 },
    ],
    ["no server window when one was requested", "permessage-deflate", { serverMaxWindowBits: 10 }],
    [
      "a server window larger than requested",
      "permessage-deflate; server_max_window_bits=12",
      { serverMaxWindowBits: 10 },
    ],
    [
      "no server_no_context_takeover when it was requested",
      "permessage-deflate",
      { serverNoContextTakeover: true },
    ],
  ];
  for (const [name, header, options] of failures) {
    it(`fails the handshake on ${name}`, () => {
      handshakeError(() => acceptDeflateResponse(header, options), 0);
    });
  }

  it("fails the handshake with 400 on a malformed header", () => {
    handshakeError(() => acceptDeflateResponse("permessage-deflate;", {}), 400);
  });
});
