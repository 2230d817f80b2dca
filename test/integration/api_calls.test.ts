// Guards the analysts' call reads against the real PostgreSQL: only a valid key gets in, every
// filter narrows (a misspelt one is refused, not ignored), pages cover every call exactly once,
// and a call's detail carries the redacted transcript and never the unredacted text.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CallStore } from '../../src/store/call-store.js';
import { ADMIN_KEY, ANALYST_KEY, openApiTestApp, uniqueNumber, uniqueSid, type ApiTestApp } from '../helpers/analyst-api.js';

let api: ApiTestApp;
let store: CallStore;

beforeAll(async () => {
  api = await openApiTestApp();
  store = api.store;
});
afterAll(async () => {
  await api?.close();
});

const T0 = new Date('2025-03-04T10:00:00.000Z');
const at = (minutes: number): Date => new Date(T0.getTime() + minutes * 60_000);

async function seedCall(fields: { number: string; startedAt: Date; disposition?: string; sentiment?: string; callSid?: string }): Promise<string> {
  const callSid = fields.callSid ?? uniqueSid();
  await store.upsertCall({ callSid, direction: 'inbound', from: '+15557654321', to: fields.number, number: fields.number, startedAt: fields.startedAt });
  if (fields.disposition !== undefined) {
    await store.finishCall(callSid, { endReason: 'completed', endedAt: new Date(fields.startedAt.getTime() + 60_000) });
    await store.upsertPostCallResult({ callSid, summary: 'summary', disposition: fields.disposition, sentiment: fields.sentiment ?? 'neutral' });
  }
  return callSid;
}

interface ListBody {
  calls: Array<{ callSid: string; number: string; startedAt: string; disposition: string | null; sentiment: string | null }>;
  nextCursor: string | null;
}

async function list(query: string, key = ANALYST_KEY): Promise<ListBody> {
  const response = await api.as(key, `/v1/calls?${query}`);
  expect(response.statusCode, response.body).toBe(200);
  return response.json<ListBody>();
}

describe('GET /v1/calls: authorization', () => {
  it('answers 401 with a Bearer challenge and a JSON error when no key is sent', async () => {
    const response = await api.as(undefined, '/v1/calls');
    expect(response.statusCode).toBe(401);
    expect(response.headers['www-authenticate']).toMatch(/^Bearer /);
    expect(response.json()).toMatchObject({ statusCode: 401, code: 'unauthorized' });
  });

  it.each([
    ['a Basic credential', `Basic ${Buffer.from(`u:${ANALYST_KEY}`).toString('base64')}`],
    ['Bearer without a key', 'Bearer'],
    ['two tokens', `Bearer ${ANALYST_KEY} extra`],
    ['an unknown key', 'Bearer not-a-configured-key-123456'],
    ['a known key with one character changed', `Bearer ${ANALYST_KEY.slice(0, -1)}x`],
  ])('answers 401 for %s', async (_case, authorization) => {
    const response = await api.app.inject({ url: '/v1/calls', headers: { authorization } });
    expect(response.statusCode).toBe(401);
    expect(response.headers['www-authenticate']).toMatch(/^Bearer .*error="invalid_(request|token)"/);
    expect(response.json()).toMatchObject({ code: 'unauthorized' });
  });

  it('checks the key before the query: no key and a bad limit is 401, not 400', async () => {
    const response = await api.as(undefined, '/v1/calls?limit=100000');
    expect(response.statusCode).toBe(401);
  });

  it('lets analysts and admins list calls', async () => {
    const number = uniqueNumber();
    const callSid = await seedCall({ number, startedAt: at(0) });
    for (const key of [ANALYST_KEY, ADMIN_KEY]) {
      const body = await list(`number=${encodeURIComponent(number)}`, key);
      expect(body.calls.map((c) => c.callSid)).toEqual([callSid]);
    }
  });
});

describe('GET /v1/calls: filters', () => {
  it('filters by our number, sent encoded (%2B) or with a bare + that arrives as a space', async () => {
    const number = uniqueNumber();
    const other = uniqueNumber();
    const mine = await seedCall({ number, startedAt: at(0) });
    await seedCall({ number: other, startedAt: at(0) });

    const encoded = await list(`number=${encodeURIComponent(number)}`);
    expect(encoded.calls.map((c) => c.callSid)).toEqual([mine]);
    expect(encoded.calls[0]).toMatchObject({ number, startedAt: at(0).toISOString(), disposition: null, sentiment: null });
    const bare = await list(`number=${number}`);
    expect(bare.calls.map((c) => c.callSid)).toEqual([mine]);
  });

  it('filters by start time: from is inclusive, to is exclusive', async () => {
    const number = uniqueNumber();
    const [early, atFrom, middle, atTo] = [
      await seedCall({ number, startedAt: at(-1) }),
      await seedCall({ number, startedAt: at(0) }),
      await seedCall({ number, startedAt: at(30) }),
      await seedCall({ number, startedAt: at(60) }),
    ];
    const n = `number=${encodeURIComponent(number)}`;
    const range = await list(`${n}&from=${at(0).toISOString()}&to=${at(60).toISOString()}`);
    expect(range.calls.map((c) => c.callSid)).toEqual([middle, atFrom]);
    const since = await list(`${n}&from=${encodeURIComponent('2025-03-04T11:00:00+01:00')}`);
    expect(since.calls.map((c) => c.callSid)).toEqual([atTo, middle, atFrom]);
    const until = await list(`${n}&to=${at(0).toISOString()}`);
    expect(until.calls.map((c) => c.callSid)).toEqual([early]);
  });

  it('filters by post-call disposition and shows each call\'s disposition and sentiment', async () => {
    const number = uniqueNumber();
    const sold = await seedCall({ number, startedAt: at(0), disposition: 'sold', sentiment: 'positive' });
    const lost = await seedCall({ number, startedAt: at(1), disposition: 'lost', sentiment: 'negative' });
    const unprocessed = await seedCall({ number, startedAt: at(2) });
    const n = `number=${encodeURIComponent(number)}`;

    const onlySold = await list(`${n}&disposition=sold`);
    expect(onlySold.calls).toHaveLength(1);
    expect(onlySold.calls[0]).toMatchObject({ callSid: sold, disposition: 'sold', sentiment: 'positive' });
    const all = await list(n);
    expect(all.calls.map((c) => [c.callSid, c.disposition])).toEqual([
      [unprocessed, null],
      [lost, 'lost'],
      [sold, 'sold'],
    ]);
  });
});

describe('GET /v1/calls: direction and status', () => {
  it('filters by direction and by status, alone and with the other filters', async () => {
    const number = uniqueNumber();
    const inboundLive = await seedCall({ number, startedAt: at(0) });
    const inboundProcessed = await seedCall({ number, startedAt: at(1), disposition: 'sold' });
    const outboundEnded = uniqueSid();
    await store.upsertCall({ callSid: outboundEnded, direction: 'outbound', from: number, to: '+15557654321', number, startedAt: at(2) });
    await store.finishCall(outboundEnded, { endReason: 'completed', endedAt: at(3) });
    const n = `number=${encodeURIComponent(number)}`;
    const sids = async (query: string): Promise<string[]> => (await list(`${n}&${query}`)).calls.map((c) => c.callSid);

    expect(await sids('direction=outbound')).toEqual([outboundEnded]);
    expect(await sids('direction=inbound')).toEqual([inboundProcessed, inboundLive]);
    expect(await sids('status=live')).toEqual([inboundLive]);
    expect(await sids('status=ended')).toEqual([outboundEnded]);
    expect(await sids('status=processed&direction=inbound')).toEqual([inboundProcessed]);
    expect(await sids('status=processed&direction=outbound')).toEqual([]);
    expect(await sids('status=failed')).toEqual([]);
  });
});

describe('GET /v1/calls: pagination', () => {
  it('pages through every call exactly once, newest first, with ties on start time and newer calls arriving meanwhile', async () => {
    const number = uniqueNumber();
    const starts = [at(0), at(1), at(1), at(1), at(2), at(3), at(3)];
    const seeded = [];
    for (const startedAt of starts) seeded.push({ callSid: await seedCall({ number, startedAt }), startedAt });
    const expected = seeded
      .sort((a, b) => b.startedAt.getTime() - a.startedAt.getTime() || (a.callSid < b.callSid ? 1 : -1))
      .map((c) => c.callSid);

    const n = `number=${encodeURIComponent(number)}&limit=3`;
    const pages: string[][] = [];
    let cursor: string | null = null;
    do {
      const body: ListBody = await list(cursor === null ? n : `${n}&cursor=${encodeURIComponent(cursor)}`);
      pages.push(body.calls.map((c) => c.callSid));
      // A newer call arriving between pages must not shift or repeat what follows.
      if (pages.length === 1) await seedCall({ number, startedAt: at(10) });
      cursor = body.nextCursor;
    } while (cursor !== null && pages.length < 10);

    expect(pages.map((page) => page.length)).toEqual([3, 3, 1]);
    expect(pages.flat()).toEqual(expected);
  });

  it('answers 400 invalid_cursor for a cursor it did not hand out', async () => {
    for (const cursor of ['not-a-cursor', Buffer.from('{"t":"yesterday","s":"CA1"}').toString('base64url')]) {
      const response = await api.as(ANALYST_KEY, `/v1/calls?cursor=${encodeURIComponent(cursor)}`);
      expect(response.statusCode).toBe(400);
      expect(response.json()).toMatchObject({ statusCode: 400, code: 'invalid_cursor' });
    }
  });
});

describe('GET /v1/calls: bad queries', () => {
  it.each([
    ['limit=0', 'limit'],
    ['limit=501', 'limit'],
    ['limit=ten', 'limit'],
    ['number=5551234567', 'number'],
    ['number=%2B0551234567', 'number'],
    ['from=2025-03-04T10:00:00', 'from'],
    ['from=yesterday', 'from'],
    ['to=2025-13-01T00:00:00Z', 'to'],
    ['disposition=', 'disposition'],
    ['dispostion=sold', 'dispostion'],
    ['direction=sideways', 'direction'],
    ['status=done', 'status'],
    ['from=2025-03-04T10:00:00Z&to=2025-03-04T10:00:00Z', 'to'],
    ['from=2025-03-04T11:00:00Z&to=2025-03-04T10:00:00Z', 'to'],
  ])('answers 400 naming the field for ?%s', async (query, field) => {
    const response = await api.as(ANALYST_KEY, `/v1/calls?${query}`);
    expect(response.statusCode).toBe(400);
    const body = response.json<{ code: string; message: string }>();
    expect(body.code).toBe('invalid_request');
    expect(body.message).toContain(field);
  });
});

describe('GET /v1/calls/:callSid', () => {
  it('answers 404 with a JSON error for a call it does not have', async () => {
    const response = await api.as(ANALYST_KEY, `/v1/calls/${uniqueSid()}`);
    expect(response.statusCode).toBe(404);
    expect(response.json()).toMatchObject({ statusCode: 404, code: 'not_found' });
  });

  it('answers 401 without a key, even for a call it has', async () => {
    const callSid = await seedCall({ number: uniqueNumber(), startedAt: at(0) });
    expect((await api.as(undefined, `/v1/calls/${callSid}`)).statusCode).toBe(401);
  });

  it('shows metadata, the redacted transcript only, turn latencies, the post-call result and recordings', async () => {
    const number = uniqueNumber();
    const callSid = uniqueSid();
    await store.upsertCall({ callSid, direction: 'inbound', from: '+15557654321', to: number, number, startedAt: at(0), ownerInstance: 'instance-7' });
    const latency = { speechEnd: -200, turnDecided: 0, asrFinal: 40, llmRequest: 45, llmFirstToken: 310, firstSegmentToTts: 400, ttsFirstAudio: 520, firstFrameSent: 530 };
    await store.upsertTurns(callSid, [
      { idx: 0, speaker: 'caller', text: 'my card is 4111 1111 1111 1111', redactedText: 'my card is [CARD]', startMs: 1200, endMs: 3400, latency },
      { idx: 0, speaker: 'agent', text: 'Thanks, Jane Roe', redactedText: 'Thanks, [NAME]', startMs: 3930, endMs: 5100, interrupted: true },
    ]);
    await store.finishCall(callSid, { endReason: 'completed', endedAt: at(2) });
    await store.upsertPostCallResult({
      callSid,
      summary: 'Caller paid by card.',
      disposition: 'paid',
      sentiment: 'positive',
      actionItems: ['send receipt', { owner: 'billing', task: 'reconcile' }],
      model: 'qwen3-8b',
      redactionCounts: { card: 1, name: 1 },
      attempts: 2,
      processedAt: at(3),
    });
    await store.upsertRecording({ recordingSid: uniqueSid('RE'), callSid, url: 'https://api.twilio.com/rec/RE1', durationSeconds: 118, channels: 2, status: 'completed' });

    const response = await api.as(ANALYST_KEY, `/v1/calls/${callSid}`);
    expect(response.statusCode).toBe(200);
    expect(response.headers['cache-control']).toBe('no-store');
    expect(response.body).not.toContain('4111');
    expect(response.body).not.toContain('Jane Roe');
    expect(response.body).not.toContain('instance-7');
    const body = response.json();
    expect(body.call).toEqual({
      callSid,
      provider: 'twilio',
      direction: 'inbound',
      from: '+15557654321',
      to: number,
      number,
      startedAt: at(0).toISOString(),
      endedAt: at(2).toISOString(),
      endReason: 'completed',
      status: 'processed',
      postCallError: null,
      createdAt: expect.any(String),
      updatedAt: expect.any(String),
    });
    expect(body.turns).toEqual([
      { idx: 0, speaker: 'caller', redactedText: 'my card is [CARD]', startMs: 1200, endMs: 3400, interrupted: false, latency },
      { idx: 0, speaker: 'agent', redactedText: 'Thanks, [NAME]', startMs: 3930, endMs: 5100, interrupted: true, latency: null },
    ]);
    expect(body.result).toEqual({
      summary: 'Caller paid by card.',
      disposition: 'paid',
      sentiment: 'positive',
      actionItems: ['send receipt', { owner: 'billing', task: 'reconcile' }],
      model: 'qwen3-8b',
      extractive: false,
      redactionCounts: { card: 1, name: 1 },
      attempts: 2,
      processedAt: at(3).toISOString(),
    });
    expect(body.recordings).toEqual([
      {
        recordingSid: expect.stringMatching(/^RE/),
        url: 'https://api.twilio.com/rec/RE1',
        durationSeconds: 118,
        channels: 2,
        status: 'completed',
        createdAt: expect.any(String),
        updatedAt: expect.any(String),
      },
    ]);
  });

  it('shows a call whose post-call processing failed: no result, the error on the call', async () => {
    const callSid = await seedCall({ number: uniqueNumber(), startedAt: at(0) });
    await store.finishCall(callSid, { endReason: 'stop' });
    await store.markPostCallFailed(callSid, 'LLM unreachable after 5 attempts');

    const body = (await api.as(ADMIN_KEY, `/v1/calls/${callSid}`)).json();
    expect(body.result).toBeNull();
    expect(body.call).toMatchObject({ status: 'failed', postCallError: 'LLM unreachable after 5 attempts', endReason: 'stop' });
    expect(body.turns).toEqual([]);
    expect(body.recordings).toEqual([]);
  });
});
