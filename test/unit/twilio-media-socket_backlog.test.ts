// Guards against a peer that stops reading our audio: its socket's backlog must not grow without
// bound (memory, and a session kept alive for nobody). The socket is closed and the session ended.
import { EventEmitter } from 'node:events';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import { signStreamToken } from '../../src/telephony/stream-token.js';
import type { CallEventSink, CallTransport } from '../../src/telephony/transport.js';
import { BACKLOG_CHECK_EVERY, CALL_SID_PARAMETER, STREAM_TOKEN_PARAMETER, handleTwilioMediaSocket } from '../../src/telephony/twilio/media-socket.js';

const SECRET = 'backlog-test-secret';
const CALL_SID = 'CA0123456789abcdef0123456789abcdef';
const STREAM_SID = 'MZ0123456789abcdef0123456789abcdef';

/** The parts of a ws WebSocket the handler uses; `bufferedAmount` is what the test turns up. */
class FakeSocket extends EventEmitter {
  readonly OPEN = 1;
  readyState = 1;
  bufferedAmount = 0;
  readonly sent: string[] = [];
  closedWith: { code: number; reason: string } | undefined;
  send(data: string): void {
    this.sent.push(data);
  }
  close(code: number, reason: string): void {
    if (this.closedWith !== undefined) return;
    this.closedWith = { code, reason };
    this.readyState = 3;
    this.emit('close', code);
  }
}

function openStream() {
  const socket = new FakeSocket();
  const ended: string[] = [];
  let transport: CallTransport | undefined;
  handleTwilioMediaSocket(socket as unknown as WebSocket, pino({ level: 'silent' }), {
    streamTokenSecret: SECRET,
    startTimeoutMs: 10_000,
    maxBufferedBytes: 64 * 1024,
    openSession: (_start, t): CallEventSink => {
      transport = t;
      return { onAudio() {}, onDtmf() {}, onMarkEcho() {}, onStreamEnd: (reason) => ended.push(reason) };
    },
    recordEnding() {},
  });
  const token = signStreamToken(SECRET, CALL_SID, Date.now() / 1000 + 60);
  const start = {
    event: 'start',
    sequenceNumber: '1',
    streamSid: STREAM_SID,
    start: {
      accountSid: 'AC0123456789abcdef0123456789abcdef',
      streamSid: STREAM_SID,
      callSid: CALL_SID,
      tracks: ['inbound'],
      mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
      customParameters: { [CALL_SID_PARAMETER]: CALL_SID, [STREAM_TOKEN_PARAMETER]: token },
    },
  };
  socket.emit('message', Buffer.from(JSON.stringify(start)), false);
  if (transport === undefined) throw new Error('the stream was not accepted');
  return { socket, transport, ended };
}

describe('Twilio media socket: a peer that stops reading', () => {
  it('is closed within a backlog check of its backlog passing the limit, and its session ends', () => {
    const { socket, transport, ended } = openStream();
    const frame = new Uint8Array(160);
    for (let i = 0; i < 3 * BACKLOG_CHECK_EVERY; i++) transport.sendAudio(frame);
    expect(socket.closedWith).toBeUndefined();
    const sentBefore = socket.sent.length;
    expect(sentBefore).toBe(3 * BACKLOG_CHECK_EVERY);

    socket.bufferedAmount = 64 * 1024 + 1;
    for (let i = 0; i < 2 * BACKLOG_CHECK_EVERY; i++) transport.sendAudio(frame);
    expect(socket.closedWith).toEqual({ code: 1000, reason: 'peer not reading' });
    // Nothing more was queued for it once the check tripped, and at most one check's worth before.
    expect(socket.sent.length - sentBefore).toBeLessThan(BACKLOG_CHECK_EVERY);
    expect(ended).toEqual(['socket_closed']);
  });

  it('keeps a reading peer open however long the call', () => {
    const { socket, transport } = openStream();
    socket.bufferedAmount = 64 * 1024; // at the limit, not over it
    for (let i = 0; i < 50 * BACKLOG_CHECK_EVERY; i++) transport.sendAudio(new Uint8Array(160));
    expect(socket.closedWith).toBeUndefined();
    expect(socket.sent).toHaveLength(50 * BACKLOG_CHECK_EVERY);
  });
});
