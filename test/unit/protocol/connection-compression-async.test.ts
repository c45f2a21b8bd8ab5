/**
 * The connection's hand-out of large compression work (MessageCompressor returning
 * undefined): byte vectors with a stand-in "compressor" that leaves bytes as they are, so the
 * wire bytes are predictable; the real zlib side is tested in zlib-compressor and
 * deflate-stalls.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { MessageCompressor } from "../../../src/protocol/compression.js";
import { Connection, type ConnectionEvents } from "../../../src/protocol/connection.js";
import { decodeFrames, inbound, OP } from "../../helpers/protocol-harness.js";

/** Identity "compression"; anything of 100 bytes or more is left to the async path. */
class HandOutCompressor implements MessageCompressor {
  readonly threshold = 0;
  decompress(frame: Buffer): Buffer | undefined {
    return frame.length >= 100 ? undefined : Buffer.from(frame);
  }
  compress(data: Buffer): Buffer | undefined {
    return data.length >= 100 ? undefined : Buffer.from(data);
  }
  decompressAsync(): void {}
  compressAsync(): void {}
  close(): void {}
}

function setup() {
  const log: string[] = [];
  const inflates: Array<{ frame: Buffer; final: boolean; limit: number }> = [];
  const deflates: Buffer[] = [];
  const events: ConnectionEvents = {
    onMessage: (data) => log.push(`message ${data.length}`),
    onPing: (payload) => log.push(`ping ${payload}`),
    onClose: (code) => log.push(`close ${code}`),
    onError: (error) => log.push(`error ${error.closeCode}`),
    onOutput: () => {},
    onInflate: (frame, final, limit) => inflates.push({ frame: Buffer.from(frame), final, limit }),
    onDeflate: (data) => deflates.push(data),
  };
  const connection = new Connection(events, {
    role: "server",
    compressor: new HandOutCompressor(),
    maxPayload: 1000,
  });
  const output = (): string[] => {
    const chunks: Buffer[] = [];
    connection.drainOutput((chunk) => chunks.push(Buffer.from(chunk)));
    return decodeFrames(Buffer.concat(chunks)).map(
      (frame) => `${frame.opcode}${frame.rsv1 ? "+rsv1" : ""} ${frame.payload.length}`,
    );
  };
  return { connection, log, inflates, deflates, output };
}

describe("Connection handing large compression work out", () => {
  it("parses nothing after a handed-out frame until its result is back, then goes on in order", () => {
    const { connection, log, inflates } = setup();
    connection.receive(
      Buffer.concat([
        inbound("server", OP.binary, Buffer.alloc(200, 1), { rsv1: true }),
        inbound("server", OP.binary, Buffer.alloc(10, 2), { rsv1: true }),
        inbound("server", OP.ping, "p"),
      ]),
    );
    assert.deepEqual(log, []);
    assert.equal(inflates.length, 1);
    assert.deepEqual(inflates[0], { frame: Buffer.alloc(200, 1), final: true, limit: 1000 });
    connection.receive(inbound("server", OP.binary, Buffer.alloc(20, 3)));
    assert.deepEqual(log, [], "input that arrives meanwhile waits too");
    connection.inflated(Buffer.alloc(500));
    assert.deepEqual(log, ["message 500", "message 10", "ping p", "message 20"]);
  });

  it("fails with 1009 when the result is over the limit, and 1007 on corrupt data", () => {
    for (const [result, code] of [
      [null, 1009],
      [new Error("bad"), 1007],
    ] as const) {
      const { connection, log } = setup();
      connection.receive(
        Buffer.concat([
          inbound("server", OP.binary, Buffer.alloc(200), { rsv1: true }),
          inbound("server", OP.binary, Buffer.alloc(10)),
        ]),
      );
      connection.inflated(result);
      assert.deepEqual(log, [`error ${code}`], "nothing after the failure is read");
    }
  });

  it("takes a result handed back synchronously, from within onInflate", () => {
    const { connection, log } = setup();
    const events = connection as unknown as { events: ConnectionEvents };
    events.events.onInflate = (frame) => connection.inflated(frame);
    connection.receive(
      Buffer.concat([
        inbound("server", OP.binary, Buffer.alloc(300), { rsv1: true }),
        inbound("server", OP.binary, Buffer.alloc(5)),
      ]),
    );
    assert.deepEqual(log, ["message 300", "message 5"]);
  });

  it("holds every later frame behind a message being deflated, in the order sent", () => {
    const { connection, deflates, output } = setup();
    connection.send(Buffer.alloc(150), true);
    connection.send(Buffer.alloc(5), true);
    connection.ping("x");
    connection.send(Buffer.alloc(120), true);
    connection.close(1000);
    assert.equal(deflates.length, 2, "the second large message is handed out at once too");
    assert.deepEqual(output(), [], "nothing goes out before the first deflate is back");
    assert.equal(connection.awaitingDeflate, true);
    assert.equal(connection.bufferedAmount, 150 + 5 + 1 + 120 + 2);
    connection.deflated(Buffer.alloc(40));
    assert.deepEqual(output(), ["2+rsv1 40", "2+rsv1 5", "9 1"]);
    assert.equal(connection.awaitingDeflate, true);
    connection.deflated(Buffer.alloc(30));
    assert.deepEqual(output(), ["2+rsv1 30", "8 2"]);
    assert.equal(connection.awaitingDeflate, false);
    assert.equal(connection.send("late", false), false, "closing: nothing more is sent");
  });

  it("closes with 1011 when a deflate fails, sending what waited behind it", () => {
    const { connection, output } = setup();
    connection.send(Buffer.alloc(150), true);
    connection.send(Buffer.alloc(5), true);
    connection.deflated(new Error("out of memory"));
    // The close frame: code 1011 and "compression failed".
    assert.deepEqual(output(), ["2+rsv1 5", "8 20"]);
    assert.equal(connection.closeCodeSent, 1011);
  });
});
