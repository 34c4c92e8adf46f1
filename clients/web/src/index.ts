/** natter for the browser: the wire codec and a client that reconnects, resumes and retries. */
export * from './codec/index.js';
export { Client, NatterError } from './client/client.js';
export type {
  ClientEvents,
  ClientOptions,
  ConnectionState,
  EventSource,
  PendingSend,
  SendResult,
} from './client/client.js';
export { directConversation, directPeer, isValidUserId } from './client/ids.js';
export { memoryStore, systemClock, webSocket } from './client/transport.js';
export type {
  Clock,
  Connect,
  KeyValueStore,
  Transport,
  TransportHandlers,
} from './client/transport.js';
