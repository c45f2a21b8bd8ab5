import type { Socket } from "node:net";
import type { ConnectionOptions } from "../protocol/connection.js";
import {
  SocketTransport,
  type TransportHandler,
  type TransportLimits,
} from "../transport/socket-transport.js";
import { PacedInput } from "./paced-input.js";

/**
 * The client's socket transport: everything read (the socket's chunks and the bytes that
 * came with the 101 response) goes through a `PacedInput`, which decides when the
 * connection sees it.
 */
export class ClientTransport extends SocketTransport {
  /** The input not yet fed to the connection; see `PacedInput`. */
  readonly input: PacedInput;

  /** `readerWaiting` as for `PacedInput`: null in frame mode. */
  constructor(
    socket: Socket,
    handler: TransportHandler,
    options: ConnectionOptions,
    limits: TransportLimits,
    readerWaiting: (() => boolean) | null,
  ) {
    super(socket, handler, options, limits);
    this.input = new PacedInput((bytes) => super.receive(bytes), readerWaiting);
    // Once the server has sent all it will send, what is held must be read before the
    // transport acts on it: on 'end' before our side is ended (so a close reply still goes
    // out), on 'close' before the close is reported (messages queued, the close code known).
    const drain = () => this.input.drain();
    socket.prependListener("end", drain);
    socket.prependListener("close", drain);
  }

  /** Bytes read from the socket, handed to the paced input. */
  override receive(chunk: Buffer): void {
    this.input.push(chunk);
  }
}
