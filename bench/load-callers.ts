/**
 * The simulated callers of the load benchmark, run as a CHILD process (forked by bench/load.ts) so
 * that the server process's CPU counters hold the server alone.
 *
 * A lean Twilio caller per call: (mode `twilio`) the signed voice webhook, the TwiML's
 * `<Stream url>` and its `<Parameter>`s (callSid, streamToken) into `start.customParameters`; then one
 * `ws` per call speaking Twilio's messages (`connected`, `start`, a 20 ms `media` frame per call, each
 * call on its own drift-free cadence with a random phase, all from one timer, `stop`), echoing marks
 * when the audio before them has played and at once on `clear`, as Twilio does. Mode `bare` skips the webhook (the floor server has none).
 *
 * The caller audio is low-level noise, so the server's VAD runs on every frame but no turn starts.
 *
 * Control is over IPC: the parent sends `config`, then `measure-start` / `measure-stop` (the child
 * answers `stats` for that window), then `hangup` (answer `done`, then the child exits).
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import twilio from 'twilio';
import WebSocket, { type RawData } from 'ws';
import { encodeG711 } from '../src/audio/g711.js';
import { LatencyHistogram } from '../src/metrics/histogram.js';
import { parseStreamTwiml, twilioStartMessage, voiceWebhookParams } from '../src/softphone/twilio-caller.js';

export interface CallerConfig {
  type: 'config';
  mode: 'twilio' | 'bare';
  /** twilio: the server's http base URL; bare: the ws URL. */
  url: string;
  authToken?: string;
  calls: number;
  /** RMS level of the caller's noise, dBFS. */
  noiseDbfs: number;
  /** `spread` (default): each call on its own random phase; `aligned`: every call's frame at once. */
  inboundPhases?: 'spread' | 'aligned';
}

export interface CallerReady {
  type: 'ready';
  started: number;
  failed: number;
  firstError?: string;
  setupMs: number;
}

export interface CallerStats {
  type: 'stats';
  windowMs: number;
  /** Calls whose socket was open for the whole window. */
  callsAlive: number;
  callsClosedByServer: number;
  mediaReceived: number;
  /** ms of audio in the media received (payload bytes / 8). */
  audioMsReceived: number;
  /** |inter-arrival − the message's audio duration|, ms. */
  jitterP50: number;
  jitterP99: number;
  jitterMax: number;
  /** Media that arrived after the caller's playback buffer had run dry (an audible gap). */
  underruns: number;
  /** Smallest playback buffer (ms of audio ahead of the playhead) seen when a message arrived. */
  minBufferMs: number;
  clears: number;
  marksEchoed: number;
  framesSent: number;
  /** How late the callers' shared timer fired (a late caller means late inbound audio). */
  tickLateP99: number;
  tickLateMax: number;
  cpuMs: number;
  elu: number;
}

interface Call {
  ws: WebSocket;
  streamSid: string;
  callSid: string;
  accountSid: string;
  seq: number;
  framesSent: number;
  noiseIndex: number;
  open: boolean;
  started: boolean;
  closedByServer: boolean;
  lastArrivalMs: number;
  playEndMs: number;
  pendingMarks: Array<{ name: string; dueMs: number }>;
  /** When this call's next media frame is due (its own 20 ms cadence). */
  nextDueMs: number;
}

const FRAME_MS = 20;
const NOISE_FRAMES = 250;

const sid = (prefix: string): string => prefix + randomBytes(16).toString('hex');

/** Gaussian noise at `dbfs`, µ-law encoded, as base64 20 ms frames. */
function noiseFrames(dbfs: number): string[] {
  const sigma = 32768 * 10 ** (dbfs / 20);
  const pcm = new Int16Array(NOISE_FRAMES * 160);
  for (let i = 0; i < pcm.length; i++) {
    const u = Math.random() || 1e-9;
    const v = Math.random();
    pcm[i] = Math.max(-32768, Math.min(32767, Math.round(sigma * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v))));
  }
  const ulaw = Buffer.from(encodeG711('mulaw', pcm));
  const out: string[] = [];
  for (let f = 0; f < NOISE_FRAMES; f++) out.push(ulaw.toString('base64', f * 160, (f + 1) * 160));
  return out;
}

async function webhook(config: CallerConfig, callSid: string, accountSid: string): Promise<{ wsUrl: string; parameters: Record<string, string> }> {
  const params = voiceWebhookParams({ accountSid, callSid, from: '+14155550100', to: '+14155550199' });
  const headers: Record<string, string> = { 'Content-Type': 'application/x-www-form-urlencoded', 'User-Agent': 'TwilioProxy/1.1' };
  if (config.authToken !== undefined) headers['X-Twilio-Signature'] = twilio.getExpectedTwilioSignature(config.authToken, `${config.url}/twilio/voice`, params);
  const response = await fetch(`${config.url}/twilio/voice`, { method: 'POST', headers, body: new URLSearchParams(params).toString() });
  const body = await response.text();
  if (response.status !== 200) throw new Error(`voice webhook answered ${response.status}: ${body.slice(0, 200)}`);
  const stream = parseStreamTwiml(body);
  // The public URL is the server's own address here, so the stream URL is dialled as given.
  return { wsUrl: new URL(stream.url, config.url).toString().replace(/^http/, 'ws'), parameters: stream.parameters };
}

async function main(): Promise<void> {
  const config = await new Promise<CallerConfig>((resolve) => {
    process.once('message', (message) => resolve(message as CallerConfig));
  });
  const noise = noiseFrames(config.noiseDbfs);
  const calls: Call[] = [];
  const t0 = performance.now();

  // Window counters.
  let measuring = false;
  let windowStart = 0;
  const jitter = new LatencyHistogram();
  const tickLate = new LatencyHistogram();
  let mediaReceived = 0;
  let audioMsReceived = 0;
  let underruns = 0;
  let minBufferMs = Infinity;
  let clears = 0;
  let marksEchoed = 0;
  let framesSent = 0;
  let cpu0 = process.cpuUsage();
  let elu0 = performance.eventLoopUtilization();
  const closedInWindow = new Set<Call>();

  const send = (call: Call, text: string): void => {
    if (call.open) call.ws.send(text);
  };
  const echoMark = (call: Call, name: string): void => {
    call.seq++;
    send(call, JSON.stringify({ event: 'mark', sequenceNumber: String(call.seq), streamSid: call.streamSid, mark: { name } }));
    if (measuring) marksEchoed++;
  };

  const onMessage = (call: Call, data: RawData): void => {
    const now = performance.now();
    const text = Buffer.isBuffer(data) ? data.toString('utf8') : Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data).toString('utf8');
    let payloadChars = -1;
    let pad = 0;
    if (text.startsWith('{"event":"media"')) {
      // Hot path: find the payload without a JSON parse (the shape is fixed and escape-free).
      const at = text.indexOf('"payload":"');
      if (at >= 0) {
        const end = text.indexOf('"', at + 11);
        payloadChars = end - (at + 11);
        pad = text[end - 1] === '=' ? (text[end - 2] === '=' ? 2 : 1) : 0;
      }
    }
    let parsed: { event?: string; mark?: { name?: string }; media?: { payload?: string } } | undefined;
    if (payloadChars < 0) {
      try {
        parsed = JSON.parse(text) as typeof parsed;
      } catch {
        return;
      }
      if (parsed?.event === 'media') {
        const payload = parsed.media?.payload ?? '';
        payloadChars = payload.length;
        pad = payload.endsWith('==') ? 2 : payload.endsWith('=') ? 1 : 0;
      }
    }
    if (payloadChars >= 0) {
      const bytes = (payloadChars / 4) * 3 - pad;
      const durationMs = bytes / 8;
      const bufferMs = call.playEndMs - now;
      if (measuring) {
        mediaReceived++;
        audioMsReceived += durationMs;
        if (call.lastArrivalMs > 0) {
          jitter.record(Math.abs(now - call.lastArrivalMs - durationMs));
          if (bufferMs < 0) underruns++;
          minBufferMs = Math.min(minBufferMs, bufferMs);
        }
      }
      call.lastArrivalMs = now;
      call.playEndMs = Math.max(now, call.playEndMs) + durationMs;
      return;
    }
    if (parsed?.event === 'mark') {
      const name = parsed.mark?.name ?? '';
      if (call.playEndMs <= now) echoMark(call, name);
      else call.pendingMarks.push({ name, dueMs: call.playEndMs });
    } else if (parsed?.event === 'clear') {
      if (measuring) clears++;
      call.playEndMs = now;
      for (const mark of call.pendingMarks.splice(0)) echoMark(call, mark.name);
    }
  };

  // One timer for every call's media, armed for the earliest call due. Each call keeps its own
  // drift-free 20 ms cadence: with `spread` phases a random offset per call (independent calls, as
  // they reach a server from a carrier), with `aligned` one shared grid (every call's frame in one
  // burst each 20 ms: the worst case for the server's pacing).
  let timer: NodeJS.Timeout | undefined;
  let timerDueMs = Infinity;
  let stopped = false;
  const firstDueMs = (): number =>
    config.inboundPhases === 'aligned' ? t0 + (Math.floor((performance.now() - t0) / FRAME_MS) + 1) * FRAME_MS : performance.now() + Math.random() * FRAME_MS;
  const arm = (): void => {
    if (stopped) return;
    let earliest = Infinity;
    for (const call of calls) if (call.started && call.open && call.nextDueMs < earliest) earliest = call.nextDueMs;
    if (earliest === Infinity || (timer !== undefined && timerDueMs <= earliest)) return;
    if (timer !== undefined) clearTimeout(timer);
    timerDueMs = earliest;
    timer = setTimeout(tick, Math.max(0, earliest - performance.now()));
  };
  const tick = (): void => {
    const now = performance.now();
    // Lateness against the due time this timer was armed for.
    if (measuring) tickLate.record(Math.max(0, now - timerDueMs));
    timer = undefined;
    timerDueMs = Infinity;
    for (const call of calls) {
      if (!call.open || !call.started) continue;
      while (call.nextDueMs <= now + 0.5) {
        call.nextDueMs += FRAME_MS;
        call.seq++;
        const index = call.framesSent++;
        const payload = noise[(call.noiseIndex + index) % NOISE_FRAMES]!;
        send(
          call,
          `{"event":"media","sequenceNumber":"${call.seq}","media":{"track":"inbound","chunk":"${index + 1}","timestamp":"${index * FRAME_MS}","payload":"${payload}"},"streamSid":"${call.streamSid}"}`,
        );
        if (measuring) framesSent++;
      }
      while (call.pendingMarks.length > 0 && call.pendingMarks[0]!.dueMs <= now) echoMark(call, call.pendingMarks.shift()!.name);
    }
    arm();
  };

  const placeOne = async (): Promise<void> => {
    const callSid = sid('CA');
    const accountSid = sid('AC');
    const streamSid = sid('MZ');
    let wsUrl = config.url;
    let parameters: Record<string, string> = {};
    if (config.mode === 'twilio') ({ wsUrl, parameters } = await webhook(config, callSid, accountSid));
    const ws = new WebSocket(wsUrl, { perMessageDeflate: false });
    const call: Call = {
      ws,
      streamSid,
      callSid,
      accountSid,
      seq: 0,
      framesSent: 0,
      noiseIndex: Math.floor(Math.random() * NOISE_FRAMES),
      open: false,
      started: false,
      closedByServer: false,
      lastArrivalMs: 0,
      playEndMs: 0,
      pendingMarks: [],
      nextDueMs: Infinity,
    };
    ws.on('message', (data) => onMessage(call, data));
    ws.on('close', () => {
      if (call.open && !stopped) {
        call.closedByServer = true;
        if (measuring) closedInWindow.add(call);
      }
      call.open = false;
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    ws.on('error', () => {});
    call.open = true;
    calls.push(call);
    ws.send(JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' }));
    call.seq++;
    ws.send(JSON.stringify(twilioStartMessage({ sequenceNumber: String(call.seq), accountSid, callSid, streamSid, customParameters: parameters })));
    call.nextDueMs = firstDueMs();
    call.started = true;
    arm();
  };

  // Set-up: a few calls at a time, as calls would ring in.
  let failed = 0;
  let firstError: string | undefined;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < config.calls) {
      next++;
      try {
        await placeOne();
      } catch (error) {
        failed++;
        firstError ??= (error as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(16, config.calls) }, worker));
  const ready: CallerReady = { type: 'ready', started: calls.length, failed, setupMs: performance.now() - t0 };
  if (firstError !== undefined) ready.firstError = firstError;
  process.send?.(ready);

  process.on('message', (message: { type: string }) => {
    if (message.type === 'measure-start') {
      measuring = true;
      windowStart = performance.now();
      cpu0 = process.cpuUsage();
      elu0 = performance.eventLoopUtilization();
      jitter.reset();
      tickLate.reset();
      closedInWindow.clear();
      mediaReceived = audioMsReceived = underruns = clears = marksEchoed = framesSent = 0;
      minBufferMs = Infinity;
    } else if (message.type === 'measure-stop') {
      measuring = false;
      const cpu = process.cpuUsage(cpu0);
      const stats: CallerStats = {
        type: 'stats',
        windowMs: performance.now() - windowStart,
        callsAlive: calls.filter((c) => c.open).length,
        callsClosedByServer: closedInWindow.size,
        mediaReceived,
        audioMsReceived,
        jitterP50: jitter.quantile(0.5),
        jitterP99: jitter.quantile(0.99),
        jitterMax: jitter.max,
        underruns,
        minBufferMs: Number.isFinite(minBufferMs) ? minBufferMs : NaN,
        clears,
        marksEchoed,
        framesSent,
        tickLateP99: tickLate.quantile(0.99),
        tickLateMax: tickLate.max,
        cpuMs: (cpu.user + cpu.system) / 1000,
        elu: performance.eventLoopUtilization(elu0).utilization,
      };
      process.send?.(stats);
    } else if (message.type === 'hangup') {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      for (const call of calls) {
        if (!call.open) continue;
        call.seq++;
        call.ws.send(JSON.stringify({ event: 'stop', sequenceNumber: String(call.seq), stop: { accountSid: call.accountSid, callSid: call.callSid }, streamSid: call.streamSid }));
        call.ws.close(1000);
      }
      const force = setTimeout(() => {
        for (const call of calls) call.ws.terminate();
      }, 2000);
      force.unref();
      void Promise.all(
        calls.map((c) => (c.ws.readyState === WebSocket.CLOSED ? Promise.resolve() : new Promise<void>((resolve) => c.ws.once('close', () => resolve())))),
      ).then(() => {
        process.send?.({ type: 'done' }, () => process.exit(0));
      });
    }
  });
}

void main().catch((error: Error) => {
  console.error(`load-callers: ${error.stack ?? error.message}`);
  process.exit(1);
});
