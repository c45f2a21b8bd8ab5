import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MessageBatcher } from "../../../src/cluster/message-batcher.js";

type Message = { readonly ms: string; readonly n?: number };

describe("MessageBatcher", () => {
  it("sends the messages of one turn as one batch, in order", async () => {
    const sent: unknown[] = [];
    const batcher = new MessageBatcher<Message>((message) => sent.push(message));
    for (let n = 0; n < 16; n++) batcher.send({ ms: "all", n });
    assert.equal(sent.length, 0, "nothing leaves before the turn ends");
    await Promise.resolve();
    assert.equal(sent.length, 1);
    const batch = sent[0] as { ms: string; items: Message[] };
    assert.equal(batch.ms, "batch");
    assert.deepEqual(
      batch.items.map((m) => m.n),
      Array.from({ length: 16 }, (_, n) => n),
    );
  });

  it("sends a lone message as itself, and flush() sends at once", async () => {
    const sent: unknown[] = [];
    const batcher = new MessageBatcher<Message>((message) => sent.push(message));
    batcher.send({ ms: "release", n: 1 });
    batcher.flush();
    assert.deepEqual(sent, [{ ms: "release", n: 1 }]);
    await Promise.resolve();
    assert.equal(sent.length, 1, "the flushed message is not sent twice");
  });
});
