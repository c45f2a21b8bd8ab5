/**
 * Hands out the lowest free non-negative integer id, as WebSocketServer's client slots did:
 * an id comes back into use once its client has left. O(log n) per call (a binary min-heap
 * of released ids below the high-water mark).
 */
export class ClientIds {
  private next = 0;
  private readonly released: number[] = [];

  /** The lowest id not in use. */
  acquire(): number {
    const heap = this.released;
    if (heap.length === 0) return this.next++;
    const lowest = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      siftDown(heap, 0);
    }
    return lowest;
  }

  /** Returns `id` to the pool. Releasing an id that is not in use is a bug and throws. */
  release(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.next)
      throw new RangeError(`client id ${id} was never handed out`);
    if (id === this.next - 1) {
      // Shrink the high-water mark instead of growing the heap when the top id leaves.
      this.next--;
      while (this.next > 0 && this.removeFromHeap(this.next - 1)) this.next--;
      return;
    }
    const heap = this.released;
    heap.push(id);
    siftUp(heap, heap.length - 1);
  }

  private removeFromHeap(id: number): boolean {
    const heap = this.released;
    const index = heap.indexOf(id);
    if (index < 0) return false;
    const last = heap.pop()!;
    if (index < heap.length) {
      heap[index] = last;
      siftDown(heap, index);
      siftUp(heap, index);
    }
    return true;
  }
}

function siftUp(heap: number[], index: number): void {
  const value = heap[index]!;
  while (index > 0) {
    const parent = (index - 1) >> 1;
    if (heap[parent]! <= value) break;
    heap[index] = heap[parent]!;
    index = parent;
  }
  heap[index] = value;
}

function siftDown(heap: number[], index: number): void {
  const value = heap[index]!;
  const length = heap.length;
  for (;;) {
    let child = 2 * index + 1;
    if (child >= length) break;
    if (child + 1 < length && heap[child + 1]! < heap[child]!) child++;
    if (heap[child]! >= value) break;
    heap[index] = heap[child]!;
    index = child;
  }
  heap[index] = value;
}
