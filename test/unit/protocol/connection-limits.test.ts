import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { processCpuMs } from "../../helpers/cpu-time.js";
import {
  assertFails,
  assertSent,
  createRandom,
  inbound,
  OP,
  Recorder,
  ROLES,
  randomBytes,
  replay,
} from "../../helpers/protocol-harness.js";

const MESSAGE_TOO_BIG = 1009;

for (const role of ROLES) {
  describe(`Connection maxPayload (${role} role)`, () => {
    it("fails with 1009 on a frame over the limit as soon as its header arrives", () => {
      const frame = inbound(role, OP.binary, Buffer.alloc(1001), {});
      const headerLength = frame.length - 1001;
      // Byte by byte: the error appears with the last header byte, before any payload.
      const recorder = new Recorder({ role, maxPayload: 1000 });
      const copy = Buffer.from(frame);
      for (let i = 0; i < headerLength; i++) {
        assert.equal(recorder.events.length, 0, `no error before header byte ${i}`);
        recorder.receive(copy.subarray(i, i + 1));
      }
      assert.equal(recorder.events.length, 1);
      assert.equal(recorder.connection.failure?.closeCode, MESSAGE_TOO_BIG);
      assert.equal(recorder.connection.failure?.code, "ERR_WS_TOO_BIG");
      assertFails(role, frame.subarray(0, headerLength), MESSAGE_TOO_BIG, { maxPayload: 1000 });
    });

    it("fails with 1009 on a 16-bit length just over a small limit", () => {
      assertFails(role, inbound(role, OP.text, "x".repeat(126)), MESSAGE_TOO_BIG, {
        maxPayload: 125,
      });
    });

    it("accepts a frame exactly at the limit", () => {
      const payload = randomBytes(createRandom(1), 1000);
      const recorder = replay({ role, maxPayload: 1000 }, inbound(role, OP.binary, payload));
      assert.deepStrictEqual(recorder.events, [{ type: "message", data: payload, binary: true }]);
    });

    it("fails with 1009 when fragments add up to more than the limit, at the header of the one that crosses it", () => {
      const input = Buffer.concat([
        inbound(role, OP.text, "a".repeat(400), { fin: false }),
        inbound(role, OP.continuation, "b".repeat(400), { fin: false }),
        inbound(role, OP.continuation, "c".repeat(201)),
      ]);
      const recorder = assertFails(role, input, MESSAGE_TOO_BIG, { maxPayload: 1000 });
      assert.equal(recorder.events.length, 1);
    });

    it("accepts fragments adding up to exactly the limit", () => {
      const input = Buffer.concat([
        inbound(role, OP.text, "a".repeat(400), { fin: false }),
        inbound(role, OP.continuation, "b".repeat(400), { fin: false }),
        inbound(role, OP.continuation, "c".repeat(200)),
      ]);
      const recorder = replay({ role, maxPayload: 1000 }, input);
      assert.equal(recorder.events.length, 1);
      assert.equal((recorder.events[0] as { data: Buffer }).data.length, 1000);
    });

    it("counts each message separately", () => {
      const input = Buffer.concat([
        inbound(role, OP.text, "a".repeat(100)),
        inbound(role, OP.text, "b".repeat(100)),
      ]);
      const recorder = replay({ role, maxPayload: 100 }, input);
      assert.equal(recorder.events.length, 2);
    });

    it("with maxPayload 0 accepts only empty messages", () => {
      assert.equal(replay({ role, maxPayload: 0 }, inbound(role, OP.text, "")).events.length, 1);
      assertFails(role, inbound(role, OP.text, "x"), MESSAGE_TOO_BIG, { maxPayload: 0 });
    });

    it("does not apply to control frames", () => {
      const recorder = replay({ role, maxPayload: 10 }, inbound(role, OP.ping, "p".repeat(125)));
      assertSent(role, recorder.output(), [{ opcode: OP.pong, payload: "p".repeat(125) }]);
    });

    it("reassembles 4 MiB sent as 65,536 fragments of 64 bytes, quickly", () => {
      const random = createRandom(4);
      const message = randomBytes(random, 4 * 1024 * 1024);
      const frames: Buffer[] = [];
      for (let i = 0; i < 65_536; i++) {
        frames.push(
          inbound(
            role,
            i === 0 ? OP.binary : OP.continuation,
            message.subarray(i * 64, (i + 1) * 64),
            {
              fin: i === 65_535,
            },
          ),
        );
      }
      const input = Buffer.concat(frames);
      const started = processCpuMs();
      const recorder = replay({ role }, input, { bytewise: false });
      const elapsed = processCpuMs() - started;
      assert.equal(recorder.events.length, 1);
      const event = recorder.events[0]!;
      assert.ok(
        event.type === "message" && event.binary && event.data.equals(message),
        "message reassembled exactly",
      );
      assert.ok(elapsed < 5000, `took ${elapsed.toFixed(0)} CPU ms for 5 replays`);
    });

    it("reassembles a 4 MiB text message of 64-byte fragments with code points cut at fragment edges", () => {
      const text = "aé€𝄞".repeat(Math.ceil((4 * 1024 * 1024) / 10)).slice(0, 1_000_000);
      const bytes = Buffer.from(text);
      const frames: Buffer[] = [];
      const count = Math.ceil(bytes.length / 64);
      for (let i = 0; i < count; i++) {
        frames.push(
          inbound(role, i === 0 ? OP.text : OP.continuation, bytes.subarray(i * 64, (i + 1) * 64), {
            fin: i === count - 1,
          }),
        );
      }
      const recorder = replay({ role }, Buffer.concat(frames), { bytewise: false });
      const event = recorder.events[0]!;
      assert.ok(event.type === "message" && !event.binary && event.data.equals(bytes));
    });
  });
}
