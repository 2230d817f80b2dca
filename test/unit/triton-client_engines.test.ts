// Guards the Triton client and engines against a protocol-true KServe v2 stand-in: tensors and
// parameters on the wire, streaming completion, cancellation reaching Triton, and every failure
// (model error, deadline, stream cut, server restart) surfacing as an error instead of a hang.
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadResampler } from '../../src/audio/resampler.js';
import type { InferenceReply, SileroInference } from '../../src/engines/local/silero-vad.js';
import { LlmConnectionError, LlmProtocolError, LlmTimeoutError } from '../../src/engines/llm-errors.js';
import { TritonClient, TritonError } from '../../src/engines/triton/client.js';
import { TritonReadiness } from '../../src/engines/triton/readiness.js';
import { TritonAsr } from '../../src/engines/triton/triton-asr.js';
import { TritonLlm } from '../../src/engines/triton/triton-llm.js';
import { TritonTts } from '../../src/engines/triton/triton-tts.js';
import { FailoverSileroInference, TritonSileroInference } from '../../src/engines/triton/triton-vad.js';
import type { AsrEvent, LlmEvent, TtsChunk } from '../../src/engines/types.js';
import { AsyncQueue } from '../../src/util/async-queue.js';
import { phoneSpeech, RECORDINGS } from '../helpers/speech.js';
import { startTritonStandIn, type TritonStandIn } from '../triton-stand-in/index.js';

const logger = pino({ level: 'silent' });
let standIn: TritonStandIn;
let client: TritonClient;

beforeAll(async () => {
  await loadResampler();
  standIn = await startTritonStandIn({
    recognizer: { scripted: ['book a table for two', 'second utterance'], msPerWord: 100 },
    llm: {
      reply: [
        { match: 'tool please', reply: 'Sure, ending now.\n<tool_call>\n{"name": "end_call", "arguments": {"reason": "done"}}\n</tool_call>' },
        { match: 'long please', reply: 'word '.repeat(400) },
      ],
      defaultReply: 'Hello there. How can I help you today?',
      tokensPerSecond: 400,
      firstTokenDelayMs: 10,
    },
  });
  client = new TritonClient({ url: standIn.url });
});

afterAll(async () => {
  client?.close();
  await standIn?.stop();
});

afterEach(() => {
  for (const model of Object.keys(standIn.faults)) delete standIn.faults[model];
  standIn.observed.clear();
});

const until = async (check: () => boolean, ms = 3000): Promise<void> => {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > ms) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
};

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

function textSource(...segments: string[]): AsyncQueue<string> {
  const queue = new AsyncQueue<string>();
  for (const segment of segments) queue.push(segment);
  queue.end();
  return queue;
}

describe('TritonClient unary RPCs', () => {
  it('reads server and model readiness, metadata and config', async () => {
    expect(await client.serverReady()).toBe(true);
    expect(await client.modelReady('qwen3')).toBe(true);
    expect(await client.modelReady('no_such_model')).toBe(false);
    expect(await client.healthCheck()).toBe('SERVING');
    const metadata = await client.modelMetadata('parakeet_tdt');
    expect(metadata.inputs).toEqual([{ name: 'audio_chunk', datatype: 'FP32', shape: [-1] }]);
    const config = await client.modelConfig('tts');
    expect(config.model_transaction_policy?.decoupled).toBe(true);
    expect(config.input.map((i) => i.name)).toEqual(['text', 'voice']);
  });

  it('fails a call that misses its deadline with a deadline error', async () => {
    standIn.faults['silero_vad'] = { delayMs: 400 };
    const vad = new TritonSileroInference(client, 100);
    const started = Date.now();
    const error = await vad.run(1, new Float32Array(288), new Float32Array(256)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TritonError);
    expect((error as TritonError).kind).toBe('deadline');
    expect(Date.now() - started).toBeLessThan(350);
  });
});

describe('Silero VAD on Triton', () => {
  it('runs a batch of calls in one request and tells speech from silence', async () => {
    const speech = await phoneSpeech(RECORDINGS.illDisposed);
    const vad = new TritonSileroInference(client);
    let state = new Float32Array(2 * 2 * 128);
    let speechProbability = 0;
    let silenceProbability = 1;
    for (let offset = 8000; offset + 256 <= 8000 + 256 * 30; offset += 256) {
      const input = new Float32Array(2 * 288);
      for (let i = 0; i < 288; i++) input[i] = (speech[offset - 32 + i] ?? 0) / 32768;
      const reply = await vad.run(2, input, state);
      expect(reply.probabilities).toHaveLength(2);
      expect(reply.nextState).toHaveLength(2 * 2 * 128);
      state = reply.nextState.slice();
      speechProbability = Math.max(speechProbability, reply.probabilities[0]!);
      silenceProbability = Math.min(silenceProbability, reply.probabilities[1]!);
    }
    expect(speechProbability).toBeGreaterThan(0.5);
    expect(silenceProbability).toBeLessThan(0.2);
    const requests = standIn.observed.forModel('silero_vad');
    expect(requests).toHaveLength(30);
    expect(requests[0]!.vad).toMatchObject({ batch: 2 });
  });

  it('fails over to the local model when Triton errors, then stays local for the cool-down', async () => {
    const localCalls: number[] = [];
    const local: SileroInference = {
      name: 'local',
      run: async (size): Promise<InferenceReply> => {
        localCalls.push(size);
        return { probabilities: new Float32Array(size).fill(0.25), nextState: new Float32Array(2 * size * 128), inferenceMs: 0 };
      },
      close: async () => {},
    };
    let suspected = 0;
    const failover = new FailoverSileroInference(new TritonSileroInference(client), local, logger, 60_000, () => suspected++);
    standIn.faults['silero_vad'] = { error: 'CUDA error: device lost' };
    const first = await failover.run(3, new Float32Array(3 * 288), new Float32Array(2 * 3 * 128));
    expect(Array.from(first.probabilities)).toEqual([0.25, 0.25, 0.25]);
    delete standIn.faults['silero_vad'];
    await failover.run(1, new Float32Array(288), new Float32Array(256));
    expect(localCalls).toEqual([3, 1]);
    expect(standIn.observed.forModel('silero_vad')).toHaveLength(1);
    expect(suspected).toBe(1);
  });
});

describe('Parakeet ASR on Triton', () => {
  it('streams an utterance as one sequence, with partials, and ends with the final transcript', async () => {
    const speech = await phoneSpeech(RECORDINGS.illDisposed);
    const asr = new TritonAsr(client);
    const events: AsrEvent[] = [];
    const stream = asr.createStream('CA-asr-1', (event) => events.push(event));
    for (let i = 0; i + 160 <= 8000 * 1.5; i += 160) stream.push(speech.subarray(i, i + 160));
    stream.end();
    await until(() => events.some((e) => e.type === 'final'));
    expect(events.at(-1)).toEqual({ type: 'final', text: 'book a table for two' });
    expect(events.filter((e) => e.type === 'partial').length).toBeGreaterThan(0);
    const asrRequests = standIn.observed.forModel('parakeet_tdt').map((r) => r.asr!);
    expect(asrRequests[0]).toMatchObject({ sequenceId: 'CA-asr-1', start: true, end: false });
    expect(asrRequests.at(-1)).toMatchObject({ end: true });
    // 1.5 s at 16 kHz in 80 ms requests, the remainder on the last one.
    expect(asrRequests.reduce((n, r) => n + r.samples, 0)).toBeGreaterThan(23_500);
    expect(asrRequests.slice(0, -1).every((r) => r.samples === 1280)).toBe(true);
  });

  it("holds a call's next utterance back until the previous one has its final (they share the sequence id)", async () => {
    standIn.faults['parakeet_tdt'] = { delayMs: 150 };
    const asr = new TritonAsr(client);
    const first: AsrEvent[] = [];
    const second: AsrEvent[] = [];
    const a = asr.createStream('CA-asr-overlap', (event) => first.push(event));
    a.push(new Int16Array(4000));
    a.end();
    const b = asr.createStream('CA-asr-overlap', (event) => second.push(event));
    b.push(new Int16Array(4000));
    b.end();
    await until(() => second.some((e) => e.type === 'final'), 5000);
    expect(first.at(-1)).toEqual({ type: 'final', text: 'book a table for two' });
    expect(second.at(-1)).toEqual({ type: 'final', text: 'second utterance' });
    const flags = standIn.observed.forModel('parakeet_tdt').map((r) => (r.asr!.start ? 'S' : r.asr!.end ? 'E' : '.'));
    // START, chunks, END of the first, and only then START … END of the second.
    expect(flags.join('').replace(/\.+/g, '')).toBe('SESE');
  });

  it('cancels the utterance in Triton when the stream is cancelled, and says nothing more', async () => {
    // The model is slow, so requests are still in flight in Triton when the call is cancelled.
    standIn.faults['parakeet_tdt'] = { delayMs: 1000 };
    const asr = new TritonAsr(client);
    const events: AsrEvent[] = [];
    const stream = asr.createStream('CA-asr-2', (event) => events.push(event));
    stream.push(new Int16Array(8000));
    await until(() => standIn.observed.forModel('parakeet_tdt').length >= 3);
    stream.cancel();
    await until(() => standIn.observed.cancelledCount('parakeet_tdt') > 0);
    stream.end();
    await new Promise((r) => setTimeout(r, 100));
    expect(events.filter((e) => e.type !== 'partial')).toEqual([]);
  });

  it('turns a model error into an error event, and a missing final into a deadline error', async () => {
    standIn.faults['parakeet_tdt'] = { error: 'CUDA error: out of memory' };
    const failures: TritonError[] = [];
    const asr = new TritonAsr(client, { finalDeadlineMs: 300, onFailure: (e) => failures.push(e) });
    const errors: AsrEvent[] = [];
    const failing = asr.createStream('CA-asr-3', (event) => errors.push(event));
    failing.push(new Int16Array(1600));
    failing.end();
    await until(() => errors.length > 0);
    expect(errors).toEqual([{ type: 'error', error: expect.objectContaining({ message: expect.stringContaining('out of memory') }) }]);

    standIn.faults['parakeet_tdt'] = { delayMs: 2000 };
    const late: AsrEvent[] = [];
    const slow = asr.createStream('CA-asr-4', (event) => late.push(event));
    slow.push(new Int16Array(1600));
    const ended = Date.now();
    slow.end();
    await until(() => late.length > 0, 1500);
    expect(Date.now() - ended).toBeLessThan(1000);
    expect(late[0]).toMatchObject({ type: 'error', error: { kind: 'deadline' } });
    expect(failures.map((f) => f.kind)).toEqual(['model', 'deadline']);
  });
});

describe('Qwen3 on Triton (vLLM backend)', () => {
  const request = (content: string, signal = new AbortController().signal) => ({
    callId: 'CA-llm',
    messages: [
      { role: 'system' as const, content: 'Be brief.' },
      { role: 'user' as const, content },
    ],
    tools: [{ name: 'end_call', description: 'Hang up', parameters: { type: 'object', properties: {} } }],
    signal,
  });

  it('streams text deltas and parses tool calls out of the token stream', async () => {
    const llm = new TritonLlm(client);
    const events = await collect(llm.generate(request('tool please')));
    const text = events.filter((e): e is Extract<LlmEvent, { type: 'text' }> => e.type === 'text').map((e) => e.delta).join('');
    expect(text.trim()).toBe('Sure, ending now.');
    expect(events.filter((e) => e.type === 'tool_call')).toEqual([{ type: 'tool_call', call: { id: expect.any(String), name: 'end_call', arguments: { reason: 'done' } } }]);
    expect(events.at(-1)).toEqual({ type: 'done' });
    const sent = standIn.observed.forModel('qwen3')[0]!.llm!;
    expect(sent.stream).toBe(true);
    expect(sent.excludeInputInOutput).toBe(true);
    expect(JSON.parse(sent.samplingParameters!)).toMatchObject({ max_tokens: 400, stop: ['<|im_end|>', '<|endoftext|>'] });
    expect(standIn.observed.cancelledCount('qwen3')).toBe(0);
  });

  it('cancels generation in Triton when the request is aborted mid-stream', async () => {
    const llm = new TritonLlm(client);
    const controller = new AbortController();
    let deltas = 0;
    for await (const event of llm.generate(request('long please', controller.signal))) {
      if (event.type === 'text' && ++deltas === 5) controller.abort();
    }
    await until(() => standIn.observed.cancelledCount('qwen3') === 1);
    expect(deltas).toBeLessThan(20);
  });

  it('surfaces a model error, a first-token timeout and a cut stream as LLM errors', async () => {
    const llm = new TritonLlm(client, { firstTokenTimeoutMs: 200 });
    standIn.faults['qwen3'] = { error: 'CUDA error: out of memory' };
    await expect(collect(llm.generate(request('hello')))).rejects.toBeInstanceOf(LlmProtocolError);
    standIn.faults['qwen3'] = { delayMs: 1000 };
    await expect(collect(llm.generate(request('hello')))).rejects.toBeInstanceOf(LlmTimeoutError);
    standIn.faults['qwen3'] = { cutAfterResponses: 3 };
    await expect(collect(llm.generate(request('long please')))).rejects.toBeInstanceOf(LlmConnectionError);
  });
});

describe('TTS on Triton', () => {
  it('streams each segment’s audio in order and marks segment ends', async () => {
    const tts = new TritonTts(client);
    const chunks = await collect(tts.synthesize({ callId: 'CA-tts', text: textSource('Hello there.', 'How are you today?'), signal: new AbortController().signal }));
    const ends = chunks.filter((c) => c.segmentEnd);
    expect(ends.map((c) => [c.segment, c.text])).toEqual([
      [0, 'Hello there.'],
      [1, 'How are you today?'],
    ]);
    const audio = chunks.filter((c) => c.pcm.length > 0);
    expect(audio.length).toBeGreaterThan(2);
    expect(new Set(audio.map((c) => c.sampleRate))).toEqual(new Set([22050]));
    // Segment 0's audio entirely precedes segment 1's.
    const order = chunks.map((c: TtsChunk) => c.segment);
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect(standIn.observed.ttsTexts()).toEqual(['Hello there.', 'How are you today?']);
  });

  it('cancels synthesis in Triton when the reply is aborted', async () => {
    standIn.faults['tts'] = { delayMs: 500 };
    const tts = new TritonTts(client);
    const controller = new AbortController();
    const done = collect(tts.synthesize({ callId: 'CA-tts', text: textSource('A sentence that will never be heard.'), signal: controller.signal }));
    await until(() => standIn.observed.forModel('tts').length === 1);
    controller.abort();
    expect(await done).toEqual([]);
    await until(() => standIn.observed.cancelledCount('tts') === 1);
  });

  it('fails on a cut stream and on a segment with no audio before its deadline', async () => {
    const tts = new TritonTts(client, { chunkDeadlineMs: 300 });
    standIn.faults['tts'] = { cutAfterResponses: 1 };
    await expect(collect(tts.synthesize({ callId: 'CA-tts', text: textSource('One. Two. Three.'), signal: new AbortController().signal }))).rejects.toMatchObject({ kind: 'stream_lost' });
    standIn.faults['tts'] = { delayMs: 2000 };
    const started = Date.now();
    await expect(collect(tts.synthesize({ callId: 'CA-tts', text: textSource('Too slow.'), signal: new AbortController().signal }))).rejects.toMatchObject({ kind: 'deadline' });
    expect(Date.now() - started).toBeLessThan(1200);
  });
});

describe('readiness and restarts', () => {
  it('tracks per-model readiness and recovers after the server restarts', async () => {
    const readiness = new TritonReadiness(client, ['qwen3', 'tts'], logger, { healthyIntervalMs: 60_000, initialBackoffMs: 50 });
    await readiness.start();
    try {
      expect(readiness.allReady).toBe(true);
      standIn.faults['tts'] = { unready: true };
      readiness.suspect();
      await until(() => !readiness.isReady('tts'));
      expect(readiness.isReady('qwen3')).toBe(true);
      delete standIn.faults['tts'];
      await until(() => readiness.allReady, 3000);
    } finally {
      readiness.stop();
    }
  });

  it('fails the requests of a stream cut by a restart, and the channel reconnects for the next one', async () => {
    const llm = new TritonLlm(client, { firstTokenTimeoutMs: 3000 });
    const controller = new AbortController();
    const events: LlmEvent[] = [];
    const running = (async () => {
      for await (const event of llm.generate(request2('long please', controller.signal))) events.push(event);
    })();
    await until(() => events.length > 2);
    const failed = expect(running).rejects.toBeInstanceOf(LlmConnectionError);
    await standIn.restart();
    await failed;
    const after = await collect(llm.generate(request2('hello')));
    expect(after.at(-1)).toEqual({ type: 'done' });
  });
});

function request2(content: string, signal = new AbortController().signal) {
  return { callId: 'CA-restart', messages: [{ role: 'user' as const, content }], tools: [], signal };
}
