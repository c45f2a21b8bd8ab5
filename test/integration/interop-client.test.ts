/**
 * Our `connect()` client with a `ws` WebSocketServer as the peer: messages of every length
 * class, text and binary, fragmentation, permessage-deflate variants, subprotocols, headers.
 */
import assert from "node:assert/strict";
import type { IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, it } from "node:test";
import { WebSocketServer as WsServer, type ServerOptions as WsServerOptions } from "ws";
import { type ClientOptions, connect, type WebSocketClient } from "../../src/client/client.js";
import { HandshakeError } from "../../src/protocol/errors.js";
import {
  makeBinary,
  makeCompressible,
  makeText,
  PATIENCE_MS,
  Resources,
  withTimeout,
} from "../helpers/net-helpers.js";

const resources = new Resources();
afterEach(() => resources.closeAll());

const SIZES = [0, 1, 125, 126, 65535, 65536, 1024 * 1024, 16 * 1024 * 1024];

interface WsEchoServer {
  wss: WsServer;
  url: string;
  /** The upgrade requests the ws server accepted. */
  requests: IncomingMessage[];
}

/** A `ws` echo server on 127.0.0.1, port 0. */
async function startWsEcho(options: WsServerOptions = {}): Promise<WsEchoServer> {
  const wss = new WsServer({
    host: "127.0.0.1",
    port: 0,
    maxPayload: 64 * 1024 * 1024,
    ...options,
  });
  const requests: IncomingMessage[] = [];
  wss.on("connection", (socket, request) => {
    requests.push(request);
    socket.on("message", (data, isBinary) => socket.send(data as Buffer, { binary: isBinary }));
    socket.on("error", () => {});
  });
  resources.add(wss, (server) => {
    for (const client of server.clients) client.terminate();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
  const { port } = wss.address() as AddressInfo;
  return { wss, url: `ws://127.0.0.1:${port}/`, requests };
}

async function openClient(url: string, options: ClientOptions = {}): Promise<WebSocketClient> {
  const client = await connect(url, options);
  resources.add(client, (c) => c.terminate());
  return client;
}

async function roundTrip(client: WebSocketClient, data: Buffer | string): Promise<void> {
  client.send(data);
  const reply = await withTimeout(client.receive(), PATIENCE_MS, "the echo");
  if (typeof data === "string") {
    assert.equal(reply.isBinary, false);
    assert.equal(reply.text(), data);
  } else {
    assert.equal(reply.isBinary, true);
    assert.ok(reply.data.equals(data), `binary echo of ${data.length} bytes differs`);
  }
}

for (const deflate of [false, true]) {
  describe(`ws server ↔ our client, perMessageDeflate ${deflate}`, () => {
    for (const size of SIZES) {
      it(`echoes a ${size}-byte binary message`, async () => {
        const { url } = await startWsEcho({ perMessageDeflate: deflate });
        const client = await openClient(url, { perMessageDeflate: deflate });
        assert.equal(client.extensions.startsWith("permessage-deflate"), deflate);
        // Random data does not compress: large sizes through deflate use compressible data.
        await roundTrip(
          client,
          deflate && size >= 1024 * 1024 ? makeCompressible(size) : makeBinary(size),
        );
      });
    }

    for (const size of [0, 1, 125, 126, 65535, 65536, 1024 * 1024]) {
      it(`echoes a ${size}-byte text message with multi-byte UTF-8`, async () => {
        const { url } = await startWsEcho({ perMessageDeflate: deflate });
        const client = await openClient(url, { perMessageDeflate: deflate });
        await roundTrip(client, makeText(size));
      });
    }

    it("receives a message the ws server sends in fragments (fin: false)", async () => {
      const { wss, url } = await startWsEcho({ perMessageDeflate: deflate });
      wss.on("connection", (socket) => {
        socket.send("frag", { fin: false });
        socket.send("ménts ", { fin: false });
        socket.send("✓", { fin: true });
        socket.send(Buffer.from([1, 2]), { fin: false });
        socket.send(Buffer.from([3]), { fin: true });
      });
      const client = await openClient(url, { perMessageDeflate: deflate });
      assert.equal((await client.receive()).text(), "fragménts ✓");
      const binary = await client.receive();
      assert.equal(binary.isBinary, true);
      assert.deepEqual([...binary.data], [1, 2, 3]);
    });

    it("sends fragments with the fragmentSize option that ws reassembles", async () => {
      const { url } = await startWsEcho({ perMessageDeflate: deflate });
      const client = await openClient(url, { perMessageDeflate: deflate, fragmentSize: 1000 });
      await roundTrip(client, makeBinary(250_000));
      await roundTrip(client, makeText(5555));
    });

    it("reads messages with for await", async () => {
      const { url } = await startWsEcho({ perMessageDeflate: deflate });
      const client = await openClient(url, { perMessageDeflate: deflate });
      for (let i = 0; i < 100; i++) client.send(`n${i}`);
      let i = 0;
      for await (const message of client) {
        assert.equal(message.text(), `n${i}`);
        if (++i === 100) break;
      }
      assert.equal(i, 100);
    });
  });
}

describe("ws server ↔ our client: permessage-deflate parameters", () => {
  const serverVariants: Array<{
    name: string;
    server: WsServerOptions["perMessageDeflate"];
    expect: RegExp[];
  }> = [
    {
      name: "server_no_context_takeover",
      server: { serverNoContextTakeover: true },
      expect: [/server_no_context_takeover/],
    },
    {
      name: "client_no_context_takeover",
      server: { clientNoContextTakeover: true },
      expect: [/client_no_context_takeover/],
    },
    {
      name: "server_max_window_bits=10",
      server: { serverMaxWindowBits: 10 },
      expect: [/server_max_window_bits=10/],
    },
    {
      name: "client_max_window_bits=9",
      server: { clientMaxWindowBits: 9 },
      expect: [/client_max_window_bits=9/],
    },
    {
      name: "both window bits at the minimum, 8",
      server: { serverMaxWindowBits: 8, clientMaxWindowBits: 8 },
      expect: [/server_max_window_bits=8/, /client_max_window_bits=8/],
    },
    {
      name: "all four",
      server: {
        serverNoContextTakeover: true,
        clientNoContextTakeover: true,
        serverMaxWindowBits: 11,
        clientMaxWindowBits: 10,
      },
      expect: [
        /server_no_context_takeover/,
        /client_no_context_takeover/,
        /server_max_window_bits=11/,
        /client_max_window_bits=10/,
      ],
    },
  ];
  for (const variant of serverVariants) {
    it(`accepts a ws server's ${variant.name} and exchanges compressible messages both ways`, async () => {
      const server = typeof variant.server === "object" ? variant.server : {};
      const { url } = await startWsEcho({ perMessageDeflate: { ...server, threshold: 0 } });
      const client = await openClient(url, { perMessageDeflate: true });
      for (const pattern of variant.expect) assert.match(client.extensions, pattern);
      for (let i = 0; i < 5; i++)
        await roundTrip(client, `${"lorem ipsum dolor ".repeat(300)} #${i}`);
      await roundTrip(client, makeBinary(100_000));
      await roundTrip(client, Buffer.alloc(300_000, 9));
    });
  }

  it("requests server_no_context_takeover, window bits and client_no_context_takeover itself", async () => {
    const { url } = await startWsEcho({ perMessageDeflate: { threshold: 0 } });
    const client = await openClient(url, {
      perMessageDeflate: {
        serverNoContextTakeover: true,
        clientNoContextTakeover: true,
        serverMaxWindowBits: 10,
        clientMaxWindowBits: 11,
      },
    });
    assert.match(client.extensions, /server_no_context_takeover/);
    assert.match(client.extensions, /server_max_window_bits=10/);
    for (let i = 0; i < 3; i++) await roundTrip(client, "xyzxyz".repeat(2000));
  });

  it("goes on without compression when the ws server declines it", async () => {
    const { url } = await startWsEcho({ perMessageDeflate: false });
    const client = await openClient(url, { perMessageDeflate: true });
    assert.equal(client.extensions, "");
    await roundTrip(client, "uncompressed");
  });
});

describe("ws server ↔ our client: subprotocols and headers", () => {
  it("offers subprotocols and reports the one the server chose", async () => {
    const { url } = await startWsEcho({
      handleProtocols: (offered) => (offered.has("v2") ? "v2" : false),
    });
    const client = await openClient(url, { protocols: ["v1", "v2"] });
    assert.equal(client.protocol, "v2");
  });

  it("sends custom headers with the upgrade request", async () => {
    const { url, requests } = await startWsEcho();
    await openClient(`${url}path/x?q=1`, {
      headers: { "X-Api-Key": "k1", Origin: "http://example.test" },
    });
    const request = requests[0]!;
    assert.equal(request.headers["x-api-key"], "k1");
    assert.equal(request.headers.origin, "http://example.test");
    assert.equal(request.url, "/path/x?q=1");
  });

  it("rejects with a HandshakeError carrying the status when the server refuses", async () => {
    const { url } = await startWsEcho({ verifyClient: (_info, done) => done(false, 401, "no") });
    await assert.rejects(connect(url), (error: unknown) => {
      assert.ok(error instanceof HandshakeError);
      assert.equal(error.status, 401);
      return true;
    });
  });
});
