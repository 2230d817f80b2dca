/**
 * The analysts' call reads: `GET /v1/calls` (a filtered page, newest first, cursor-paginated) and
 * `GET /v1/calls/:callSid` (metadata, redacted transcript with each turn's latency waterfall,
 * post-call result, recording metadata). Analysts and admins alike.
 */
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { CallStore } from '../store/call-store.js';
import type { ListCallsQuery } from '../store/types.js';
import { useApiContext } from './api-context.js';
import { ApiKeys } from './api-keys.js';
import { requireRole } from './auth.js';
import { sendApiError } from './errors.js';
import { getCallSchema, listCallsSchema, type CallSidParams, type ListCallsQuerystring } from './schemas.js';
import { callListItemView, callView, recordingView, resultView, turnView } from './views.js';

export interface CallsRoutesOptions {
  store: Pick<CallStore, 'listCalls' | 'getCall'>;
  apiKeys: ApiKeys;
}

const callsRoutes: FastifyPluginAsync<CallsRoutesOptions> = async (app, options) => {
  if (!(options.apiKeys instanceof ApiKeys)) throw new Error('calls routes: apiKeys must be an ApiKeys (parseApiKeys)');
  if (typeof options.store?.listCalls !== 'function' || typeof options.store.getCall !== 'function') {
    throw new Error('calls routes: store must be a CallStore');
  }
  const { store } = options;
  useApiContext(app);
  const readers = requireRole(options.apiKeys, 'analyst', 'admin');

  app.get<{ Querystring: ListCallsQuerystring }>(
    '/v1/calls',
    { schema: listCallsSchema, onRequest: readers, preValidation: plusInNumber },
    async (request, reply) => {
      const { number, disposition, direction, status, limit, cursor } = request.query;
      const from = instant(request.query.from);
      const to = instant(request.query.to);
      if (Number.isNaN(from?.getTime()) || Number.isNaN(to?.getTime())) {
        return sendApiError(reply, 'invalid_request', 'querystring/from and querystring/to must be real instants');
      }
      if (from !== undefined && to !== undefined && to.getTime() <= from.getTime()) {
        return sendApiError(reply, 'invalid_request', 'querystring/to must be after querystring/from');
      }
      const query: ListCallsQuery = { limit };
      if (number !== undefined) query.number = number;
      if (from !== undefined) query.from = from;
      if (to !== undefined) query.to = to;
      if (disposition !== undefined) query.disposition = disposition;
      if (direction !== undefined) query.direction = direction;
      if (status !== undefined) query.status = status;
      if (cursor !== undefined) query.cursor = cursor;
      // A cursor no page handed out throws InvalidCursorError: the error handler answers 400.
      const page = await store.listCalls(query);
      return { calls: page.calls.map(callListItemView), nextCursor: page.nextCursor };
    },
  );

  app.get<{ Params: CallSidParams }>('/v1/calls/:callSid', { schema: getCallSchema, onRequest: readers }, async (request, reply) => {
    const detail = await store.getCall(request.params.callSid);
    if (detail === undefined) return sendApiError(reply, 'not_found', `no call ${request.params.callSid}`);
    return {
      call: callView(detail.call),
      turns: detail.turns.map(turnView),
      result: resultView(detail.result),
      recordings: detail.recordings.map(recordingView),
    };
  });
};

function instant(value: string | undefined): Date | undefined {
  return value === undefined ? undefined : new Date(value);
}

/**
 * An unencoded `+` in a query string reads as a space (`?number=+1555…` arrives as " 1555…"),
 * the commonest way to ask for a number wrongly; it can only have meant the `+`.
 */
async function plusInNumber(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
  const query = request.query as Record<string, unknown>;
  const number = query['number'];
  if (typeof number === 'string' && /^ [1-9][0-9]*$/.test(number)) query['number'] = `+${number.slice(1)}`;
}

export default fp(callsRoutes, { name: 'analyst-api-calls', fastify: '5.x', encapsulate: true });
