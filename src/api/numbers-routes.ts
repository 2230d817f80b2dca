/**
 * Our numbers' agent profiles, for admins: `GET /v1/numbers`, `GET /v1/numbers/:number` and
 * `PUT /v1/numbers/:number` (create or replace the whole profile, recording policy included): 201 with
 * a Location for a new number, 200 for a replaced one.
 * Analysts get 403 here.
 */
import type { FastifyPluginAsync } from 'fastify';
import fp from 'fastify-plugin';
import type { CallStore } from '../store/call-store.js';
import { useApiContext } from './api-context.js';
import { ApiKeys } from './api-keys.js';
import { apiKeyOf, requireRole } from './auth.js';
import { sendApiError } from './errors.js';
import { getNumberSchema, listNumbersSchema, putNumberSchema, type NumberBody, type NumberParams } from './schemas.js';
import { numberView } from './views.js';

export interface NumbersRoutesOptions {
  store: Pick<CallStore, 'getNumber' | 'listNumbers' | 'upsertNumber'>;
  apiKeys: ApiKeys;
}

const PUT_BODY_LIMIT = 512 * 1024;

const numbersRoutes: FastifyPluginAsync<NumbersRoutesOptions> = async (app, options) => {
  if (!(options.apiKeys instanceof ApiKeys)) throw new Error('numbers routes: apiKeys must be an ApiKeys (parseApiKeys)');
  const store = options.store;
  if (typeof store?.getNumber !== 'function' || typeof store.listNumbers !== 'function' || typeof store.upsertNumber !== 'function') {
    throw new Error('numbers routes: store must be a CallStore');
  }
  useApiContext(app);
  const admins = requireRole(options.apiKeys, 'admin');

  app.get('/v1/numbers', { schema: listNumbersSchema, onRequest: admins }, async () => ({
    numbers: (await store.listNumbers()).map(numberView),
  }));

  app.get<{ Params: NumberParams }>('/v1/numbers/:number', { schema: getNumberSchema, onRequest: admins }, async (request, reply) => {
    const profile = await store.getNumber(request.params.number);
    if (profile === undefined) return sendApiError(reply, 'not_found', `number ${request.params.number} is not configured`);
    return numberView(profile);
  });

  app.put<{ Params: NumberParams; Body: NumberBody }>(
    '/v1/numbers/:number',
    // A prompt may be long: up to 100 000 characters, more than the server's default body limit.
    { schema: putNumberSchema, onRequest: admins, bodyLimit: PUT_BODY_LIMIT },
    async (request, reply) => {
      const { number } = request.params;
      const body = request.body;
      if (isSet(body.scriptPath) && isSet(body.prompt)) {
        return sendApiError(reply, 'invalid_request', 'body: set scriptPath or prompt, not both');
      }
      const { profile, created } = await store.upsertNumber({ ...body, number });
      request.log.info(
        { event: 'number_saved', number, created, recordingEnabled: profile.recordingEnabled, storeUnredacted: profile.storeUnredacted, by: apiKeyOf(request)?.fingerprint },
        "number's agent profile saved",
      );
      if (created) reply.code(201).header('location', `/v1/numbers/${encodeURIComponent(number)}`);
      return numberView(profile);
    },
  );
};

function isSet(value: string | null | undefined): boolean {
  return value !== undefined && value !== null;
}

export default fp(numbersRoutes, { name: 'analyst-api-numbers', fastify: '5.x', encapsulate: true });
