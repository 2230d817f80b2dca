/**
 * A scriptable Twilio-exact caller for the turn-latency benchmark. Unlike `placeCall` (whose audio is
 * fixed up front), clips are started on the fly — "speak 3 s into the reply" — and the caller keeps
 * the real send time of every frame it sent, so onset and end of speech are known exactly.
 *
 * Protocol as Twilio: the signed voice webhook, `<Stream>` parameters into `start.customParameters`,
 * `connected`, `start`, one 20 ms µ-law `media` frame every 20 ms on a drift-free clock (frame k leaves
 * once its audio is complete, at (k + 1) × 20 ms), marks echoed when the audio before them has played
 * and at once on `clear`, `stop` to hang up.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import twilio from 'twilio';
import WebSocket, { type RawData } from 'ws';
import { encodeG711, g711Silence } from '../src/audio/g711.js';
import { parseStreamTwiml, voiceWebhookParams } from '../src/softphone/twilio-caller.js';

const FRAME_MS = 20;
const FRAME_SAMPLES = 160;

const sid = (prefix: string): string => prefix + randomBytes(16).toString('hex');

export class SpeechCaller {
  readonly callSid = sid('CA');
  readonly accountSid = sid('AC');
  readonly streamSid = sid('MZ');
  /** performance.now() when `start` was sent: every time below is ms since then. */
  t0 = 0;
  /** Arrival times of media messages. */
  readonly mediaAt: number[] = [];
  readonly clearsAt: number[] = [];
  /** Actual send time of each frame, by frame index. */
  readonly frameSentAt: number[] = [];
  readonly violations: string[] = [];

  private ws: WebSocket | undefined;
  private seq = 0;
  private framesSent = 0;
  private timer: NodeJS.Timeout | undefined;
  private ended = false;
  private readonly silence = Buffer.alloc(FRAME_SAMPLES, g711Silence('mulaw'));
  /** µ-law audio waiting to be sent, and where in it we are. */
  private clip: Buffer | undefined;
  private clipOffset = 0;
  private playEndMs = 0;
  private readonly pendingMarks: Array<{ name: string; dueMs: number }> = [];
  private readonly waiters = new Set<() => void>();

  constructor(
    private readonly url: string,
    private readonly authToken: string,
  ) {}

  now(): number {
    return performance.now() - this.t0;
  }

  /** ms of agent audio still buffered at the caller (0 when the agent is silent). */
  get bufferedMs(): number {
    return Math.max(0, this.playEndMs - this.now());
  }

  async connect(): Promise<void> {
    const params = voiceWebhookParams({ accountSid: this.accountSid, callSid: this.callSid, from: '+14155550100', to: '+14155550199' });
    const response = await fetch(`${this.url}/twilio/voice`, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/x-www-form-urlencoded',
        'User-Agent': 'TwilioProxy/1.1',
        'X-Twilio-Signature': twilio.getExpectedTwilioSignature(this.authToken, `${this.url}/twilio/voice`, params),
      },
      body: new URLSearchParams(params).toString(),
    });
    const body = await response.text();
    if (response.status !== 200) throw new Error(`voice webhook answered ${response.status}: ${body.slice(0, 200)}`);
    const stream = parseStreamTwiml(body);
    const ws = new WebSocket(new URL(stream.url, this.url).toString().replace(/^http/, 'ws'), { perMessageDeflate: false });
    this.ws = ws;
    ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    ws.on('close', () => this.stopTimers());
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    ws.on('error', (error) => this.violations.push(`socket error: ${error.message}`));
    ws.send(JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' }));
    this.t0 = performance.now();
    this.send({
      event: 'start',
      sequenceNumber: String(++this.seq),
      start: {
        accountSid: this.accountSid,
        streamSid: this.streamSid,
        callSid: this.callSid,
        tracks: ['inbound'],
        mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
        customParameters: stream.parameters,
      },
      streamSid: this.streamSid,
    });
    this.timer = setTimeout(() => this.tick(), FRAME_MS);
  }

  /** Starts sending `pcm` (8 kHz) with the next frame; returns the stream frame index that carries its first sample. */
  play(pcm: Int16Array): number {
    if (this.clip !== undefined) throw new Error('a clip is already playing');
    const frames = Math.ceil(pcm.length / FRAME_SAMPLES);
    const ulaw = Buffer.alloc(frames * FRAME_SAMPLES, g711Silence('mulaw'));
    Buffer.from(encodeG711('mulaw', pcm)).copy(ulaw);
    this.clip = ulaw;
    this.clipOffset = 0;
    return this.framesSent;
  }

  /** Resolves once `predicate()` holds (checked on every message and frame), or with false after `timeoutMs`. */
  waitFor(predicate: () => boolean, timeoutMs: number): Promise<boolean> {
    if (predicate()) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const check = (): void => {
        if (!predicate() && !this.ended) return;
        done(predicate());
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      const done = (value: boolean): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(value);
      };
      this.waiters.add(check);
    });
  }

  /** Resolves once frame `index` has been sent, with its send time (ms since start). */
  async frameSent(index: number, timeoutMs = 30_000): Promise<number | undefined> {
    await this.waitFor(() => this.frameSentAt[index] !== undefined, timeoutMs);
    return this.frameSentAt[index];
  }

  hangUp(): void {
    if (this.ended) return;
    this.send({ event: 'stop', sequenceNumber: String(++this.seq), stop: { accountSid: this.accountSid, callSid: this.callSid }, streamSid: this.streamSid });
    this.stopTimers();
    this.ws?.close(1000);
    const force = setTimeout(() => this.ws?.terminate(), 2000);
    force.unref();
  }

  private stopTimers(): void {
    this.ended = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.notify();
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  private send(message: Record<string, unknown>): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  private tick(): void {
    if (this.ended) return;
    const now = this.now();
    while ((this.framesSent + 1) * FRAME_MS <= now) {
      let frame: Buffer = this.silence;
      if (this.clip !== undefined) {
        frame = this.clip.subarray(this.clipOffset, this.clipOffset + FRAME_SAMPLES);
        this.clipOffset += FRAME_SAMPLES;
        if (this.clipOffset >= this.clip.length) this.clip = undefined;
      }
      const index = this.framesSent++;
      this.send({
        event: 'media',
        sequenceNumber: String(++this.seq),
        media: { track: 'inbound', chunk: String(index + 1), timestamp: String(index * FRAME_MS), payload: frame.toString('base64') },
        streamSid: this.streamSid,
      });
      this.frameSentAt[index] = this.now();
    }
    while (this.pendingMarks.length > 0 && this.pendingMarks[0]!.dueMs <= now) this.echoMark(this.pendingMarks.shift()!.name);
    this.notify();
    this.timer = setTimeout(() => this.tick(), Math.max(0, (this.framesSent + 1) * FRAME_MS - this.now()));
  }

  private echoMark(name: string): void {
    this.send({ event: 'mark', sequenceNumber: String(++this.seq), streamSid: this.streamSid, mark: { name } });
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    const at = this.now();
    if (isBinary) {
      this.violations.push('binary frame');
      return;
    }
    let message: { event?: string; streamSid?: string; media?: { payload?: string }; mark?: { name?: string } };
    try {
      message = JSON.parse(Buffer.isBuffer(data) ? data.toString('utf8') : String(data)) as typeof message;
    } catch {
      this.violations.push('frame is not JSON');
      return;
    }
    if (message.streamSid !== this.streamSid) this.violations.push(`${message.event ?? '?'} with a wrong streamSid`);
    if (message.event === 'media') {
      const bytes = Buffer.from(message.media?.payload ?? '', 'base64').length;
      if (bytes === 0 || bytes % FRAME_SAMPLES !== 0) this.violations.push(`media payload of ${bytes} bytes`);
      this.mediaAt.push(at);
      this.playEndMs = Math.max(at, this.playEndMs) + (bytes / FRAME_SAMPLES) * FRAME_MS;
    } else if (message.event === 'mark') {
      const name = message.mark?.name ?? '';
      if (this.playEndMs <= at) this.echoMark(name);
      else this.pendingMarks.push({ name, dueMs: this.playEndMs });
    } else if (message.event === 'clear') {
      this.clearsAt.push(at);
      this.playEndMs = at;
      for (const mark of this.pendingMarks.splice(0)) this.echoMark(mark.name);
    } else {
      this.violations.push(`unexpected event ${String(message.event)}`);
    }
    this.notify();
  }
}
