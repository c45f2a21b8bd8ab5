/** Close status codes, RFC 6455 §7.4.1 (names as in the RFC's IANA registry, §11.7). */
export const CloseCode = {
  NormalClosure: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  UnsupportedData: 1003,
  /** Reserved: "no status code was present". Never sent on the wire. */
  NoStatusReceived: 1005,
  /** Reserved: the connection dropped without a close frame. Never sent on the wire. */
  AbnormalClosure: 1006,
  InvalidPayloadData: 1007,
  PolicyViolation: 1008,
  MessageTooBig: 1009,
  MandatoryExtension: 1010,
  InternalError: 1011,
  ServiceRestart: 1012,
  TryAgainLater: 1013,
  BadGateway: 1014,
  /** Reserved: TLS handshake failure. Never sent on the wire. */
  TlsHandshake: 1015,
} as const;

export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/**
 * Whether `code` may appear in a close frame (§7.4). 1000–1003 and 1007–1014 are defined
 * for use; 3000–4999 belong to libraries and applications; 1004, 1005, 1006, 1015 and every
 * other value below 3000 are reserved or unassigned.
 */
export function isValidCloseCode(code: number): boolean {
  if (code >= 3000 && code <= 4999) return true;
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014);
}
