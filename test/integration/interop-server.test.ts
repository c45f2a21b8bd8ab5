/**
 * Our WebSocketServer with `ws` as the client: messages of every length class, text and
 * binary, fragmentation both ways, permessage-deflate variants, subprotocols, headers.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import WebSocket from "ws";
import { connect } from "../../src/client/client.js";
import type { ServerClient } from "../../src/server/server-client.js";
import {
  makeBinary,
  makeCompressible,
  makeText,
  OP,
  PATIENCE_MS,
  RawClient,
  Resources,
  startEchoServer,
  startServer,
  WsPeer,
  waitUntil,
} from "../helpers/net-helpers.js";

const resources = new Resources();
afterEach(() => resources.closeAll());

const SIZES = [0, 1, 125, 126, 65535, 65536, 1024 * 1024, 16 * 1024 * 1024];

function openWs(
  url: string,
  options: WebSocket.ClientOptions = {},
  protocols?: string[],
): Promise<WsPeer> {
  const peer = new WsPeer(new WebSocket(url, protocols, options));
  resources.add(peer, (p) => p.ws.terminate());
  return peer.opened();
}

async function roundTrip(peer: WsPeer, data: Buffer | string): Promise<void> {
  const binary = typeof data !== "string";
  peer.ws.send(data, { binary });
  const reply = await peer.next();
  assert.equal(reply.isBinary, binary);
  if (binary) assert.ok(reply.data.equals(data), `binary echo of ${data.length} bytes differs`);
  else assert.equal(reply.data.toString("utf8"), data);
}

for (const deflate of [false, true]) {
  describe(`our server ↔ ws client, perMessageDeflate ${deflate}`, () => {
    for (const size of SIZES) {
      it(`echoes a ${size}-byte binary message`, async () => {
        const { url } = await startEchoServer(resources, { perMessageDeflate: deflate });
        const peer = await openWs(url, { perMessageDeflate: deflate });
        assert.equal(peer.ws.extensions.includes("permessage-deflate"), deflate);
        // Random data does not compress: large sizes through deflate use compressible data.
        await roundTrip(
          peer,
          deflate && size >= 1024 * 1024 ? makeCompressible(size) : makeBinary(size),
        );
      });
    }

    for (const size of [0, 1, 125, 126, 65535, 65536, 1024 * 1024]) {
      it(`echoes a ${size}-byte text message with multi-byte UTF-8`, async () => {
        const { url } = await startEchoServer(resources, { perMessageDeflate: deflate });
        const peer = await openWs(url, { perMessageDeflate: deflate });
        await roundTrip(peer, makeText(size));
      });
    }

    it("reassembles a message the ws client sends in fragments (fin: false)", async () => {
      const { url } = await startEchoServer(resources, { perMessageDeflate: deflate });
      const peer = await openWs(url, { perMessageDeflate: deflate });
      const parts = ["héllo ", "wörld ", "✓🌍", ""];
      parts.forEach((part, i) => {
        peer.ws.send(part, { fin: i === parts.length - 1 });
      });
      const reply = await peer.next();
      assert.equal(reply.isBinary, false);
      assert.equal(reply.data.toString("utf8"), parts.join(""));
      const chunks = [makeBinary(70_000), makeBinary(10), makeBinary(3000)];
      chunks.forEach((chunk, i) => {
        peer.ws.send(chunk, { fin: i === chunks.length - 1 });
      });
      const binary = await peer.next();
      assert.equal(binary.isBinary, true);
      assert.ok(binary.data.equals(Buffer.concat(chunks)));
    });

    it("fragments large outgoing messages with the fragmentSize option and ws reassembles them", async () => {
      const { url } = await startEchoServer(resources, {
        perMessageDeflate: deflate,
        fragmentSize: 1000,
      });
      const peer = await openWs(url, { perMessageDeflate: deflate });
      await roundTrip(peer, makeBinary(250_000));
      await roundTrip(peer, makeText(4321));
    });

    it("sends many messages in order", async () => {
      const { url } = await startEchoServer(resources, { perMessageDeflate: deflate });
      const peer = await openWs(url, { perMessageDeflate: deflate });
      for (let i = 0; i < 500; i++) peer.ws.send(`message ${i} ${"x".repeat(i * 7)}`);
      for (let i = 0; i < 500; i++)
        assert.equal((await peer.next()).data.toString(), `message ${i} ${"x".repeat(i * 7)}`);
    });
  });
}

describe("our server ↔ ws client: fragmentation on the wire", () => {
  it("splits a message into fragmentSize frames: first opcode, then continuations, fin on the last", async () => {
    const { port } = await startServer(resources, { fragmentSize: 1000 }, (server) =>
      server.addHooks({ onConnect: (client) => client.send("x".repeat(2500)) }),
    );
    const raw = resources.add(await RawClient.connect(port), (r) => r.destroy());
    const frames = [await raw.nextFrame(), await raw.nextFrame(), await raw.nextFrame()];
    assert.deepEqual(
      frames.map((f) => [f.opcode, f.fin, f.payload.length, f.masked]),
      [
        [OP.text, false, 1000, false],
        [OP.cont, false, 1000, false],
        [OP.cont, true, 500, false],
      ],
    );
  });
});

describe("our server ↔ ws client: permessage-deflate parameters", () => {
  const variants: Array<{
    name: string;
    client: WebSocket.PerMessageDeflateOptions;
    expect: RegExp[];
  }> = [
    {
      name: "server_no_context_takeover",
      client: { serverNoContextTakeover: true },
      expect: [/server_no_context_takeover/],
    },
    {
      name: "client_no_context_takeover",
      client: { clientNoContextTakeover: true },
      expect: [/client_no_context_takeover/],
    },
    {
      name: "server_max_window_bits=10",
      client: { serverMaxWindowBits: 10 },
      expect: [/server_max_window_bits=10/],
    },
    {
      name: "client_max_window_bits=9",
      client: { clientMaxWindowBits: 9 },
      expect: [/client_max_window_bits=9/],
    },
    {
      name: "both window bits at the minimum, 8",
      client: { serverMaxWindowBits: 8, clientMaxWindowBits: 8 },
      expect: [/server_max_window_bits=8/, /client_max_window_bits=8/],
    },
    {
      name: "all four",
      client: {
        serverNoContextTakeover: true,
        clientNoContextTakeover: true,
        serverMaxWindowBits: 9,
        clientMaxWindowBits: 11,
      },
      expect: [
        /server_no_context_takeover/,
        /client_no_context_takeover/,
        /server_max_window_bits=9/,
        /client_max_window_bits=11/,
      ],
    },
  ];
  for (const variant of variants) {
    it(`negotiates ${variant.name} and exchanges compressible messages both ways`, async () => {
      const { url } = await startEchoServer(resources, { perMessageDeflate: true });
      const peer = await openWs(url, { perMessageDeflate: { ...variant.client, threshold: 0 } });
      for (const pattern of variant.expect) assert.match(peer.extensions, pattern);
      // Repetitive text (context takeover matters), then random binary, then repetitive again.
      for (let i = 0; i < 5; i++)
        await roundTrip(peer, `${"the quick brown fox ".repeat(200)} #${i}`);
      await roundTrip(peer, makeBinary(100_000));
      await roundTrip(peer, Buffer.alloc(300_000, 7));
    });
  }

  it("server options force server_no_context_takeover and a smaller server window", async () => {
    const { url } = await startEchoServer(resources, {
      perMessageDeflate: { serverNoContextTakeover: true, serverMaxWindowBits: 10 },
    });
    const peer = await openWs(url, { perMessageDeflate: { threshold: 0 } });
    assert.match(peer.extensions, /server_no_context_takeover/);
    assert.match(peer.extensions, /server_max_window_bits=10/);
    for (let i = 0; i < 3; i++) await roundTrip(peer, "abcabcabc".repeat(1000));
  });

  it("server options limit the client's window and context takeover, and ws complies", async () => {
    const { url } = await startEchoServer(resources, {
      perMessageDeflate: { clientNoContextTakeover: true, clientMaxWindowBits: 10, threshold: 0 },
    });
    const peer = await openWs(url, { perMessageDeflate: { threshold: 0 } });
    assert.match(peer.extensions, /client_no_context_takeover/);
    assert.match(peer.extensions, /client_max_window_bits=10/);
    for (let i = 0; i < 3; i++) await roundTrip(peer, "0123456789".repeat(3000));
  });

  it("does not negotiate compression when the server has it off", async () => {
    const { url } = await startEchoServer(resources);
    const peer = await openWs(url, { perMessageDeflate: true });
    assert.equal(peer.extensions, "");
    await roundTrip(peer, "plain");
  });
});

describe("our server ↔ ws client: subprotocols and headers", () => {
  it("selects a subprotocol from the server's protocols option", async () => {
    let seen = "";
    const { url } = await startServer(resources, { protocols: ["chat.v2", "chat"] }, (server) =>
      server.addHooks({ onConnect: (client) => (seen = client.protocol) }),
    );
    const peer = await openWs(url, {}, ["chat"]);
    assert.equal(peer.ws.protocol, "chat");
    assert.equal(seen, "chat");
  });

  it("prefers the server's order of preference when several offered protocols match", async () => {
    const { url } = await startServer(resources, { protocols: ["chat.v2", "chat"] });
    const peer = await openWs(url, {}, ["chat", "chat.v2"]);
    assert.equal(peer.ws.protocol, "chat.v2");
  });

  it("shows the client's request headers, path and query to the server", async () => {
    const clients: ServerClient[] = [];
    const { url } = await startServer(resources, {}, (server) =>
      server.addHooks({ onConnect: (client) => clients.push(client) }),
    );
    await openWs(`${url}room/7?token=abc`, {
      headers: { "X-Custom": "value 1", Authorization: "Bearer t0ken" },
    });
    const client = clients[0]!;
    assert.equal(client.headers["x-custom"], "value 1");
    assert.equal(client.headers.authorization, "Bearer t0ken");
    assert.equal(client.path, "/room/7");
    assert.equal(client.query, "token=abc");
    assert.equal(client.remoteAddress, "127.0.0.1");
  });
});

describe("our client ↔ our server", () => {
  it("the server sees our client's custom headers in client.headers", async () => {
    const clients: ServerClient[] = [];
    const { url } = await startServer(resources, {}, (server) =>
      server.addHooks({ onConnect: (client) => clients.push(client) }),
    );
    const client = resources.add(
      await connect(`${url}feed?x=1`, { headers: { "X-Token": "abc", Cookie: "session=42" } }),
      (c) => c.terminate(),
    );
    assert.ok(client.isOpen);
    assert.equal(clients[0]!.headers["x-token"], "abc");
    assert.equal(clients[0]!.headers.cookie, "session=42");
    assert.equal(clients[0]!.path, "/feed");
    assert.equal(clients[0]!.query, "x=1");
  });

  it("negotiates a subprotocol, or none when nothing matches", async () => {
    const seen: string[] = [];
    const { url } = await startServer(resources, { protocols: ["mqtt", "chat"] }, (server) =>
      server.addHooks({ onConnect: (client) => seen.push(client.protocol) }),
    );
    const chat = resources.add(await connect(url, { protocols: ["chat"] }), (c) => c.terminate());
    assert.equal(chat.protocol, "chat");
    const none = resources.add(await connect(url, { protocols: ["xmpp"] }), (c) => c.terminate());
    assert.equal(none.protocol, "");
    assert.deepEqual(seen, ["chat", ""]);
  });

  it("echoes with permessage-deflate on both ends and closes cleanly from either side", async () => {
    const clients: ServerClient[] = [];
    const { url } = await startServer(resources, { perMessageDeflate: true }, (server) =>
      server.addHooks({
        onConnect: (client) => clients.push(client),
        onMessage: (client, data, isBinary) => client.send(data, isBinary),
      }),
    );
    const a = resources.add(await connect(url, { perMessageDeflate: true }), (c) => c.terminate());
    assert.match(a.extensions, /^permessage-deflate/);
    const text = makeText(100_000);
    a.send(text);
    assert.equal((await a.receive()).text(), text);
    // The server's reply carries the client's code and reason back (§5.5.1).
    assert.deepEqual(await a.close(4321, "client done"), {
      code: 4321,
      reason: "client done",
      wasClean: true,
    });
    const b = resources.add(await connect(url, { perMessageDeflate: true }), (c) => c.terminate());
    await waitUntil(() => clients.length === 2, PATIENCE_MS, "the second client");
    clients[1]!.close(1001, "server done");
    assert.deepEqual(await b.closed, { code: 1001, reason: "server done", wasClean: true });
  });
});
