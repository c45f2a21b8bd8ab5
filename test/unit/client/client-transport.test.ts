import assert from "node:assert/strict";
import type { Socket } from "node:net";
import { Duplex } from "node:stream";
import { describe, it } from "node:test";
import { ClientTransport } from "../../../src/client/client-transport.js";
import type { TransportHandler } from "../../../src/transport/socket-transport.js";
import { buildFrame, closeBody, decodeFrames, OP } from "../../helpers/protocol-harness.js";

/** A stand-in for a TCP socket: records what is written and when our side was ended. */
function fakeSocket() {
  const events: string[] = [];
  const duplex = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      for (const frame of decodeFrames(chunk))
        events.push(`wrote ${frame.opcode === OP.close ? "close" : frame.opcode}`);
      callback();
    },
    final(callback) {
      events.push("ended our side");
      callback();
    },
  });
  const socket = Object.assign(duplex, { setNoDelay: () => socket }) as unknown as Socket;
  return { socket, events };
}

/** A transport whose owner holds input after each message, as the client does for a waiting reader. */
function heldTransport(socket: Socket) {
  const messages: string[] = [];
  let transport!: ClientTransport;
  const handler: TransportHandler = {
    onMessage: (data) => {
      messages.push(data.toString());
      transport.input.hold();
    },
    onClosed: () => {},
  };
  transport = new ClientTransport(socket, handler, { role: "client" }, {}, () => true);
  return { transport, messages };
}

describe("ClientTransport", () => {
  it("reads held input when the server half-closes, so the close reply goes out before our FIN", async () => {
    const { socket, events } = fakeSocket();
    const { messages } = heldTransport(socket);
    socket.emit(
      "data",
      Buffer.concat([buildFrame(OP.text, "Hello"), buildFrame(OP.close, closeBody(1000))]),
    );
    assert.deepEqual(messages, ["Hello"]);
    assert.deepEqual(events, [], "the close frame is held behind the message");
    // The server's FIN arrives before the hold's turn is over.
    socket.emit("end");
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(events, ["wrote close", "ended our side"]);
  });

  it("reads held input before it reports the close", () => {
    const { socket } = fakeSocket();
    const closes: string[] = [];
    let transport!: ClientTransport;
    const handler: TransportHandler = {
      onMessage: () => transport.input.hold(),
      onClosed: (code, _reason, wasClean) => closes.push(`${code} ${wasClean}`),
    };
    transport = new ClientTransport(socket, handler, { role: "client" }, {}, () => true);
    socket.emit(
      "data",
      Buffer.concat([buildFrame(OP.text, "Hello"), buildFrame(OP.close, closeBody(1001))]),
    );
    socket.emit("close");
    assert.deepEqual(closes, ["1001 true"]);
  });
});
