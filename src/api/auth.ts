/**
 * API-key authorization for the read API, as an `onRequest` hook: it runs before the body is read
 * and before validation, so a caller without a valid key learns nothing but 401 (RFC 6750):
 * no or malformed `Authorization: Bearer <key>` → 401, unknown key → 401, known key whose role
 * may not use the route → 403. Refusals are logged with the reason, never with the key.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ApiKeyMatch, ApiKeys, ApiRole } from './api-keys.js';
import { sendApiError } from './errors.js';

export type AuthHook = (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply | undefined>;

const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;
const REALM = 'realm="voice-agent-api"';

const authenticated = new WeakMap<FastifyRequest, ApiKeyMatch>();

/** The key (role and fingerprint) a request passed `requireRole` with, for audit logs. */
export function apiKeyOf(request: FastifyRequest): ApiKeyMatch | undefined {
  return authenticated.get(request);
}

/** The hook letting through requests whose key has one of `roles`. */
export function requireRole(keys: ApiKeys, ...roles: ApiRole[]): AuthHook {
  if (roles.length === 0) throw new Error('requireRole needs at least one role');
  const allowed = new Set(roles);
  return async (request, reply) => {
    const header = request.headers.authorization;
    if (header === undefined || header === '') {
      request.log.warn({ event: 'api_auth_refused', reason: 'no_credentials' }, 'API request without an API key');
      // RFC 6750 §3.1: a request without credentials gets the challenge but no error code.
      return sendApiError(reply.header('www-authenticate', `Bearer ${REALM}`), 'unauthorized');
    }
    const presented = BEARER.exec(header)?.[1];
    if (presented === undefined) {
      request.log.warn({ event: 'api_auth_refused', reason: 'malformed_authorization' }, 'API request with a malformed Authorization header');
      return sendApiError(
        reply.header('www-authenticate', `Bearer ${REALM}, error="invalid_request"`),
        'unauthorized',
        'the Authorization header must be: Bearer <key>',
      );
    }
    const key = keys.match(presented);
    if (key === undefined) {
      request.log.warn({ event: 'api_auth_refused', reason: 'unknown_key' }, 'API request with an unknown API key');
      return sendApiError(reply.header('www-authenticate', `Bearer ${REALM}, error="invalid_token"`), 'unauthorized', 'unknown API key');
    }
    if (!allowed.has(key.role)) {
      request.log.warn(
        { event: 'api_auth_refused', reason: 'role', role: key.role, key: key.fingerprint, allowed: [...allowed] },
        'API key role not allowed here',
      );
      return sendApiError(
        reply.header('www-authenticate', `Bearer ${REALM}, error="insufficient_scope"`),
        'forbidden',
        `role ${key.role} may not use this endpoint (needs ${[...allowed].join(' or ')})`,
      );
    }
    authenticated.set(request, key);
    return undefined;
  };
}
