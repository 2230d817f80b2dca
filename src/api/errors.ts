/**
 * The read API's error codes, each with its HTTP status and default message: every error the API
 * answers has the body `{ statusCode, code, message }`, with `code` from this catalogue.
 */
import type { FastifyReply } from 'fastify';

export const API_ERRORS = {
  invalid_request: { statusCode: 400, message: 'the request is invalid' },
  invalid_cursor: { statusCode: 400, message: 'the cursor was not handed out by this API; start again without it' },
  unauthorized: { statusCode: 401, message: 'an API key is required: Authorization: Bearer <key>' },
  forbidden: { statusCode: 403, message: "this API key's role may not use this endpoint" },
  not_found: { statusCode: 404, message: 'not found' },
  payload_too_large: { statusCode: 413, message: 'the request body is too large' },
  unsupported_media_type: { statusCode: 415, message: 'the request body must be application/json' },
  internal: { statusCode: 500, message: 'internal error' },
} as const satisfies Record<string, { statusCode: number; message: string }>;

export type ApiErrorCode = keyof typeof API_ERRORS;

export interface ApiErrorBody {
  statusCode: number;
  code: ApiErrorCode;
  message: string;
}

export function apiError(code: ApiErrorCode, message: string = API_ERRORS[code].message): ApiErrorBody {
  return { statusCode: API_ERRORS[code].statusCode, code, message };
}

/** Answers with the code's status and the error body. */
export function sendApiError(reply: FastifyReply, code: ApiErrorCode, message?: string): FastifyReply {
  const body = apiError(code, message);
  return reply.code(body.statusCode).send(body);
}
