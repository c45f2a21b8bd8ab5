/**
 * Publish/subscribe membership, knowing nothing of sockets: topic name → subscribers, and
 * subscriber → topics so that a leaving subscriber is removed from all of them at once.
 */
export class TopicRegistry<T> {
  private readonly topics = new Map<string, Set<T>>();
  private readonly memberships = new Map<T, Set<string>>();

  /** Adds `member` to `topic`; returns false if it was already subscribed. */
  subscribe(member: T, topic: string): boolean {
    let members = this.topics.get(topic);
    if (members === undefined) this.topics.set(topic, (members = new Set()));
    if (members.has(member)) return false;
    members.add(member);
    let topics = this.memberships.get(member);
    if (topics === undefined) this.memberships.set(member, (topics = new Set()));
    topics.add(topic);
    return true;
  }

  /** Removes `member` from `topic`; returns false if it was not subscribed. */
  unsubscribe(member: T, topic: string): boolean {
    const members = this.topics.get(topic);
    if (members === undefined || !members.delete(member)) return false;
    if (members.size === 0) this.topics.delete(topic);
    const topics = this.memberships.get(member);
    topics?.delete(topic);
    if (topics?.size === 0) this.memberships.delete(member);
    return true;
  }

  /** Removes `member` from every topic. */
  removeMember(member: T): void {
    const topics = this.memberships.get(member);
    if (topics === undefined) return;
    for (const topic of topics) {
      const members = this.topics.get(topic);
      members?.delete(member);
      if (members?.size === 0) this.topics.delete(topic);
    }
    this.memberships.delete(member);
  }

  /** The subscribers of `topic` (an empty iterable when none). */
  subscribers(topic: string): ReadonlySet<T> {
    return this.topics.get(topic) ?? EMPTY;
  }

  /** The topics `member` is subscribed to. */
  topicsOf(member: T): ReadonlySet<string> {
    return this.memberships.get(member) ?? (EMPTY as ReadonlySet<string>);
  }

  /** Number of topics with at least one subscriber. */
  get size(): number {
    return this.topics.size;
  }
}

const EMPTY: ReadonlySet<never> = new Set<never>();
