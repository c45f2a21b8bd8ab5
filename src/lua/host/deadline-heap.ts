/** An entry of a {@link DeadlineHeap}: its deadline, and its place in the heap (-1 when out). */
export interface Deadlined {
  deadline: number;
  heapIndex: number;
}

/**
 * A binary min-heap of deadlines that knows where each entry is, so one can leave it in
 * O(log n) when its wait ends early (a read that got data before its timeout). One host timer
 * armed for the earliest deadline then serves every waiting read.
 */
export class DeadlineHeap<T extends Deadlined> {
  private readonly items: T[] = [];

  get size(): number {
    return this.items.length;
  }

  /** The entry with the earliest deadline, or undefined. */
  peek(): T | undefined {
    return this.items[0];
  }

  insert(item: T): void {
    const items = this.items;
    item.heapIndex = items.length;
    items.push(item);
    this.up(item.heapIndex);
  }

  /** Takes `item` out; nothing when it is not in the heap. */
  remove(item: T): void {
    const index = item.heapIndex;
    const items = this.items;
    if (index < 0 || items[index] !== item) return;
    item.heapIndex = -1;
    const last = items.pop()!;
    if (index === items.length) return;
    items[index] = last;
    last.heapIndex = index;
    this.down(index);
    this.up(last.heapIndex);
  }

  /** Takes out and returns the earliest entry if its deadline is at or before `now`. */
  popDue(now: number): T | undefined {
    const first = this.items[0];
    if (first === undefined || first.deadline > now) return undefined;
    this.remove(first);
    return first;
  }

  private up(index: number): void {
    const items = this.items;
    const item = items[index]!;
    while (index > 0) {
      const parentIndex = (index - 1) >> 1;
      const parent = items[parentIndex]!;
      if (parent.deadline <= item.deadline) break;
      items[index] = parent;
      parent.heapIndex = index;
      index = parentIndex;
    }
    items[index] = item;
    item.heapIndex = index;
  }

  private down(index: number): void {
    const items = this.items;
    const count = items.length;
    const item = items[index]!;
    for (;;) {
      let child = 2 * index + 1;
      if (child >= count) break;
      if (child + 1 < count && items[child + 1]!.deadline < items[child]!.deadline) child++;
      const smallest = items[child]!;
      if (smallest.deadline >= item.deadline) break;
      items[index] = smallest;
      smallest.heapIndex = index;
      index = child;
    }
    items[index] = item;
    item.heapIndex = index;
  }
}
