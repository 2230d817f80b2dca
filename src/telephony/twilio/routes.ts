/**
 * Twilio's HTTP and WebSocket surface as a Fastify plugin: the voice webhook that answers with a
 * `<Connect><Stream>`, the status callback, the after-stream webhook, and the media socket.
 * Every webhook is signature-checked first: a wrong or missing signature gets a bare 403.
 */
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { connectStreamTwiml, hangUpTwiml, transferTwiml } from '../../../twiml/voice-response.js';
import { signStreamToken } from '../stream-token.js';
import type { CallEnding, CallEventSink, CallTransport } from '../transport.js';
import type { TwilioStartInfo } from './media-messages.js';
import { MAX_INBOUND_FRAME_BYTES } from './media-messages.js';
import { CALL_SID_PARAMETER, STREAM_TOKEN_PARAMETER, handleTwilioMediaSocket } from './media-socket.js';
import { isValidTwilioSignature } from './signature.js';

export interface TwilioRoutesOptions {
  publicUrl: string;
  /** Undefined only with ALLOW_UNSIGNED_WEBHOOKS=1. */
  authToken: string | undefined;
  streamTokenSecret: string;
  streamTokenTtlSeconds: number;
  /** False while draining or not ready: new calls are turned away politely. */
  acceptingCalls(): boolean;
  openSession(start: TwilioStartInfo, transport: CallTransport, logger: FastifyInstance['log']): CallEventSink;
  /** The live session's sink for a call, for status callbacks. */
  findSession(callSid: string): CallEventSink | undefined;
  recordEnding(callSid: string, ending: CallEnding): void;
  takeEnding(callSid: string): CallEnding | undefined;
}

type Form = Record<string, string | string[]>;
const CALL_SID = /^CA[0-9a-fA-F]{32}$/;
const FINAL_STATUSES = new Set(['completed', 'busy', 'failed', 'no-answer', 'canceled']);

const twilioRoutes: FastifyPluginAsync<TwilioRoutesOptions> = async (app, options) => {
  if (!/^https?:\/\//.test(options.publicUrl)) throw new Error(`publicUrl must be http(s), got ${options.publicUrl}`);
  const wsBase = options.publicUrl.replace(/^http/, 'ws');

  const signed = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (options.authToken === undefined) return;
    const valid = isValidTwilioSignature({
      authToken: options.authToken,
      signature: headerValue(request.headers['x-twilio-signature']),
      url: options.publicUrl + request.url,
      params: (request.body ?? {}) as Record<string, string>,
    });
    if (!valid) {
      request.log.warn({ event: 'bad_signature', url: request.url }, 'webhook signature check failed');
      await reply.code(403).send();
    }
  };

  const callSidOf = (request: FastifyRequest, reply: FastifyReply): string | undefined => {
    const sid = field(request.body as Form | undefined, 'CallSid');
    if (sid === undefined || !CALL_SID.test(sid)) {
      void reply.code(400).type('text/plain').send('CallSid is missing or malformed');
      return undefined;
    }
    return sid;
  };

  app.post('/twilio/voice', { preHandler: signed }, async (request, reply) => {
    const callSid = callSidOf(request, reply);
    if (callSid === undefined) return reply;
    const body = request.body as Form;
    const log = request.log.child({ callSid });
    if (!options.acceptingCalls()) {
      log.info({ event: 'call_declined', reason: 'not accepting calls' }, 'turned away a new call');
      return reply.type('text/xml').send(hangUpTwiml('Sorry, we cannot take your call right now. Please call again in a minute.'));
    }
    const expires = Date.now() / 1000 + options.streamTokenTtlSeconds;
    const twiml = connectStreamTwiml({
      streamUrl: `${wsBase}/twilio/media`,
      afterStreamUrl: `${options.publicUrl}/twilio/after-stream`,
      parameters: {
        [CALL_SID_PARAMETER]: callSid,
        [STREAM_TOKEN_PARAMETER]: signStreamToken(options.streamTokenSecret, callSid, expires),
        from: field(body, 'From') ?? '',
        to: field(body, 'To') ?? '',
      },
    });
    log.info({ event: 'call_incoming', from: field(body, 'From'), to: field(body, 'To') }, 'incoming call: streaming');
    return reply.type('text/xml').send(twiml);
  });

  app.post('/twilio/status', { preHandler: signed }, async (request, reply) => {
    const callSid = callSidOf(request, reply);
    if (callSid === undefined) return reply;
    const status = field(request.body as Form, 'CallStatus') ?? '';
    request.log.info({ event: 'call_status', callSid, status }, 'call status callback');
    if (FINAL_STATUSES.has(status)) options.findSession(callSid)?.onStreamEnd(`status_${status}`);
    return reply.code(204).send();
  });

  app.post('/twilio/after-stream', { preHandler: signed }, async (request, reply) => {
    const callSid = callSidOf(request, reply);
    if (callSid === undefined) return reply;
    const ending = options.takeEnding(callSid);
    request.log.info({ event: 'after_stream', callSid, ending }, 'stream closed: next step for the call');
    if (ending?.kind === 'transfer') return reply.type('text/xml').send(transferTwiml(ending.to));
    return reply.type('text/xml').send(hangUpTwiml());
  });

  app.get('/twilio/media', { websocket: true }, (socket, request) => {
    handleTwilioMediaSocket(socket, request.log, {
      streamTokenSecret: options.streamTokenSecret,
      startTimeoutMs: 10_000,
      maxBufferedBytes: 1 << 20,
      openSession: options.openSession,
      recordEnding: options.recordEnding,
    });
  });
};

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function field(body: Form | undefined, name: string): string | undefined {
  const value = body?.[name];
  return Array.isArray(value) ? value[0] : value;
}

export const WS_MAX_PAYLOAD = Math.max(MAX_INBOUND_FRAME_BYTES * 64, 1 << 20);

export default fp(twilioRoutes, { name: 'twilio-routes', dependencies: ['@fastify/websocket', '@fastify/formbody'] });
