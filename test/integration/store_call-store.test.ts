import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CallNotFoundError, CallStore, InvalidCursorError } from '../../src/store/call-store.js';
import { openDatabase, type Db } from '../../src/store/database.js';
import type { TurnInput } from '../../src/store/types.js';
import { PG_URL } from '../helpers/test-services.js';

// The same suite against the real PostgreSQL (a fresh schema, dropped after) and in-memory PGlite.

interface Backend {
  name: string;
  open(): Promise<{ db: Db; cleanup(): Promise<void> }>;
}

const backends: Backend[] = [
  {
    name: 'PostgreSQL',
    async open() {
      const schema = `store_test_${randomBytes(6).toString('hex')}`;
      const db = await openDatabase({ url: PG_URL, schema });
      return {
        db,
        async cleanup() {
          await db.query(`DROP SCHEMA "${schema}" CASCADE`);
          await db.close();
        },
      };
    },
  },
  {
    name: 'PGlite',
    async open() {
      const db = await openDatabase();
      return { db, cleanup: () => db.close() };
    },
  },
];

let seq = 0;
/** Unique per test, so tests sharing one database never see each other's rows. */
const sid = (prefix = 'CA'): string => `${prefix}${randomBytes(8).toString('hex')}${(seq++).toString().padStart(4, '0')}`;
const uniqueNumber = (): string => `+1555${Math.floor(1_000_000 + Math.random() * 8_999_999)}`;

describe.each(backends)('CallStore on $name', (backend) => {
  let db: Db;
  let store: CallStore;
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    ({ db, cleanup } = await backend.open());
    store = new CallStore(db);
  });
  afterAll(async () => {
    await cleanup();
  });

  describe('numbers', () => {
    it('saves a profile with defaults, reads it, and a save replaces it', async () => {
      const number = uniqueNumber();
      const first = await store.upsertNumber({ number, name: 'Front desk', prompt: 'Be brief.' });
      expect(first.created).toBe(true);
      const created = first.profile;
      expect(created).toMatchObject({
        number,
        name: 'Front desk',
        prompt: 'Be brief.',
        scriptPath: null,
        voice: null,
        language: null,
        recordingEnabled: false,
        storeUnredacted: false,
        dispositions: [],
      });
      expect(created.createdAt).toBeInstanceOf(Date);

      const second = await store.upsertNumber({
        number,
        name: 'Sales',
        scriptPath: 'agents/sales.json',
        voice: 'en_US-amy',
        language: 'en-US',
        recordingEnabled: true,
        storeUnredacted: true,
        dispositions: ['sale', 'callback', 'not interested'],
      });
      expect(second.created).toBe(false);
      const updated = second.profile;
      expect(updated).toMatchObject({ name: 'Sales', prompt: null, recordingEnabled: true, storeUnredacted: true });
      expect(updated.createdAt.getTime()).toBe(created.createdAt.getTime());
      expect(await store.getNumber(number)).toEqual(updated);
      expect((await store.listNumbers()).map((n) => n.number)).toContain(number);
      expect(await store.getNumber('+19999999999')).toBeUndefined();
    });

    it('rejects a number that is not E.164', async () => {
      await expect(store.upsertNumber({ number: '5551234', name: 'x' })).rejects.toThrow();
    });
  });

  describe('calls', () => {
    it('inserts a live call, and a later upsert fills in only what it gives', async () => {
      const callSid = sid();
      const startedAt = new Date('2025-03-01T10:00:00.123Z');
      const first = await store.upsertCall({ callSid, direction: 'inbound', from: '+15550100', to: '+15550200', number: '+15550200', startedAt });
      expect(first).toMatchObject({
        callSid,
        provider: 'twilio',
        direction: 'inbound',
        from: '+15550100',
        to: '+15550200',
        number: '+15550200',
        status: 'live',
        endedAt: null,
        endReason: null,
        ownerInstance: null,
      });
      expect(first.startedAt.toISOString()).toBe(startedAt.toISOString());

      const second = await store.upsertCall({ callSid, direction: 'inbound', ownerInstance: 'server-a' });
      expect(second).toMatchObject({ from: '+15550100', to: '+15550200', number: '+15550200', ownerInstance: 'server-a', status: 'live' });
      expect(second.startedAt.toISOString()).toBe(startedAt.toISOString());

      const cleared = await store.upsertCall({ callSid, direction: 'inbound', ownerInstance: null });
      expect(cleared.ownerInstance).toBeNull();
    });

    it('finishCall: the first end wins, later ones change nothing', async () => {
      const callSid = sid();
      await store.upsertCall({ callSid, direction: 'outbound' });
      const endedAt = new Date('2025-03-01T10:05:00.000Z');
      const first = await store.finishCall(callSid, { endReason: 'stop', endedAt });
      expect(first?.firstEnd).toBe(true);
      expect(first?.call).toMatchObject({ status: 'ended', endReason: 'stop' });
      expect(first?.call.endedAt?.toISOString()).toBe(endedAt.toISOString());

      const again = await store.finishCall(callSid, { endReason: 'completed', endedAt: new Date('2025-03-01T10:06:00.000Z') });
      expect(again?.firstEnd).toBe(false);
      expect(again?.call).toMatchObject({ status: 'ended', endReason: 'stop' });
      expect(again?.call.endedAt?.toISOString()).toBe(endedAt.toISOString());

      expect(await store.finishCall(sid(), { endReason: 'stop' })).toBeUndefined();
    });

    it('finishCall reported concurrently: exactly one first end', async () => {
      const callSid = sid();
      await store.upsertCall({ callSid, direction: 'inbound' });
      const reasons = ['stop', 'completed', 'socket_closed', 'end_call', 'server_lost'];
      const results = await Promise.all(reasons.map((endReason) => store.finishCall(callSid, { endReason })));
      const firsts = results.filter((r) => r?.firstEnd);
      expect(firsts).toHaveLength(1);
      const detail = await store.getCall(callSid);
      expect(detail?.call.endReason).toBe(firsts[0]?.call.endReason);
      expect(detail?.call.endedAt).toBeInstanceOf(Date);
    });

    it('getCall: undefined for an unknown call', async () => {
      expect(await store.getCall(sid())).toBeUndefined();
    });
  });

  describe('turns', () => {
    const turns: TurnInput[] = [
      { idx: 0, speaker: 'caller', text: 'my card is 4111 1111 1111 1111', redactedText: 'my card is [CARD]', startMs: 1200.4, endMs: 3100 },
      {
        idx: 0,
        speaker: 'agent',
        text: 'Thanks, checking.',
        redactedText: 'Thanks, checking.',
        startMs: 3600,
        endMs: 4900,
        latency: { speechEnd: -600, turnDecided: 0, asrFinal: 40, llmRequest: 41, llmFirstToken: 210.5, firstSegmentToTts: 260, ttsFirstAudio: 330, firstFrameSent: 335 },
      },
      { idx: 1, speaker: 'caller', redactedText: 'wait', startMs: 4500, endMs: 4800 },
      { idx: 1, speaker: 'agent', redactedText: 'Sure—', interrupted: true, latency: { turnDecided: 0, firstFrameSent: 290 } },
    ];

    it('writes turns in order with their latency waterfall; re-writing changes nothing', async () => {
      const callSid = sid();
      await store.upsertCall({ callSid, direction: 'inbound' });
      expect(await store.upsertTurns(callSid, turns)).toBe(4);
      expect(await store.upsertTurns(callSid, turns)).toBe(4);
      const detail = await store.getCall(callSid);
      expect(detail?.turns).toHaveLength(4);
      expect(detail?.turns.map((t) => `${t.idx}:${t.speaker}`)).toEqual(['0:caller', '0:agent', '1:caller', '1:agent']);
      expect(detail?.turns[0]).toEqual({
        idx: 0,
        speaker: 'caller',
        text: 'my card is 4111 1111 1111 1111',
        redactedText: 'my card is [CARD]',
        startMs: 1200,
        endMs: 3100,
        interrupted: false,
        latency: null,
      });
      expect(detail?.turns[1]?.latency).toEqual(turns[1]?.latency);
      expect(detail?.turns[3]).toMatchObject({ text: null, interrupted: true, latency: { turnDecided: 0, firstFrameSent: 290 } });
    });

    it('a re-write of a turn replaces it (e.g. dropping the unredacted text); duplicates in one batch: last wins', async () => {
      const callSid = sid();
      await store.upsertCall({ callSid, direction: 'inbound' });
      await store.upsertTurns(callSid, turns);
      await store.upsertTurns(callSid, [
        { idx: 0, speaker: 'caller', text: 'first', redactedText: 'first' },
        { idx: 0, speaker: 'caller', text: null, redactedText: 'my card is [CARD]' },
      ]);
      const detail = await store.getCall(callSid);
      expect(detail?.turns).toHaveLength(4);
      expect(detail?.turns[0]).toMatchObject({ text: null, redactedText: 'my card is [CARD]', startMs: null });
    });

    it('writes long transcripts in several statements', async () => {
      const callSid = sid();
      await store.upsertCall({ callSid, direction: 'inbound' });
      const many: TurnInput[] = [];
      for (let idx = 0; idx < 650; idx++) {
        many.push({ idx, speaker: 'caller', redactedText: `q${idx}` }, { idx, speaker: 'agent', redactedText: `a${idx}` });
      }
      expect(await store.upsertTurns(callSid, many)).toBe(1300);
      const detail = await store.getCall(callSid);
      expect(detail?.turns).toHaveLength(1300);
      expect(detail?.turns[1299]).toMatchObject({ idx: 649, speaker: 'agent', redactedText: 'a649' });
      expect(await store.upsertTurns(callSid, [])).toBe(0);
    });

    it('throws CallNotFoundError for a call not stored, and writes nothing', async () => {
      const callSid = sid();
      await expect(store.upsertTurns(callSid, turns)).rejects.toBeInstanceOf(CallNotFoundError);
      const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM turns WHERE call_sid = $1', [callSid]);
      expect(rows[0]?.n).toBe(0);
    });
  });

  describe('post-call results', () => {
    it('a result marks the call processed; a rerun replaces it, never duplicates', async () => {
      const callSid = sid();
      await store.upsertCall({ callSid, direction: 'inbound' });
      await store.finishCall(callSid, { endReason: 'stop' });
      const first = await store.upsertPostCallResult({
        callSid,
        summary: 'Caller asked about an order.',
        disposition: 'resolved',
        sentiment: 'positive',
        actionItems: ['email receipt', { owner: 'billing', task: 'refund', due: null }],
        model: 'qwen3',
        redactionCounts: { card: 1, email: 0 },
        attempts: 2,
      });
      expect(first).toMatchObject({
        callSid,
        disposition: 'resolved',
        extractive: false,
        actionItems: ['email receipt', { owner: 'billing', task: 'refund', due: null }],
        redactionCounts: { card: 1, email: 0 },
        attempts: 2,
      });
      const rerun = await store.upsertPostCallResult({ callSid, summary: 'Extractive: order question.', extractive: true });
      expect(rerun).toMatchObject({ summary: 'Extractive: order question.', extractive: true, disposition: null, actionItems: [], redactionCounts: {}, attempts: 1 });
      expect(rerun.createdAt.getTime()).toBe(first.createdAt.getTime());

      const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM post_call_results WHERE call_sid = $1', [callSid]);
      expect(rows[0]?.n).toBe(1);
      const detail = await store.getCall(callSid);
      expect(detail?.call).toMatchObject({ status: 'processed', postCallError: null, endReason: 'stop' });
      expect(detail?.result?.summary).toBe('Extractive: order question.');
    });

    it('a failure shows on the call; a later success clears it; a failure after success keeps the result', async () => {
      const callSid = sid();
      await store.upsertCall({ callSid, direction: 'inbound' });
      await store.finishCall(callSid, { endReason: 'completed' });
      expect(await store.markPostCallFailed(callSid, 'LLM timed out')).toBe(true);
      expect((await store.getCall(callSid))?.call).toMatchObject({ status: 'failed', postCallError: 'LLM timed out' });

      await store.upsertPostCallResult({ callSid, summary: 'ok' });
      expect((await store.getCall(callSid))?.call).toMatchObject({ status: 'processed', postCallError: null });

      await store.markPostCallFailed(callSid, 'rerun failed');
      const detail = await store.getCall(callSid);
      expect(detail?.call).toMatchObject({ status: 'processed', postCallError: 'rerun failed' });
      expect(detail?.result?.summary).toBe('ok');

      expect(await store.markPostCallFailed(sid(), 'x')).toBe(false);
    });

    it('throws CallNotFoundError for a call not stored', async () => {
      await expect(store.upsertPostCallResult({ callSid: sid(), summary: 's' })).rejects.toBeInstanceOf(CallNotFoundError);
    });
  });

  describe('recordings', () => {
    it('a recording stored before its call joins the call once it is stored', async () => {
      const callSid = sid();
      const recordingSid = sid('RE');
      const stored = await store.upsertRecording({
        recordingSid,
        callSid,
        url: 'https://api.twilio.com/rec/1',
        durationSeconds: 42.4,
        channels: 2,
        status: 'completed',
      });
      expect(stored).toMatchObject({ recordingSid, callSid, durationSeconds: 42, channels: 2, status: 'completed' });
      expect(await store.getCall(callSid)).toBeUndefined();

      await store.upsertCall({ callSid, direction: 'inbound' });
      const detail = await store.getCall(callSid);
      expect(detail?.recordings).toHaveLength(1);
      expect(detail?.recordings[0]).toMatchObject({ recordingSid, url: 'https://api.twilio.com/rec/1' });
    });

    it('a recording stored after the call ended joins it; repeated callbacks fill in, never regress', async () => {
      const callSid = sid();
      const recordingSid = sid('RE');
      await store.upsertCall({ callSid, direction: 'inbound' });
      await store.finishCall(callSid, { endReason: 'stop' });
      await store.upsertRecording({ recordingSid, callSid, status: 'in-progress' });
      await store.upsertRecording({ recordingSid, callSid, status: 'completed', url: 'https://rec/2', durationSeconds: 10, channels: 1 });
      await store.upsertRecording({ recordingSid, callSid, status: 'completed', url: 'https://rec/2', durationSeconds: 10, channels: 1 });
      await store.upsertRecording({ recordingSid, callSid, status: 'in-progress' });
      const detail = await store.getCall(callSid);
      expect(detail?.recordings).toHaveLength(1);
      expect(detail?.recordings[0]).toMatchObject({ status: 'completed', url: 'https://rec/2', durationSeconds: 10, channels: 1 });
      expect(detail?.call.status).toBe('ended');
    });
  });

  describe('listCalls', () => {
    /** Calls on one number of their own: 3 sharing a start time, 2 with µs-precision starts. */
    async function seed(): Promise<{ number: string; sids: string[] }> {
      const number = uniqueNumber();
      const sids: string[] = [];
      const base = Date.parse('2025-04-01T12:00:00.000Z');
      const starts = [0, 1000, 1000, 1000, 2000, 3000, 4000];
      for (const offset of starts) {
        const callSid = sid();
        sids.push(callSid);
        await store.upsertCall({ callSid, direction: 'inbound', number, startedAt: new Date(base + offset) });
      }
      // Two more started "now" (the database clock, microsecond precision).
      for (let i = 0; i < 2; i++) {
        const callSid = sid();
        sids.push(callSid);
        await store.upsertCall({ callSid, direction: 'inbound', number });
      }
      return { number, sids };
    }

    async function allPages(query: { number: string; limit: number }): Promise<string[][]> {
      const pages: string[][] = [];
      let cursor: string | undefined;
      for (let guard = 0; guard < 50; guard++) {
        const page = await store.listCalls({ ...query, ...(cursor === undefined ? {} : { cursor }) });
        pages.push(page.calls.map((c) => c.callSid));
        if (page.nextCursor === null) return pages;
        cursor = page.nextCursor;
      }
      throw new Error('pagination did not end');
    }

    it('pages newest first, stable across ties on started_at, each call exactly once', async () => {
      const { number, sids } = await seed();
      const everything = await store.listCalls({ number, limit: 100 });
      expect(everything.nextCursor).toBeNull();
      expect(everything.calls).toHaveLength(sids.length);
      // Newest first (the database orders by microseconds; a JS Date holds milliseconds, so two
      // calls started "now" within one millisecond are only ordered by the database).
      const times = everything.calls.map((c) => c.startedAt.getTime());
      expect(times).toEqual([...times].sort((a, b) => b - a));
      // Ties on the same start (the three at +1000 ms) by call SID, descending.
      const tied = everything.calls.filter((c) => c.startedAt.getTime() === Date.parse('2025-04-01T12:00:01.000Z')).map((c) => c.callSid);
      expect(tied).toHaveLength(3);
      expect(tied).toEqual([...tied].sort().reverse());
      const expected = everything.calls.map((c) => c.callSid);
      for (const limit of [1, 2, 3, 4]) {
        const pages = await allPages({ number, limit });
        expect(pages.flat()).toEqual(expected);
        for (const page of pages) expect(page.length).toBeLessThanOrEqual(limit);
      }
    });

    it('a call started meanwhile does not shift the following pages', async () => {
      const { number } = await seed();
      const first = await store.listCalls({ number, limit: 4 });
      const rest = await store.listCalls({ number, limit: 100, cursor: first.nextCursor ?? '' });
      await store.upsertCall({ callSid: sid(), direction: 'inbound', number, startedAt: new Date(Date.now() + 60_000) });
      const restAgain = await store.listCalls({ number, limit: 100, cursor: first.nextCursor ?? '' });
      expect(restAgain.calls.map((c) => c.callSid)).toEqual(rest.calls.map((c) => c.callSid));
    });

    it('filters by number, time range and disposition', async () => {
      const { number, sids } = await seed();
      const base = Date.parse('2025-04-01T12:00:00.000Z');
      const inRange = await store.listCalls({ number, from: new Date(base + 1000), to: new Date(base + 3000) });
      expect(inRange.calls.map((c) => c.startedAt.getTime() - base)).toEqual([2000, 1000, 1000, 1000]);

      const [a, b, c] = sids as [string, string, string];
      await store.upsertPostCallResult({ callSid: a, summary: 's', disposition: 'sale', sentiment: 'positive' });
      await store.upsertPostCallResult({ callSid: b, summary: 's', disposition: 'callback' });
      await store.upsertPostCallResult({ callSid: c, summary: 's', disposition: 'sale' });
      const sales = await store.listCalls({ number, disposition: 'sale' });
      expect(sales.calls.map((x) => x.callSid).sort()).toEqual([a, c].sort());
      expect(sales.calls.find((x) => x.callSid === a)).toMatchObject({ disposition: 'sale', sentiment: 'positive', status: 'processed' });
      const salesPaged = await store.listCalls({ number, disposition: 'sale', limit: 1 });
      expect(salesPaged.calls).toHaveLength(1);
      const salesNext = await store.listCalls({ number, disposition: 'sale', limit: 1, cursor: salesPaged.nextCursor ?? '' });
      expect([...salesPaged.calls, ...salesNext.calls].map((x) => x.callSid).sort()).toEqual([a, c].sort());
      expect(salesNext.nextCursor).toBeNull();

      const all = await store.listCalls({ number });
      expect(all.calls).toHaveLength(sids.length);
      expect(all.calls.find((x) => x.callSid === sids[5])).toMatchObject({ disposition: null, sentiment: null });
      expect((await store.listCalls({ number: uniqueNumber() })).calls).toEqual([]);
    });

    it('rejects a forged cursor and a limit out of range', async () => {
      await expect(store.listCalls({ cursor: 'not-a-cursor' })).rejects.toBeInstanceOf(InvalidCursorError);
      const forged = Buffer.from(JSON.stringify({ t: "2025-01-01'; --", s: 'x' })).toString('base64url');
      await expect(store.listCalls({ cursor: forged })).rejects.toBeInstanceOf(InvalidCursorError);
      await expect(store.listCalls({ limit: 0 })).rejects.toBeInstanceOf(RangeError);
      await expect(store.listCalls({ limit: 501 })).rejects.toBeInstanceOf(RangeError);
      await expect(store.listCalls({ limit: 2.5 })).rejects.toBeInstanceOf(RangeError);
    });
  });
});
