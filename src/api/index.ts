/**
 * The analysts' read API in one call for the server: its OpenAPI docs at `/docs`, then the calls
 * and numbers routes under `/v1`, each in its own encapsulated context (error handler and hooks
 * there do not touch the server's other routes).
 */
import type { FastifyInstance } from 'fastify';
import type { CallStore } from '../store/call-store.js';
import type { ApiKeys } from './api-keys.js';
import callsRoutes from './calls-routes.js';
import { registerApiDocs } from './docs.js';
import numbersRoutes from './numbers-routes.js';

export { ApiKeys, ApiKeysError, parseApiKeys, type ApiRole } from './api-keys.js';
export { requireRole } from './auth.js';
export { registerApiDocs } from './docs.js';
export { default as callsRoutes, type CallsRoutesOptions } from './calls-routes.js';
export { default as numbersRoutes, type NumbersRoutesOptions } from './numbers-routes.js';

export interface AnalystApiOptions {
  store: Pick<CallStore, 'listCalls' | 'getCall' | 'getNumber' | 'listNumbers' | 'upsertNumber'>;
  /** From `parseApiKeys(process.env.API_KEYS)`; empty: every /v1 request is refused (401). */
  apiKeys: ApiKeys;
}

/** Docs first (they must see the routes being added), then the routes. */
export async function registerAnalystApi(app: FastifyInstance, options: AnalystApiOptions): Promise<void> {
  if (options.apiKeys.size === 0) {
    app.log.warn({ event: 'api_closed' }, 'API_KEYS is not set: every /v1 request is refused (401) until it is');
  }
  await registerApiDocs(app);
  await app.register(callsRoutes, { store: options.store, apiKeys: options.apiKeys });
  await app.register(numbersRoutes, { store: options.store, apiKeys: options.apiKeys });
}
