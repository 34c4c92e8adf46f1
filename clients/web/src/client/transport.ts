/** What the client needs from a connection and a clock, so tests can supply fakes. */

/** Callbacks a transport reports to. */
export interface TransportHandlers {
  /** The connection is up. */
  open(): void;
  /** One WebSocket message: a binary frame, or text (a protocol violation). */
  message(data: Uint8Array | string): void;
  /** The connection is gone; called once. */
  close(reason: string): void;
}

/** One connection that carries one complete frame per message. */
export interface Transport {
  send(frame: Uint8Array): void;
  close(): void;
}

/** Opens a connection that reports to `handlers`, never before it has returned. */
export type Connect = (handlers: TransportHandlers) => Transport;

/** Timers and time, injectable so tests run on virtual time. */
export interface Clock {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The browser's clock. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** The subset of the Web Storage API the client persists its cursor and outbox in. */
export type KeyValueStore = Pick<Storage, 'getItem' | 'setItem' | 'removeItem'>;

/** A store that forgets everything when the page goes. */
export function memoryStore(): KeyValueStore {
  const map = new Map<string, string>();
  return {
    getItem: (key) => map.get(key) ?? null,
    setItem: (key, value) => void map.set(key, value),
    removeItem: (key) => void map.delete(key),
  };
}

/** Connects over a WebSocket to `url` (`ws://host/ws`), one binary message per frame. */
export function webSocket(url: string): Connect {
  return (handlers) => {
    const socket = new WebSocket(url);
    socket.binaryType = 'arraybuffer';
    let closed = false;
    const close = (reason: string) => {
      if (closed) return;
      closed = true;
      handlers.close(reason);
    };
    socket.onopen = () => handlers.open();
    socket.onmessage = (message) =>
      handlers.message(
        typeof message.data === 'string' ? message.data : new Uint8Array(message.data),
      );
    socket.onerror = () => close('connection failed');
    socket.onclose = (event) => close(event.reason || `closed (${event.code})`);
    return {
      send: (frame) => {
        if (socket.readyState === WebSocket.OPEN) socket.send(frame);
      },
      close: () => {
        socket.close();
        close('closed by client');
      },
    };
  };
}
