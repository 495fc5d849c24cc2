export { RemoteCheckpointSaver, type RemoteCheckpointSaverOptions } from './saver.js';
export { RemoteCheckpointError, type TransportOptions } from './transport.js';
export type * from './wire.js';
