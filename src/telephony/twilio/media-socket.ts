/**
 * One Twilio Media Stream WebSocket: validates every inbound frame, authenticates the stream by the
 * token in `start.customParameters`, and adapts the socket to the provider-neutral `CallTransport`
 * the session speaks. A bad frame is logged with its reason and dropped; the call goes on.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { WebSocket } from 'ws';
import { decodeG711 } from '../../audio/g711.js';
import { FRAME_BYTES } from '../../audio/frames.js';
import { verifyStreamToken } from '../stream-token.js';
import type { CallEnding, CallEventSink, CallTransport } from '../transport.js';
import { parseTwilioFrame, serializeClear, serializeMark, serializeMedia, type TwilioInbound, type TwilioStartInfo } from './media-messages.js';

export const STREAM_TOKEN_PARAMETER = 'streamToken';
export const CALL_SID_PARAMETER = 'callSid';

export interface MediaSocketOptions {
  streamTokenSecret: string;
  /** A socket that has not sent a valid `start` by then is closed. */
  startTimeoutMs: number;
  /** Outbound bytes queued in the socket beyond this mean the peer stopped reading: close. */
  maxBufferedBytes: number;
  /** Creates the call's session once the stream is authenticated. */
  openSession(start: TwilioStartInfo, transport: CallTransport, logger: FastifyBaseLogger): CallEventSink;
  /** Remembers how the call should go on after the socket closes (read by the after-stream webhook). */
  recordEnding(callSid: string, ending: CallEnding): void;
  nowSeconds?: () => number;
}

/** Close codes: 1000 normal, 1008 policy violation (bad token), 1011 server error. */
const NORMAL = 1000;
const POLICY = 1008;

/** Per-socket cap on "dropped frame" warnings, so a flood of garbage cannot flood the logs. */
const MAX_DROP_WARNINGS = 20;

/**
 * How often (in media messages sent) the socket's unsent backlog is checked. A peer that stopped
 * reading takes minutes to queue `maxBufferedBytes` of paced audio, so once every 25 messages
 * (0.5–1.5 s at 20–60 ms a message) is soon enough. Reading ws's `bufferedAmount` (through the
 * socket's stream state) on every send was ~1% of the server's CPU at 200 calls (perf).
 */
export const BACKLOG_CHECK_EVERY = 25;

export function handleTwilioMediaSocket(socket: WebSocket, baseLogger: FastifyBaseLogger, options: MediaSocketOptions): void {
  let logger = baseLogger;
  let stream: { streamSid: string; callSid: string; sink: CallEventSink } | undefined;
  let closed = false;
  let dropped = 0;

  const startTimer = setTimeout(() => {
    if (stream === undefined) close(POLICY, 'no valid start message');
  }, options.startTimeoutMs);

  const drop = (reason: string): void => {
    dropped++;
    if (dropped <= MAX_DROP_WARNINGS) logger.warn({ event: 'frame_dropped', reason, dropped }, 'dropped inbound frame');
    else if (dropped === MAX_DROP_WARNINGS + 1) logger.warn({ event: 'frame_dropped', reason }, 'dropping more frames; further drops are counted, not logged');
  };

  const close = (code: number, reason: string): void => {
    if (closed) return;
    closed = true;
    clearTimeout(startTimer);
    logger.info({ event: 'socket_closing', code, reason }, 'closing media socket');
    socket.close(code, reason.slice(0, 120));
  };

  let sendsSinceBacklogCheck = 0;
  const transport = (streamSid: string, callSid: string): CallTransport => ({
    provider: 'twilio',
    encoding: 'mulaw',
    sendAudio(encoded) {
      if (closed || socket.readyState !== socket.OPEN) return;
      if (++sendsSinceBacklogCheck >= BACKLOG_CHECK_EVERY) {
        sendsSinceBacklogCheck = 0;
        if (socket.bufferedAmount > options.maxBufferedBytes) {
          logger.error({ event: 'peer_not_reading', buffered: socket.bufferedAmount }, 'peer stopped reading audio');
          close(NORMAL, 'peer not reading');
          return;
        }
      }
      socket.send(serializeMedia(streamSid, encoded));
    },
    sendMark(name) {
      if (!closed && socket.readyState === socket.OPEN) socket.send(serializeMark(streamSid, name));
    },
    clear() {
      if (!closed && socket.readyState === socket.OPEN) socket.send(serializeClear(streamSid));
    },
    finish(ending) {
      options.recordEnding(callSid, ending);
      close(NORMAL, ending.kind);
    },
    close(reason) {
      close(NORMAL, reason);
    },
  });

  const onStart = (message: Extract<TwilioInbound, { event: 'start' }>): void => {
    if (stream !== undefined) return drop('second start message');
    const { start } = message;
    logger = baseLogger.child({ callSid: start.callSid, streamSid: start.streamSid });
    const claimedCall = start.customParameters[CALL_SID_PARAMETER];
    const token = start.customParameters[STREAM_TOKEN_PARAMETER];
    const now = options.nowSeconds?.() ?? Date.now() / 1000;
    const check =
      claimedCall !== undefined && claimedCall !== start.callSid
        ? { ok: false as const, reason: 'stream token was issued for another call' }
        : verifyStreamToken(options.streamTokenSecret, start.callSid, token, now);
    if (!check.ok) {
      logger.warn({ event: 'stream_rejected', reason: check.reason }, 'media stream rejected');
      return close(POLICY, check.reason);
    }
    if (start.mediaFormat.encoding !== 'audio/x-mulaw' || start.mediaFormat.sampleRate !== 8000 || start.mediaFormat.channels !== 1) {
      logger.warn({ event: 'stream_rejected', mediaFormat: start.mediaFormat }, 'unsupported media format');
      return close(POLICY, 'unsupported media format');
    }
    clearTimeout(startTimer);
    const sink = options.openSession(start, transport(start.streamSid, start.callSid), logger);
    stream = { streamSid: start.streamSid, callSid: start.callSid, sink };
  };

  const onMessage = (raw: Buffer, isBinary: boolean): void => {
    const parsed = parseTwilioFrame(raw, isBinary);
    if (!parsed.ok) return drop(parsed.reason);
    const message = parsed.message;
    switch (message.event) {
      case 'connected':
        return logger.debug({ event: 'connected', protocol: message.protocol, version: message.version }, 'stream connected');
      case 'start':
        return onStart(message);
      case 'media':
      case 'dtmf':
      case 'mark':
      case 'stop': {
        if (stream === undefined) return drop(`${message.event} before start`);
        if (message.streamSid !== stream.streamSid) return drop(`${message.event} for another streamSid`);
        return onStreamMessage(message, stream.sink);
      }
      default: {
        const unhandled: never = message;
        return drop(`unhandled ${JSON.stringify(unhandled)}`);
      }
    }
  };

  const onStreamMessage = (message: Exclude<TwilioInbound, { event: 'connected' | 'start' }>, sink: CallEventSink): void => {
    switch (message.event) {
      case 'media':
        if (message.track !== 'inbound') return drop(`media on track ${message.track}`);
        if (message.payload.length === 0) return drop('empty media payload');
        if (message.payload.length > FRAME_BYTES * 50) return drop('media payload over one second');
        return sink.onAudio(decodeG711('mulaw', message.payload));
      case 'dtmf':
        return sink.onDtmf(message.digit);
      case 'mark':
        return sink.onMarkEcho(message.name);
      case 'stop':
        sink.onStreamEnd('stop');
        return close(NORMAL, 'stream stopped');
      default: {
        const unhandled: never = message;
        return drop(`unhandled ${JSON.stringify(unhandled)}`);
      }
    }
  };

  socket.on('message', (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
    try {
      const raw = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      onMessage(raw, isBinary);
    } catch (error) {
      // A bug of ours must not take the process down with it; the call is ended cleanly instead.
      logger.error({ event: 'frame_handler_failed', err: (error as Error).message, stack: (error as Error).stack }, 'frame handler failed');
      stream?.sink.onStreamEnd('server_error');
      close(1011, 'server error');
    }
  });
  socket.on('error', (error) => logger.warn({ event: 'socket_error', err: error.message }, 'media socket error'));
  socket.on('close', (code) => {
    closed = true;
    clearTimeout(startTimer);
    if (dropped > 0) logger.info({ event: 'frames_dropped_total', dropped }, 'frames dropped on this stream');
    stream?.sink.onStreamEnd(code === NORMAL ? 'socket_closed' : `socket_closed_${code}`);
  });
}
