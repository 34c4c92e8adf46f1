/** A small typed event emitter: one listener set per event name. */
export class Emitter<Events extends object> {
  private readonly listeners = new Map<keyof Events, Set<(value: never) => void>>();

  /** Calls `listener` for every `name` event until the returned function is called. */
  on<K extends keyof Events>(name: K, listener: (value: Events[K]) => void): () => void {
    let set = this.listeners.get(name);
    if (!set) this.listeners.set(name, (set = new Set()));
    set.add(listener as (value: never) => void);
    return () => set.delete(listener as (value: never) => void);
  }

  protected emit<K extends keyof Events>(name: K, value: Events[K]): void {
    for (const listener of this.listeners.get(name) ?? []) {
      // One failing listener must not stop the others or the protocol loop.
      try {
        (listener as (value: Events[K]) => void)(value);
      } catch (error) {
        console.error(`natter: ${String(name)} listener failed`, error);
      }
    }
  }
}
