/**
 * A softphone that calls our server exactly as Twilio does: the signed voice webhook, then a
 * bidirectional Media Stream speaking Twilio's messages byte for byte (connected, start, media every
 * 20 ms, dtmf, stop), while it plays the agent's audio like Twilio's playback buffer does (marks echo
 * when the audio before them has played, `clear` drops the buffer and echoes pending marks at once).
 * It records everything received, checks what it can of the protocol, and measures response latency
 * per caller utterance.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import twilio from 'twilio';
import WebSocket, { type RawData } from 'ws';
import { decodeG711, encodeG711, g711Silence } from '../audio/g711.js';
import { FRAME_BYTES, FRAME_MS, SAMPLE_RATE_8K } from '../audio/frames.js';
import { loadResampler, resampleAll } from '../audio/resampler.js';
import { readWav } from '../audio/wav.js';

// ── Public types ─────────────────────────────────────────────────────────────────────────────────

/** Something the caller does at `atMs` (ms since the stream started). */
export type CallEvent = { atMs: number } & (
  | { kind: 'dtmf'; digit: string }
  /** Sends this exact text (string) or binary (Buffer) frame: for garbage-frame tests. */
  | { kind: 'raw'; data: string | Buffer }
);

export interface CallOptions {
  /** Where our server really listens, e.g. `http://localhost:8080`. */
  url: string;
  /** The URL Twilio is configured with (signature base); defaults to `url`. */
  publicUrl?: string;
  /** Signs the webhook with X-Twilio-Signature when given. */
  authToken?: string;
  from?: string;
  to?: string;
  /** Caller audio: 8 kHz PCM16 mono, or a WAV file path (resampled to 8 kHz). */
  audio: Int16Array | string;
  events?: CallEvent[];
  /** Hard stop: the caller hangs up this many ms after the stream started. */
  hangUpAfterMs?: number;
  /** Hang up once the caller audio (and events) are done and the agent has been silent this long. Default 2500. */
  idleHangUpMs?: number;
  /** Default 120000. */
  maxDurationMs?: number;
  /**
   * The line echoes the agent's audio back, as a speakerphone or a line without echo cancelling
   * does: what the caller heard, `delayMs` later and `gainDb` quieter (negative), is added to what
   * the caller sends.
   */
  echo?: { delayMs: number; gainDb: number };
  /** Turns get `callerText`/`agentText` when given. */
  transcribe?: (pcm8k: Int16Array) => Promise<string>;
  /** Aborting hangs up (stop + close) and resolves normally. */
  signal?: AbortSignal;
  onMessage?: (message: ReceivedMessage) => void;
}

/** One frame received from the server. */
export interface ReceivedMessage {
  /** Arrival time, ms since the stream started (when `start` was sent). */
  atMs: number;
  /** The JSON `event` field; null for binary frames, non-JSON text or a missing event. */
  event: string | null;
  /** Parsed JSON; undefined when the frame was not JSON. */
  data: unknown;
  /** The frame's text (binary frames: base64). */
  raw: string;
  binary: boolean;
}

export interface Utterance {
  startMs: number;
  endMs: number;
}

export interface Turn {
  /** `greeting`: agent audio before the first caller utterance; `reply`: one per caller utterance. */
  kind: 'greeting' | 'reply';
  callerStartMs: number | null;
  callerEndMs: number | null;
  /** Arrival of the first outbound media after `callerEndMs` (greeting: after the stream start). */
  agentFirstFrameMs: number | null;
  /** agentFirstFrameMs − callerEndMs (greeting: agentFirstFrameMs, from the stream start). */
  responseLatencyMs: number | null;
  callerText?: string;
  agentText?: string;
}

export interface CallResult {
  callSid: string;
  accountSid: string;
  streamSid: string;
  customParameters: Record<string, string>;
  messages: ReceivedMessage[];
  /** Arrival times (ms) of `clear` messages. */
  clears: number[];
  /** Mark names in the order they were echoed back. */
  marksEchoed: string[];
  /** 8 kHz timeline of what the caller heard: silence in gaps, cut by `clear` and by the hang-up. */
  agentAudio: Int16Array;
  /** 8 kHz timeline of what the caller sent (its audio, then silence). */
  callerAudio: Int16Array;
  turns: Turn[];
  violations: string[];
  closedBy: 'server' | 'caller';
  durationMs: number;
  /**
   * When the server closed the stream, Twilio goes on with the TwiML after `<Connect>`: the softphone
   * follows its `<Redirect>` as Twilio does (signed POST) and reports what the call would do next.
   */
  afterStream?: AfterStream;
}

export interface AfterStream {
  /** HTTP status of the redirect's answer. */
  status: number;
  twiml: string;
  /** `transfer` (a `<Dial>`), `hangup` (a `<Hangup>`), or `other`. */
  next: 'transfer' | 'hangup' | 'other';
  /** The number dialled, for a transfer. */
  to?: string;
}

// ── Webhook and TwiML ────────────────────────────────────────────────────────────────────────────

export interface StreamTwiml {
  url: string;
  parameters: Record<string, string>;
}

/** Finds `<Connect><Stream url>` and its `<Parameter name value>`s; entities are decoded. */
export function parseStreamTwiml(xml: string): StreamTwiml {
  // Tags, quote-aware: attribute values may hold a literal '>'. Comments, CDATA and declarations are skipped.
  const tags = /<!--[\s\S]*?-->|<!\[CDATA\[[\s\S]*?\]\]>|<[?!][^>]*>|<(\/?)([A-Za-z_][\w:.-]*)((?:[^>"']|"[^"]*"|'[^']*')*?)(\/?)>/g;
  let inConnect = false;
  let stream: StreamTwiml | undefined;
  let inStream = false;
  for (const m of xml.matchAll(tags)) {
    const name = m[2];
    if (name === undefined) continue;
    const closing = m[1] === '/';
    const selfClosing = m[4] === '/';
    if (name === 'Connect') inConnect = !closing && !selfClosing;
    else if (name === 'Stream' && inConnect) {
      if (closing) {
        if (stream !== undefined) break;
        continue;
      }
      const url = parseAttributes(m[3] ?? '').url;
      if (url === undefined || url === '') throw new Error(`<Stream> has no url: ${xml}`);
      stream = { url, parameters: {} };
      inStream = !selfClosing;
      if (!inStream) break;
    } else if (name === 'Parameter' && inStream && stream !== undefined && !closing) {
      const p = parseAttributes(m[3] ?? '');
      if (p.name !== undefined) stream.parameters[p.name] = p.value ?? '';
    }
  }
  if (stream === undefined) throw new Error(`TwiML has no <Connect><Stream>: ${xml}`);
  return stream;
}

/** The `<Redirect>` Twilio follows once the stream ends (it comes after `<Connect>`), if any. */
export function parseRedirectTwiml(xml: string): { url: string; method: 'GET' | 'POST' } | undefined {
  const after = xml.slice(Math.max(0, xml.lastIndexOf('</Connect>')));
  const m = /<Redirect((?:[^>"']|"[^"]*"|'[^']*')*)>([^<]*)<\/Redirect>/.exec(after);
  if (m === null) return undefined;
  const url = decodeXmlEntities((m[2] ?? '').trim());
  if (url === '') return undefined;
  return { url, method: (parseAttributes(m[1] ?? '').method ?? 'POST').toUpperCase() === 'GET' ? 'GET' : 'POST' };
}

/** What a TwiML answer tells the call to do next: dial a number, hang up, or something else. */
export function nextStepOfTwiml(xml: string): { next: AfterStream['next']; to?: string } {
  const dial = /<Dial(?:[^>"']|"[^"]*"|'[^']*')*>([\s\S]*?)<\/Dial>/.exec(xml);
  if (dial !== null) {
    const inner = dial[1] ?? '';
    const number = /<Number(?:[^>"']|"[^"]*"|'[^']*')*>([^<]*)<\/Number>/.exec(inner)?.[1] ?? inner;
    return { next: 'transfer', to: decodeXmlEntities(number.trim()) };
  }
  if (/<Hangup\s*\/?>/.test(xml)) return { next: 'hangup' };
  return { next: 'other' };
}

function parseAttributes(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of text.matchAll(/([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) {
    const name = m[1];
    if (name !== undefined) out[name] = decodeXmlEntities(m[2] ?? m[3] ?? '');
  }
  return out;
}

export function decodeXmlEntities(text: string): string {
  return text.replace(/&(#x[0-9a-fA-F]+|#\d+|amp|lt|gt|quot|apos);/g, (_, entity: string) => {
    switch (entity) {
      case 'amp': return '&';
      case 'lt': return '<';
      case 'gt': return '>';
      case 'quot': return '"';
      case 'apos': return "'";
      default: {
        const code = entity.startsWith('#x') ? parseInt(entity.slice(2), 16) : parseInt(entity.slice(1), 10);
        return String.fromCodePoint(code);
      }
    }
  });
}

/** The form parameters Twilio POSTs to a voice webhook for an inbound call. */
export function voiceWebhookParams(ids: { accountSid: string; callSid: string; from: string; to: string }): Record<string, string> {
  const geo = (prefix: string): Record<string, string> => ({
    [`${prefix}City`]: 'SAN FRANCISCO',
    [`${prefix}State`]: 'CA',
    [`${prefix}Zip`]: '94105',
    [`${prefix}Country`]: 'US',
  });
  return {
    AccountSid: ids.accountSid,
    ApiVersion: '2010-04-01',
    CallSid: ids.callSid,
    CallStatus: 'ringing',
    Called: ids.to,
    ...geo('Called'),
    Caller: ids.from,
    ...geo('Caller'),
    Direction: 'inbound',
    From: ids.from,
    ...geo('From'),
    To: ids.to,
    ...geo('To'),
  };
}

async function postVoiceWebhook(
  url: string,
  publicUrl: string,
  authToken: string | undefined,
  params: Record<string, string>,
  signal: AbortSignal | undefined,
): Promise<string> {
  const headers: Record<string, string> = {
    'Content-Type': 'application/x-www-form-urlencoded',
    Accept: '*/*',
    'User-Agent': 'TwilioProxy/1.1',
    'I-Twilio-Idempotency-Token': randomUUID(),
  };
  if (authToken !== undefined && authToken !== '') {
    headers['X-Twilio-Signature'] = twilio.getExpectedTwilioSignature(authToken, `${publicUrl}/twilio/voice`, params);
  }
  const init: RequestInit = { method: 'POST', headers, body: new URLSearchParams(params).toString() };
  if (signal !== undefined) init.signal = signal;
  const response = await fetch(`${url}/twilio/voice`, init);
  const body = await response.text();
  if (response.status !== 200) throw new Error(`voice webhook answered ${response.status}: ${body}`);
  return body;
}

/** Follows the after-stream `<Redirect>` as Twilio does: the call's parameters, signed over the public URL. */
async function followRedirect(
  redirect: { url: string; method: 'GET' | 'POST' },
  url: string,
  publicUrl: string,
  authToken: string | undefined,
  params: Record<string, string>,
): Promise<AfterStream> {
  const publicTarget = new URL(redirect.url, publicUrl);
  const target = new URL(publicTarget.pathname + publicTarget.search, url);
  // Our server's TwiML always redirects with POST; a GET redirect is reported, not guessed at.
  if (redirect.method !== 'POST') throw new Error(`the softphone follows POST redirects only, not ${redirect.method}`);
  const headers: Record<string, string> = {
    Accept: '*/*',
    'Content-Type': 'application/x-www-form-urlencoded',
    'User-Agent': 'TwilioProxy/1.1',
    'I-Twilio-Idempotency-Token': randomUUID(),
  };
  if (authToken !== undefined && authToken !== '') headers['X-Twilio-Signature'] = twilio.getExpectedTwilioSignature(authToken, publicTarget.toString(), params);
  const response = await fetch(target, { method: 'POST', headers, body: new URLSearchParams(params).toString() });
  const twiml = await response.text();
  return { status: response.status, twiml, ...nextStepOfTwiml(twiml) };
}

/** The stream URL names the public host; connect to its path on the server we really call. */
function mediaSocketUrl(streamUrl: string, url: string, publicUrl: string): string {
  const stream = new URL(streamUrl, publicUrl);
  const target = new URL(stream.pathname + stream.search, url);
  target.protocol = target.protocol === 'https:' ? 'wss:' : 'ws:';
  return target.toString();
}

// ── Utterances and turns (pure) ──────────────────────────────────────────────────────────────────

export interface UtteranceOptions {
  sampleRate?: number;
  /** Analysis frame; default 20 ms. */
  frameMs?: number;
  /** Frame energy (dBFS) above which a frame is speech; default max(-45, noise floor + 12) capped at -30. */
  thresholdDb?: number;
  /** Gaps shorter than this stay inside one utterance; default 600 ms. */
  hangoverMs?: number;
  /** Shorter bursts are dropped; default 100 ms. */
  minSpeechMs?: number;
}

/** Energy-based utterance detector with a hangover. `endMs` is the end of the last speech frame. */
export function detectUtterances(pcm: Int16Array, options: UtteranceOptions = {}): Utterance[] {
  const sampleRate = options.sampleRate ?? SAMPLE_RATE_8K;
  const frameMs = options.frameMs ?? 20;
  const hangoverMs = options.hangoverMs ?? 600;
  const minSpeechMs = options.minSpeechMs ?? 100;
  const frameSamples = Math.max(1, Math.round((sampleRate * frameMs) / 1000));
  const frames = Math.floor(pcm.length / frameSamples);
  if (frames === 0) return [];
  const db = new Float64Array(frames);
  for (let f = 0; f < frames; f++) {
    let sum = 0;
    for (let i = f * frameSamples; i < (f + 1) * frameSamples; i++) {
      const s = (pcm[i] ?? 0) / 32768;
      sum += s * s;
    }
    db[f] = 10 * Math.log10(sum / frameSamples + 1e-12);
  }
  const sorted = Float64Array.from(db).sort();
  const floor = sorted[Math.floor(frames * 0.1)] ?? -120;
  const threshold = options.thresholdDb ?? Math.min(Math.max(-45, floor + 12), -30);

  const out: Utterance[] = [];
  let start = -1;
  let lastSpeech = -1;
  const close = (): void => {
    const startMs = start * frameMs;
    const endMs = (lastSpeech + 1) * frameMs;
    if (endMs - startMs >= minSpeechMs) out.push({ startMs, endMs });
    start = -1;
  };
  for (let f = 0; f < frames; f++) {
    if ((db[f] ?? -120) > threshold) {
      if (start >= 0 && (f - lastSpeech - 1) * frameMs >= hangoverMs) close();
      if (start < 0) start = f;
      lastSpeech = f;
    }
  }
  if (start >= 0) close();
  return out;
}

/**
 * One greeting turn, then one per caller utterance. A reply's first agent frame is the first media
 * arriving after the utterance ended and before the next one ended (else null).
 */
export function deriveTurns(utterances: readonly Utterance[], agentMediaArrivalsMs: readonly number[]): Turn[] {
  const arrivals = [...agentMediaArrivalsMs].sort((a, b) => a - b);
  const firstUtterance = utterances[0];
  const greetingFrame = arrivals.find((t) => firstUtterance === undefined || t < firstUtterance.startMs) ?? null;
  const turns: Turn[] = [
    { kind: 'greeting', callerStartMs: null, callerEndMs: null, agentFirstFrameMs: greetingFrame, responseLatencyMs: greetingFrame },
  ];
  utterances.forEach((u, i) => {
    const limit = utterances[i + 1]?.endMs ?? Infinity;
    const first = arrivals.find((t) => t > u.endMs && t <= limit) ?? null;
    turns.push({
      kind: 'reply',
      callerStartMs: u.startMs,
      callerEndMs: u.endMs,
      agentFirstFrameMs: first,
      responseLatencyMs: first === null ? null : first - u.endMs,
    });
  });
  return turns;
}

// ── Playback (Twilio's outbound buffer, on the call's 8 kHz timeline) ────────────────────────────

const SAMPLES_PER_MS = SAMPLE_RATE_8K / 1000;

class PlaybackTimeline {
  private readonly segments: Array<{ start: number; samples: Int16Array }> = [];
  /** Timeline sample where the buffered audio finishes playing. */
  endSample = 0;

  enqueue(nowSample: number, pcm: Int16Array): void {
    if (pcm.length === 0) return;
    const start = Math.max(nowSample, this.endSample);
    this.segments.push({ start, samples: pcm });
    this.endSample = start + pcm.length;
  }

  /** Drops everything not yet played at `nowSample`. */
  clear(nowSample: number): void {
    for (let i = this.segments.length - 1; i >= 0; i--) {
      const seg = this.segments[i];
      if (seg === undefined) continue;
      if (seg.start >= nowSample) this.segments.splice(i, 1);
      else if (seg.start + seg.samples.length > nowSample) seg.samples = seg.samples.subarray(0, nowSample - seg.start);
    }
    this.endSample = Math.min(this.endSample, nowSample);
  }

  /** What was played over [from, from + count): silence where nothing was, or a clear cut it. */
  read(from: number, count: number): Int16Array {
    const out = new Int16Array(count);
    // Segments are in playout order and never overlap: walk back from the newest, stop once past.
    for (let i = this.segments.length - 1; i >= 0; i--) {
      const seg = this.segments[i]!;
      if (seg.start + seg.samples.length <= from) break;
      const start = Math.max(from, seg.start);
      const end = Math.min(from + count, seg.start + seg.samples.length);
      if (start < end) out.set(seg.samples.subarray(start - seg.start, end - seg.start), start - from);
    }
    return out;
  }

  render(totalSamples: number): Int16Array {
    return this.read(0, totalSamples);
  }

}

// ── The call ─────────────────────────────────────────────────────────────────────────────────────

const sid = (prefix: string): string => prefix + randomBytes(16).toString('hex');

async function loadCallerAudio(audio: Int16Array | string): Promise<Int16Array> {
  if (typeof audio !== 'string') return audio;
  const wav = readWav(await readFile(audio));
  if (wav.sampleRate === SAMPLE_RATE_8K) return wav.samples;
  await loadResampler();
  return resampleAll(wav.samples, wav.sampleRate, SAMPLE_RATE_8K);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function rawToBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Twilio's `start` message, field for field as its docs show it. */
export function twilioStartMessage(ids: {
  sequenceNumber: string;
  accountSid: string;
  callSid: string;
  streamSid: string;
  customParameters: Record<string, string>;
}): Record<string, unknown> {
  return {
    event: 'start',
    sequenceNumber: ids.sequenceNumber,
    start: {
      accountSid: ids.accountSid,
      streamSid: ids.streamSid,
      callSid: ids.callSid,
      tracks: ['inbound'],
      mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
      customParameters: ids.customParameters,
    },
    streamSid: ids.streamSid,
  };
}

export async function placeCall(options: CallOptions): Promise<CallResult> {
  options.signal?.throwIfAborted();
  const url = options.url.replace(/\/+$/, '');
  const publicUrl = (options.publicUrl ?? options.url).replace(/\/+$/, '');
  const from = options.from ?? '+14155550100';
  const to = options.to ?? '+14155550199';
  const idleHangUpMs = options.idleHangUpMs ?? 2500;
  const maxDurationMs = options.maxDurationMs ?? 120_000;
  const events = [...(options.events ?? [])].sort((a, b) => a.atMs - b.atMs);

  const callerPcm = await loadCallerAudio(options.audio);
  const callerFrames = Math.ceil(callerPcm.length / FRAME_BYTES);
  const callerUlaw = new Uint8Array(callerFrames * FRAME_BYTES).fill(g711Silence('mulaw'));
  callerUlaw.set(encodeG711('mulaw', callerPcm));
  const silenceFrame = new Uint8Array(FRAME_BYTES).fill(g711Silence('mulaw'));

  const accountSid = sid('AC');
  const callSid = sid('CA');
  const streamSid = sid('MZ');
  const params = voiceWebhookParams({ accountSid, callSid, from, to });
  const twiml = await postVoiceWebhook(url, publicUrl, options.authToken, params, options.signal);
  const stream = parseStreamTwiml(twiml);
  const redirect = parseRedirectTwiml(twiml);
  const customParameters = stream.parameters;

  const messages: ReceivedMessage[] = [];
  const clears: number[] = [];
  const marksEchoed: string[] = [];
  const violations: string[] = [];
  const mediaArrivals: number[] = [];
  const playback = new PlaybackTimeline();
  const pendingMarks: Array<{ name: string; dueSample: number }> = [];
  let sequence = 0;
  let chunk = 0;
  let framesSent = 0;
  let lastMediaAtMs = -Infinity;
  let ended = false;
  let closedBy: 'server' | 'caller' = 'caller';
  let endMs = 0;
  let frameTimer: NodeJS.Timeout | undefined;
  let markTimer: NodeJS.Timeout | undefined;
  const eventTimers: NodeJS.Timeout[] = [];

  let t0 = performance.now();
  const elapsed = (): number => performance.now() - t0;
  const violation = (atMs: number, text: string): void => { violations.push(`${atMs.toFixed(0)} ms: ${text}`); };
  const send = (message: Record<string, unknown>): void => {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
  };
  const nextSeq = (): string => String(++sequence);

  // Marks: echoed in order once the playhead passes them; never early.
  const flushMarks = (): void => {
    markTimer = undefined;
    const now = Math.floor(elapsed() * SAMPLES_PER_MS);
    while (pendingMarks.length > 0 && (pendingMarks[0]?.dueSample ?? 0) <= now) echoMark(pendingMarks.shift()?.name ?? '');
    scheduleMarks();
  };
  const scheduleMarks = (): void => {
    if (ended || markTimer !== undefined) return;
    const head = pendingMarks[0];
    if (head === undefined) return;
    markTimer = setTimeout(flushMarks, Math.max(0, head.dueSample / SAMPLES_PER_MS - elapsed()));
  };
  const echoMark = (name: string): void => {
    marksEchoed.push(name);
    send({ event: 'mark', sequenceNumber: nextSeq(), streamSid, mark: { name } });
  };

  const handle = (data: RawData, isBinary: boolean): void => {
    const atMs = elapsed();
    const nowSample = Math.floor(atMs * SAMPLES_PER_MS);
    const buffer = rawToBuffer(data);
    const raw = isBinary ? buffer.toString('base64') : buffer.toString('utf8');
    let parsed: unknown;
    if (!isBinary) {
      try { parsed = JSON.parse(raw); } catch { parsed = undefined; }
    }
    const event = isRecord(parsed) && typeof parsed.event === 'string' ? parsed.event : null;
    const record: ReceivedMessage = { atMs, event, data: parsed, raw, binary: isBinary };
    messages.push(record);
    options.onMessage?.(record);

    if (isBinary) return violation(atMs, 'binary frame (Twilio accepts JSON text only)');
    if (!isRecord(parsed)) return violation(atMs, `frame is not a JSON object: ${raw.slice(0, 80)}`);
    if (event === null) return violation(atMs, 'message without an "event"');
    if (event !== 'media' && event !== 'mark' && event !== 'clear') return violation(atMs, `unknown event "${event}"`);
    if (parsed.streamSid === undefined) return violation(atMs, `${event} without streamSid`);
    if (parsed.streamSid !== streamSid) {
      return violation(atMs, `${event} with wrong streamSid ${JSON.stringify(parsed.streamSid)} (expected ${streamSid})`);
    }
    if (ended) return;

    if (event === 'media') {
      const media = parsed.media;
      const payload = isRecord(media) ? media.payload : undefined;
      if (typeof payload !== 'string') return violation(atMs, 'media without a string media.payload');
      if (!BASE64.test(payload)) return violation(atMs, 'media.payload is not valid base64');
      const bytes = Buffer.from(payload, 'base64');
      if (bytes.length === 0 || bytes.length % FRAME_BYTES !== 0) {
        violation(atMs, `media.payload is ${bytes.length} bytes, not a whole number of ${FRAME_BYTES}-byte frames`);
      }
      mediaArrivals.push(atMs);
      lastMediaAtMs = atMs;
      playback.enqueue(nowSample, decodeG711('mulaw', bytes));
    } else if (event === 'mark') {
      const mark = parsed.mark;
      const name = isRecord(mark) ? mark.name : undefined;
      if (typeof name !== 'string') return violation(atMs, 'mark without a string mark.name');
      pendingMarks.push({ name, dueSample: playback.endSample });
      if (markTimer === undefined) flushMarks();
    } else {
      clears.push(atMs);
      playback.clear(nowSample);
      if (markTimer !== undefined) clearTimeout(markTimer);
      markTimer = undefined;
      for (const mark of pendingMarks.splice(0)) echoMark(mark.name);
    }
  };

  const stopTimers = (): void => {
    ended = true;
    endMs = elapsed();
    if (frameTimer !== undefined) clearTimeout(frameTimer);
    if (markTimer !== undefined) clearTimeout(markTimer);
    for (const timer of eventTimers) clearTimeout(timer);
    options.signal?.removeEventListener('abort', hangUp);
  };
  function hangUp(): void {
    if (ended) return;
    stopTimers();
    send({ event: 'stop', sequenceNumber: nextSeq(), stop: { accountSid, callSid }, streamSid });
    ws.close(1000);
    const force = setTimeout(() => ws.terminate(), 2000);
    force.unref();
  }

  const ws = new WebSocket(mediaSocketUrl(stream.url, url, publicUrl));
  ws.on('message', handle);
  const done = new Promise<void>((resolve) => {
    ws.on('close', () => {
      if (!ended) {
        closedBy = 'server';
        stopTimers();
      }
      resolve();
    });
  });
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => { ws.terminate(); reject(new Error('aborted before the media socket opened')); };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    ws.once('open', () => { options.signal?.removeEventListener('abort', onAbort); resolve(); });
    ws.once('error', (err) => { options.signal?.removeEventListener('abort', onAbort); reject(err); });
  });
  ws.on('error', (err) => violation(elapsed(), `websocket error: ${err.message}`));

  // Caller side: connected, start, then a media frame every 20 ms (frame k leaves once its audio is
  // complete, at k × 20 ms), scheduled against the monotonic clock so timer lateness never accumulates.
  ws.send(JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' }));
  t0 = performance.now();
  send(twilioStartMessage({ sequenceNumber: nextSeq(), accountSid, callSid, streamSid, customParameters }));

  const lastEventMs = events.reduce((max, e) => Math.max(max, e.atMs), 0);
  /** Caller frame `index` with the echo of what the caller heard `delayMs` before mixed in. */
  const withEcho = (index: number, echo: { delayMs: number; gainDb: number }): Uint8Array => {
    const gain = 10 ** (echo.gainDb / 20);
    const start = index * FRAME_BYTES;
    const heard = playback.read(start - Math.round(echo.delayMs * SAMPLES_PER_MS), FRAME_BYTES);
    const mixed = new Int16Array(FRAME_BYTES);
    for (let i = 0; i < FRAME_BYTES; i++) {
      mixed[i] = Math.max(-32768, Math.min(32767, Math.round((callerPcm[start + i] ?? 0) + heard[i]! * gain)));
    }
    return encodeG711('mulaw', mixed);
  };
  const tick = (): void => {
    if (ended) return;
    const now = elapsed();
    while ((framesSent + 1) * FRAME_MS <= now && !ended) {
      const index = framesSent;
      let frame: Uint8Array = index < callerFrames ? callerUlaw.subarray(index * FRAME_BYTES, (index + 1) * FRAME_BYTES) : silenceFrame;
      if (options.echo !== undefined) frame = withEcho(index, options.echo);
      framesSent++;
      chunk++;
      send({
        event: 'media',
        sequenceNumber: nextSeq(),
        media: { track: 'inbound', chunk: String(chunk), timestamp: String(index * FRAME_MS), payload: Buffer.from(frame).toString('base64') },
        streamSid,
      });
    }
    const agentQuietSinceMs = Math.max(playback.endSample / SAMPLES_PER_MS, lastMediaAtMs);
    const idleFromMs = Math.max(callerFrames * FRAME_MS, lastEventMs, agentQuietSinceMs);
    if (
      (options.hangUpAfterMs !== undefined && now >= options.hangUpAfterMs) ||
      now >= maxDurationMs ||
      now >= idleFromMs + idleHangUpMs
    ) {
      hangUp();
      return;
    }
    frameTimer = setTimeout(tick, Math.max(0, (framesSent + 1) * FRAME_MS - elapsed()));
  };
  frameTimer = setTimeout(tick, FRAME_MS);

  for (const e of events) {
    eventTimers.push(
      setTimeout(() => {
        if (ended) return;
        if (e.kind === 'dtmf') {
          send({ event: 'dtmf', streamSid, sequenceNumber: nextSeq(), dtmf: { track: 'inbound_track', digit: e.digit } });
        } else if (ws.readyState === WebSocket.OPEN) {
          ws.send(e.data, { binary: typeof e.data !== 'string' });
        }
      }, Math.max(0, e.atMs - elapsed())),
    );
  }

  if (options.signal?.aborted === true) hangUp();
  else options.signal?.addEventListener('abort', hangUp, { once: true });

  await done;

  // ── Post-processing ──
  const totalSamples = Math.max(0, Math.floor(endMs * SAMPLES_PER_MS));
  const agentAudio = playback.render(totalSamples);
  const callerAudio = new Int16Array(framesSent * FRAME_BYTES);
  callerAudio.set(callerPcm.subarray(0, callerAudio.length));
  const utterances = detectUtterances(callerAudio);
  const turns = deriveTurns(utterances, mediaArrivals);
  const transcriber = options.transcribe;
  if (transcriber !== undefined) {
    const transcribe = async (pcm: Int16Array): Promise<string> => {
      if (pcm.length === 0) return '';
      try {
        return await transcriber(pcm);
      } catch (err) {
        return `(no transcript: ${err instanceof Error ? err.message : String(err)})`;
      }
    };
    const slice = (pcm: Int16Array, fromMs: number, toMs: number): Int16Array =>
      pcm.subarray(Math.floor(fromMs * SAMPLES_PER_MS), Math.min(pcm.length, Math.floor(toMs * SAMPLES_PER_MS)));
    for (const turn of turns) {
      const index = turns.indexOf(turn);
      const nextStart = utterances[index]?.startMs ?? endMs; // turns[i + 1] is utterances[i]
      if (turn.kind === 'greeting') {
        turn.agentText = await transcribe(slice(agentAudio, 0, nextStart));
      } else {
        const start = turn.callerStartMs ?? 0;
        const end = turn.callerEndMs ?? 0;
        // A little context either side helps the recogniser with word edges.
        turn.callerText = await transcribe(slice(callerAudio, Math.max(0, start - 200), Math.min(end + 200, nextStart)));
        turn.agentText = await transcribe(slice(agentAudio, end, nextStart));
      }
    }
  }

  const result: CallResult = {
    callSid,
    accountSid,
    streamSid,
    customParameters,
    messages,
    clears,
    marksEchoed,
    agentAudio,
    callerAudio,
    turns,
    violations,
    closedBy,
    durationMs: endMs,
  };
  // A caller who hangs up ends the call; a server that closes the stream hands it back to the TwiML.
  if (result.closedBy === 'server' && redirect !== undefined) {
    try {
      result.afterStream = await followRedirect(redirect, url, publicUrl, options.authToken, { ...params, CallStatus: 'in-progress' });
      if (result.afterStream.status !== 200) violations.push(`after-stream redirect to ${redirect.url} answered ${result.afterStream.status}`);
    } catch (err) {
      violations.push(`after-stream redirect to ${redirect.url} failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return result;
}
