// Guards against answering forged webhooks, streams opened without our token, and status callbacks that leak sessions.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import twilio from 'twilio';
import WebSocket from 'ws';
import { AgentDirectory } from '../../src/agent/agent-directory.js';
import { PromptCache } from '../../src/agent/prompt-cache.js';
import { loadConfig } from '../../src/config.js';
import { buildServer, type VoiceServer } from '../../src/server.js';
import { signStreamToken } from '../../src/telephony/stream-token.js';
import { inertEngines } from '../helpers/inert-engines.js';

const TOKEN = 'auth-token-for-tests';
const CALL = 'CA0123456789abcdef0123456789abcdef';
let server: VoiceServer;
let base: string;
let inert: ReturnType<typeof inertEngines>;

beforeAll(async () => {
  const engines = inertEngines();
  inert = engines;
  const probe = 'http://127.0.0.1:1';
  const config = loadConfig({ TWILIO_AUTH_TOKEN: TOKEN, PUBLIC_URL: probe, AGENT_SCRIPT: 'examples/agent-script.json' });
  server = await buildServer({
    config,
    engines,
    agents: AgentDirectory.load('examples/agent-script.json'),
    prompts: new PromptCache(engines.tts),
    logger: false,
  });
  await server.app.listen({ port: 0, host: '127.0.0.1' });
  base = `http://127.0.0.1:${(server.app.server.address() as { port: number }).port}`;
});
afterAll(async () => server?.app.close());

const form = { CallSid: CALL, AccountSid: 'AC0123456789abcdef0123456789abcdef', From: '+15551230000', To: '+15557650000', CallStatus: 'ringing' };
const sign = (path: string, params: Record<string, string>) => twilio.getExpectedTwilioSignature(TOKEN, `http://127.0.0.1:1${path}`, params);

async function post(path: string, params: Record<string, string>, signature?: string) {
  return server.app.inject({
    method: 'POST',
    url: path,
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(signature === undefined ? {} : { 'x-twilio-signature': signature }) },
    payload: new URLSearchParams(params).toString(),
  });
}

describe('Twilio webhook signatures', () => {
  it('answers a correctly signed voice webhook with a Connect Stream carrying the call SID and a stream token', async () => {
    const response = await post('/twilio/voice', form, sign('/twilio/voice', form));
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toMatch(/text\/xml/);
    expect(response.body).toContain('<Connect><Stream url="ws://127.0.0.1:1/twilio/media">');
    expect(response.body).toContain(`<Parameter name="callSid" value="${CALL}"/>`);
    expect(response.body).toMatch(/<Parameter name="streamToken" value="\d+\.[\w-]+"\/>/);
    expect(response.body).not.toMatch(/media\?/);
  });

  it.each([
    ['a missing signature', undefined],
    ['a wrong signature', 'AAAAAAAAAAAAAAAAAAAAAAAAAAA='],
  ])('answers %s with a bare 403', async (_label, signature) => {
    const response = await post('/twilio/voice', form, signature);
    expect(response.statusCode).toBe(403);
    expect(response.body).toBe('');
  });

  it('rejects a signature made for other parameters', async () => {
    const response = await post('/twilio/voice', { ...form, From: '+15550000000' }, sign('/twilio/voice', form));
    expect(response.statusCode).toBe(403);
  });

  it('checks status callbacks the same way', async () => {
    const status = { ...form, CallStatus: 'completed' };
    expect((await post('/twilio/status', status)).statusCode).toBe(403);
    expect((await post('/twilio/status', status, sign('/twilio/status', status))).statusCode).toBe(204);
  });

  it('answers a signed webhook without a valid CallSid with 400', async () => {
    const bad = { ...form, CallSid: 'nope' };
    const response = await post('/twilio/voice', bad, sign('/twilio/voice', bad));
    expect(response.statusCode).toBe(400);
  });

  it('hangs up politely after the stream when no transfer was requested', async () => {
    const response = await post('/twilio/after-stream', form, sign('/twilio/after-stream', form));
    expect(response.body).toContain('<Hangup/>');
  });
});

describe('media stream authentication', () => {
  function openStream(customParameters: Record<string, string>): Promise<{ code: number; reason: string }> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(`${base.replace('http', 'ws')}/twilio/media`);
      socket.on('open', () => {
        socket.send(JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' }));
        socket.send(
          JSON.stringify({
            event: 'start',
            sequenceNumber: '1',
            streamSid: 'MZ0123456789abcdef0123456789abcdef',
            start: {
              accountSid: form.AccountSid,
              streamSid: 'MZ0123456789abcdef0123456789abcdef',
              callSid: CALL,
              tracks: ['inbound'],
              mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
              customParameters,
            },
          }),
        );
      });
      socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
      socket.on('error', reject);
    });
  }

  it('closes a stream whose start has no token', async () => {
    expect(await openStream({})).toEqual({ code: 1008, reason: 'missing stream token' });
  });

  it('closes a stream whose token was signed for another call', async () => {
    const token = signStreamToken(TOKEN, 'CAffffffffffffffffffffffffffffffff', Date.now() / 1000 + 60);
    expect((await openStream({ streamToken: token })).code).toBe(1008);
  });

  it('closes a stream whose token expired', async () => {
    const token = signStreamToken(TOKEN, CALL, Date.now() / 1000 - 1);
    expect(await openStream({ streamToken: token })).toEqual({ code: 1008, reason: 'stream token expired' });
  });
});

describe('health and readiness', () => {
  it('reports the process up and ready while engines work and it is not draining', async () => {
    expect((await server.app.inject({ url: '/health' })).json()).toMatchObject({ status: 'ok' });
    const ready = await server.app.inject({ url: '/ready' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toMatchObject({ ready: true, draining: false });
  });

  it('turns /ready to 503 when the VAD has failed, and when draining', async () => {
    const vad = inert.vad as { failure?: Error };
    vad.failure = new Error('worker exited');
    const failed = await server.app.inject({ url: '/ready' });
    expect(failed.statusCode).toBe(503);
    expect(failed.json()).toMatchObject({ ready: false, failure: 'vad: worker exited' });
    delete vad.failure;
    server.startDraining();
    expect((await server.app.inject({ url: '/ready' })).statusCode).toBe(503);
  });

  it('while draining, answers a new call with a spoken apology and a hang-up, never a stream', async () => {
    const response = await post('/twilio/voice', form, sign('/twilio/voice', form));
    expect(response.statusCode).toBe(200);
    expect(response.body).toMatch(/<Say>[^<]+<\/Say><Hangup\/>/);
    expect(response.body).not.toContain('<Stream');
  });
});

describe('DRAIN_NEW_CALLS=unavailable', () => {
  it("answers 503 while draining, so Twilio's Fallback URL takes the call", async () => {
    const engines = inertEngines();
    const config = loadConfig({ TWILIO_AUTH_TOKEN: TOKEN, PUBLIC_URL: 'http://127.0.0.1:1', AGENT_SCRIPT: 'examples/agent-script.json', DRAIN_NEW_CALLS: 'unavailable' });
    const draining = await buildServer({ config, engines, agents: AgentDirectory.load('examples/agent-script.json'), prompts: new PromptCache(engines.tts), logger: false });
    try {
      const inject = () =>
        draining.app.inject({
          method: 'POST',
          url: '/twilio/voice',
          headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': sign('/twilio/voice', form) },
          payload: new URLSearchParams(form).toString(),
        });
      expect((await inject()).statusCode).toBe(200);
      const outcome = await draining.drain(0);
      expect(outcome).toEqual({ liveAtStart: 0, hungUp: 0 });
      const refused = await inject();
      expect(refused.statusCode).toBe(503);
      expect(refused.headers['retry-after']).toBe('5');
    } finally {
      await draining.app.close();
    }
  });
});
