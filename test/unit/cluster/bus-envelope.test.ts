import assert from "node:assert/strict";
import { test } from "node:test";
import { checkNodeId, decodeEnvelope, encodeMessage } from "../../../src/cluster/bus-envelope.js";

test("a message envelope round-trips text and binary payloads byte for byte", () => {
  const text = decodeEnvelope(encodeMessage("B", "node-1", { data: "h\u00e9\n", binary: false }));
  assert.deepEqual(text, {
    kind: "broadcast",
    origin: "node-1",
    message: { data: Buffer.from("h\u00e9\n"), binary: false },
  });
  const bytes = new Uint8Array([0, 10, 255]);
  assert.deepEqual(decodeEnvelope(encodeMessage("T", "n", { data: bytes, binary: true }, 7)), {
    kind: "to",
    origin: "n",
    id: 7,
    message: { data: Buffer.from(bytes), binary: true },
  });
  assert.equal(decodeEnvelope(encodeMessage("P", "n", { data: "", binary: false }))?.kind, "topic");
});

test("presence lines as the Redis scripts write them", () => {
  assert.deepEqual(decodeEnvelope(Buffer.from("J a 3\n")), { kind: "join", origin: "a", id: 3 });
  assert.deepEqual(decodeEnvelope(Buffer.from("L a 3\n")), { kind: "leave", origin: "a", id: 3 });
  assert.deepEqual(decodeEnvelope(Buffer.from("X a\n")), { kind: "purge", origin: "a" });
});

test("garbage is not an envelope", () => {
  for (const text of ["", "no newline", "Q a\n", "J a\n", "J a -1\n", "T a x\npayload", "B\n"]) {
    assert.equal(decodeEnvelope(Buffer.from(text)), undefined, text);
  }
});

test("node names are checked", () => {
  assert.equal(checkNodeId("host-1:1234.ab_c"), "host-1:1234.ab_c");
  for (const bad of ["", "a b", "a\nb", "x".repeat(101)])
    assert.throws(() => checkNodeId(bad), RangeError);
});
