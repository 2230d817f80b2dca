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
  /** How a call is turned away: `decline` (a short apology, hang-up) or `unavailable` (503: Twilio's fallback URL takes it). */
  declineWith?: 'decline' | 'unavailable';
  openSession(start: TwilioStartInfo, transport: CallTransport, logger: FastifyInstance['log']): CallEventSink;
  /** The live session's sink for a call, for status callbacks. */
  findSession(callSid: string): CallEventSink | undefined;
  recordEnding(callSid: string, ending: CallEnding): void;
  takeEnding(callSid: string): CallEnding | undefined;
  /** A call reached our voice webhook (its row is written in the background). */
  callArrived?(call: ArrivingCall): void;
  /** A final status callback (`completed`, `busy`, …): ends the call's session wherever it is. */
  callFinished?(callSid: string, status: string): void;
  /** Whether the called number's profile asks for recording; absent: never record. */
  recordingEnabled?(to: string | undefined): Promise<boolean>;
  /** Stores a recording callback's metadata: at once, or deferred (retried in the background) while the store fails. */
  saveRecording?(recording: RecordingCallback): Promise<'stored' | 'deferred'>;
}

export interface ArrivingCall {
  callSid: string;
  from?: string | undefined;
  to?: string | undefined;
  direction: 'inbound' | 'outbound';
}

/** A recording status callback, checked (Twilio's field names in comments). */
export interface RecordingCallback {
  /** RecordingSid */
  recordingSid: string;
  /** CallSid */
  callSid: string;
  /** RecordingUrl (the audio stays at Twilio: only its URL is kept) */
  url: string | null;
  /** RecordingStatus: in-progress, completed, absent, failed */
  status: string;
  /** RecordingDuration, seconds (only on `completed`) */
  durationSeconds: number | null;
  /** RecordingChannels: 1 or 2 */
  channels: number | null;
}

type Form = Record<string, string | string[]>;
const CALL_SID = /^CA[0-9a-fA-F]{32}$/;
const RECORDING_SID = /^RE[0-9a-fA-F]{32}$/;
const FINAL_STATUSES = new Set(['completed', 'busy', 'failed', 'no-answer', 'canceled']);
const RECORDING_STATUSES = new Set(['in-progress', 'completed', 'absent', 'failed']);

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
      log.info({ event: 'call_declined', reason: 'not accepting calls', answer: options.declineWith ?? 'decline' }, 'turned away a new call');
      if (options.declineWith === 'unavailable') return reply.code(503).header('retry-after', '5').type('text/plain').send('draining: not taking new calls');
      return reply.type('text/xml').send(hangUpTwiml('Sorry, we cannot take your call right now. Please call again in a minute.'));
    }
    const from = field(body, 'From');
    const to = field(body, 'To');
    options.callArrived?.({ callSid, from, to, direction: field(body, 'Direction')?.startsWith('outbound') === true ? 'outbound' : 'inbound' });
    const record = (await options.recordingEnabled?.(to)) ?? false;
    const expires = Date.now() / 1000 + options.streamTokenTtlSeconds;
    const twiml = connectStreamTwiml({
      streamUrl: `${wsBase}/twilio/media`,
      afterStreamUrl: `${options.publicUrl}/twilio/after-stream`,
      ...(record ? { recordingStatusCallbackUrl: `${options.publicUrl}/twilio/recording` } : {}),
      parameters: {
        [CALL_SID_PARAMETER]: callSid,
        [STREAM_TOKEN_PARAMETER]: signStreamToken(options.streamTokenSecret, callSid, expires),
        from: from ?? '',
        to: to ?? '',
      },
    });
    log.info({ event: 'call_incoming', from, to, recording: record }, 'incoming call: streaming');
    return reply.type('text/xml').send(twiml);
  });

  app.post('/twilio/status', { preHandler: signed }, async (request, reply) => {
    const callSid = callSidOf(request, reply);
    if (callSid === undefined) return reply;
    const status = field(request.body as Form, 'CallStatus') ?? '';
    request.log.info({ event: 'call_status', callSid, status }, 'call status callback');
    if (FINAL_STATUSES.has(status)) {
      if (options.callFinished !== undefined) options.callFinished(callSid, status);
      else options.findSession(callSid)?.onStreamEnd(`status_${status}`);
    }
    return reply.code(204).send();
  });

  app.post('/twilio/recording', { preHandler: signed }, async (request, reply) => {
    const callSid = callSidOf(request, reply);
    if (callSid === undefined) return reply;
    const form = request.body as Form;
    const parsed = parseRecordingCallback(callSid, form);
    const log = request.log.child({ callSid });
    if (typeof parsed === 'string') {
      log.warn({ event: 'recording_callback_rejected', reason: parsed }, 'malformed recording callback');
      return reply.code(400).type('text/plain').send(parsed);
    }
    if (options.saveRecording === undefined) {
      log.warn({ event: 'recording_callback_unstored', recordingSid: parsed.recordingSid }, 'recording callback but no store configured');
      return reply.code(503).type('text/plain').send('recording metadata store unavailable');
    }
    let outcome: 'stored' | 'deferred';
    try {
      outcome = await options.saveRecording(parsed);
    } catch (err) {
      // 5xx: nothing is claimed stored.
      log.error({ event: 'recording_not_stored', recordingSid: parsed.recordingSid, err: err instanceof Error ? err.message : String(err) }, 'recording metadata not stored');
      return reply.code(503).type('text/plain').send('recording metadata not stored, retry later');
    }
    log.info({ event: outcome === 'stored' ? 'recording_stored' : 'recording_deferred', recordingSid: parsed.recordingSid, status: parsed.status, durationSeconds: parsed.durationSeconds }, `recording metadata ${outcome}`);
    if (outcome === 'deferred') return reply.code(202).send();
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

/** The recording callback's fields, or why they are unusable. */
export function parseRecordingCallback(callSid: string, form: Form): RecordingCallback | string {
  const recordingSid = field(form, 'RecordingSid');
  if (recordingSid === undefined || !RECORDING_SID.test(recordingSid)) return 'RecordingSid is missing or malformed';
  const status = field(form, 'RecordingStatus');
  if (status === undefined || !RECORDING_STATUSES.has(status)) return `RecordingStatus must be one of ${[...RECORDING_STATUSES].join(', ')}`;
  const url = field(form, 'RecordingUrl');
  if (url !== undefined && url !== '' && !/^https?:\/\//.test(url)) return 'RecordingUrl must be an http(s) URL';
  const duration = field(form, 'RecordingDuration');
  if (duration !== undefined && duration !== '' && !/^\d+$/.test(duration)) return 'RecordingDuration must be whole seconds';
  const channels = field(form, 'RecordingChannels');
  if (channels !== undefined && channels !== '' && channels !== '1' && channels !== '2') return 'RecordingChannels must be 1 or 2';
  return {
    recordingSid,
    callSid,
    url: url === undefined || url === '' ? null : url,
    status,
    durationSeconds: duration === undefined || duration === '' ? null : Number(duration),
    channels: channels === undefined || channels === '' ? null : Number(channels),
  };
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function field(body: Form | undefined, name: string): string | undefined {
  const value = body?.[name];
  return Array.isArray(value) ? value[0] : value;
}

export const WS_MAX_PAYLOAD = Math.max(MAX_INBOUND_FRAME_BYTES * 64, 1 << 20);

export default fp(twilioRoutes, { name: 'twilio-routes', dependencies: ['@fastify/websocket', '@fastify/formbody'] });
