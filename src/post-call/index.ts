/** The post-call pipeline: the job contract, the server's queue, the processor and the worker. */
export * from './job.js';
export * from './queue.js';
export * from './analysis.js';
export * from './processor.js';
export * from './worker.js';
export * from './config.js';
export type { PostCallLogger } from './logger.js';
