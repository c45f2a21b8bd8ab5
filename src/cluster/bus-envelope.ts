/**
 * The bytes a networked bus puts on a channel: one ASCII header line, then the payload as is.
 *
 * ```text
 * Bt node-a\n<payload>        broadcast, text, from node-a
 * Tb node-a 7\n<payload>      to client 7, binary
 * Pt node-a\n<payload>        topic publication (the topic is the channel's)
 * J node-a 7\n                presence: node-a holds client 7
 * L node-a 7\n                presence: node-a released client 7
 * X node-a\n                  node-a left or its lease expired: forget all its clients
 * ```
 *
 * The presence lines are also written by the Lua scripts in Redis (redis-scripts.ts), so keep
 * both sides in step. Node names never contain a space or a newline (see {@link checkNodeId}).
 *
 * @module
 */

import type { BusMessage } from "../server/bus.js";

/** What an envelope says. */
export type Envelope =
  | { readonly kind: "broadcast" | "topic"; readonly origin: string; readonly message: BusMessage }
  | {
      readonly kind: "to";
      readonly origin: string;
      readonly id: number;
      readonly message: BusMessage;
    }
  | { readonly kind: "join" | "leave"; readonly origin: string; readonly id: number }
  | { readonly kind: "purge"; readonly origin: string };

const NEWLINE = 0x0a;

/**
 * Encodes a message envelope: `kind` is `"B"` (broadcast), `"P"` (topic) or `"T"` (to `id`).
 * A text payload stays text bytes; the header says whether it is binary.
 */
export function encodeMessage(
  kind: "B" | "P" | "T",
  origin: string,
  message: BusMessage,
  id?: number,
): Buffer {
  const header = `${kind}${message.binary ? "b" : "t"} ${origin}${id === undefined ? "" : ` ${id}`}\n`;
  const payload =
    typeof message.data === "string"
      ? Buffer.from(message.data)
      : Buffer.from(message.data.buffer, message.data.byteOffset, message.data.byteLength);
  return Buffer.concat([Buffer.from(header, "latin1"), payload]);
}

/** Decodes an envelope; undefined for bytes that are not one (ignored and logged by the caller). */
export function decodeEnvelope(bytes: Buffer): Envelope | undefined {
  const end = bytes.indexOf(NEWLINE);
  if (end < 0) return undefined;
  const [tag, origin, idText] = bytes.toString("latin1", 0, end).split(" ");
  if (tag === undefined || origin === undefined || origin === "") return undefined;
  const id = idText === undefined ? undefined : Number(idText);
  if (id !== undefined && !(Number.isInteger(id) && id >= 0)) return undefined;
  const kind = tag[0];
  if (kind === "B" || kind === "P" || kind === "T") {
    const binary = tag[1] === "b";
    // A text payload stays bytes: the hub sends them as a text frame without decoding them.
    const message: BusMessage = { data: bytes.subarray(end + 1), binary };
    if (kind === "T") return id === undefined ? undefined : { kind: "to", origin, id, message };
    return { kind: kind === "B" ? "broadcast" : "topic", origin, message };
  }
  if (kind === "J" || kind === "L") {
    return id === undefined ? undefined : { kind: kind === "J" ? "join" : "leave", origin, id };
  }
  if (kind === "X") return { kind: "purge", origin };
  return undefined;
}

/**
 * Checks a node name: 1 to 100 characters of letters, digits and `._:-`.
 * @throws {RangeError} otherwise.
 */
export function checkNodeId(nodeId: string): string {
  if (!/^[A-Za-z0-9._:-]{1,100}$/.test(nodeId)) {
    throw new RangeError(`node id must be 1-100 of [A-Za-z0-9._:-], got ${JSON.stringify(nodeId)}`);
  }
  return nodeId;
}
