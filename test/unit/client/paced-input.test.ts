import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PacedInput } from "../../../src/client/paced-input.js";
import { Connection } from "../../../src/protocol/connection.js";
import { buildFrame, OP } from "../../helpers/protocol-harness.js";

/** A client connection fed through a PacedInput whose owner holds after every message, as the client does for a waiting reader. */
function pacedConnection(options: { readerWaiting: boolean; holdOnMessage: boolean }) {
  const delivered: string[] = [];
  let input!: PacedInput;
  const connection = new Connection(
    {
      onMessage: (data) => {
        delivered.push(data.toString());
        if (options.holdOnMessage) input.hold();
      },
      onClose: () => {},
      onError: (error) => delivered.push(`error ${error.closeCode}`),
      onOutput: () => {},
    },
    { role: "client" },
  );
  input = new PacedInput(
    (bytes) => connection.receive(bytes),
    () => options.readerWaiting,
  );
  return { input, delivered };
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

const THREE = Buffer.concat([
  buildFrame(OP.text, "one"),
  buildFrame(OP.text, "two"),
  buildFrame(OP.text, "three"),
]);

describe("PacedInput", () => {
  it("stops after a message that was held, and goes on when released", () => {
    const { input, delivered } = pacedConnection({ readerWaiting: true, holdOnMessage: true });
    input.push(Buffer.from(THREE));
    assert.deepEqual(delivered, ["one"]);
    input.release();
    assert.deepEqual(delivered, ["one", "two"]);
    input.release();
    assert.deepEqual(delivered, ["one", "two", "three"]);
  });

  it("releases a hold by itself on the event loop's next turn", async () => {
    const { input, delivered } = pacedConnection({ readerWaiting: true, holdOnMessage: true });
    input.push(Buffer.from(THREE));
    assert.deepEqual(delivered, ["one"]);
    await nextTurn();
    assert.deepEqual(delivered, ["one", "two"]);
    await nextTurn();
    assert.deepEqual(delivered, ["one", "two", "three"]);
  });

  it("keeps chunks read during a hold behind the held bytes, in order", () => {
    const { input, delivered } = pacedConnection({ readerWaiting: true, holdOnMessage: true });
    input.push(Buffer.from(THREE));
    input.push(buildFrame(OP.text, "four"));
    input.release();
    input.release();
    input.release();
    assert.deepEqual(delivered, ["one", "two", "three", "four"]);
  });

  it("feeds a whole chunk at once when no reader is waiting", () => {
    const { input, delivered } = pacedConnection({ readerWaiting: false, holdOnMessage: false });
    input.push(Buffer.from(THREE));
    assert.deepEqual(delivered, ["one", "two", "three"]);
  });

  it("holds what arrives before the first release (the bytes that came with the 101)", () => {
    const { input, delivered } = pacedConnection({ readerWaiting: true, holdOnMessage: false });
    input.hold();
    input.push(Buffer.from(THREE));
    assert.deepEqual(delivered, []);
    input.release();
    assert.deepEqual(delivered, ["one", "two", "three"]);
  });

  it("drain feeds everything and ignores later holds (the socket closed)", () => {
    const { input, delivered } = pacedConnection({ readerWaiting: true, holdOnMessage: true });
    input.push(Buffer.from(THREE));
    input.drain();
    assert.deepEqual(delivered, ["one", "two", "three"]);
  });

  it("a release from inside a feed does not feed re-entrantly", () => {
    const seen: string[] = [];
    let input!: PacedInput;
    const connection = new Connection(
      {
        onMessage: (data) => {
          seen.push(`start ${data}`);
          input.release();
          seen.push(`end ${data}`);
        },
        onClose: () => {},
        onError: (error) => assert.fail(error.message),
        onOutput: () => {},
      },
      { role: "client" },
    );
    input = new PacedInput(
      (bytes) => connection.receive(bytes),
      () => true,
    );
    input.push(Buffer.from(THREE));
    assert.deepEqual(seen, [
      "start one",
      "end one",
      "start two",
      "end two",
      "start three",
      "end three",
    ]);
  });
});
