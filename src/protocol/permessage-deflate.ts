import { HandshakeError } from "./errors.js";

/** One extension from a Sec-WebSocket-Extensions header: its name and parameters (§9.1). */
export interface ExtensionOffer {
  name: string;
  /** Parameter values; `true` for a parameter given without a value. */
  params: Map<string, string | true>;
  /**
   * True when a parameter was given more than once (`params` holds the first value). RFC 7692
   * §7.1: a server declines such an offer (and may accept the next one); a client fails.
   */
  duplicateParams?: boolean;
}

/** permessage-deflate settings in force on a connection (RFC 7692 §7.1). Window sizes as log2 of bytes. */
export interface DeflateParams {
  serverNoContextTakeover: boolean;
  clientNoContextTakeover: boolean;
  serverMaxWindowBits: number;
  clientMaxWindowBits: number;
}

/** What a server or client is willing to negotiate. */
export interface DeflateOptions {
  /** Server: always ask for server_no_context_takeover; client: request it. Default false. */
  serverNoContextTakeover?: boolean;
  /** Server: require client_no_context_takeover; client: offer it. Default false. */
  clientNoContextTakeover?: boolean;
  /** Largest LZ77 window (8–15) the server compresses with. Default 15. */
  serverMaxWindowBits?: number;
  /** Largest window (8–15) the client may compress with. Default 15. */
  clientMaxWindowBits?: number;
  /** Messages shorter than this many bytes are sent uncompressed. Default 1024 bytes... */
  threshold?: number;
  /** zlib compression level 0–9. Default 1 (fast; WebSocket messages are small). */
  level?: number;
  /**
   * Messages larger than this many bytes (compressed or inflated) are compressed and inflated
   * in libuv's thread pool rather than on the event loop. Default 128 KiB.
   */
  inlineBytes?: number;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const WINDOW_BITS = /^(?:[89]|1[0-5])$/;

/**
 * Parses a Sec-WebSocket-Extensions value into offers. Throws a HandshakeError (400) on a
 * malformed header; values may be tokens or quoted strings.
 */
export function parseExtensions(header: string): ExtensionOffer[] {
  const offers: ExtensionOffer[] = [];
  let i = 0;
  const n = header.length;
  const skipSpace = () => {
    while (i < n && (header[i] === " " || header[i] === "\t")) i++;
  };
  const readToken = (): string => {
    const start = i;
    while (i < n && !' \t,;="'.includes(header[i]!)) i++;
    const token = header.slice(start, i);
    if (!TOKEN.test(token)) throw malformed(header);
    return token;
  };
  while (i < n) {
    skipSpace();
    if (header[i] === ",") {
      i++;
      continue;
    }
    if (i >= n) break;
    const offer: ExtensionOffer = { name: readToken().toLowerCase(), params: new Map() };
    skipSpace();
    while (header[i] === ";") {
      i++;
      skipSpace();
      const name = readToken().toLowerCase();
      skipSpace();
      let value: string | true = true;
      if (header[i] === "=") {
        i++;
        skipSpace();
        if (header[i] === '"') {
          const end = header.indexOf('"', i + 1);
          if (end < 0) throw malformed(header);
          value = header.slice(i + 1, end);
          i = end + 1;
          if (!TOKEN.test(value)) throw malformed(header);
        } else {
          value = readToken();
        }
        skipSpace();
      }
      // A repeated parameter is well-formed syntax but an unacceptable offer (RFC 7692 §7.1):
      // mark it so that only this offer is declined, rather than failing the handshake.
      if (offer.params.has(name)) offer.duplicateParams = true;
      else offer.params.set(name, value);
    }
    if (i < n && header[i] !== ",") throw malformed(header);
    offers.push(offer);
  }
  return offers;
}

function malformed(header: string, detail = "malformed"): HandshakeError {
  return new HandshakeError(
    400,
    `invalid Sec-WebSocket-Extensions (${detail}): ${header.slice(0, 200)}`,
  );
}

/**
 * Server side of RFC 7692 §7.1: picks the first permessage-deflate offer it can accept
 * (offers with unknown or invalid parameters are declined, §7.1) and returns the parameters
 * and the response header value, or null to go on without compression.
 */
export function acceptDeflateOffer(
  offers: readonly ExtensionOffer[],
  options: DeflateOptions,
): { params: DeflateParams; response: string } | null {
  for (const offer of offers) {
    if (offer.name !== "permessage-deflate") continue;
    const params = readOffer(offer);
    if (params === null) continue;
    const serverNoContextTakeover =
      params.serverNoContextTakeover || options.serverNoContextTakeover === true;
    const clientNoContextTakeover =
      params.clientNoContextTakeover || options.clientNoContextTakeover === true;
    const configuredServerBits = options.serverMaxWindowBits ?? 15;
    const serverBits = Math.min(params.serverMaxWindowBits ?? 15, configuredServerBits);
    // §7.1.2.2: the server may only limit the client's window when the client said it can.
    if (params.clientMaxWindowBits === undefined && (options.clientMaxWindowBits ?? 15) < 15)
      continue;
    const clientBits = Math.min(
      params.clientMaxWindowBits === true ? 15 : (params.clientMaxWindowBits ?? 15),
      options.clientMaxWindowBits ?? 15,
    );
    let response = "permessage-deflate";
    if (serverNoContextTakeover) response += "; server_no_context_takeover";
    if (clientNoContextTakeover) response += "; client_no_context_takeover";
    if (params.serverMaxWindowBits !== undefined || serverBits < 15)
      response += `; server_max_window_bits=${serverBits}`;
    if (params.clientMaxWindowBits !== undefined && clientBits < 15)
      response += `; client_max_window_bits=${clientBits}`;
    return {
      params: {
        serverNoContextTakeover,
        clientNoContextTakeover,
        serverMaxWindowBits: serverBits,
        clientMaxWindowBits: clientBits,
      },
      response,
    };
  }
  return null;
}

interface OfferedParams {
  serverNoContextTakeover: boolean;
  clientNoContextTakeover: boolean;
  serverMaxWindowBits: number | undefined;
  /** `true` when offered without a value (the client supports any window). */
  clientMaxWindowBits: number | true | undefined;
}

/** Reads a permessage-deflate offer's parameters, or null when it must be declined. */
function readOffer(offer: ExtensionOffer): OfferedParams | null {
  if (offer.duplicateParams === true) return null;
  const result: OfferedParams = {
    serverNoContextTakeover: false,
    clientNoContextTakeover: false,
    serverMaxWindowBits: undefined,
    clientMaxWindowBits: undefined,
  };
  for (const [name, value] of offer.params) {
    switch (name) {
      case "server_no_context_takeover":
        if (value !== true) return null;
        result.serverNoContextTakeover = true;
        break;
      case "client_no_context_takeover":
        if (value !== true) return null;
        result.clientNoContextTakeover = true;
        break;
      case "server_max_window_bits":
        if (value === true || !WINDOW_BITS.test(value)) return null;
        result.serverMaxWindowBits = Number(value);
        break;
      case "client_max_window_bits":
        if (value !== true && !WINDOW_BITS.test(value)) return null;
        result.clientMaxWindowBits = value === true ? true : Number(value);
        break;
      default:
        return null;
    }
  }
  return result;
}

/** The client's permessage-deflate offer (RFC 7692 §7.1), as a Sec-WebSocket-Extensions value. */
export function buildDeflateOffer(options: DeflateOptions): string {
  let offer = "permessage-deflate";
  if (options.serverNoContextTakeover) offer += "; server_no_context_takeover";
  if (options.clientNoContextTakeover) offer += "; client_no_context_takeover";
  if (options.serverMaxWindowBits !== undefined && options.serverMaxWindowBits < 15) {
    offer += `; server_max_window_bits=${options.serverMaxWindowBits}`;
  }
  offer +=
    options.clientMaxWindowBits !== undefined && options.clientMaxWindowBits < 15
      ? `; client_max_window_bits=${options.clientMaxWindowBits}`
      : "; client_max_window_bits";
  return offer;
}

/**
 * Client side: checks the server's Sec-WebSocket-Extensions against what was offered
 * (§7.1: the client fails the handshake on anything it did not offer or cannot honour) and
 * returns the parameters in force, or null when the server declined compression.
 */
export function acceptDeflateResponse(
  header: string,
  options: DeflateOptions,
): DeflateParams | null {
  if (header.trim() === "") return null;
  const offers = parseExtensions(header);
  if (offers.length !== 1 || offers[0]!.name !== "permessage-deflate") {
    throw new HandshakeError(0, `server accepted an extension that was not offered: ${header}`);
  }
  const params = readOffer(offers[0]!);
  if (params === null)
    throw new HandshakeError(0, `server sent invalid permessage-deflate parameters: ${header}`);
  if (params.clientMaxWindowBits === true) {
    throw new HandshakeError(0, "server sent client_max_window_bits without a value");
  }
  const requestedServerBits = options.serverMaxWindowBits ?? 15;
  if (requestedServerBits < 15 && (params.serverMaxWindowBits ?? 15) > requestedServerBits) {
    throw new HandshakeError(0, "server ignored the requested server_max_window_bits");
  }
  if (options.serverNoContextTakeover && !params.serverNoContextTakeover) {
    throw new HandshakeError(0, "server ignored the requested server_no_context_takeover");
  }
  const offeredClientBits = options.clientMaxWindowBits ?? 15;
  const clientBits = params.clientMaxWindowBits ?? offeredClientBits;
  if (clientBits > offeredClientBits)
    throw new HandshakeError(0, "server sent a client_max_window_bits larger than offered");
  return {
    serverNoContextTakeover: params.serverNoContextTakeover,
    clientNoContextTakeover:
      params.clientNoContextTakeover || options.clientNoContextTakeover === true,
    serverMaxWindowBits: params.serverMaxWindowBits ?? 15,
    clientMaxWindowBits: clientBits,
  };
}
