/**
 * permessage-deflate with large messages: they are inflated and deflated off the event loop,
 * so other clients are served meanwhile, while each connection keeps its own order.
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import WebSocket from "ws";
import { zlibJobs } from "../../src/transport/zlib-jobs.js";
import { Resources, startEchoServer, startServer, WsPeer } from "../helpers/net-helpers.js";

const resources = new Resources();
afterEach(() => resources.closeAll());

const MiB = 1024 * 1024;

function openWs(url: string): Promise<WsPeer> {
  // threshold 0: the client compresses every message, small ones too.
  const peer = new WsPeer(new WebSocket(url, { perMessageDeflate: { threshold: 0 } }));
  resources.add(peer, (p) => p.ws.terminate());
  return peer.opened();
}

/** Text that compresses about 3:1, so that inflating and deflating it is real work. */
function prose(bytes: number, seed: number): Buffer {
  const words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"];
  const out = Buffer.allocUnsafe(bytes);
  let x = seed;
  let at = 0;
  while (at < bytes) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    at += out.write(`${words[x % words.length]}${x % 7} `, at);
  }
  return out;
}

describe("permessage-deflate with large messages", () => {
  it("serves another client while a 16 MiB compressed message is being inflated", async () => {
    const order: string[] = [];
    const { url } = await startServer(resources, { perMessageDeflate: true }, (server) =>
      server.addHooks({
        onMessage: (client, data, isBinary) => {
          order.push(data.length > 100 ? "big" : "small");
          client.send(data, isBinary);
        },
      }),
    );
    const big = await openWs(url);
    const other = await openWs(url);
    // 16 MiB of zeros is ~16 KB on the wire: once `send` calls back, the whole frame is with
    // the server, before the small message is even sent.
    const data = Buffer.alloc(16 * MiB);
    await new Promise<void>((resolve, reject) =>
      big.ws.send(data, { binary: true }, (error) => (error ? reject(error) : resolve())),
    );
    other.ws.send("small");
    assert.equal((await other.next()).data.toString(), "small");
    const reply = await big.next();
    assert.ok(reply.data.equals(data), "the big message comes back whole");
    // Inflated inline, the big message would be delivered (and its echo deflated) before the
    // server read anything else.
    assert.deepEqual(order, ["small", "big"]);
  });

  it("keeps one client's order: big, small, big, small messages and a ping between them", async () => {
    const { url } = await startEchoServer(resources, { perMessageDeflate: true });
    const peer = await openWs(url);
    const sent = [prose(3 * MiB, 1), Buffer.from("one"), prose(2 * MiB, 2), Buffer.from("two")];
    const seen: string[] = [];
    const done = new Promise<void>((resolve) => {
      peer.ws.on("message", (data: Buffer) => {
        const index = sent.findIndex((message) => message.equals(data));
        seen.push(index === -1 ? `unexpected ${data.length} bytes` : `message ${index}`);
        if (seen.length === 5) resolve();
      });
      peer.ws.on("pong", () => {
        seen.push("pong");
        if (seen.length === 5) resolve();
      });
    });
    peer.ws.send(sent[0]!);
    peer.ws.send(sent[1]!);
    peer.ws.ping();
    peer.ws.send(sent[2]!);
    peer.ws.send(sent[3]!);
    await done;
    // The pong answers a ping read after message 1: it waits behind that message's echo.
    assert.deepEqual(seen, ["message 0", "message 1", "pong", "message 2", "message 3"]);
  });

  it("runs at most zlibJobs.limit inflates and deflates at once across the server", async () => {
    const { url } = await startEchoServer(resources, { perMessageDeflate: true });
    const peers = await Promise.all(Array.from({ length: 8 }, () => openWs(url)));
    const data = Buffer.alloc(4 * MiB, 0x61);
    let highest = 0;
    const timer = setInterval(() => {
      highest = Math.max(highest, zlibJobs.active);
    }, 1);
    try {
      const replies = await Promise.all(
        peers.map((peer) => {
          peer.ws.send(data);
          return peer.next();
        }),
      );
      for (const reply of replies) assert.ok(reply.data.equals(data));
    } finally {
      clearInterval(timer);
    }
    assert.ok(zlibJobs.peak <= zlibJobs.limit, `peak ${zlibJobs.peak} > ${zlibJobs.limit}`);
    assert.ok(highest <= zlibJobs.limit);
    assert.equal(zlibJobs.active, 0, "every job released its slot");
    assert.equal(zlibJobs.queued, 0);
  });
});
