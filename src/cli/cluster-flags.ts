/**
 * `--redis URL` and `--history N`: the flags that make `serve` a node of a cluster. The Redis
 * client is imported only when `--redis` is given, so a single node never loads it.
 *
 * @module
 */

import { parseRedisUrl } from "../cluster/redis-url.js";
import type { Logger } from "../observability/logger.js";
import type { MetricsRegistry } from "../observability/metrics.js";
import type { Bus } from "../server/bus.js";
import { ArgsError, type OptionSpec } from "./args.js";

/** The cluster flags of `serve`. */
export const CLUSTER_FLAGS = {
  redis: {
    type: "string",
    description:
      "join the cluster of every node sharing this Redis: redis://[user:pass@]host:port[/db] or rediss://…",
    metavar: "url",
  },
  history: {
    type: "number",
    integer: true,
    min: 0,
    default: 0,
    description:
      "messages kept per topic for _history / moonsocket.history (in Redis with --redis); 0: off",
  },
} as const satisfies Record<string, OptionSpec>;

/** Parsed values of {@link CLUSTER_FLAGS}. */
export interface ClusterFlagValues {
  redis: string | undefined;
  history: number;
}

/** Makes a node's bus from its server's metrics and log. */
export type BusFactory = (metrics: MetricsRegistry, logger: Logger) => Bus;

/**
 * The bus factory for `--redis`, or undefined without it. Checks the URL first (one line, exit 2)
 * and only then loads the Redis client.
 * @throws {ArgsError} for a malformed URL.
 */
export async function createBusFactory(
  command: string,
  values: ClusterFlagValues,
): Promise<BusFactory | undefined> {
  if (values.redis === undefined) return undefined;
  try {
    parseRedisUrl(values.redis);
  } catch (error) {
    throw new ArgsError(`moonsocket ${command}: --redis: ${(error as Error).message}`);
  }
  const url = values.redis;
  const { RedisBus } = await import("../cluster/redis-bus.js");
  return (metrics, logger) => new RedisBus({ url, metrics, logger, historyLength: values.history });
}
