/**
 * moonsocket's public surface: the server, the client, the hooks interface, Lua scripts on a
 * server (ScriptApp) and the sans-I/O protocol core.
 * @module
 */
export {
  type ClientOptions,
  type CloseInfo,
  connect,
  Message,
  WebSocketClient,
} from "./client/client.js";
export { ScriptApp, type ScriptAppOptions } from "./lua/script-app.js";
export { createLogger, type Logger } from "./observability/logger.js";
export { MetricsRegistry } from "./observability/metrics.js";
export { CloseCode, isValidCloseCode } from "./protocol/close-code.js";
export type { MessageCompressor } from "./protocol/compression.js";
export {
  type CloseOutcome,
  Connection,
  type ConnectionEvents,
  type ConnectionOptions,
  ConnectionState,
  DEFAULT_MAX_PAYLOAD,
  type MessageEvents,
  type TransportEvents,
} from "./protocol/connection.js";
export {
  ClosedError,
  HandshakeError,
  MoonsocketError,
  ProtocolError,
  StateError,
} from "./protocol/errors.js";
export { encodeFrame } from "./protocol/frame.js";
export { type FrameHandler, FrameParser } from "./protocol/frame-parser.js";
export {
  buildUpgradeResponse,
  computeAcceptKey,
  parseUpgradeRequest,
  parseUpgradeResponse,
} from "./protocol/handshake.js";
export { Opcode } from "./protocol/opcode.js";
export {
  acceptDeflateOffer,
  buildDeflateOffer,
  type DeflateOptions,
  type DeflateParams,
  parseExtensions,
} from "./protocol/permessage-deflate.js";
export { isValidUtf8, Utf8Validator } from "./protocol/utf8.js";
export type { ServerHooks } from "./server/server.js";
export { readTlsFiles, WebSocketServer } from "./server/server.js";
export { SendStatus, ServerClient } from "./server/server-client.js";
export { SERVER_DEFAULTS, type ServerOptions } from "./server/server-options.js";
export { ZlibCompressor } from "./transport/zlib-compressor.js";
