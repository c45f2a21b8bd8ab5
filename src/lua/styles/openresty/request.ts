import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import type { ServerClient } from "../../../server/server-client.js";

/** A WebSocket upgrade request and, once its handler called websocket:new, its connection. */
export interface Request {
  readonly handle: number;
  readonly req: IncomingMessage;
  readonly socket: Socket;
  /** Bytes that arrived before the handshake was answered. */
  head: Buffer;
  /** The connection, once accepted. */
  client: ServerClient | null;
  /** Frames that arrived while the handshake was being answered (inside a Lua call). */
  pendingFrames: Array<[number, Buffer, boolean]> | null;
  finished: boolean;
  disconnected: boolean;
  /** An HTTP answer was written (the handshake refused), so there will be no connection. */
  responded: boolean;
  released: boolean;
  /** ngx.say / ngx.print output and ngx.status, for an answer without a handshake. */
  body: Buffer[];
  /** Bytes in body. */
  bodyBytes: number;
  status: number;
  readonly startTime: number;
  requestId: string | null;
  onEarlyData: ((chunk: Buffer) => void) | null;
}

/** The first value of request header `name` (repeated headers: the first one, as OpenResty takes). */
export function firstHeader(req: IncomingMessage, name: string): string | undefined {
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === name) return raw[i + 1];
  }
  return undefined;
}
