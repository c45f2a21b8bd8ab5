import type { Counter, CounterChild, Gauge, MetricsRegistry } from "../observability/metrics.js";

/** The server's counters and gauges, resolved once so the hot path only adds numbers. */
export class ServerMetrics {
  readonly connections: Gauge;
  readonly connectionsTotal: Counter;
  readonly messagesReceived: Counter;
  readonly messagesSent: Counter;
  readonly bytesReceived: Counter;
  readonly handshakeFailures: Counter;
  readonly protocolErrors: Counter;
  readonly limitCloses: Counter;
  readonly hookErrors: Counter;
  private readonly limitChildren = new Map<string, CounterChild>();

  constructor(registry: MetricsRegistry) {
    this.connections = registry.gauge({
      name: "moonsocket_connections",
      help: "WebSocket clients connected now.",
    });
    this.connectionsTotal = registry.counter({
      name: "moonsocket_connections_total",
      help: "WebSocket clients accepted since start.",
    });
    this.messagesReceived = registry.counter({
      name: "moonsocket_messages_received_total",
      help: "Messages received from clients.",
    });
    this.messagesSent = registry.counter({
      name: "moonsocket_messages_sent_total",
      help: "Messages sent to clients (a broadcast counts once per receiver).",
    });
    this.bytesReceived = registry.counter({
      name: "moonsocket_received_bytes_total",
      help: "Message payload bytes received from clients.",
    });
    this.handshakeFailures = registry.counter({
      name: "moonsocket_handshake_failures_total",
      help: "Upgrade requests refused, by HTTP status.",
      labelNames: ["status"],
    });
    this.protocolErrors = registry.counter({
      name: "moonsocket_protocol_errors_total",
      help: "Connections failed for breaking RFC 6455, by close code.",
      labelNames: ["code"],
    });
    this.limitCloses = registry.counter({
      name: "moonsocket_limit_closes_total",
      help: "Connections closed for exceeding a limit, by limit.",
      labelNames: ["limit"],
    });
    this.hookErrors = registry.counter({
      name: "moonsocket_hook_errors_total",
      help: "Errors thrown by application hooks.",
    });
  }

  /** Counts a connection closed for a limit (max_payload, max_connections, backpressure, idle, …). */
  countLimit(limit: string): void {
    let child = this.limitChildren.get(limit);
    if (child === undefined)
      this.limitChildren.set(limit, (child = this.limitCloses.labels({ limit })));
    child.inc();
  }
}
