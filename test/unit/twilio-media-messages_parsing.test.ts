// Guards against a malformed or hostile Media Streams frame crashing the call or reaching the session unchecked.
import { describe, expect, it } from 'vitest';
import { parseTwilioFrame, serializeClear, serializeMark, serializeMedia } from '../../src/telephony/twilio/media-messages.js';

const SID = 'MZ0123456789abcdef0123456789abcdef';

describe('Twilio inbound frames', () => {
  it('parses Twilio documented start message, including customParameters', () => {
    const frame = JSON.stringify({
      event: 'start',
      sequenceNumber: '1',
      start: {
        accountSid: 'AC0123456789abcdef0123456789abcdef',
        streamSid: SID,
        callSid: 'CA0123456789abcdef0123456789abcdef',
        tracks: ['inbound'],
        mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
        customParameters: { streamToken: 't', n: 5 },
      },
      streamSid: SID,
    });
    const parsed = parseTwilioFrame(frame);
    expect(parsed.ok && parsed.message.event === 'start' && parsed.message.start.customParameters).toEqual({ streamToken: 't' });
  });

  it('decodes media payloads from base64', () => {
    const payload = Buffer.alloc(160, 0x7f).toString('base64');
    const parsed = parseTwilioFrame(JSON.stringify({ event: 'media', sequenceNumber: '2', media: { track: 'inbound', chunk: '1', timestamp: '5', payload }, streamSid: SID }));
    expect(parsed.ok && parsed.message.event === 'media' && parsed.message.payload.length).toBe(160);
  });

  it.each([
    ['not json {', 'malformed JSON'],
    ['[1,2]', 'frame is not a JSON object'],
    ['{"event":"bogus"}', 'unknown event "bogus"'],
    ['{"nope":1}', 'frame has no "event" string'],
    [`{"event":"media","streamSid":"${SID}","media":{"payload":"@@@@"}}`, 'media: payload is not valid base64'],
    [`{"event":"media","streamSid":"${SID}","media":{"payload":"AAA*AAAA"}}`, 'media: payload is not valid base64'],
    [`{"event":"media","streamSid":"${SID}","media":{"payload":"AAAAA"}}`, 'media: payload is not valid base64'],
    [`{"event":"media","streamSid":"${SID}","media":{"payload":"A=AA"}}`, 'media: payload is not valid base64'],
    [`{"event":"media","media":{"payload":"AAAA"}}`, 'media: missing streamSid'],
    [`{"event":"dtmf","streamSid":"${SID}","dtmf":{"digit":"x"}}`, 'dtmf: missing or invalid digit'],
    [`{"event":"mark","streamSid":"${SID}","mark":{}}`, 'mark: missing name'],
    [`{"event":"start","start":{"callSid":"CA1","streamSid":"MZ\\"x"}}`, 'start: callSid/streamSid is not a SID'],
  ])('rejects %s with a reason', (frame, reason) => {
    expect(parseTwilioFrame(frame)).toEqual({ ok: false, reason });
  });

  it('rejects oversized and binary frames', () => {
    expect(parseTwilioFrame('x'.repeat(20000)).ok).toBe(false);
    expect(parseTwilioFrame(Buffer.from('{}'), true)).toEqual({ ok: false, reason: 'binary frame (Twilio sends text frames only)' });
  });
});

describe('Twilio outbound frames', () => {
  it('serializes media, mark and clear exactly as Twilio documents them', () => {
    expect(JSON.parse(serializeMedia(SID, new Uint8Array([0xff, 0x7f])))).toEqual({ event: 'media', streamSid: SID, media: { payload: '/38=' } });
    expect(JSON.parse(serializeMark(SID, 'u1:s0'))).toEqual({ event: 'mark', streamSid: SID, mark: { name: 'u1:s0' } });
    expect(JSON.parse(serializeClear(SID))).toEqual({ event: 'clear', streamSid: SID });
  });
});
