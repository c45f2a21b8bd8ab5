/**
 * A cluster node in its own process, for cluster-redis-processes.test.ts: a RedisBus driven over
 * the fork IPC channel. Requests are `{ seq, op, ...args }`, answered with `{ seq, result }` or
 * `{ seq, error }`; what the bus delivers is reported as `{ event, ... }`.
 */

import { RedisBus } from "../../src/cluster/redis-bus.js";
import { createLogger } from "../../src/observability/logger.js";
import { MetricsRegistry } from "../../src/observability/metrics.js";
import type { BusMessage } from "../../src/server/bus.js";

interface Request {
  readonly seq: number;
  readonly op: string;
  readonly [arg: string]: unknown;
}

const send = process.send?.bind(process);
if (send !== undefined) {
  let bus: RedisBus | undefined;
  const text = (message: BusMessage) =>
    typeof message.data === "string" ? message.data : Buffer.from(message.data).toString();
  const message = (data: unknown): BusMessage => ({ data: String(data), binary: false });

  async function run(request: Request): Promise<unknown> {
    switch (request.op) {
      case "start":
        bus = new RedisBus({
          url: String(request.url),
          nodeId: String(request.nodeId),
          leaseMs: Number(request.leaseMs),
          keyPrefix: String(request.keyPrefix),
          metrics: new MetricsRegistry(),
          logger: createLogger({ level: "warn" }),
        });
        await bus.start({
          deliverTo: (id, m) => send!({ event: "to", id, text: text(m) }),
          deliverAll: (m) => send!({ event: "all", text: text(m) }),
          deliverTopic: (topic, m) => send!({ event: "topic", topic, text: text(m) }),
          revokeId: (id) => send!({ event: "revoked", id }),
        });
        return bus.nodeId;
      case "acquire":
        return bus!.acquireId();
      case "release":
        return bus!.releaseId(Number(request.id));
      case "clients":
        return bus!.clients();
      case "sendTo":
        return bus!.sendTo(Number(request.id), message(request.text));
      case "broadcast":
        return bus!.broadcast(message(request.text));
      case "subscribe":
        return bus!.subscribe(String(request.topic));
      case "publish":
        return bus!.publish(String(request.topic), message(request.text));
      case "stop":
        await bus!.stop();
        process.disconnect();
        return undefined;
      default:
        throw new Error(`unknown op ${request.op}`);
    }
  }

  process.on("message", (request: Request) => {
    run(request).then(
      (result) => send({ seq: request.seq, result: result ?? null }),
      (error: unknown) => send({ seq: request.seq, error: String(error) }),
    );
  });
}
