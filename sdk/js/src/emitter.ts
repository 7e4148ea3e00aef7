/** A small typed event emitter (no dependency on Node's `events`, so it runs in browsers). */

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Listener = (arg: any) => void;

export class Emitter<Events extends Record<string, unknown>> {
  #listeners = new Map<keyof Events, Listener[]>();
  /** Called with errors thrown by listeners (they never break the SDK's own flow). */
  protected listenerError: (err: unknown) => void = (err) => queueMicrotask(() => {
    throw err;
  });

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof Events>(name: K, fn: (arg: Events[K]) => void): () => void {
    const list = this.#listeners.get(name);
    if (list) list.push(fn);
    else this.#listeners.set(name, [fn]);
    this.listenerAdded(name);
    return () => this.off(name, fn);
  }

  /** Adds a listener that runs once. */
  once<K extends keyof Events>(name: K, fn: (arg: Events[K]) => void): () => void {
    const off = this.on(name, (arg) => {
      off();
      fn(arg);
    });
    return off;
  }

  off<K extends keyof Events>(name: K, fn: (arg: Events[K]) => void): void {
    const list = this.#listeners.get(name);
    if (!list) return;
    const i = list.indexOf(fn);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.#listeners.delete(name);
  }

  listenerCount<K extends keyof Events>(name: K): number {
    return this.#listeners.get(name)?.length ?? 0;
  }

  protected emit<K extends keyof Events>(name: K, arg: Events[K]): void {
    const list = this.#listeners.get(name);
    if (!list) return;
    if (list.length === 1) {
      this.#call(list[0]!, arg);
      return;
    }
    for (const fn of list.slice()) this.#call(fn, arg);
  }

  #call(fn: Listener, arg: unknown): void {
    try {
      fn(arg);
    } catch (err) {
      this.listenerError(err);
    }
  }

  /** Hook for subclasses. */
  protected listenerAdded(_name: keyof Events): void {}
}
