/**
 * The Triton path's own cost, against the protocol-true stand-in (test/triton-stand-in):
 *
 * 1. Client overhead, as CPU time of this process (not wall time). The stand-in runs in a child
 *    process (`test/triton-stand-in/main.ts`), so its CPU is not counted here; this process only
 *    runs the client: build the request, serialize, HTTP/2, deserialize, decode the tensors.
 *    - per unary request: `silero_vad` ModelInfer with a batch of 8 (`TritonSileroInference.run`,
 *      as the VAD batch loop calls it), one at a time; also the wall round trip p50/p95;
 *    - per streamed response: `qwen3` replies of a few thousand characters at 2000 tokens/s through
 *      `TritonLlm.generate` (decode + Qwen3 stream parser + event queue), a few streams at once;
 *    - per streamed TTS audio chunk (160 ms at 22.05 kHz) through `TritonTts.synthesize`.
 *
 * 2. Server-added latency of a whole turn. The stand-in runs in this process with known model
 *    latencies (qwen3: first token after 150 ms, then 50 tokens/s; tts: first audio 100 ms after
 *    espeak-ng produced it; scripted ASR), the real server runs with all four stages on Triton, and
 *    Twilio-exact callers (`placeCall`) speak real recordings. Server, stand-in and callers share one
 *    monotonic clock (performance.now()), so for each caller turn:
 *    (a) turn decision → LLM request at Triton: the qwen3 request's arrival at the stand-in minus
 *        max(turnDecidedAt, asrFinalAt) — the request cannot go before the final transcript is in,
 *        so what is left is the server's own time (prompt rendering, gRPC send). The session's own
 *        `llmRequestAt − max(turnDecidedAt, asrFinalAt)` is shown beside it.
 *    (b) LLM token → TTS request at Triton: the stand-in's write of the qwen3 response that completed
 *        the first speakable segment (the token after the first sentence's '.': the sentence
 *        chunker only cuts at a sentence end followed by whitespace) → the arrival of that segment's
 *        tts request at the stand-in. Which response completes it is worked out by running the
 *        scripted reply through the server's own Qwen3StreamParser and SentenceChunker.
 *    (c) TTS audio → first frame on the wire: the stand-in's write of the segment's first audio
 *        response → the session's `firstFrameSentAt` (resample 22.05 → 8 kHz, µ-law, frame, queue,
 *        WebSocket send).
 *    Total = a + b + c, target ≤ 15 ms p95. Every turn's raw waterfall is printed.
 *
 *    Pacing: outbound audio is paced on a 20 ms frame grid with a 100 ms lead (PlayoutQueue). A
 *    reply's first frames go to an idle queue, whose timeline starts at that moment and may run up
 *    to the lead ahead of real time, so they are sent at once by the `wake` that enqueued them; the
 *    pacing timer only shapes the frames after. What pacing adds to (c) is measured, not assumed: it
 *    is the `ttsFirstAudioAt → firstFrameSentAt` part of the split printed below.
 *
 *    Caveat: the stand-in and the callers share this process's event loop with the server (as
 *    they must, for one clock), so their work — Silero VAD requests every 32 ms, ASR chunks, the
 *    espeak-ng spawn per tts request (a fork of this whole process: ~10 ms with the loop held), the
 *    callers' setup and wrap-up, and the GC of all of it — can delay the server's. The calls are
 *    staggered so that one call's stand-in and caller work misses the other calls' measured hops,
 *    a warm-up call takes the cold-code hit of the first turn, and each turn shows how long the
 *    loop was stalled (a 2 ms ticker), GC pause time and other work inside its hops; the stalls are
 *    counted by cause (spawn, GC, caller, other). The figures are, if anything, an upper
 *    bound on what the server adds. One more stand-in artefact inside (c): once its first-audio
 *    delay is over, the stand-in writes all the audio espeak-ng already made in one burst (~10
 *    chunks, ~0.5 ms of this loop, shown), and the client decodes what arrives together before the
 *    first chunk moves on; a real TTS model streams chunks as it makes them.
 *
 *   npx tsx bench/triton.ts [--quick] [--unary 2000] [--calls 5] [--turns 4]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { constants, monitorEventLoopDelay, performance, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { CallSession, TurnRecord } from '../src/agent/call-session.js';
import { SentenceChunker } from '../src/agent/sentence-chunker.js';
import { CHUNK, CONTEXT, STATE_SIZE } from '../src/engines/local/silero-vad.js';
import { TritonClient } from '../src/engines/triton/client.js';
import { Qwen3StreamParser } from '../src/engines/triton/qwen3-chat.js';
import { TritonLlm } from '../src/engines/triton/triton-llm.js';
import { TritonTts } from '../src/engines/triton/triton-tts.js';
import { TritonSileroInference } from '../src/engines/triton/triton-vad.js';
import type { LlmEvent } from '../src/engines/types.js';
import { placeCall, type CallResult } from '../src/softphone/twilio-caller.js';
import { phoneSpeech, RECORDINGS, timeline } from '../test/helpers/speech.js';
import { startVoiceServer, TEST_AUTH_TOKEN, type RunningServer } from '../test/helpers/voice-test-server.js';
import { lastUserMessage, startTritonStandIn, tokenPieces, type ObservedRequest, type TritonStandIn } from '../test/triton-stand-in/index.js';
import { fmt, isMain, machineBusyFraction, machineCpu, printSummary, printTable, quantile, row, sleep, watchdog, type SummaryRow } from './common.js';

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const TARGET_TOTAL_P95_MS = 15;
const WARM_UP_LEAD_MS = 700;
/** A tick of the stall sampler this late means the event loop was held. */
const STALL_MS = 6;
/** When each call's first utterance starts, and the spacing of the next ones (see DEFAULTS.staggerMs). */
const FIRST_UTTERANCE_MS = 3200;
const TURN_EVERY_MS = 7000;

export interface TritonBenchOptions {
  /** Unary `silero_vad` requests measured (after a warm-up). */
  unaryRequests?: number;
  /** Concurrent qwen3 streams per round, and rounds. */
  llmStreams?: number;
  llmRounds?: number;
  /** Length of each streamed qwen3 reply, characters. */
  replyChars?: number;
  /** TTS streams measured (each a paragraph of several sentences). */
  ttsStreams?: number;
  /** Calls placed at once, and caller turns per call (1–4). */
  calls?: number;
  turnsPerCall?: number;
  /** Delay between the starts of the calls. */
  staggerMs?: number;
}

export interface TritonTurnFigures {
  label: string;
  /** The warm-up call's turn: shown, left out of the figures. */
  warmUp: boolean;
  /** (a), (b), (c) and their sum, ms. */
  decisionToLlm: number;
  decisionToLlmSession: number;
  tokenToTts: number;
  audioToFrame: number;
  total: number;
  /** tts responses the stand-in wrote within 1 ms of the first audio (a burst the client decodes at once). */
  ttsBurst: number;
  /** How long the stand-in took to write that burst (this process's loop, inside (c)), ms. */
  ttsBurstMs: number;
  /** GC pause time inside the three measured hops, ms. */
  gcMs: number;
  /** Time the event loop was held ≥ STALL_MS at a stretch (by anything) inside the three hops, ms. */
  stalledMs: number;
  /** Other work on the shared loop near the measured hops: other tts requests (espeak-ng spawns in the stand-in), callers starting or ending. */
  others: number;
  /** ms relative to the turn decision, for the waterfall. */
  waterfall: Record<string, number | undefined>;
}

export interface TritonBenchResult {
  unaryCpuUs: number;
  unaryRtt: number[];
  streamCpuUs: number;
  ttsChunkCpuUs: number;
  /** Every turn, the warm-up's (left out of the figures) included. */
  turns: TritonTurnFigures[];
  problems: string[];
  summary: SummaryRow[];
}

// ── part 1: client overhead, stand-in in a child process ─────────────────────────────────────────

interface ChildStandIn {
  url: string;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

/**
 * `test/triton-stand-in/main.ts` in a child process; resolves once it answers ServerReady. Its
 * per-request log goes to a file, not a pipe: reading a pipe would cost this process CPU.
 */
async function startChildStandIn(args: string[]): Promise<ChildStandIn> {
  const port = await freePort();
  const url = `127.0.0.1:${port}`;
  const logDir = mkdtempSync(join(tmpdir(), 'triton-bench-'));
  const logPath = join(logDir, 'stand-in.log');
  const logFd = openSync(logPath, 'w');
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'test/triton-stand-in/main.ts', '--port', String(port), ...args], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'ignore', logFd],
  });
  closeSync(logFd);
  // A watchdog's process.exit must not leave the child behind.
  const killOnExit = (): void => void child.kill('SIGKILL');
  process.once('exit', killOnExit);
  let exited = false;
  const exitedPromise = new Promise<void>((resolve) => {
    const done = (): void => {
      exited = true;
      resolve();
    };
    child.once('exit', done);
    child.once('error', done); // could not be spawned (or killed): no 'exit' may follow
  });
  const logTail = (): string => {
    try {
      return readFileSync(logPath, 'utf8').trim().split('\n').slice(-5).join(' | ');
    } catch {
      return '';
    }
  };
  const cleanUp = (): void => {
    process.removeListener('exit', killOnExit);
    rmSync(logDir, { recursive: true, force: true });
  };
  const probe = new TritonClient({ url });
  try {
    const deadline = performance.now() + 60_000;
    for (;;) {
      if (exited) throw new Error(`the stand-in child exited before it was ready: ${logTail()}`);
      if (performance.now() > deadline) throw new Error(`the stand-in child was not ready within 60 s: ${logTail()}`);
      const ready = await probe.serverReady({ deadlineMs: 500 }).catch(() => false);
      if (ready) break;
      await sleep(200);
    }
  } catch (error) {
    child.kill('SIGKILL');
    await exitedPromise;
    cleanUp();
    throw error;
  } finally {
    probe.close();
  }
  return {
    url,
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        const forced = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exitedPromise;
        clearTimeout(forced);
      }
      cleanUp();
    },
  };
}

function cpuUsSince(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return used.user + used.system;
}

/**
 * CPU µs per item of `blocks` runs of `run` (which returns how many items it did). The figure
 * reported is the median block: on a small shared machine one block now and then runs while
 * something else holds the cores, and CPU time then reads high (cache, frequency, steal).
 */
const BLOCKS = 5;
async function cpuBlocks(blocks: number, run: () => Promise<number>): Promise<number[]> {
  const out: number[] = [];
  for (let b = 0; b < blocks; b++) {
    const cpu0 = process.cpuUsage();
    const items = await run();
    out.push(cpuUsSince(cpu0) / Math.max(1, items));
  }
  return out;
}

function range(values: readonly number[], digits = 0): string {
  return values.length > 1 ? `(median of ${values.length} blocks: ${values.map((v) => fmt(v, digits)).join(', ')})` : '';
}

/** A long reply of ordinary prose, about `chars` characters, sentences ending in '.'. */
function longReply(chars: number): string {
  const sentences = [
    'We are open from nine in the morning until six in the evening on weekdays.',
    'On Saturdays we open at ten and close at two in the afternoon.',
    'Parking is free behind the building, and the entrance is on the left side.',
    'If you would like an appointment, I can check the calendar for you right now.',
    'Please bring your insurance card and a list of any medicines you take.',
  ];
  let out = '';
  for (let i = 0; out.length < chars; i++) out += (out === '' ? '' : ' ') + sentences[i % sentences.length]!;
  return out;
}

async function measureClientOverhead(options: Required<TritonBenchOptions>, problems: string[]): Promise<{
  unaryCpuUs: number;
  bareCpuUs: number;
  unaryRtt: number[];
  streamCpuUs: number;
  streamResponses: number;
  streamTextEvents: number;
  ttsChunkCpuUs: number;
  ttsChunks: number;
}> {
  const reply = longReply(options.replyChars);
  const standIn = await startChildStandIn([
    '--models', 'silero_vad,qwen3,tts',
    '--reply', reply,
    '--tokens-per-second', '2000',
    '--first-token-ms', '0',
  ]);
  const client = new TritonClient({ url: standIn.url });
  try {
    // Unary: silero_vad with a batch of 8, one request at a time.
    const vad = new TritonSileroInference(client, 5000);
    const batch = 8;
    const input = new Float32Array(batch * (CONTEXT + CHUNK));
    for (let i = 0; i < input.length; i++) input[i] = Math.sin(i / 7) * 0.05;
    const state = new Float32Array(2 * batch * STATE_SIZE);
    // Warm-up: the channel connects, and the encode/decode paths get optimized.
    for (let i = 0; i < 500; i++) await vad.run(batch, input, state);
    const unaryRtt: number[] = [];
    const wall0 = performance.now();
    const blockSize = Math.max(1, Math.round(options.unaryRequests / BLOCKS));
    const unaryBlocks = await cpuBlocks(BLOCKS, async () => {
      for (let i = 0; i < blockSize; i++) {
        const t = performance.now();
        await vad.run(batch, input, state);
        unaryRtt.push(performance.now() - t);
      }
      return blockSize;
    });
    const unaryCpuUs = quantile(unaryBlocks, 0.5);
    const unaryWallS = (performance.now() - wall0) / 1000;
    // The same round trip with an empty message (ModelReady): grpc-js's own cost per unary call.
    const bareBlocks = await cpuBlocks(BLOCKS, async () => {
      const count = Math.ceil(blockSize / 2);
      for (let i = 0; i < count; i++) await client.modelReady('silero_vad');
      return count;
    });
    const bareCpuUs = quantile(bareBlocks, 0.5);
    console.log(
      `unary silero_vad (batch ${batch}): ${unaryRtt.length} requests in ${fmt(unaryWallS, 2)} s; ` +
        `client CPU ${fmt(unaryCpuUs, 0)} µs/request ${range(unaryBlocks)}; round trip p50 ${fmt(quantile(unaryRtt, 0.5), 2)} ms, p95 ${fmt(quantile(unaryRtt, 0.95), 2)} ms; ` +
        `an empty unary call (ModelReady): ${fmt(bareCpuUs, 0)} µs ${range(bareBlocks)}`,
    );

    // Streamed: qwen3 replies. The stand-in sends one response per token-sized piece, then the
    // empty end-of-sequence delta (max_tokens is raised so the reply is not cut at 400 tokens).
    const llm = new TritonLlm(client, { maxTokens: 1_000_000, firstTokenTimeoutMs: 10_000 });
    const responsesPerStream = tokenPieces(reply).length + 1;
    const runStream = async (): Promise<number> => {
      const controller = new AbortController();
      let text = 0;
      const events: AsyncIterable<LlmEvent> = llm.generate({
        callId: 'bench',
        messages: [{ role: 'user', content: 'Tell me everything about the practice.' }],
        tools: [],
        signal: controller.signal,
      });
      for await (const event of events) if (event.type === 'text') text++;
      return text;
    };
    await Promise.all(Array.from({ length: options.llmStreams }, () => runStream())); // warm-up
    const llmWall0 = performance.now();
    let streamTextEvents = 0;
    const streamBlocks = await cpuBlocks(options.llmRounds, async () => {
      const counts = await Promise.all(Array.from({ length: options.llmStreams }, () => runStream()));
      streamTextEvents += counts.reduce((a, b) => a + b, 0);
      return responsesPerStream * options.llmStreams;
    });
    const streamResponses = responsesPerStream * options.llmStreams * options.llmRounds;
    const streamCpuUs = quantile(streamBlocks, 0.5);
    console.log(
      `streamed qwen3: ${options.llmRounds} × ${options.llmStreams} concurrent streams of ${reply.length} characters, ${streamResponses} responses ` +
        `(${streamTextEvents} text events) in ${fmt((performance.now() - llmWall0) / 1000, 2)} s; client CPU ${fmt(streamCpuUs, 1)} µs/response ${range(streamBlocks, 1)}`,
    );
    if (streamTextEvents < streamResponses * 0.8) problems.push(`qwen3 streams: only ${streamTextEvents} text events for ${streamResponses} responses`);

    // Streamed: tts audio chunks (160 ms of 22.05 kHz FP32 each), decoded and converted to PCM16.
    const tts = new TritonTts(client, { chunkDeadlineMs: 10_000 });
    const paragraph = longReply(600).split(/(?<=\.)\s+/);
    const runTts = async (): Promise<number> => {
      const controller = new AbortController();
      async function* text(): AsyncGenerator<string> {
        yield* paragraph;
      }
      let chunks = 0;
      for await (const chunk of tts.synthesize({ callId: 'bench', text: text(), signal: controller.signal })) if (chunk.pcm.length > 0) chunks++;
      return chunks;
    };
    await runTts(); // warm-up
    let ttsChunks = 0;
    const ttsBlocks = await cpuBlocks(options.ttsStreams, async () => {
      const chunks = await runTts();
      ttsChunks += chunks;
      return chunks;
    });
    const ttsChunkCpuUs = quantile(ttsBlocks, 0.5);
    console.log(`streamed tts: ${options.ttsStreams} replies, ${ttsChunks} audio chunks of 160 ms; client CPU ${fmt(ttsChunkCpuUs, 0)} µs/chunk ${range(ttsBlocks)}`);
    return { unaryCpuUs, bareCpuUs, unaryRtt, streamCpuUs, streamResponses, streamTextEvents, ttsChunkCpuUs, ttsChunks };
  } finally {
    client.close();
    await standIn.stop();
  }
}

// ── part 2: server-added latency of a whole turn, stand-in in this process ───────────────────────

/** What the scripted qwen3 answers: unique per turn (the transcript names an order number). */
function replyFor(prompt: string): string {
  const numbers = [...lastUserMessage(prompt).matchAll(/order (\d+)/g)];
  const n = numbers.at(-1)?.[1] ?? '0';
  return `Order ${n} is on its way. Anything else?`;
}

/**
 * The reply's first speakable segment and the 1-based index of the qwen3 response that completes
 * it, as the server sees the stream (TritonLlm's parser, then the session's SentenceChunker).
 */
function firstSegment(reply: string): { text: string; completingResponse: number; textEndResponse: number } | undefined {
  const parser = new Qwen3StreamParser();
  const chunker = new SentenceChunker();
  const pieces = [...tokenPieces(reply), '']; // the stand-in ends with the empty EOS delta
  const textEnd = (segment: string): number => {
    let text = '';
    for (const [i, piece] of pieces.entries()) if ((text += piece).includes(segment)) return i + 1;
    return pieces.length;
  };
  for (const [i, piece] of pieces.entries()) {
    const last = i === pieces.length - 1;
    const events = [...(piece !== '' ? parser.push(piece) : []), ...(last ? parser.end() : [])];
    const segments: string[] = [];
    for (const event of events) if (event.type === 'text') segments.push(...chunker.push(event.delta));
    if (last) segments.push(...chunker.flush());
    if (segments.length > 0) return { text: segments[0]!, completingResponse: i + 1, textEndResponse: textEnd(segments[0]!) };
  }
  return undefined;
}

interface Seen {
  request: ObservedRequest;
  /** performance.now() at the stand-in's 'request' event. */
  at: number;
  /** performance.now() of each response written, in order. */
  responses: number[];
}

function nearestAfter(list: readonly Seen[], t: number, pick: (s: Seen) => boolean): Seen | undefined {
  return list.find((s) => s.at >= t && pick(s));
}

async function measureTurns(options: Required<TritonBenchOptions>, problems: string[]): Promise<TritonTurnFigures[]> {
  const totalTurns = options.calls * options.turnsPerCall;
  const standIn: TritonStandIn = await startTritonStandIn({
    // Across the stand-in, the n-th utterance is heard as "where is order n": each turn's prompt,
    // reply and first segment are unique, so stand-in requests map to turns without guessing.
    recognizer: { scripted: Array.from({ length: totalTurns * 3 + 10 }, (_, i) => `where is order ${i + 1}`), per: 'server', msPerWord: 200 },
    llm: { reply: replyFor, firstTokenDelayMs: 150, tokensPerSecond: 50 },
    tts: { firstAudioDelayMs: 100 },
  });
  const seen: Seen[] = [];
  const byRequest = new Map<ObservedRequest, Seen>();
  standIn.events.on('request', (request) => {
    if (request.model === 'silero_vad') return;
    const entry: Seen = { request, at: performance.now(), responses: [] };
    seen.push(entry);
    byRequest.set(request, entry);
  });
  standIn.events.on('response', ({ request }) => {
    const entry = byRequest.get(request);
    if (entry !== undefined) entry.responses.push(performance.now());
  });

  let server: RunningServer | undefined;
  // How long the shared event loop (server, stand-in, callers) was held up while the calls ran.
  const loopDelay = monitorEventLoopDelay({ resolution: 1 });
  const gcPauses: Array<{ start: number; end: number; major: boolean }> = [];
  let machine0 = machineCpu();
  let cpu0 = process.cpuUsage();
  let wall0 = performance.now();
  let busy = NaN;
  let heapAtStartMb = NaN;
  const harness: number[] = [];
  const stalls: Array<{ start: number; end: number }> = [];
  let stallSampler: NodeJS.Timeout | undefined;
  let ownCores = NaN;
  const gcObserver = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const kind = (entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind;
      gcPauses.push({ start: entry.startTime, end: entry.startTime + entry.duration, major: kind === constants.NODE_PERFORMANCE_GC_MAJOR });
    }
  });
  const sessions = new Map<string, CallSession>();
  const results: Array<{ label: string; turns: number; result?: CallResult; error?: string }> = [];
  try {
    server = await startVoiceServer({
      AGENT_SCRIPT: 'test/fixtures/agents',
      VAD_ENGINE: 'triton',
      ASR_ENGINE: 'triton',
      LLM_ENGINE: 'triton',
      TTS_ENGINE: 'triton',
      TRITON_URL: standIn.url,
      LOG_LEVEL: process.env['BENCH_LOG_LEVEL'] ?? 'silent',
    });
    const running = server;
    const unsubscribe = running.sessions.onStarted((session) => sessions.set(session.callId, session));
    const clips = [await phoneSpeech(RECORDINGS.illDisposed), await phoneSpeech(RECORDINGS.amiable)];
    // The greeting (~1.5 s) plays first; each utterance (3–3.3 s) gets a reply of ~2.5 s before the
    // next one starts TURN_EVERY_MS after it.
    const starts = Array.from({ length: options.turnsPerCall }, (_, k) => FIRST_UTTERANCE_MS + k * TURN_EVERY_MS);
    const clipsAt = starts.map((at, k): [number, Int16Array] => [at, clips[k % clips.length]!]);
    // Every call's audio runs on in silence until the same moment, after the last call's last turn,
    // so the callers' wrap-up (building their result timelines) comes after all measured turns.
    const lastDelayMs = WARM_UP_LEAD_MS + (options.calls - 1) * options.staggerMs;
    const audioUntilMs = lastDelayMs + starts.at(-1)! + 5500;
    // The first turn after the server starts runs cold code (prompt rendering, the qwen3 stream, the
    // encoder…) and is several ms slower: a one-turn call ahead of the measured ones takes that hit,
    // its turn shown but left out of the figures. Its turn comes WARM_UP_LEAD_MS before the first
    // measured one, so its stand-in work (espeak-ng spawns) is over by then.
    const plan = [
      { label: 'warm-up', audio: timeline(audioUntilMs, [[FIRST_UTTERANCE_MS, clips[0]!]]), delayMs: 0, turns: 1 },
      ...Array.from({ length: options.calls }, (_, c) => {
        const delayMs = WARM_UP_LEAD_MS + c * options.staggerMs;
        return { label: `call ${c + 1}`, audio: timeline(audioUntilMs - delayMs, clipsAt), delayMs, turns: options.turnsPerCall };
      }),
    ];
    loopDelay.enable();
    gcObserver.observe({ entryTypes: ['gc'] });
    // A 2 ms ticker: a tick ≥ STALL_MS late means the loop was held that long, and when.
    let expected = performance.now() + 2;
    stallSampler = setInterval(() => {
      const now = performance.now();
      if (now - expected >= STALL_MS) stalls.push({ start: expected, end: now });
      expected = now + 2;
    }, 2);
    heapAtStartMb = process.memoryUsage().heapUsed / 1e6;
    machine0 = machineCpu();
    cpu0 = process.cpuUsage();
    wall0 = performance.now();
    try {
      await Promise.all(
        plan.map(async ({ label, audio: callAudio, delayMs, turns }) => {
          await sleep(delayMs);
          // The caller's own setup (webhook, µ-law encoding of its whole audio) and wrap-up (the
          // result's timelines) run on this loop too: noted, to tell them from the server's work.
          harness.push(performance.now());
          try {
            results.push({ label, turns, result: await placeCall({ url: running.url, authToken: TEST_AUTH_TOKEN, audio: callAudio, idleHangUpMs: 1500 }) });
          } catch (error) {
            results.push({ label, turns, error: (error as Error).message });
          } finally {
            harness.push(performance.now());
          }
        }),
      );
    } finally {
      loopDelay.disable();
      clearInterval(stallSampler);
      gcObserver.disconnect();
      busy = machineBusyFraction(machine0, machineCpu());
      ownCores = cpuUsSince(cpu0) / 1000 / (performance.now() - wall0);
      unsubscribe();
    }
  } finally {
    await server?.close();
    await standIn.stop();
  }

  // On a small machine anything else running (another test run, a build) shows up as stalls here.
  console.log(
    `machine busy while the calls ran: ${fmt(busy * 100, 0)}% of ${cpus().length} cores ` +
      `(this process — server, stand-in, callers — ${fmt(ownCores * 100, 0)}% of one core; the rest: espeak-ng, ASR workers, anything else running)`,
  );
  console.log(
    `event loop delay while the calls ran (resolution 1 ms): p50 ${fmt(loopDelay.percentile(50) / 1e6, 1)} ms, ` +
      `p99 ${fmt(loopDelay.percentile(99) / 1e6, 1)} ms, max ${fmt(loopDelay.max / 1e6, 1)} ms; ` +
      `GC: ${gcPauses.length} pauses (${gcPauses.filter((gc) => gc.major).length} major), ${fmt(gcPauses.reduce((sum, gc) => sum + gc.end - gc.start, 0), 0)} ms in all, ` +
      `longest ${fmt(Math.max(0, ...gcPauses.map((gc) => gc.end - gc.start)), 1)} ms; heap used at the start ${fmt(heapAtStartMb, 0)} MB`,
  );
  const llmSeen = seen.filter((s) => s.request.model === 'qwen3');
  const ttsSeen = seen.filter((s) => s.request.model === 'tts');
  // What held the loop: an espeak-ng spawn right after a tts request, a GC pause, a caller
  // starting or ending — or none of those.
  const cause = (stall: { start: number; end: number }): string =>
    ttsSeen.some((t) => t.at >= stall.start - 3 && t.at <= stall.end)
      ? 'espeak-ng spawn'
      : gcPauses.some((gc) => gc.end >= stall.start - 2 && gc.start <= stall.end)
        ? 'GC'
        : harness.some((h) => h >= stall.start - 25 && h <= stall.end + 25)
          ? 'caller start/end'
          : 'other';
  const causes = new Map<string, number>();
  for (const stall of stalls) causes.set(cause(stall), (causes.get(cause(stall)) ?? 0) + 1);
  console.log(
    `loop stalls ≥ ${STALL_MS} ms while the calls ran: ${stalls.length}` +
      (stalls.length > 0 ? ` (${[...causes].map(([what, n]) => `${n} ${what}`).join(', ')}; longest ${fmt(Math.max(...stalls.map((x) => x.end - x.start)), 1)} ms)` : ''),
  );
  const turns: TritonTurnFigures[] = [];
  const asrEnds = seen.filter((s) => s.request.model === 'parakeet_tdt' && s.request.asr?.end === true);
  const order = (label: string): number => (label === 'warm-up' ? 0 : Number(label.replace(/\D/g, '')));
  for (const { label, turns: expectedTurns, result, error } of results.sort((a, b) => order(a.label) - order(b.label))) {
    if (error !== undefined || result === undefined) {
      problems.push(`${label}: call failed: ${error ?? 'no result'}`);
      continue;
    }
    if (result.violations.length > 0) problems.push(`${label}: protocol: ${result.violations.slice(0, 3).join('; ')}`);
    const session = sessions.get(result.callSid);
    if (session === undefined) {
      problems.push(`${label}: no session`);
      continue;
    }
    if (session.degradation !== undefined) problems.push(`${label}: degraded: ${session.degradation}`);
    if (session.turns.length !== expectedTurns) problems.push(`${label}: ${session.turns.length} of ${expectedTurns} turns recorded`);
    for (const [k, turn] of session.turns.entries()) {
      const warmUp = label === 'warm-up';
      const turnLabel = warmUp ? 'warm-up (left out)' : `${label} turn ${k + 1}`;
      const figures = turnFigures(turnLabel, turn, result.callSid, { llmSeen, ttsSeen, asrEnds, gcPauses, harness, stalls }, problems);
      if (figures !== undefined) turns.push({ ...figures, warmUp });
    }
  }
  return turns;
}

function turnFigures(
  label: string,
  turn: TurnRecord,
  callId: string,
  seen: {
    llmSeen: Seen[];
    ttsSeen: Seen[];
    asrEnds: Seen[];
    gcPauses: ReadonlyArray<{ start: number; end: number }>;
    harness: readonly number[];
    stalls: ReadonlyArray<{ start: number; end: number }>;
  },
  problems: string[],
): TritonTurnFigures | undefined {
  const { turnDecidedAt: decided, asrFinalAt, llmRequestAt, firstFrameSentAt } = turn;
  if (decided === undefined || asrFinalAt === undefined || llmRequestAt === undefined || firstFrameSentAt === undefined) {
    problems.push(`${label}: incomplete turn record (${JSON.stringify({ decided, asrFinalAt, llmRequestAt, firstFrameSentAt })})`);
    return undefined;
  }
  const llm = nearestAfter(seen.llmSeen, llmRequestAt, (s) => s.request.llm !== undefined && lastUserMessage(s.request.llm.prompt) === turn.userText);
  if (llm === undefined) {
    problems.push(`${label}: no qwen3 request at the stand-in for "${turn.userText}"`);
    return undefined;
  }
  const segment = firstSegment(replyFor(llm.request.llm!.prompt));
  const completingAt = segment === undefined ? undefined : llm.responses[segment.completingResponse - 1];
  const textEndAt = segment === undefined ? undefined : llm.responses[segment.textEndResponse - 1];
  const tts = segment === undefined ? undefined : nearestAfter(seen.ttsSeen, llm.at, (s) => s.request.tts?.text === segment.text);
  const ttsAudioAt = tts?.responses[0];
  if (completingAt === undefined || tts === undefined || ttsAudioAt === undefined) {
    problems.push(`${label}: could not follow the reply's first segment through the stand-in (${segment?.text ?? 'no segment'})`);
    return undefined;
  }
  // The stand-in writes the audio espeak-ng already produced in one burst once the first-audio
  // delay is over; the client then receives and decodes the burst before the first chunk moves on.
  const burst = tts.responses.filter((t) => t - ttsAudioAt < 1).length;
  const burstMs = (tts.responses[burst - 1] ?? ttsAudioAt) - ttsAudioAt;
  const asrEnd = nearestAfter(seen.asrEnds, decided, (s) => s.request.asr?.sequenceId === callId);
  const ready = Math.max(decided, asrFinalAt);
  const decisionToLlm = llm.at - ready;
  const tokenToTts = tts.at - completingAt;
  const audioToFrame = firstFrameSentAt - ttsAudioAt;
  const rel = (t: number | undefined): number | undefined => (t === undefined ? undefined : t - decided);
  // What else held the shared loop inside the three measured hops: GC pauses, other tts requests
  // (each spawns espeak-ng in the stand-in, a fork of this process: ~10 ms), callers starting or
  // wrapping up.
  const hops: Array<[number, number]> = [[ready, llm.at], [completingAt, tts.at], [ttsAudioAt, firstFrameSentAt]];
  const overlapMs = (spans: ReadonlyArray<{ start: number; end: number }>): number =>
    spans.reduce((sum, span) => sum + hops.reduce((inner, [from, to]) => inner + Math.max(0, Math.min(to, span.end) - Math.max(from, span.start)), 0), 0);
  const gcMs = overlapMs(seen.gcPauses);
  const stalledMs = overlapMs(seen.stalls);
  const others =
    seen.ttsSeen.filter((s) => s !== tts && hops.some(([from, to]) => s.at >= from - 20 && s.at <= to)).length +
    seen.harness.filter((t) => hops.some(([from, to]) => t >= from - 50 && t <= to + 50)).length;
  return {
    label,
    decisionToLlm,
    decisionToLlmSession: llmRequestAt - ready,
    tokenToTts,
    audioToFrame,
    total: decisionToLlm + tokenToTts + audioToFrame,
    warmUp: false,
    ttsBurst: burst,
    ttsBurstMs: burstMs,
    gcMs,
    stalledMs,
    others,
    waterfall: {
      speechEnd: rel(turn.speechEndAt),
      asrEndAtTriton: rel(asrEnd?.at),
      asrFinalWritten: rel(asrEnd?.responses.at(-1)),
      asrFinal: rel(asrFinalAt),
      llmRequest: rel(llmRequestAt),
      llmAtTriton: rel(llm.at),
      llmFirstWritten: rel(llm.responses[0]),
      llmFirstToken: rel(turn.llmFirstTokenAt),
      segmentTextWritten: rel(textEndAt),
      segmentTokenWritten: rel(completingAt),
      firstSegmentToTts: rel(turn.firstSegmentToTtsAt),
      ttsAtTriton: rel(tts.at),
      ttsAudioWritten: rel(ttsAudioAt),
      ttsFirstAudio: rel(turn.ttsFirstAudioAt),
      firstFrameSent: rel(firstFrameSentAt),
    },
  };
}

// ── the whole bench ───────────────────────────────────────────────────────────────────────────────

const DEFAULTS: Required<TritonBenchOptions> = {
  unaryRequests: 2000,
  llmStreams: 4,
  llmRounds: 3,
  replyChars: 4000,
  ttsStreams: 3,
  // 20 turns: the smallest count whose nearest-rank p95 is not simply the maximum.
  calls: 5,
  turnsPerCall: 4,
  // Turns come every 7 s in each call, the first ~6.7 s after the call starts: starts 1.4 s apart
  // put the 5 calls' turns (decision → first frame, ~0.45 s) ≥ 1 s apart from each other and from
  // every call's start, so one call's stand-in work — above all espeak-ng's spawn, which forks this
  // whole process and holds the shared event loop ~10 ms — and the callers' own setup do not land
  // in another call's measured hops. The calls still overlap (VAD batches, ASR audio, playout).
  staggerMs: 1400,
};

export const QUICK_TRITON_OPTIONS: TritonBenchOptions = { unaryRequests: 1000, llmStreams: 4, llmRounds: 3, replyChars: 1500, ttsStreams: 3, calls: 3, turnsPerCall: 2 };

function stat(values: number[]): string[] {
  return [String(values.length), fmt(quantile(values, 0.5), 1), fmt(quantile(values, 0.95), 1), fmt(values.length > 0 ? Math.max(...values) : NaN, 1)];
}

export async function runTritonBench(options: TritonBenchOptions = {}): Promise<TritonBenchResult> {
  const o: Required<TritonBenchOptions> = { ...DEFAULTS, ...options };
  o.turnsPerCall = Math.max(1, Math.min(4, Math.round(o.turnsPerCall)));
  const problems: string[] = [];

  console.log('\n== Triton client overhead (stand-in in a child process; CPU of this process only) ==');
  const overhead = await measureClientOverhead(o, problems);

  console.log(
    `\n== Server-added latency of a turn on Triton (stand-in in-process: qwen3 first token 150 ms then 50 tok/s, tts first audio +100 ms; ` +
      `${o.calls} calls × ${o.turnsPerCall} turns, starts ${o.staggerMs} ms apart) ==`,
  );
  const allTurns = await measureTurns(o, problems);
  const turns = allTurns.filter((t) => !t.warmUp);

  const columns = [
    'speechEnd', 'asrEndAtTriton', 'asrFinalWritten', 'asrFinal', 'llmRequest', 'llmAtTriton', 'llmFirstWritten', 'llmFirstToken',
    'segmentTokenWritten', 'firstSegmentToTts', 'ttsAtTriton', 'ttsAudioWritten', 'ttsFirstAudio', 'firstFrameSent',
  ];
  console.log(
    '\nwaterfall per turn, ms after the turn decision (…Written / …AtTriton: at the stand-in; the rest: the session\'s TurnRecord); ' +
      `"stalled": ms of a, b, c during which the loop was held ≥ ${STALL_MS} ms at a stretch (by anything); "gc": GC pause ms inside a, b, c; ` +
      '"other work": other tts requests (espeak-ng spawns, ~10 ms each) and callers starting/ending in or near them',
  );
  printTable(
    ['turn', ...columns, 'a', 'b', 'c', 'total', 'stalled', 'gc', 'other work'],
    allTurns.map((t) => [
      t.label,
      ...columns.map((c) => fmt(t.waterfall[c] ?? NaN, 1)),
      fmt(t.decisionToLlm, 1),
      fmt(t.tokenToTts, 1),
      fmt(t.audioToFrame, 1),
      fmt(t.total, 1),
      fmt(t.stalledMs, 1),
      fmt(t.gcMs, 1),
      String(t.others),
    ]),
  );
  const diff = (from: string, to: string): number[] =>
    turns.flatMap((t) => {
      const a = t.waterfall[from];
      const b = t.waterfall[to];
      return a === undefined || b === undefined ? [] : [b - a];
    });
  const a = turns.map((t) => t.decisionToLlm);
  const b = turns.map((t) => t.tokenToTts);
  const c = turns.map((t) => t.audioToFrame);
  const total = turns.map((t) => t.total);
  console.log('');
  printTable(
    ['server-added (ms)', 'n', 'p50', 'p95', 'max'],
    [
      ['(a) turn decision/ASR final → LLM request at Triton', ...stat(a)],
      ['    … → llmRequestAt (session, before prompt render + send)', ...stat(turns.map((t) => t.decisionToLlmSession))],
      ['(b) LLM token completing segment 1 → TTS request at Triton', ...stat(b)],
      ['    token written → firstSegmentToTtsAt (session)', ...stat(diff('segmentTokenWritten', 'firstSegmentToTts'))],
      ['    firstSegmentToTtsAt → TTS request at Triton', ...stat(diff('firstSegmentToTts', 'ttsAtTriton'))],
      ['(c) TTS first audio written → first frame sent', ...stat(c)],
      ['    audio written → ttsFirstAudioAt (session)', ...stat(diff('ttsAudioWritten', 'ttsFirstAudio'))],
      ['    ttsFirstAudioAt → first frame sent (encode, queue, pacing, send)', ...stat(diff('ttsFirstAudio', 'firstFrameSent'))],
      ['total a + b + c', ...stat(total)],
      ['info: total, turns whose hops saw no stall, GC pause or other work', ...stat(turns.filter((t) => t.stalledMs === 0 && t.gcMs === 0 && t.others === 0).map((t) => t.total))],
      ['info: tts responses written within 1 ms of the first audio (count)', ...stat(turns.map((t) => t.ttsBurst))],
      ['info: … the stand-in writing that burst (inside c, not the server)', ...stat(turns.map((t) => t.ttsBurstMs))],
      ['info: turn decision → ASR END request at Triton', ...stat(turns.flatMap((t) => (t.waterfall['asrEndAtTriton'] === undefined ? [] : [t.waterfall['asrEndAtTriton']])))],
      ['info: ASR final written → asrFinalAt (session)', ...stat(diff('asrFinalWritten', 'asrFinal'))],
      ['info: qwen3 first response written → llmFirstTokenAt', ...stat(diff('llmFirstWritten', 'llmFirstToken'))],
      ['model time: LLM at Triton → segment token written', ...stat(diff('llmAtTriton', 'segmentTokenWritten'))],
      ['model pace: segment 1 text complete → the token that lets the chunker cut it', ...stat(diff('segmentTextWritten', 'segmentTokenWritten'))],
      ['model time: TTS at Triton → first audio written', ...stat(diff('ttsAtTriton', 'ttsAudioWritten'))],
    ],
  );
  if (problems.length > 0) {
    console.log(`problems (${problems.length}):`);
    for (const problem of problems.slice(0, 10)) console.log(`  ${problem}`);
  }

  const p95 = (values: number[]): string => `${fmt(quantile(values, 0.5), 1)} / ${fmt(quantile(values, 0.95), 1)} ms`;
  const totalP95 = quantile(total, 0.95);
  // Nearest rank: below 20 turns the p95 is the slowest turn.
  const n = total.length < 20 ? `n=${total.length}: p95 = the slowest turn` : `n=${total.length}`;
  const summary: SummaryRow[] = [
    row('Triton client CPU per unary request (µs)', `${fmt(overhead.unaryCpuUs, 0)} µs (silero_vad batch 8; empty call ${fmt(overhead.bareCpuUs, 0)} µs; round trip p50 ${fmt(quantile(overhead.unaryRtt, 0.5), 2)} ms)`),
    row('Triton client CPU per streamed response (µs)', `${fmt(overhead.streamCpuUs, 1)} µs (qwen3 token; tts 160 ms chunk: ${fmt(overhead.ttsChunkCpuUs, 0)} µs)`),
    row('Triton turn, server-added: decision→LLM request p50 / p95', p95(a)),
    row('Triton turn, server-added: LLM token→TTS request p50 / p95', p95(b)),
    row('Triton turn, server-added: TTS audio→first frame p50 / p95', p95(c)),
    row('Triton turn, server-added: total p50 / p95', `${p95(total)} (${n})`, `p95 ≤ ${TARGET_TOTAL_P95_MS} ms`, total.length > 0 && totalP95 <= TARGET_TOTAL_P95_MS),
  ];
  return {
    unaryCpuUs: overhead.unaryCpuUs,
    unaryRtt: overhead.unaryRtt,
    streamCpuUs: overhead.streamCpuUs,
    ttsChunkCpuUs: overhead.ttsChunkCpuUs,
    turns: allTurns,
    problems,
    summary,
  };
}

if (isMain(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      unary: { type: 'string' },
      calls: { type: 'string' },
      turns: { type: 'string' },
    },
  });
  const options: TritonBenchOptions = {
    ...(values.quick ? QUICK_TRITON_OPTIONS : {}),
    ...(values.unary !== undefined ? { unaryRequests: Number(values.unary) } : {}),
    ...(values.calls !== undefined ? { calls: Number(values.calls) } : {}),
    ...(values.turns !== undefined ? { turnsPerCall: Number(values.turns) } : {}),
  };
  watchdog(values.quick ? 90 : 180, 'bench/triton.ts');
  const result = await runTritonBench(options);
  printSummary('SUMMARY', result.summary);
  process.exit(0);
}
