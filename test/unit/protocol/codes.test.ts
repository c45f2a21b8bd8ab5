import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CloseCode, isValidCloseCode } from "../../../src/protocol/close-code.js";
import {
  ClosedError,
  HandshakeError,
  MoonsocketError,
  ProtocolError,
  StateError,
} from "../../../src/protocol/errors.js";
import { isControlOpcode, isKnownOpcode, Opcode } from "../../../src/protocol/opcode.js";

describe("Opcode", () => {
  it("has the RFC 6455 §11.8 values", () => {
    assert.deepEqual(Opcode, { Continuation: 0, Text: 1, Binary: 2, Close: 8, Ping: 9, Pong: 10 });
  });
  it("knows exactly 0, 1, 2, 8, 9 and 10", () => {
    const known = [];
    for (let opcode = 0; opcode < 16; opcode++) if (isKnownOpcode(opcode)) known.push(opcode);
    assert.deepEqual(known, [0, 1, 2, 8, 9, 10]);
  });
  it("treats opcodes with the high bit set as control opcodes", () => {
    const control = [];
    for (let opcode = 0; opcode < 16; opcode++) if (isControlOpcode(opcode)) control.push(opcode);
    assert.deepEqual(control, [8, 9, 10, 11, 12, 13, 14, 15]);
  });
});

describe("isValidCloseCode", () => {
  it("accepts 1000–1003, 1007–1014 and 3000–4999 and nothing else in 0–65535", () => {
    const valid: number[] = [];
    for (let code = 0; code <= 65535; code++) if (isValidCloseCode(code)) valid.push(code);
    const expected = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014];
    for (let code = 3000; code <= 4999; code++) expected.push(code);
    assert.deepEqual(valid, expected);
  });
  it("rejects the reserved codes that never go on the wire", () => {
    for (const code of [
      CloseCode.NoStatusReceived,
      CloseCode.AbnormalClosure,
      CloseCode.TlsHandshake,
      1004,
    ]) {
      assert.equal(isValidCloseCode(code), false);
    }
  });
});

describe("errors", () => {
  it("ProtocolError carries its close code and a default code", () => {
    const error = new ProtocolError(1002, "bad");
    assert.ok(error instanceof MoonsocketError && error instanceof Error);
    assert.equal(error.closeCode, 1002);
    assert.equal(error.code, "ERR_WS_PROTOCOL");
    assert.equal(error.name, "ProtocolError");
    assert.equal(error.message, "bad");
    assert.equal(new ProtocolError(1009, "big", "ERR_WS_TOO_BIG").code, "ERR_WS_TOO_BIG");
  });
  it("HandshakeError carries the HTTP status and headers", () => {
    const error = new HandshakeError(426, "version", { "Sec-WebSocket-Version": "13" });
    assert.equal(error.status, 426);
    assert.deepEqual(error.headers, { "Sec-WebSocket-Version": "13" });
    assert.equal(error.code, "ERR_WS_HANDSHAKE");
    assert.deepEqual(new HandshakeError(400, "x").headers, {});
  });
  it("StateError and ClosedError have their codes and defaults", () => {
    assert.equal(new StateError("x").code, "ERR_WS_STATE");
    assert.equal(new StateError("x", "ERR_OTHER").code, "ERR_OTHER");
    const closed = new ClosedError();
    assert.equal(closed.code, "ERR_WS_CLOSED");
    assert.equal(closed.closeCode, 1006);
    assert.match(closed.message, /closed/);
    assert.equal(new ClosedError("gone", 1001).closeCode, 1001);
    assert.equal(closed.name, "ClosedError");
  });
});
