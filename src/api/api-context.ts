/**
 * What every read-API plugin installs in its own (encapsulated) context, so the rest of the
 * server keeps Fastify's defaults: the error handler mapping errors to the catalogue in errors.ts,
 * the check that turns unknown query/body properties into a 400, and `Cache-Control: no-store`
 * (answers carry call data: no proxy or browser cache should keep them).
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { InvalidCursorError } from '../store/call-store.js';
import { sendApiError } from './errors.js';

export function useApiContext(app: FastifyInstance): void {
  app.setErrorHandler(apiErrorHandler);
  app.addHook('preValidation', rejectUnknownFields);
  app.addHook('onSend', async (_request, reply) => {
    reply.header('cache-control', 'no-store');
  });
}

function apiErrorHandler(error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  // Ajv's message names the field: "querystring/limit must be <= 500".
  if (error.validation !== undefined) return sendApiError(reply, 'invalid_request', error.message);
  if (error instanceof InvalidCursorError) return sendApiError(reply, 'invalid_cursor');
  const status = error.statusCode ?? 500;
  if (status === 413) return sendApiError(reply, 'payload_too_large');
  if (status === 415) return sendApiError(reply, 'unsupported_media_type');
  // Fastify's own 4xx (a body that is not JSON, an empty JSON body…) say what was wrong.
  if (status >= 400 && status < 500) return sendApiError(reply, 'invalid_request', error.message);
  request.log.error({ err: error, event: 'api_error' }, 'read API request failed');
  return sendApiError(reply, 'internal');
}

interface ClosedObjectSchema {
  additionalProperties?: unknown;
  properties?: Record<string, unknown>;
}

/**
 * Fastify's Ajv runs with `removeAdditional: true`: a property that a closed schema does not list
 * is dropped, not refused, so `?dispostion=sold` would list every call. This runs before
 * validation, while the request still holds what the client sent.
 */
async function rejectUnknownFields(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> {
  const schema = request.routeOptions.schema as { querystring?: ClosedObjectSchema; body?: ClosedObjectSchema } | undefined;
  const parts = [
    ['querystring', schema?.querystring, request.query],
    ['body', schema?.body, request.body],
  ] as const;
  for (const [part, partSchema, value] of parts) {
    if (partSchema?.additionalProperties !== false || typeof value !== 'object' || value === null || Array.isArray(value)) continue;
    const known = Object.keys(partSchema.properties ?? {});
    const unknown = Object.keys(value).filter((name) => !known.includes(name));
    if (unknown.length > 0) {
      const names = unknown.map((name) => JSON.stringify(name)).join(', ');
      return sendApiError(reply, 'invalid_request', `${part} has unknown ${unknown.length === 1 ? 'property' : 'properties'} ${names} (known: ${known.join(', ') || 'none'})`);
    }
  }
  return undefined;
}
