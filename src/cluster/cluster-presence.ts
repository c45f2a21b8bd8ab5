/**
 * A node's mirror of who is connected across the cluster: client id → the node holding it. It is
 * filled from Redis on (re)connection and kept current by the presence events of the cluster
 * channel, so `clients()` and "is this id on another node?" are answered without a round trip.
 *
 * @module
 */

/** Client ids and their nodes, with the sorted id list cached between changes. */
export class ClusterPresence {
  readonly #owners = new Map<number, string>();
  #sorted: readonly number[] | undefined;

  /** The node holding `id`, or undefined. */
  ownerOf(id: number): string | undefined {
    return this.#owners.get(id);
  }

  /** Every connected id, ascending (cached until the next change). */
  ids(): readonly number[] {
    this.#sorted ??= [...this.#owners.keys()].sort((a, b) => a - b);
    return this.#sorted;
  }

  /** `node` holds `id` (a join, or an allocation of this node). */
  add(id: number, node: string): void {
    this.#owners.set(id, node);
    this.#sorted = undefined;
  }

  /** `node` released `id`; ignored if the id has moved on to another node meanwhile. */
  remove(id: number, node: string): void {
    if (this.#owners.get(id) === node && this.#owners.delete(id)) this.#sorted = undefined;
  }

  /** Forgets every id of `node` (it left, or its lease expired). */
  removeNode(node: string): void {
    for (const [id, owner] of this.#owners) if (owner === node) this.#owners.delete(id);
    this.#sorted = undefined;
  }

  /** Replaces everything with `owners` (a fresh read of Redis). */
  replace(owners: Iterable<readonly [number, string]>): void {
    this.#owners.clear();
    for (const [id, node] of owners) this.#owners.set(id, node);
    this.#sorted = undefined;
  }

  /** Forgets everything. */
  clear(): void {
    this.replace([]);
  }
}
