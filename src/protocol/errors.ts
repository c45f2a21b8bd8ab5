import { CloseCode } from "./close-code.js";

/** Base class of every error moonsocket throws; `code` is a stable machine-readable name. */
export class MoonsocketError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * The peer broke RFC 6455/7692. `closeCode` is the status the connection is failed with
 * (1002, 1007, 1009, …); the core never throws it at the peer's input, it records it.
 */
export class ProtocolError extends MoonsocketError {
  readonly closeCode: number;
  constructor(closeCode: number, message: string, code = "ERR_WS_PROTOCOL") {
    super(code, message);
    this.closeCode = closeCode;
  }
}

/**
 * The opening handshake was refused; `status` is the HTTP status to answer with (server side),
 * or the one the server answered with (client side; 0 when there was no usable response).
 */
export class HandshakeError extends MoonsocketError {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  /** Client side: the body of the server's refusal (its reason, as text), or "". */
  readonly body: string;
  constructor(status: number, message: string, headers: Record<string, string> = {}, body = "") {
    super("ERR_WS_HANDSHAKE", message);
    this.status = status;
    this.headers = headers;
    this.body = body;
  }
}

/** API misuse: an argument or a call that the current state does not allow. */
export class StateError extends MoonsocketError {
  constructor(message: string, code = "ERR_WS_STATE") {
    super(code, message);
  }
}

/** Sending on a connection that is closing or closed. */
export class ClosedError extends MoonsocketError {
  readonly closeCode: number;
  constructor(
    message = "the WebSocket connection is closed",
    closeCode: number = CloseCode.AbnormalClosure,
  ) {
    super("ERR_WS_CLOSED", message);
    this.closeCode = closeCode;
  }
}
