/**
 * The post-call processor against the real PostgreSQL (a fresh schema) and the OpenAI stand-in:
 * redaction before storage, the call row and turns, the LLM's validated JSON (one retry on a bad
 * reply), dispositions restricted to the number's list, chunking of long calls, the extractive
 * fallback, and reruns that never duplicate.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OpenAiCompatibleLlm } from '../../src/engines/openai/openai-llm.js';
import type { Llm, LlmRequest } from '../../src/engines/types.js';
import { DEFAULT_DISPOSITIONS, PostCallLlmError, chunkLines, formatTranscript } from '../../src/post-call/analysis.js';
import { InvalidPostCallJobError, parsePostCallJob, postCallJobId, type PostCallJob } from '../../src/post-call/job.js';
import { PostCallProcessor } from '../../src/post-call/processor.js';
import { CallStore, openDatabase, type Db } from '../../src/store/index.js';
import { OpenAiStandIn } from '../helpers/openai-stand-in.js';
import { PG_URL } from '../helpers/test-services.js';

const schema = `post_call_proc_${randomBytes(5).toString('hex')}`;

let db: Db;
let store: CallStore;
let standIn: OpenAiStandIn;

beforeAll(async () => {
  db = await openDatabase({ url: PG_URL, schema });
  store = new CallStore(db);
  standIn = await OpenAiStandIn.start();
});
afterAll(async () => {
  await standIn?.close();
  await db?.query(`DROP SCHEMA "${schema}" CASCADE`);
  await db?.close();
});

const sid = (): string => `CA${randomBytes(16).toString('hex')}`;
const uniqueNumber = (): string => `+1555${Math.floor(1_000_000 + Math.random() * 8_999_999)}`;

function makeJob(overrides: Partial<PostCallJob> = {}): PostCallJob {
  return {
    callSid: sid(),
    provider: 'twilio',
    direction: 'inbound',
    from: '+15550001111',
    to: '+15550002222',
    startedAt: '2025-04-01T09:00:00.000Z',
    endedAt: '2025-04-01T09:03:00.000Z',
    endReason: 'stop',
    turns: [
      { idx: 0, speaker: 'agent', text: 'Thanks for calling Acme, how can I help?', interrupted: false, latency: { asrFinal: 120, llmFirstToken: 340 } },
      { idx: 1, speaker: 'caller', text: 'My card 4111 1111 1111 1111 was charged twice.', interrupted: false },
      { idx: 1, speaker: 'agent', text: 'I will refund the duplicate charge and email you at jane.doe@example.com.', interrupted: true, latency: { llmFirstToken: 410 } },
      { idx: 2, speaker: 'caller', text: 'Great, thank you.', interrupted: false },
    ],
    ...overrides,
  };
}

function analysisReply(fields: Record<string, unknown> = {}): string {
  return JSON.stringify({
    summary: 'The caller was charged twice; the agent will refund the duplicate charge.',
    disposition: 'resolved',
    sentiment: 'positive',
    action_items: ['Refund the duplicate charge', 'Email the confirmation'],
    ...fields,
  });
}

/** Streams a reply as the stand-in does, in a few token pieces. */
function tokens(reply: string): string[] {
  const size = Math.max(1, Math.ceil(reply.length / 5));
  const out: string[] = [];
  for (let i = 0; i < reply.length; i += size) out.push(reply.slice(i, i + size));
  return out;
}

function openAi(): OpenAiCompatibleLlm {
  return new OpenAiCompatibleLlm({ url: standIn.url, model: 'standin-model', firstTokenTimeoutMs: 5000, idleTimeoutMs: 5000 });
}

/** The stand-in answers request n with replies[n] (the last one from then on). */
function scripted(replies: string[]): Llm & { requests: LlmRequest[] } {
  const llm = openAi();
  const requests: LlmRequest[] = [];
  return {
    name: llm.name,
    requests,
    generate(request: LlmRequest) {
      const reply = replies[Math.min(requests.length, replies.length - 1)] ?? '';
      requests.push(request);
      standIn.configure({ tokens: tokens(reply) });
      return llm.generate(request);
    },
  };
}

function requestText(index: number): string {
  const body = standIn.requests[index]?.body as { messages?: Array<{ content: string }> } | undefined;
  return (body?.messages ?? []).map((m) => m.content).join('\n');
}

async function resultRows(callSid: string): Promise<number> {
  const { rows } = await db.query<{ n: string }>('SELECT count(*)::text AS n FROM post_call_results WHERE call_sid = $1', [callSid]);
  return Number(rows[0]?.n);
}

describe('job contract', () => {
  it('accepts a well-formed job and reports every problem of a bad one', () => {
    const job = makeJob();
    expect(parsePostCallJob(JSON.parse(JSON.stringify(job)))).toEqual(job);
    const bad = { ...job, provider: 'sip', startedAt: 'yesterday', turns: [{ idx: -1, speaker: 'bot', text: 5, interrupted: 'no' }] };
    let error: unknown;
    try {
      parsePostCallJob(bad);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(InvalidPostCallJobError);
    const problems = (error as InvalidPostCallJobError).problems;
    expect(problems).toEqual(
      expect.arrayContaining([
        'provider must be "twilio" or "telnyx"',
        expect.stringContaining('startedAt must be an ISO 8601 date-time'),
        'turns[0].idx must be a non-negative integer',
        'turns[0].speaker must be "caller" or "agent"',
        'turns[0].text must be a string',
        'turns[0].interrupted must be a boolean',
      ]),
    );
  });

  it('job ids: the Twilio SID itself; SIDs BullMQ refuses are encoded, one-to-one', () => {
    expect(postCallJobId('CA0123456789abcdef0123456789abcdef')).toBe('CA0123456789abcdef0123456789abcdef');
    const telnyx = postCallJobId('v3:MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Yw2axZ_IiE4pqA');
    expect(telnyx).not.toContain(':');
    expect(postCallJobId('12345')).not.toBe('12345');
    expect(new Set([postCallJobId('a:b'), postCallJobId('a_b'), postCallJobId('a-b'), postCallJobId('12')]).size).toBe(4);
  });
});

describe('PostCallProcessor with an LLM (OpenAI stand-in)', () => {
  it('redacts first, stores the call, turns and validated analysis; a rerun never duplicates', async () => {
    const number = uniqueNumber();
    await store.upsertNumber({ number, name: 'Billing', dispositions: ['refund_issued', 'escalated', 'other'] });
    const llm = scripted([analysisReply({ disposition: 'Refund Issued' })]);
    const processor = new PostCallProcessor({ store, llm, modelName: 'openai:standin-model' });
    const job = makeJob({ number });
    const before = standIn.requests.length;

    const outcome = await processor.process(job, { attempt: 2 });
    expect(outcome.analysis).toMatchObject({ disposition: 'refund_issued', sentiment: 'positive', extractive: false, llmRequests: 1, chunks: 1 });
    expect(outcome.redactionCounts).toMatchObject({ card: 1, email: 1 });

    // What the LLM saw: redacted text, the number's dispositions.
    const prompt = requestText(before);
    expect(prompt).toContain('[CARD]');
    expect(prompt).toContain('[EMAIL]');
    expect(prompt).not.toContain('4111');
    expect(prompt).not.toContain('jane.doe');
    expect(prompt).toContain('"refund_issued","escalated","other"');

    const detail = await store.getCall(job.callSid);
    expect(detail?.call).toMatchObject({ status: 'processed', endReason: 'stop', number, from: '+15550001111', direction: 'inbound', postCallError: null });
    expect(detail?.call.startedAt.toISOString()).toBe(job.startedAt);
    expect(detail?.call.endedAt?.toISOString()).toBe(job.endedAt);
    expect(detail?.turns).toHaveLength(4);
    // Not storeUnredacted: only the redacted text is kept.
    expect(detail?.turns.every((t) => t.text === null)).toBe(true);
    expect(detail?.turns[1]).toMatchObject({ idx: 1, speaker: 'caller', redactedText: 'My card [CARD] was charged twice.' });
    expect(detail?.turns[2]).toMatchObject({ idx: 1, speaker: 'agent', interrupted: true, latency: { llmFirstToken: 410 } });
    expect(detail?.turns[0]?.latency).toEqual({ asrFinal: 120, llmFirstToken: 340 });
    expect(detail?.result).toMatchObject({
      summary: 'The caller was charged twice; the agent will refund the duplicate charge.',
      disposition: 'refund_issued',
      sentiment: 'positive',
      actionItems: ['Refund the duplicate charge', 'Email the confirmation'],
      model: 'openai:standin-model',
      extractive: false,
      attempts: 2,
      redactionCounts: { card: 1, email: 1, ssn: 0, phone: 0, spelled_digits: 0 },
    });

    // Rerun (a retry, a duplicate delivery): same rows, none doubled.
    await processor.process(job, { attempt: 3 });
    expect(await resultRows(job.callSid)).toBe(1);
    const { rows } = await db.query<{ n: string }>('SELECT count(*)::text AS n FROM turns WHERE call_sid = $1', [job.callSid]);
    expect(rows[0]?.n).toBe('4');
    expect((await store.getCall(job.callSid))?.result?.attempts).toBe(3);
  });

  it('keeps the unredacted text as well when the number profile says so', async () => {
    const number = uniqueNumber();
    await store.upsertNumber({ number, name: 'Keep', storeUnredacted: true });
    const processor = new PostCallProcessor({ store, llm: scripted([analysisReply()]) });
    const job = makeJob({ number });
    await processor.process(job);
    const detail = await store.getCall(job.callSid);
    expect(detail?.turns[1]).toMatchObject({ text: 'My card 4111 1111 1111 1111 was charged twice.', redactedText: 'My card [CARD] was charged twice.' });
    // The LLM still only saw redacted text.
    expect(requestText(standIn.requests.length - 1)).not.toContain('4111');
  });

  it('a number without dispositions chooses from the default list; one outside it is refused', async () => {
    const llm = scripted([analysisReply({ disposition: 'refund_issued' }), analysisReply({ disposition: 'follow_up' })]);
    const before = standIn.requests.length;
    const processor = new PostCallProcessor({ store, llm });
    const job = makeJob();
    const outcome = await processor.process(job);
    expect(outcome.analysis.disposition).toBe('follow_up');
    expect(outcome.analysis.llmRequests).toBe(2);
    expect(requestText(before)).toContain(JSON.stringify(DEFAULT_DISPOSITIONS));
    // The retry carried the validation error back to the model.
    expect(requestText(before + 1)).toContain('"disposition" "refund_issued" is not one of');
  });

  it('bad JSON is retried once with the error, and the good second reply is stored', async () => {
    const llm = scripted(['Sure! Here is the summary: the caller was charged twice.', `\`\`\`json\n${analysisReply({ sentiment: 'Negative' })}\n\`\`\``]);
    const before = standIn.requests.length;
    const processor = new PostCallProcessor({ store, llm });
    const job = makeJob();
    const outcome = await processor.process(job);
    expect(standIn.requests.length - before).toBe(2);
    expect(outcome.analysis).toMatchObject({ sentiment: 'negative', llmRequests: 2 });
    const retry = standIn.requests[before + 1]?.body as { messages: Array<{ role: string; content: string }> };
    expect(retry.messages.at(-2)).toMatchObject({ role: 'assistant', content: 'Sure! Here is the summary: the caller was charged twice.' });
    expect(retry.messages.at(-1)?.content).toContain('the reply holds no JSON object');
    expect((await store.getCall(job.callSid))?.result?.sentiment).toBe('negative');
  });

  it('bad JSON twice fails the attempt (BullMQ retries the job); the call row is stored, no result', async () => {
    const replies = ['{"summary": ""}', '{"summary": "ok", "disposition": "other", "sentiment": "furious"}'];
    const job = makeJob();
    const attempt = new PostCallProcessor({ store, llm: scripted(replies) }).process(job);
    await expect(attempt).rejects.toThrow(PostCallLlmError);
    await expect(attempt).rejects.toThrow(/invalid twice: "summary" must be a non-empty string; then "sentiment" must be one of/);
    const detail = await store.getCall(job.callSid);
    expect(detail?.call.status).toBe('ended');
    expect(detail?.turns).toHaveLength(4);
    expect(detail?.result).toBeNull();
  });

  it('an LLM HTTP error fails the attempt', async () => {
    const processor = new PostCallProcessor({ store, llm: openAi() });
    standIn.configure({ mode: 'http_error', errorStatus: 503 });
    try {
      await expect(processor.process(makeJob())).rejects.toThrow(/LLM request failed: .*503/);
    } finally {
      standIn.configure({});
    }
  });

  it('a long call is summarized in chunks, then combined (chunks + 1 requests)', async () => {
    // 30 lines of ~1000 characters; 3000 tokens × 3.5 = 10 500 characters per chunk → 10 lines each.
    const filler = 'the order was late and the box was damaged and the caller wants a replacement shipped soon '.repeat(11).slice(0, 992);
    const turns = Array.from({ length: 30 }, (_, i) => ({
      idx: Math.floor(i / 2),
      speaker: i % 2 === 0 ? ('caller' as const) : ('agent' as const),
      text: `${String(i).padStart(3, '0')} ${filler}`.slice(0, 1000),
      interrupted: false,
    }));
    const lines = formatTranscript(turns);
    expect(chunkLines(lines, 10_500)).toHaveLength(3);

    const notes = JSON.stringify({ summary: 'Part notes: a late, damaged order.', action_items: ['Ship a replacement'] });
    const llm = scripted([notes, notes, notes, analysisReply({ disposition: 'follow_up', action_items: ['Ship a replacement'] })]);
    const before = standIn.requests.length;
    const processor = new PostCallProcessor({ store, llm });
    const job = makeJob({ turns });
    const outcome = await processor.process(job);

    expect(standIn.requests.length - before).toBe(4);
    expect(outcome.analysis).toMatchObject({ chunks: 3, llmRequests: 4, disposition: 'follow_up', actionItems: ['Ship a replacement'] });
    for (const part of [1, 2, 3]) {
      const text = requestText(before + part - 1);
      expect(text).toContain(`part ${part} of 3`);
      expect(text.length).toBeLessThan(10_500 + 2000);
    }
    expect(requestText(before)).toContain('000 the order');
    expect(requestText(before + 1)).toContain('010 the order');
    expect(requestText(before + 2)).toContain('029 the order');
    const final = requestText(before + 3);
    expect(final).toContain('Part 3: Part notes: a late, damaged order.');
    expect(final).not.toContain('000 the order');
    expect((await store.getCall(job.callSid))?.result?.summary).toContain('refund');
  });

  it('with many small chunks, the notes are merged in rounds before the final request', async () => {
    const turns = Array.from({ length: 12 }, (_, i) => ({ idx: i, speaker: 'caller' as const, text: `line ${i} `.repeat(40), interrupted: false }));
    const notes = JSON.stringify({ summary: 'n'.repeat(300), action_items: [] });
    // Notes until the combining request (told apart by its wording), then the analysis.
    const llm: Llm = {
      name: 'final-aware',
      generate(request) {
        const text = request.messages.map((m) => m.content).join('\n');
        standIn.configure({ tokens: tokens(text.includes('notes on each part') ? analysisReply() : notes) });
        return openAi().generate(request);
      },
    };
    const before = standIn.requests.length;
    // 100 tokens → 350 characters: each line is a chunk, and 12 notes of ~310 characters do not fit one request.
    const outcome = await new PostCallProcessor({ store, llm, chunkTokens: 100 }).process(makeJob({ turns }));
    expect(outcome.analysis.chunks).toBe(12);
    // 12 chunk requests; each note nearly fills a request alone, so rounds merge pairs (a merged note is
    // again ~310 characters): 12 → 6 (6 requests) → 3 (3) → 2 (1; one note carried over) → 1 (1); one final.
    expect(outcome.analysis.llmRequests).toBe(12 + 6 + 3 + 1 + 1 + 1);
    expect(standIn.requests.length - before).toBe(outcome.analysis.llmRequests);
    expect(requestText(standIn.requests.length - 1)).toContain('notes on each part');
  });
});

describe('PostCallProcessor without an LLM: extractive fallback', () => {
  it('stores the first caller lines, a keyword disposition from the list, neutral sentiment, marked extractive', async () => {
    const processor = new PostCallProcessor({ store });
    const job = makeJob({
      turns: [
        { idx: 0, speaker: 'agent', text: 'Hello, Acme support.', interrupted: false },
        { idx: 1, speaker: 'caller', text: 'Hi, my number is five five five one two three four five six seven.', interrupted: false },
        { idx: 1, speaker: 'agent', text: 'I will have someone call you back tomorrow.', interrupted: false },
        { idx: 2, speaker: 'caller', text: 'Okay.', interrupted: false },
      ],
    });
    const outcome = await processor.process(job);
    expect(outcome.analysis).toMatchObject({ extractive: true, model: null, sentiment: 'neutral', disposition: 'follow_up', actionItems: [], llmRequests: 0 });
    const result = (await store.getCall(job.callSid))?.result;
    expect(result).toMatchObject({ extractive: true, sentiment: 'neutral', disposition: 'follow_up', model: null });
    expect(result?.summary).toMatch(/The caller said: "Hi, my number is \[(PHONE|DIGITS)\]/);
    expect(result?.summary).not.toMatch(/five five five/);
  });

  it('uses only the number\'s own dispositions, and no_answer when the caller said nothing', async () => {
    const number = uniqueNumber();
    await store.upsertNumber({ number, name: 'Sales', dispositions: ['appointment_booked', 'not_interested', 'no_answer'] });
    const processor = new PostCallProcessor({ store });
    const booked = makeJob({
      number,
      turns: [{ idx: 0, speaker: 'caller', text: 'I would like to book an appointment for Tuesday.', interrupted: false }],
    });
    expect((await processor.process(booked)).analysis.disposition).toBe('appointment_booked');
    const silent = makeJob({ number, turns: [{ idx: 0, speaker: 'agent', text: 'Hello? Are you there?', interrupted: false }] });
    const outcome = await processor.process(silent);
    expect(outcome.analysis.disposition).toBe('no_answer');
    expect(outcome.analysis.summary).toContain('said nothing');
    // Nothing fits and the list has no "other": no disposition rather than a wrong one.
    const vague = makeJob({ number, turns: [{ idx: 0, speaker: 'caller', text: 'Hmm, well.', interrupted: false }] });
    expect((await processor.process(vague)).analysis.disposition).toBeNull();
  });
});
