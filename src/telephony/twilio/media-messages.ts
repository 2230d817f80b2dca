/**
 * Twilio Media Streams messages, byte for byte (shared/reference/protocols.md §4): inbound frames are
 * parsed into a tagged union with every field checked; outbound frames are serialized here and only
 * here. A frame that fails a check becomes a `rejected` result with the reason, never an exception.
 */

export interface TwilioStartInfo {
  accountSid: string;
  streamSid: string;
  callSid: string;
  tracks: string[];
  mediaFormat: { encoding: string; sampleRate: number; channels: number };
  customParameters: Record<string, string>;
}

export type TwilioInbound =
  | { event: 'connected'; protocol: string; version: string }
  | { event: 'start'; sequenceNumber: string; streamSid: string; start: TwilioStartInfo }
  | { event: 'media'; sequenceNumber: string; streamSid: string; track: string; chunk: string; timestamp: string; payload: Buffer }
  | { event: 'dtmf'; sequenceNumber: string; streamSid: string; digit: string }
  | { event: 'mark'; sequenceNumber: string; streamSid: string; name: string }
  | { event: 'stop'; sequenceNumber: string; streamSid: string; callSid: string };

export type ParseResult = { ok: true; message: TwilioInbound } | { ok: false; reason: string };

/** A 20 ms µ-law frame is 160 bytes; Twilio never sends more than a few frames at once. */
export const MAX_INBOUND_FRAME_BYTES = 16 * 1024;
const MAX_PAYLOAD_BYTES = 8000; // one second of µ-law
const SID = /^[A-Za-z0-9_-]{1,64}$/;
const DTMF_DIGITS = /^[0-9*#A-Da-d]$/;

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function str(obj: Json, key: string): string | undefined {
  const value = obj[key];
  return typeof value === 'string' ? value : undefined;
}

const fail = (reason: string): ParseResult => ({ ok: false, reason });

export function parseTwilioFrame(raw: Buffer | string, isBinary = false): ParseResult {
  if (isBinary) return fail('binary frame (Twilio sends text frames only)');
  const length = typeof raw === 'string' ? Buffer.byteLength(raw) : raw.length;
  if (length > MAX_INBOUND_FRAME_BYTES) return fail(`frame of ${length} bytes exceeds ${MAX_INBOUND_FRAME_BYTES}`);
  let data: unknown;
  try {
    data = JSON.parse(typeof raw === 'string' ? raw : raw.toString('utf8'));
  } catch {
    return fail('malformed JSON');
  }
  if (!isObject(data)) return fail('frame is not a JSON object');
  const event = str(data, 'event');
  switch (event) {
    case 'connected':
      return { ok: true, message: { event, protocol: str(data, 'protocol') ?? '', version: str(data, 'version') ?? '' } };
    case 'start':
      return parseStart(data);
    case 'media':
      return parseMedia(data);
    case 'dtmf':
      return parseDtmf(data);
    case 'mark':
      return parseMark(data);
    case 'stop':
      return parseStop(data);
    case undefined:
      return fail('frame has no "event" string');
    default:
      return fail(`unknown event ${JSON.stringify(event.slice(0, 40))}`);
  }
}

function header(data: Json): { sequenceNumber: string; streamSid: string } | string {
  const streamSid = str(data, 'streamSid');
  if (streamSid === undefined || streamSid === '') return 'missing streamSid';
  return { sequenceNumber: str(data, 'sequenceNumber') ?? '', streamSid };
}

function parseStart(data: Json): ParseResult {
  const start = data['start'];
  if (!isObject(start)) return fail('start: missing "start" object');
  const callSid = str(start, 'callSid');
  const streamSid = str(start, 'streamSid') ?? str(data, 'streamSid');
  if (callSid === undefined || callSid === '') return fail('start: missing callSid');
  if (streamSid === undefined || streamSid === '') return fail('start: missing streamSid');
  // Twilio SIDs are two letters and 32 hex digits; anything outside a plain token alphabet is refused
  // here, which is also what keeps the hand-built outbound frames below valid JSON.
  if (!SID.test(streamSid) || !SID.test(callSid)) return fail('start: callSid/streamSid is not a SID');
  const format = isObject(start['mediaFormat']) ? start['mediaFormat'] : {};
  const rawParams = isObject(start['customParameters']) ? start['customParameters'] : {};
  const customParameters: Record<string, string> = {};
  for (const [key, value] of Object.entries(rawParams)) if (typeof value === 'string') customParameters[key] = value;
  const tracks = Array.isArray(start['tracks']) ? start['tracks'].filter((t): t is string => typeof t === 'string') : [];
  return {
    ok: true,
    message: {
      event: 'start',
      sequenceNumber: str(data, 'sequenceNumber') ?? '',
      streamSid,
      start: {
        accountSid: str(start, 'accountSid') ?? '',
        streamSid,
        callSid,
        tracks,
        mediaFormat: {
          encoding: str(format, 'encoding') ?? 'audio/x-mulaw',
          sampleRate: typeof format['sampleRate'] === 'number' ? format['sampleRate'] : 8000,
          channels: typeof format['channels'] === 'number' ? format['channels'] : 1,
        },
        customParameters,
      },
    },
  };
}

// Fifty times per call-second: the fields are read straight into the message (no header object
// spread into it, unlike the rare events below).
function parseMedia(data: Json): ParseResult {
  const streamSid = str(data, 'streamSid');
  if (streamSid === undefined || streamSid === '') return fail('media: missing streamSid');
  const media = data['media'];
  if (!isObject(media)) return fail('media: missing "media" object');
  const payload = str(media, 'payload');
  if (payload === undefined) return fail('media: missing payload');
  if (payload.length > (MAX_PAYLOAD_BYTES * 4) / 3 + 4) return fail(`media: payload over ${MAX_PAYLOAD_BYTES} bytes`);
  // Node's decoder skips characters outside the alphabet, so a decoded length short of what the
  // text's length promises means the payload was not valid base64 (cheaper than a regex per frame).
  const padding = payload.endsWith('==') ? 2 : payload.endsWith('=') ? 1 : 0;
  const bytes = payload.length % 4 === 0 ? Buffer.from(payload, 'base64') : undefined;
  if (bytes === undefined || bytes.length !== (payload.length / 4) * 3 - padding) return fail('media: payload is not valid base64');
  return {
    ok: true,
    message: {
      event: 'media',
      sequenceNumber: str(data, 'sequenceNumber') ?? '',
      streamSid,
      track: str(media, 'track') ?? 'inbound',
      chunk: str(media, 'chunk') ?? '',
      timestamp: str(media, 'timestamp') ?? '',
      payload: bytes,
    },
  };
}

function parseDtmf(data: Json): ParseResult {
  const h = header(data);
  if (typeof h === 'string') return fail(`dtmf: ${h}`);
  const dtmf = data['dtmf'];
  const digit = isObject(dtmf) ? str(dtmf, 'digit') : undefined;
  if (digit === undefined || !DTMF_DIGITS.test(digit)) return fail('dtmf: missing or invalid digit');
  return { ok: true, message: { event: 'dtmf', ...h, digit } };
}

function parseMark(data: Json): ParseResult {
  const h = header(data);
  if (typeof h === 'string') return fail(`mark: ${h}`);
  const mark = data['mark'];
  const name = isObject(mark) ? str(mark, 'name') : undefined;
  if (name === undefined) return fail('mark: missing name');
  return { ok: true, message: { event: 'mark', ...h, name } };
}

function parseStop(data: Json): ParseResult {
  const h = header(data);
  if (typeof h === 'string') return fail(`stop: ${h}`);
  const stop = isObject(data['stop']) ? data['stop'] : {};
  return { ok: true, message: { event: 'stop', ...h, callSid: str(stop, 'callSid') ?? '' } };
}

// ── outbound ────────────────────────────────────────────────────────────────────────────────────
// Hand-built strings: JSON.stringify of these fixed shapes costs more than the socket write on the
// per-frame path, and streamSid / payload never need escaping (SID and base64 alphabets).

export function serializeMedia(streamSid: string, mulaw: Uint8Array): string {
  const payload = Buffer.from(mulaw.buffer, mulaw.byteOffset, mulaw.byteLength).toString('base64');
  return `{"event":"media","streamSid":"${streamSid}","media":{"payload":"${payload}"}}`;
}

export function serializeMark(streamSid: string, name: string): string {
  return JSON.stringify({ event: 'mark', streamSid, mark: { name } });
}

export function serializeClear(streamSid: string): string {
  return `{"event":"clear","streamSid":"${streamSid}"}`;
}
