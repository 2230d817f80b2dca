// Guards against a softphone that drifts from Twilio's real wire protocol (unsigned webhook, wrong message shapes, marks echoed before their audio played), which would let server bugs pass.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import twilio from 'twilio';
import { WebSocketServer, type WebSocket } from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeG711 } from '../../src/audio/g711.js';
import { detectUtterances, nextStepOfTwiml, parseRedirectTwiml, placeCall } from '../../src/softphone/twilio-caller.js';
import { connectStreamTwiml, hangUpTwiml, transferTwiml } from '../../twiml/voice-response.js';

const AUTH_TOKEN = 'test-auth-token-0123456789abcdef';
const PUBLIC_URL = 'https://public.example.com';
const TRANSFER_TO = '+15550009999';
const PARAMETERS = { streamToken: '1700000000.abc-DEF_123', note: 'a & b <c> "d"' };

// ── Test peer: a tiny stand-in for our server, speaking the server side of the protocol ─────────

interface Received {
  /** ms since this peer received `start`. */
  atMs: number;
  raw: string;
  binary: boolean;
  data: Record<string, unknown> | undefined;
}

interface Peer {
  streamSid: string;
  received: Received[];
  /** ms since this peer received `start`. */
  now(): number;
  send(message: unknown): void;
  sendRaw(data: string | Buffer): void;
  /** Sends `ms` of 440 Hz tone as one outbound media message. */
  sendAudio(ms: number, streamSid?: string): void;
  close(): void;
}

interface Webhook {
  path: string;
  headers: IncomingHttpHeaders;
  params: Record<string, string>;
}

interface FakeServer {
  url: string;
  webhooks: Webhook[];
  peers: Peer[];
  close(): Promise<void>;
}

function tone(ms: number, startSilenceMs = 0, amplitude = 8000): Int16Array {
  const lead = startSilenceMs * 8;
  const pcm = new Int16Array(lead + ms * 8);
  for (let i = 0; i < ms * 8; i++) pcm[lead + i] = Math.round(amplitude * Math.sin((2 * Math.PI * 440 * i) / 8000));
  return pcm;
}

function rms(pcm: Int16Array): number {
  let sum = 0;
  for (const s of pcm) sum += s * s;
  return pcm.length === 0 ? 0 : Math.sqrt(sum / pcm.length);
}

const ms = (pcm: Int16Array, fromMs: number, toMs: number): Int16Array => pcm.subarray(fromMs * 8, toMs * 8);

const servers: FakeServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function startFakeServer(
  onStart: (peer: Peer) => void = () => {},
  webhookStatus = 200,
): Promise<FakeServer> {
  const webhooks: Webhook[] = [];
  const peers: Peer[] = [];
  const http: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const params = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
      webhooks.push({ path: req.url ?? '', headers: req.headers, params });
      if (webhookStatus !== 200) {
        res.writeHead(webhookStatus, { 'Content-Type': 'text/plain' }).end('signature rejected');
        return;
      }
      if (req.url === '/twilio/after-stream') {
        const next = new twilio.twiml.VoiceResponse();
        next.dial({}, TRANSFER_TO);
        res.writeHead(200, { 'Content-Type': 'text/xml' }).end(next.toString());
        return;
      }
      const response = new twilio.twiml.VoiceResponse();
      const stream = response.connect().stream({ url: `wss://public.example.com/twilio/media` });
      for (const [name, value] of Object.entries(PARAMETERS)) stream.parameter({ name, value });
      response.redirect({ method: 'POST' }, `${PUBLIC_URL}/twilio/after-stream`);
      res.writeHead(200, { 'Content-Type': 'text/xml' }).end(response.toString());
    });
  });
  const wss = new WebSocketServer({ server: http, path: '/twilio/media' });
  wss.on('connection', (ws: WebSocket) => {
    let startedAt = performance.now();
    const peer: Peer = {
      streamSid: '',
      received: [],
      now: () => performance.now() - startedAt,
      send: (message) => ws.send(JSON.stringify(message)),
      sendRaw: (data) => ws.send(data),
      sendAudio: (audioMs, streamSid) => {
        const payload = Buffer.from(encodeG711('mulaw', tone(audioMs))).toString('base64');
        ws.send(JSON.stringify({ event: 'media', streamSid: streamSid ?? peer.streamSid, media: { payload } }));
      },
      close: () => ws.close(1000),
    };
    peers.push(peer);
    ws.on('message', (raw, binary) => {
      const text = Buffer.isBuffer(raw) ? raw.toString('utf8') : String(raw);
      let data: Record<string, unknown> | undefined;
      try {
        data = binary ? undefined : (JSON.parse(text) as Record<string, unknown>);
      } catch {
        data = undefined;
      }
      if (data?.event === 'start') startedAt = performance.now();
      peer.received.push({ atMs: peer.now(), raw: text, binary, data });
      if (data?.event === 'start') {
        peer.streamSid = String(data.streamSid);
        onStart(peer);
      }
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const { port } = http.address() as AddressInfo;
  const server: FakeServer = {
    url: `http://127.0.0.1:${port}`,
    webhooks,
    peers,
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of wss.clients) client.terminate();
        wss.close();
        http.closeAllConnections();
        http.close(() => resolve());
      }),
  };
  servers.push(server);
  return server;
}

const events = (peer: Peer, name: string): Received[] => peer.received.filter((r) => r.data?.event === name);

function onlyPeer(server: FakeServer): Peer {
  const peer = server.peers[0];
  if (peer === undefined) throw new Error('no media socket reached the fake server');
  return peer;
}

// ── Tests ────────────────────────────────────────────────────────────────────────────────────────

describe('softphone Twilio caller: protocol', () => {
  it('posts the voice webhook with Twilio params and a valid X-Twilio-Signature over the public URL', async () => {
    const server = await startFakeServer();
    const result = await placeCall({ url: server.url, publicUrl: PUBLIC_URL, authToken: AUTH_TOKEN, audio: tone(100), hangUpAfterMs: 200 });

    expect(server.webhooks).toHaveLength(1);
    const hook = server.webhooks[0]!;
    expect(hook.path).toBe('/twilio/voice');
    expect(hook.headers['content-type']).toMatch(/^application\/x-www-form-urlencoded/);
    const signature = hook.headers['x-twilio-signature'];
    expect(typeof signature).toBe('string');
    expect(twilio.validateRequest(AUTH_TOKEN, String(signature), `${PUBLIC_URL}/twilio/voice`, hook.params)).toBe(true);
    expect(twilio.validateRequest('another-token', String(signature), `${PUBLIC_URL}/twilio/voice`, hook.params)).toBe(false);

    const p = hook.params;
    expect(p.CallSid).toMatch(/^CA[0-9a-f]{32}$/);
    expect(p.AccountSid).toMatch(/^AC[0-9a-f]{32}$/);
    expect(p).toMatchObject({ CallStatus: 'ringing', Direction: 'inbound', ApiVersion: '2010-04-01' });
    expect(p.From).toBe(p.Caller);
    expect(p.To).toBe(p.Called);
    expect(p.From).toMatch(/^\+\d+$/);
    expect(p.CallSid).toBe(result.callSid);
    expect(p.AccountSid).toBe(result.accountSid);
  });

  it('rejects with the status and body when the webhook is refused', async () => {
    const server = await startFakeServer(undefined, 403);
    await expect(placeCall({ url: server.url, authToken: AUTH_TOKEN, audio: tone(100) })).rejects.toThrow(/403.*signature rejected/);
  });

  it('sends connected, start with the TwiML parameters, 160-byte media frames numbered as strings, and stop, in Twilio shapes', async () => {
    const server = await startFakeServer();
    const audio = tone(100);
    const result = await placeCall({ url: server.url, publicUrl: PUBLIC_URL, audio, hangUpAfterMs: 400 });
    const peer = onlyPeer(server);
    const all = peer.received;

    expect(all[0]!.raw).toBe('{"event":"connected","protocol":"Call","version":"1.0.0"}');
    const start = all[1]!.data!;
    expect(Object.keys(start)).toEqual(['event', 'sequenceNumber', 'start', 'streamSid']);
    expect(start).toEqual({
      event: 'start',
      sequenceNumber: '1',
      start: {
        accountSid: result.accountSid,
        streamSid: result.streamSid,
        callSid: result.callSid,
        tracks: ['inbound'],
        mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
        customParameters: PARAMETERS,
      },
      streamSid: result.streamSid,
    });
    expect(result.streamSid).toMatch(/^MZ[0-9a-f]{32}$/);
    expect(result.customParameters).toEqual(PARAMETERS);

    const media = all.slice(2, -1);
    expect(media.length).toBeGreaterThanOrEqual(10);
    const expectedUlaw = Buffer.from(encodeG711('mulaw', audio));
    media.forEach((m, i) => {
      const d = m.data!;
      expect(Object.keys(d)).toEqual(['event', 'sequenceNumber', 'media', 'streamSid']);
      expect(d.event).toBe('media');
      expect(d.sequenceNumber).toBe(String(i + 2));
      expect(d.streamSid).toBe(result.streamSid);
      const body = d.media as Record<string, unknown>;
      expect(body.track).toBe('inbound');
      expect(body.chunk).toBe(String(i + 1));
      expect(body.timestamp).toBe(String(i * 20));
      const bytes = Buffer.from(String(body.payload), 'base64');
      expect(bytes.length).toBe(160);
      // The caller's audio first, then µ-law silence.
      const expected = i < 5 ? expectedUlaw.subarray(i * 160, (i + 1) * 160) : Buffer.alloc(160, 0xff);
      expect(bytes.equals(expected)).toBe(true);
    });

    const stop = all.at(-1)!;
    expect(stop.raw).toBe(
      JSON.stringify({
        event: 'stop',
        sequenceNumber: String(media.length + 2),
        stop: { accountSid: result.accountSid, callSid: result.callSid },
        streamSid: result.streamSid,
      }),
    );
    expect(result.closedBy).toBe('caller');
    expect(result.violations).toEqual([]);
  });

  it('paces media at about one frame every 20 ms on a drift-free clock', async () => {
    const server = await startFakeServer();
    await placeCall({ url: server.url, audio: tone(200), hangUpAfterMs: 1000 });
    const media = events(onlyPeer(server), 'media');
    // 1000 ms of call at 50 frames/s; loose bounds, the point is "neither bursty nor slow".
    expect(media.length).toBeGreaterThanOrEqual(44);
    expect(media.length).toBeLessThanOrEqual(52);
    const first = media[0]!.atMs;
    const last = media.at(-1)!.atMs;
    expect((last - first) / (media.length - 1)).toBeGreaterThan(17);
    expect((last - first) / (media.length - 1)).toBeLessThan(23);
    const gaps = media.slice(1).map((m, i) => m.atMs - media[i]!.atMs).sort((a, b) => a - b);
    const median = gaps[Math.floor(gaps.length / 2)]!;
    expect(median).toBeGreaterThan(10);
    expect(median).toBeLessThan(30);
  });

  it('echoes a mark at once when nothing is buffered, and only after the audio sent before it has played', async () => {
    let sentAt = 0;
    const server = await startFakeServer((peer) => {
      peer.send({ event: 'mark', streamSid: peer.streamSid, mark: { name: 'empty' } });
      sentAt = peer.now();
      for (let i = 0; i < 4; i++) peer.sendAudio(100);
      peer.send({ event: 'mark', streamSid: peer.streamSid, mark: { name: 'after-audio' } });
    });
    const result = await placeCall({ url: server.url, audio: tone(100), hangUpAfterMs: 800 });
    const peer = onlyPeer(server);
    const marks = events(peer, 'mark');

    expect(marks.map((m) => (m.data!.mark as { name: string }).name)).toEqual(['empty', 'after-audio']);
    expect(result.marksEchoed).toEqual(['empty', 'after-audio']);
    expect(marks[0]!.atMs - sentAt).toBeLessThan(150);
    expect(marks[1]!.atMs - sentAt).toBeGreaterThanOrEqual(380);
    expect(marks[1]!.atMs - sentAt).toBeLessThan(700);
    const echo = marks[1]!.data!;
    expect(Object.keys(echo)).toEqual(['event', 'sequenceNumber', 'streamSid', 'mark']);
    expect(echo).toEqual({ event: 'mark', sequenceNumber: expect.stringMatching(/^\d+$/), streamSid: result.streamSid, mark: { name: 'after-audio' } });

    // The 400 ms were played as heard, then silence.
    expect(rms(ms(result.agentAudio, 20, 380))).toBeGreaterThan(1000);
    expect(rms(ms(result.agentAudio, 480, 780))).toBe(0);
  });

  it('on clear, drops the buffered audio and echoes the pending marks at once', async () => {
    let clearedAt = 0;
    const server = await startFakeServer((peer) => {
      peer.sendAudio(2000);
      peer.send({ event: 'mark', streamSid: peer.streamSid, mark: { name: 'end-of-reply' } });
      setTimeout(() => {
        clearedAt = peer.now();
        peer.send({ event: 'clear', streamSid: peer.streamSid });
      }, 300);
    });
    const result = await placeCall({ url: server.url, audio: tone(100), hangUpAfterMs: 900 });
    const marks = events(onlyPeer(server), 'mark');

    expect(result.marksEchoed).toEqual(['end-of-reply']);
    expect(marks).toHaveLength(1);
    expect(marks[0]!.atMs - clearedAt).toBeLessThan(150);
    expect(result.clears).toHaveLength(1);
    const clearMs = Math.round(result.clears[0]!);
    expect(clearMs).toBeGreaterThanOrEqual(250);
    expect(rms(ms(result.agentAudio, 20, 240))).toBeGreaterThan(1000);
    expect(rms(ms(result.agentAudio, clearMs + 5, 890))).toBe(0);
  });

  it('sends a dtmf message at its scheduled time, numbered in sequence', async () => {
    const server = await startFakeServer();
    const result = await placeCall({ url: server.url, audio: tone(100), hangUpAfterMs: 600, events: [{ atMs: 300, kind: 'dtmf', digit: '7' }] });
    const peer = onlyPeer(server);
    const index = peer.received.findIndex((r) => r.data?.event === 'dtmf');
    const dtmf = peer.received[index]!;

    expect(dtmf.raw).toBe(
      JSON.stringify({ event: 'dtmf', streamSid: result.streamSid, sequenceNumber: String(index), dtmf: { track: 'inbound_track', digit: '7' } }),
    );
    expect(dtmf.atMs).toBeGreaterThanOrEqual(280);
    expect(dtmf.atMs).toBeLessThan(450);
  });

  it('sends raw frames verbatim, text and binary', async () => {
    const server = await startFakeServer();
    await placeCall({
      url: server.url,
      audio: tone(100),
      hangUpAfterMs: 300,
      events: [
        { atMs: 50, kind: 'raw', data: 'garbage{' },
        { atMs: 60, kind: 'raw', data: Buffer.from([1, 2, 3]) },
      ],
    });
    const peer = onlyPeer(server);
    expect(peer.received.some((r) => !r.binary && r.raw === 'garbage{')).toBe(true);
    expect(peer.received.some((r) => r.binary && r.raw === '\u0001\u0002\u0003')).toBe(true);
  });

  it('records violations for a wrong streamSid, malformed payloads, unknown events and binary frames, and does not play the wrong-stream audio', async () => {
    const server = await startFakeServer((peer) => {
      peer.sendAudio(100, `MZ${'0'.repeat(32)}`);
      peer.send({ event: 'media', media: { payload: Buffer.alloc(160, 0xff).toString('base64') } });
      peer.send({ event: 'media', streamSid: peer.streamSid, media: { payload: Buffer.alloc(100, 0xff).toString('base64') } });
      peer.send({ event: 'media', streamSid: peer.streamSid, media: { payload: '!!not base64!!' } });
      peer.send({ event: 'bogus', streamSid: peer.streamSid });
      peer.sendRaw(Buffer.from([0xde, 0xad]));
    });
    const result = await placeCall({ url: server.url, audio: tone(100), hangUpAfterMs: 400 });

    const v = result.violations.join('\n');
    expect(v).toMatch(/wrong streamSid "MZ0{32}"/);
    expect(v).toMatch(/media without streamSid/);
    expect(v).toMatch(/100 bytes, not a whole number of 160-byte frames/);
    expect(v).toMatch(/not valid base64/);
    expect(v).toMatch(/unknown event "bogus"/);
    expect(v).toMatch(/binary frame/);
    expect(result.messages).toHaveLength(6);
    expect(rms(result.agentAudio)).toBe(0);
  });

  it('reports closedBy server and sends no stop when the server closes the socket', async () => {
    const server = await startFakeServer((peer) => setTimeout(() => peer.close(), 200));
    const result = await placeCall({ url: server.url, audio: tone(100), hangUpAfterMs: 3000 });
    expect(result.closedBy).toBe('server');
    expect(result.durationMs).toBeLessThan(1000);
    expect(events(onlyPeer(server), 'stop')).toHaveLength(0);
  });

  it('when the server closes the stream, follows the TwiML <Redirect> as Twilio does: signed, with the call in progress', async () => {
    const server = await startFakeServer((peer) => setTimeout(() => peer.close(), 200));
    const result = await placeCall({ url: server.url, publicUrl: PUBLIC_URL, authToken: AUTH_TOKEN, audio: tone(100), hangUpAfterMs: 3000 });
    expect(server.webhooks.map((w) => w.path)).toEqual(['/twilio/voice', '/twilio/after-stream']);
    const hook = server.webhooks[1]!;
    expect(hook.params).toMatchObject({ CallSid: result.callSid, AccountSid: result.accountSid, CallStatus: 'in-progress' });
    expect(twilio.validateRequest(AUTH_TOKEN, String(hook.headers['x-twilio-signature']), `${PUBLIC_URL}/twilio/after-stream`, hook.params)).toBe(true);
    expect(result.afterStream).toMatchObject({ status: 200, next: 'transfer', to: TRANSFER_TO });
    expect(result.violations).toEqual([]);
  });

  it('reads the server\'s own TwiML: the redirect after <Connect>, a transfer, a hang-up', () => {
    const connect = connectStreamTwiml({ streamUrl: 'wss://x.example/twilio/media', parameters: { a: '1' }, afterStreamUrl: 'https://x.example/twilio/after-stream?b=1&c=2' });
    expect(parseRedirectTwiml(connect)).toEqual({ url: 'https://x.example/twilio/after-stream?b=1&c=2', method: 'POST' });
    expect(parseRedirectTwiml(hangUpTwiml())).toBeUndefined();
    expect(nextStepOfTwiml(transferTwiml('+15550001111', '+15550002222'))).toEqual({ next: 'transfer', to: '+15550001111' });
    expect(nextStepOfTwiml(hangUpTwiml('Goodbye.'))).toEqual({ next: 'hangup' });
    expect(nextStepOfTwiml('<Response><Say>hi</Say></Response>')).toEqual({ next: 'other' });
  });

  it('does not follow the redirect when the caller hangs up (the call is over)', async () => {
    const server = await startFakeServer();
    const result = await placeCall({ url: server.url, audio: tone(100), hangUpAfterMs: 200 });
    expect(result.closedBy).toBe('caller');
    expect(server.webhooks.map((w) => w.path)).toEqual(['/twilio/voice']);
    expect(result.afterStream).toBeUndefined();
  });

  it('hangs up by itself once the caller audio is over and the agent has stayed silent for idleHangUpMs', async () => {
    const server = await startFakeServer();
    const result = await placeCall({ url: server.url, audio: tone(200), idleHangUpMs: 300 });
    expect(result.closedBy).toBe('caller');
    expect(result.durationMs).toBeGreaterThanOrEqual(480);
    expect(result.durationMs).toBeLessThan(1500);
    expect(events(onlyPeer(server), 'stop')).toHaveLength(1);
  });

  it('derives a greeting and one turn per caller utterance with its response latency and transcripts', async () => {
    const server = await startFakeServer((peer) => {
      peer.sendAudio(200); // greeting
      setTimeout(() => peer.sendAudio(200), 1000); // reply, 300 ms after the caller stopped at 700 ms
    });
    const result = await placeCall({
      url: server.url,
      audio: tone(300, 400),
      hangUpAfterMs: 1500,
      transcribe: async (pcm) => (rms(pcm) > 500 ? 'voice' : 'quiet'),
    });

    expect(result.turns).toHaveLength(2);
    const [greeting, reply] = result.turns;
    expect(greeting).toMatchObject({ kind: 'greeting', callerStartMs: null, agentText: 'voice' });
    expect(greeting!.agentFirstFrameMs).toBeLessThan(100);
    expect(reply!.kind).toBe('reply');
    expect(reply!.callerStartMs).toBeGreaterThanOrEqual(380);
    expect(reply!.callerStartMs).toBeLessThanOrEqual(420);
    expect(reply!.callerEndMs).toBeGreaterThanOrEqual(680);
    expect(reply!.callerEndMs).toBeLessThanOrEqual(720);
    expect(reply!.responseLatencyMs).toBeGreaterThanOrEqual(250);
    expect(reply!.responseLatencyMs).toBeLessThan(450);
    expect(reply!.agentFirstFrameMs! - reply!.callerEndMs!).toBe(reply!.responseLatencyMs);
    expect(reply).toMatchObject({ callerText: 'voice', agentText: 'voice' });
    expect(result.callerAudio.length).toBeGreaterThanOrEqual(700 * 8);
  });

  it('splits caller audio into utterances on silences longer than the hangover', () => {
    const pcm = new Int16Array(3000 * 8);
    pcm.set(tone(500), 0); // 0–500
    pcm.set(tone(300), 700 * 8); // 700–1000: a 200 ms pause stays in the same utterance
    pcm.set(tone(400), 2000 * 8); // 2000–2400
    const utterances = detectUtterances(pcm);
    expect(utterances).toHaveLength(2);
    expect(utterances[0]!.startMs).toBe(0);
    expect(Math.abs(utterances[0]!.endMs - 1000)).toBeLessThanOrEqual(20);
    expect(Math.abs(utterances[1]!.startMs - 2000)).toBeLessThanOrEqual(20);
    expect(Math.abs(utterances[1]!.endMs - 2400)).toBeLessThanOrEqual(20);
    expect(detectUtterances(new Int16Array(8000))).toEqual([]);
  });
});
