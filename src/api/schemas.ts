/**
 * JSON schemas of the read API: Fastify validates requests with them (Ajv) and serializes
 * responses with them (fast-json-stringify: only the properties listed here ever leave, so a
 * column added to the store is not published by accident), and @fastify/swagger turns them into
 * the OpenAPI document at `/docs/json`. Input objects are closed (`additionalProperties: false`);
 * the `rejectUnknownFields` hook (routes.ts) answers 400 for an unknown one instead of letting
 * Ajv's default `removeAdditional` drop it silently (a misspelt filter must not widen a query).
 */
import { LATENCY_STAGES, type CallDirection, type CallStatus } from '../store/types.js';
import { API_ERRORS } from './errors.js';

/** E.164, as the numbers table's CHECK has it. */
export const E164_PATTERN = '^\\+[1-9][0-9]{6,14}$';
export const MAX_LIMIT = 500;
export const DEFAULT_LIMIT = 50;

const SECURITY = [{ bearerAuth: [] }];

const nullableString = { type: ['string', 'null'] } as const;
const dateTime = { type: 'string', format: 'date-time' } as const;
const nullableDateTime = { type: ['string', 'null'], format: 'date-time' } as const;
const e164 = { type: 'string', pattern: E164_PATTERN, description: 'E.164, e.g. +15551234567' } as const;

// --- errors -----------------------------------------------------------------------------------

export const errorSchema = {
  type: 'object',
  description: 'Every error: the HTTP status, a code from a fixed list, and a message for people.',
  required: ['statusCode', 'code', 'message'],
  additionalProperties: false,
  properties: {
    statusCode: { type: 'integer' },
    code: { type: 'string', enum: Object.keys(API_ERRORS) },
    message: { type: 'string' },
  },
} as const;

// Inlined rather than a shared `$ref`: a schema added inside the API's encapsulated context is
// not among the shared schemas @fastify/swagger documents.
const error = (description: string) => ({ ...errorSchema, description }) as const;
const authErrors = {
  400: error('Invalid request: the message names the field'),
  401: error('No API key, a malformed Authorization header, or an unknown key'),
  403: error("The key's role may not use this endpoint"),
  500: error('Internal error'),
} as const;

// --- calls ------------------------------------------------------------------------------------

const callDirection = { type: 'string', enum: ['inbound', 'outbound'] } as const;
const callStatus = {
  type: 'string',
  enum: ['live', 'ended', 'processed', 'failed'],
  description: 'live → ended → processed (post-call result stored) or failed (see postCallError)',
} as const;

const callProperties = {
  callSid: { type: 'string' },
  provider: { type: 'string', description: 'twilio, telnyx…' },
  direction: callDirection,
  from: nullableString,
  to: nullableString,
  number: { ...nullableString, description: 'Our number on the call (the called one inbound)' },
  startedAt: dateTime,
  endedAt: nullableDateTime,
  endReason: { ...nullableString, description: 'stop, completed, end_call, max_duration, server_lost…' },
  status: callStatus,
  postCallError: { ...nullableString, description: 'Why post-call processing failed last; null once it succeeds' },
  createdAt: dateTime,
  updatedAt: dateTime,
} as const;

const callSchema = {
  type: 'object',
  additionalProperties: false,
  required: Object.keys(callProperties),
  properties: callProperties,
} as const;

const callListItemSchema = {
  type: 'object',
  additionalProperties: false,
  required: [...Object.keys(callProperties), 'disposition', 'sentiment'],
  properties: { ...callProperties, disposition: nullableString, sentiment: nullableString },
} as const;

export interface ListCallsQuerystring {
  number?: string;
  from?: string;
  to?: string;
  disposition?: string;
  direction?: CallDirection;
  status?: CallStatus;
  limit: number;
  cursor?: string;
}

export const listCallsSchema = {
  tags: ['calls'],
  summary: 'List calls, newest first',
  description:
    'Filters combine (AND). Pages are stable while new calls arrive: pass `nextCursor` as `cursor` ' +
    'with the same filters for the next page; `nextCursor` is null on the last one.',
  security: SECURITY,
  querystring: {
    type: 'object',
    additionalProperties: false,
    properties: {
      number: { ...e164, description: 'Our number on the call, E.164 (encode + as %2B)' },
      from: { ...dateTime, description: 'Calls started at or after this instant (ISO 8601 with a zone)' },
      to: { ...dateTime, description: 'Calls started before this instant (ISO 8601 with a zone)' },
      disposition: { type: 'string', minLength: 1, maxLength: 200, description: 'Post-call disposition (processed calls only)' },
      direction: callDirection,
      status: callStatus,
      limit: { type: 'integer', minimum: 1, maximum: MAX_LIMIT, default: DEFAULT_LIMIT },
      cursor: { type: 'string', minLength: 1, maxLength: 1000, description: 'nextCursor of the previous page' },
    },
  },
  response: {
    200: {
      description: 'A page of calls',
      type: 'object',
      additionalProperties: false,
      required: ['calls', 'nextCursor'],
      properties: {
        calls: { type: 'array', items: callListItemSchema },
        nextCursor: nullableString,
      },
    },
    ...authErrors,
  },
} as const;

const latencySchema = {
  type: ['object', 'null'],
  additionalProperties: false,
  description: "The turn's latency waterfall: ms relative to the turn decision, per stage reached",
  properties: Object.fromEntries(LATENCY_STAGES.map((stage) => [stage, { type: 'number' }])),
} as const;

const turnSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['idx', 'speaker', 'redactedText', 'startMs', 'endMs', 'interrupted', 'latency'],
  properties: {
    idx: { type: 'integer', description: 'Turn number; the caller part comes before the agent part' },
    speaker: { type: 'string', enum: ['caller', 'agent'] },
    redactedText: { ...nullableString, description: 'The text with PII redacted (the unredacted text is never served)' },
    startMs: { type: ['integer', 'null'], description: "Offset from the call's start, ms" },
    endMs: { type: ['integer', 'null'] },
    interrupted: { type: 'boolean', description: 'The agent was barged in on' },
    latency: latencySchema,
  },
} as const;

const resultSchema = {
  type: ['object', 'null'],
  additionalProperties: false,
  description: 'The post-call analysis; null until the call is processed',
  required: ['summary', 'disposition', 'sentiment', 'actionItems', 'model', 'extractive', 'redactionCounts', 'attempts', 'processedAt'],
  properties: {
    summary: { type: 'string' },
    disposition: nullableString,
    sentiment: nullableString,
    actionItems: { type: 'array', items: {} },
    model: { ...nullableString, description: 'The LLM that wrote it' },
    extractive: { type: 'boolean', description: 'Made by the extractive fallback, not an LLM' },
    redactionCounts: { type: 'object', additionalProperties: { type: 'integer' }, description: 'Redactions applied, by kind' },
    attempts: { type: 'integer' },
    processedAt: dateTime,
  },
} as const;

const recordingSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['recordingSid', 'url', 'durationSeconds', 'channels', 'status', 'createdAt', 'updatedAt'],
  properties: {
    recordingSid: { type: 'string' },
    url: nullableString,
    durationSeconds: { type: ['integer', 'null'] },
    channels: { type: ['integer', 'null'] },
    status: { ...nullableString, description: 'in-progress, completed, absent, failed' },
    createdAt: dateTime,
    updatedAt: dateTime,
  },
} as const;

export interface CallSidParams {
  callSid: string;
}

export const getCallSchema = {
  tags: ['calls'],
  summary: "One call: metadata, redacted transcript with turn latencies, post-call result, recordings",
  security: SECURITY,
  params: {
    type: 'object',
    additionalProperties: false,
    required: ['callSid'],
    properties: { callSid: { type: 'string', minLength: 1, maxLength: 200 } },
  },
  response: {
    200: {
      description: 'The call',
      type: 'object',
      additionalProperties: false,
      required: ['call', 'turns', 'result', 'recordings'],
      properties: {
        call: callSchema,
        turns: { type: 'array', items: turnSchema },
        result: resultSchema,
        recordings: { type: 'array', items: recordingSchema, description: 'Metadata only, oldest first' },
      },
    },
    ...authErrors,
    404: error('No such call'),
  },
} as const;

// --- numbers ----------------------------------------------------------------------------------

const numberProfileProperties = {
  name: { type: 'string', minLength: 1, maxLength: 200 },
  scriptPath: { ...nullableString, maxLength: 1000, description: 'Agent script; set this or prompt, not both' },
  prompt: { ...nullableString, maxLength: 100_000, description: 'LLM system prompt; set this or scriptPath, not both' },
  voice: { ...nullableString, maxLength: 200 },
  language: { ...nullableString, maxLength: 35, description: 'BCP 47, e.g. en-US' },
  recordingEnabled: { type: 'boolean', description: 'Record calls to this number' },
  storeUnredacted: { type: 'boolean', description: 'Keep the unredacted transcript as well' },
  dispositions: {
    type: 'array',
    maxItems: 100,
    uniqueItems: true,
    items: { type: 'string', minLength: 1, maxLength: 200 },
    description: 'The dispositions the post-call LLM picks from',
  },
} as const;

const numberProfileSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['number', ...Object.keys(numberProfileProperties), 'createdAt', 'updatedAt'],
  properties: { number: e164, ...numberProfileProperties, createdAt: dateTime, updatedAt: dateTime },
} as const;

export interface NumberParams {
  number: string;
}

/** PUT's body: the whole profile but the number (that is in the path). */
export interface NumberBody {
  name: string;
  scriptPath?: string | null;
  prompt?: string | null;
  voice?: string | null;
  language?: string | null;
  recordingEnabled?: boolean;
  storeUnredacted?: boolean;
  dispositions?: string[];
}

const numberParams = {
  type: 'object',
  additionalProperties: false,
  required: ['number'],
  properties: { number: { ...e164, description: 'E.164; encode + as %2B or send it as is' } },
} as const;

export const listNumbersSchema = {
  tags: ['numbers'],
  summary: "Our numbers and their agent profiles (admin)",
  security: SECURITY,
  response: {
    200: {
      description: 'Every configured number, by number',
      type: 'object',
      additionalProperties: false,
      required: ['numbers'],
      properties: { numbers: { type: 'array', items: numberProfileSchema } },
    },
    ...authErrors,
  },
} as const;

export const getNumberSchema = {
  tags: ['numbers'],
  summary: "One number's agent profile (admin)",
  security: SECURITY,
  params: numberParams,
  response: { 200: { description: 'The profile', ...numberProfileSchema }, ...authErrors, 404: error('The number is not configured') },
} as const;

export const putNumberSchema = {
  tags: ['numbers'],
  summary: "Create or replace a number's agent profile (admin)",
  description: 'Replaces the whole profile: an omitted field takes its default (null, false, no dispositions).',
  security: SECURITY,
  params: numberParams,
  body: {
    type: 'object',
    additionalProperties: false,
    required: ['name'],
    properties: numberProfileProperties,
  },
  response: {
    200: { description: 'The profile replaced', ...numberProfileSchema },
    201: { description: 'The number created (Location: its URL)', ...numberProfileSchema },
    ...authErrors,
  },
} as const;
