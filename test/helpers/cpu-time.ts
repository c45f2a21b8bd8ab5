/**
 * CPU time for tests that bound how much work a synchronous call does: unlike wall-clock time,
 * it does not stretch when the machine is busy with other processes.
 */

/** CPU milliseconds this process has used (user + system), from an arbitrary origin. */
export function processCpuMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}
