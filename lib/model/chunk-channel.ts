// Streaming with back-pressure: the chunks of one extraction between the native job and one async iterator.
import { binding } from '../addon';
import type { RawControl } from '../addon';

/**
 * Chunks between the native job and one async iterator. Taking a chunk returns its credit to the job (see
 * consumed), which is what bounds the memory a slow consumer can cost.
 */
export class ChunkChannel<Chunk> {
  readonly #queue: Chunk[] = [];
  #reader: { resolve: (r: IteratorResult<Chunk>) => void; reject: (e: unknown) => void } | undefined;
  #control: RawControl | undefined;
  #done = false;
  #error: { value: unknown } | undefined;
  #cancelled = false;

  /** The job's control arrives once the inputs are loaded; a consumer may have left before that. */
  attach(control: RawControl): void {
    this.#control = control;
    if (this.#cancelled) binding().cancel(control);
  }

  push(chunk: Chunk): void {
    this.#queue.push(chunk);
    this.#serve();
  }

  end(): void {
    this.#done = true;
    this.#serve();
  }

  fail(e: unknown): void {
    this.#done = true;
    // After cancel() the abort is expected: reads just end.
    if (!this.#cancelled) this.#error = { value: e };
    this.#serve();
  }

  cancel(): void {
    if (this.#done) return;
    this.#cancelled = true;
    this.#queue.length = 0;
    if (this.#control) binding().cancel(this.#control);
    this.#serve();
  }

  next(): Promise<IteratorResult<Chunk>> {
    return new Promise((resolve, reject) => {
      this.#reader = { resolve, reject };
      this.#serve();
    });
  }

  #serve(): void {
    const reader = this.#reader;
    if (!reader) return;
    if (this.#queue.length && !this.#cancelled) {
      this.#reader = undefined;
      const chunk = this.#queue.shift()!;
      if (this.#control) binding().consumed(this.#control);
      reader.resolve({ value: chunk, done: false });
    } else if (this.#error) {
      this.#reader = undefined;
      const e = this.#error.value;
      this.#error = undefined;
      this.#done = true;
      reader.reject(e);
    } else if (this.#done || this.#cancelled) {
      this.#reader = undefined;
      reader.resolve({ value: undefined, done: true });
    }
  }
}
