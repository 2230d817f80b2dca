/** The durable store: open it (migrations applied), then read and write through a CallStore. */
export * from './database.js';
export * from './call-store.js';
export * from './types.js';
export * from './call-ledger.js';
