import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  assertFails,
  inbound,
  messageText,
  OP,
  Recorder,
  ROLES,
  replay,
} from "../../helpers/protocol-harness.js";

const INVALID_UTF8 = 1007;

/** Invalid byte sequences (RFC 3629, Unicode Table 3-7), each with a valid prefix and suffix. */
const INVALID_SEQUENCES: Array<[string, number[]]> = [
  ["overlong 2-byte NUL (C0 80)", [0xc0, 0x80]],
  ["overlong 2-byte (C1 BF)", [0xc1, 0xbf]],
  ["overlong 3-byte NUL (E0 80 80)", [0xe0, 0x80, 0x80]],
  ["overlong 3-byte (E0 9F BF)", [0xe0, 0x9f, 0xbf]],
  ["overlong 4-byte NUL (F0 80 80 80)", [0xf0, 0x80, 0x80, 0x80]],
  ["overlong 4-byte (F0 8F BF BF)", [0xf0, 0x8f, 0xbf, 0xbf]],
  ["high surrogate (ED A0 80)", [0xed, 0xa0, 0x80]],
  ["low surrogate (ED BF BF)", [0xed, 0xbf, 0xbf]],
  ["surrogate pair encoded as two 3-byte sequences", [0xed, 0xa0, 0x80, 0xed, 0xb0, 0x80]],
  ["code point above U+10FFFF (F4 90 80 80)", [0xf4, 0x90, 0x80, 0x80]],
  ["F5 lead byte", [0xf5, 0x80, 0x80, 0x80]],
  ["F8 lead byte (5-byte form)", [0xf8, 0x88, 0x80, 0x80, 0x80]],
  ["FC lead byte (6-byte form)", [0xfc, 0x84, 0x80, 0x80, 0x80, 0x80]],
  ["FE", [0xfe]],
  ["FF", [0xff]],
  ["lone continuation byte", [0x80]],
  ["continuation byte BF after ASCII", [0x41, 0xbf]],
  ["2-byte lead followed by ASCII", [0xc3, 0x41]],
  ["3-byte lead with one continuation then ASCII", [0xe2, 0x82, 0x41]],
  ["4-byte lead with two continuations then ASCII", [0xf0, 0x9f, 0x98, 0x41]],
  ["extra continuation after a complete sequence", [0xc3, 0xa9, 0x80]],
];

/** Sequences that are only a valid prefix (invalid when the message ends there), with a completion. */
const TRUNCATED_ENDS: Array<[string, number[], number[]]> = [
  ["a 2-byte lead", [0xc3], [0xa9]],
  ["a 3-byte lead", [0xe2], [0x82, 0xac]],
  ["a 3-byte lead and one continuation", [0xe2, 0x82], [0xac]],
  ["a 4-byte lead and two continuations", [0xf0, 0x9f, 0x98], [0x80]],
  ["E0 A0", [0xe0, 0xa0], [0x80]],
  ["F4 8F BF", [0xf4, 0x8f, 0xbf], [0xbf]],
];

const SAMPLE = "héllo wörld — 日本語 🌍 𝄞 ok";

for (const role of ROLES) {
  describe(`Connection UTF-8 validation (${role} role)`, () => {
    it("accepts valid multi-byte text in a single frame, split anywhere across reads", () => {
      const recorder = replay({ role }, inbound(role, OP.text, SAMPLE));
      assert.equal(messageText(recorder.events[0]), SAMPLE);
    });

    it("accepts valid text with code points split between fragments, at every split point", () => {
      const bytes = Buffer.from(SAMPLE);
      for (let cut = 0; cut <= bytes.length; cut++) {
        const input = Buffer.concat([
          inbound(role, OP.text, bytes.subarray(0, cut), { fin: false }),
          inbound(role, OP.continuation, bytes.subarray(cut)),
        ]);
        const recorder = replay({ role }, input);
        assert.equal(messageText(recorder.events[0]), SAMPLE, `cut at ${cut}`);
      }
    });

    it("accepts valid text split into one-byte fragments", () => {
      const bytes = Buffer.from("a€𝄞é");
      const input = Buffer.concat(
        [...bytes].map((byte, i) =>
          inbound(role, i === 0 ? OP.text : OP.continuation, Buffer.from([byte]), {
            fin: i === bytes.length - 1,
          }),
        ),
      );
      const recorder = replay({ role }, input);
      assert.equal(messageText(recorder.events[0]), "a€𝄞é");
    });

    it("accepts the boundary code points U+0000, U+007F, U+0080, U+07FF, U+0800, U+FFFF, U+10000, U+10FFFF", () => {
      const text = "\u0000\u007f\u0080\u07ff\u0800\uffff\u{10000}\u{10ffff}\ud7ff\ue000";
      const recorder = replay({ role }, inbound(role, OP.text, text));
      assert.equal(messageText(recorder.events[0]), text);
    });

    it("does not validate binary messages", () => {
      const payload = Buffer.from([0xff, 0xc0, 0x80, 0xed, 0xa0, 0x80]);
      const recorder = replay({ role }, inbound(role, OP.binary, payload));
      assert.deepStrictEqual(recorder.events, [{ type: "message", data: payload, binary: true }]);
    });

    for (const [name, bytes] of INVALID_SEQUENCES) {
      const payload = Buffer.concat([Buffer.from("ok "), Buffer.from(bytes), Buffer.from(" tail")]);
      it(`fails with 1007 on ${name} in a single frame`, () => {
        assertFails(role, inbound(role, OP.text, payload), INVALID_UTF8);
      });
      it(`fails with 1007 on ${name} split across fragments`, () => {
        const cut = 4; // inside the invalid sequence (or right after its first byte)
        const input = Buffer.concat([
          inbound(role, OP.text, payload.subarray(0, cut), { fin: false }),
          inbound(role, OP.continuation, payload.subarray(cut)),
        ]);
        assertFails(role, input, INVALID_UTF8);
      });
    }

    for (const [name, bytes, completion] of TRUNCATED_ENDS) {
      const payload = Buffer.concat([Buffer.from("abc"), Buffer.from(bytes)]);
      it(`fails with 1007 on a message ending in ${name}`, () => {
        assertFails(role, inbound(role, OP.text, payload), INVALID_UTF8);
      });
      it(`fails with 1007 on a fragmented message ending in ${name}`, () => {
        const input = Buffer.concat([
          inbound(role, OP.text, payload.subarray(0, 2), { fin: false }),
          inbound(role, OP.continuation, payload.subarray(2)),
        ]);
        assertFails(role, input, INVALID_UTF8);
      });
      it(`accepts ${name} at the end of a non-final fragment when the next completes it`, () => {
        const input = Buffer.concat([
          inbound(role, OP.text, payload, { fin: false }),
          inbound(role, OP.continuation, Buffer.from(completion)),
        ]);
        const recorder = replay({ role }, input);
        const expected = Buffer.concat([payload, Buffer.from(completion)]);
        assert.deepStrictEqual(recorder.events, [
          { type: "message", data: expected, binary: false },
        ]);
      });
    }

    it("fails with 1007 on a fragmented message that is valid only if a later fragment never came", () => {
      const input = Buffer.concat([
        inbound(role, OP.text, Buffer.from([0x61, 0xe2]), { fin: false }),
        inbound(role, OP.continuation, Buffer.from([0x82]), { fin: false }),
        inbound(role, OP.continuation, ""),
      ]);
      assertFails(role, input, INVALID_UTF8);
    });

    it("validates each message afresh (no state leaks from a message that ended cleanly)", () => {
      const input = Buffer.concat([
        inbound(role, OP.text, "é", { fin: false }),
        inbound(role, OP.continuation, "è"),
        inbound(role, OP.text, Buffer.from([0xa9])),
      ]);
      const recorder = assertFails(role, input, INVALID_UTF8);
      assert.equal(messageText(recorder.events[0]), "éè");
    });

    describe("fail-fast (§8.1)", () => {
      /** Feeds `input` in `piece`-byte chunks; returns the index of the chunk after which the error appeared. */
      function errorChunk(input: Buffer, piece: number): { chunk: number; chunks: number } {
        const recorder = new Recorder({ role });
        const copy = Buffer.from(input);
        let chunks = 0;
        let at = -1;
        for (let offset = 0; offset < copy.length; offset += piece) {
          recorder.receive(copy.subarray(offset, Math.min(copy.length, offset + piece)));
          if (at < 0 && recorder.events.some((event) => event.type === "error")) at = chunks;
          chunks++;
        }
        const error = recorder.events.find((event) => event.type === "error");
        assert.deepEqual(error && "closeCode" in error ? error.closeCode : undefined, INVALID_UTF8);
        return { chunk: at, chunks };
      }

      it("fails as soon as the invalid byte of a 1000-byte frame arrives, before the rest", () => {
        const payload = Buffer.alloc(1000, 0x61);
        payload[9] = 0xff;
        const frame = inbound(role, OP.text, payload);
        const headerLength = frame.length - 1000;
        const invalidAt = headerLength + 9;
        for (const piece of [1, 2, 3, 5, 7, 16, 100]) {
          const { chunk, chunks } = errorChunk(frame, piece);
          assert.equal(chunk, Math.floor(invalidAt / piece), `pieces of ${piece} bytes`);
          assert.ok(chunk < chunks - 1, "before the rest of the frame arrived");
        }
      });

      it("fails as soon as a continuation byte turns out wrong (E0 then 80)", () => {
        const payload = Buffer.alloc(1000, 0x61);
        payload[8] = 0xe0;
        payload[9] = 0x80;
        const frame = inbound(role, OP.text, payload);
        const invalidAt = frame.length - 1000 + 9;
        assert.equal(errorChunk(frame, 1).chunk, invalidAt);
        assert.equal(errorChunk(frame, 4).chunk, Math.floor(invalidAt / 4));
      });

      it("fails as soon as the invalid byte of a later fragment arrives", () => {
        const first = inbound(role, OP.text, "a".repeat(500), { fin: false });
        const secondPayload = Buffer.alloc(500, 0x62);
        secondPayload[9] = 0xc0;
        const input = Buffer.concat([first, inbound(role, OP.continuation, secondPayload)]);
        const invalidAt = input.length - 500 + 9;
        for (const piece of [1, 3, 64]) {
          const { chunk, chunks } = errorChunk(input, piece);
          assert.equal(chunk, Math.floor(invalidAt / piece), `pieces of ${piece} bytes`);
          assert.ok(chunk < chunks - 1);
        }
      });

      it("fails as soon as a sequence begun in one fragment is broken in the next", () => {
        const first = inbound(role, OP.text, Buffer.from([0x61, 0xf0, 0x9f]), { fin: false });
        const secondPayload = Buffer.alloc(300, 0x61); // 0x61 cannot continue F0 9F
        const input = Buffer.concat([first, inbound(role, OP.continuation, secondPayload)]);
        const invalidAt = input.length - 300;
        assert.equal(errorChunk(input, 1).chunk, invalidAt);
      });

      it("fails at the first byte of a fragment that is already impossible (F4 90)", () => {
        const first = inbound(role, OP.text, Buffer.from([0x61, 0xf4]), { fin: false });
        const input = Buffer.concat([
          first,
          inbound(role, OP.continuation, Buffer.alloc(200, 0x90)),
        ]);
        const invalidAt = input.length - 200;
        assert.equal(errorChunk(input, 1).chunk, invalidAt);
      });
    });
  });
}
