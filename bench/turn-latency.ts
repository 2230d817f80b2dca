/**
 * Turn latency on real speech (Debian's pocketsphinx-testdata recordings at 8 kHz, µ-law round trip),
 * with the real server on the real local engines and Twilio-exact callers (bench/speech-caller.ts), a
 * few calls at a time. The agent is the e2e fixture script: its fallback reply is ~10 s long, so a
 * second utterance started 3 s into that reply interrupts it.
 *
 * Each call: the greeting plays out; utterance 1; the fallback reply; 1.2 s after the reply's first
 * frame arrived, a backchannel ("yeah", espeak-ng); 3 s after it, utterance 2 (the barge-in); the
 * reply to utterance 2; hang-up. Clips are started on the fly, so they land inside the reply however
 * long recognition took.
 *
 * (a) Barge-in reaction: the caller's speech onset (the send time of the first 20 ms frame of the
 *     interrupting clip whose energy is clearly speech, > −35 dBFS) → the first `clear` the caller
 *     receives after the clip started. Split on the shared monotonic clock (callers and server share
 *     this process) into onset → server `speech_onset` (VAD), → `clear_sent`, → arrival at the caller.
 * (b) Server-added latency per turn: `turnDecidedAt` → `firstFrameSentAt`, with the waterfall
 *     (ASR final, LLM first token, TTS first audio) relative to the turn decision; and the caller's
 *     response latency: end of caller speech (send time of the clip's last frame > −35 dBFS) → the
 *     first reply media frame received.
 * (c) Backchannel: how long the agent is silent for the caller's "yeah" (the first `clear` received
 *     after the clip started → the next media frame), and in how many calls the reply went on rather
 *     than being interrupted (BACKCHANNEL_MAX_MS).
 *
 *   npx tsx bench/turn-latency.ts [--rounds 3] [--concurrent 4] [--stagger-ms 1200]
 *   VAD_BATCH_WINDOW_MS=0 npx tsx bench/turn-latency.ts …   (compare VAD batch windows)
 */
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import type { CallSession, SessionEvent } from '../src/agent/call-session.js';
import { phoneSpeech, RECORDINGS, spokenWords } from '../test/helpers/speech.js';
import { startVoiceServer, TEST_AUTH_TOKEN, type RunningServer } from '../test/helpers/voice-test-server.js';
import { cpus } from 'node:os';
import { fmt, isMain, machineBusyFraction, machineCpu, printTable, processCpuMs, quantile, row, sleep, type SummaryRow } from './common.js';
import { SpeechCaller } from './speech-caller.js';

const SPEECH_DBFS = -35;
const INTO_REPLY_MS = 3000;
const BACKCHANNEL_INTO_REPLY_MS = 1200;

interface Clip {
  name: string;
  pcm: Int16Array;
  /** First / last 20 ms frame with energy above SPEECH_DBFS. */
  onsetFrame: number;
  lastFrame: number;
}

type TimedEvent = SessionEvent & { at: number };

interface CallOutcome {
  label: string;
  second: Clip;
  caller: SpeechCaller;
  session: CallSession | undefined;
  events: TimedEvent[];
  problems: string[];
  /** Caller times (ms since its stream start). */
  end1?: number;
  reply1?: number;
  clip2Start?: number;
  onset?: number;
  end2?: number;
  reply2?: number;
  playingAtBargeIn?: boolean;
  backchannelStart?: number;
  backchannelEnd?: number;
}

export interface TurnLatencyResult {
  bargeIn: number[];
  /** Barge-in reaction by interrupting clip. */
  bargeInByClip: Record<string, number[]>;
  bargeInDetect: number[];
  bargeInServer: number[];
  bargeInDelivery: number[];
  decidedToFirstFrame: number[];
  asrFinal: number[];
  llmFirstToken: number[];
  ttsFirstAudio: number[];
  speechEndToDecided: number[];
  callerResponse: number[];
  /** How long the agent was silent for the caller's "yeah" (clear received → next media frame). */
  backchannelSilence: number[];
  /** Calls whose reply went on after the "yeah", of those that played it. */
  backchannelResumed: number;
  backchannelCalls: number;
  problems: string[];
  summary: SummaryRow[];
}

export interface TurnLatencyOptions {
  rounds?: number;
  concurrent?: number;
  /** Delay between the starts of a round's calls, so their turns do not all line up. */
  staggerMs?: number;
  /** The server's ASR_WORKERS (pocketsphinx processes); default: the server's own default (4). */
  asrWorkers?: number;
}

function frameDb(pcm: Int16Array, frame: number): number {
  let sum = 0;
  const start = frame * 160;
  const end = Math.min(pcm.length, start + 160);
  for (let i = start; i < end; i++) sum += ((pcm[i] ?? 0) / 32768) ** 2;
  return 10 * Math.log10(sum / 160 + 1e-12);
}

async function loadClip(name: string, path: string): Promise<Clip> {
  return clipOf(name, await phoneSpeech(path));
}

function clipOf(name: string, pcm: Int16Array): Clip {
  const frames = Math.floor(pcm.length / 160);
  let onsetFrame = -1;
  let lastFrame = -1;
  for (let f = 0; f < frames; f++) {
    if (frameDb(pcm, f) > SPEECH_DBFS) {
      if (onsetFrame < 0) onsetFrame = f;
      lastFrame = f;
    }
  }
  if (onsetFrame < 0) throw new Error(`${name}: no frame above ${SPEECH_DBFS} dBFS`);
  return { name, pcm, onsetFrame, lastFrame };
}

async function runCall(server: RunningServer, label: string, first: Clip, second: Clip, backchannel: Clip, sessions: Map<string, { session: CallSession; events: TimedEvent[] }>): Promise<CallOutcome> {
  const caller = new SpeechCaller(server.url, TEST_AUTH_TOKEN);
  const o: CallOutcome = { label, second, caller, session: undefined, events: [], problems: [] };
  const lastMedia = (): number => caller.mediaAt[caller.mediaAt.length - 1] ?? -Infinity;
  const firstMediaAfter = (t: number): number | undefined => caller.mediaAt.find((m) => m > t);
  try {
    await caller.connect();
    // The greeting plays out, then a short pause.
    if (!(await caller.waitFor(() => caller.mediaAt.length > 0, 5000))) o.problems.push('no greeting');
    await caller.waitFor(() => caller.bufferedMs === 0 && caller.now() - lastMedia() > 300, 15_000);
    await sleep(300);

    const s1 = caller.play(first.pcm);
    o.end1 = await caller.frameSent(s1 + first.lastFrame);
    const end1 = o.end1 ?? Infinity;
    if (!(await caller.waitFor(() => firstMediaAfter(end1) !== undefined, 20_000))) {
      o.problems.push('no reply to utterance 1');
      return o;
    }
    o.reply1 = firstMediaAfter(end1);
    const backchannelAt = (o.reply1 ?? 0) + BACKCHANNEL_INTO_REPLY_MS;
    await caller.waitFor(() => caller.now() >= backchannelAt, BACKCHANNEL_INTO_REPLY_MS + 1000);
    const sb = caller.play(backchannel.pcm);
    o.backchannelStart = await caller.frameSent(sb);
    o.backchannelEnd = await caller.frameSent(sb + backchannel.lastFrame);
    const bargeAt = (o.reply1 ?? 0) + INTO_REPLY_MS;
    await caller.waitFor(() => caller.now() >= bargeAt, INTO_REPLY_MS + 1000);
    o.playingAtBargeIn = caller.bufferedMs > 0;

    const s2 = caller.play(second.pcm);
    o.clip2Start = await caller.frameSent(s2);
    o.onset = await caller.frameSent(s2 + second.onsetFrame);
    o.end2 = await caller.frameSent(s2 + second.lastFrame);
    const end2 = o.end2 ?? Infinity;
    if (await caller.waitFor(() => firstMediaAfter(end2) !== undefined, 20_000)) o.reply2 = firstMediaAfter(end2);
    else o.problems.push('no reply to utterance 2');
    await sleep(300);
  } catch (error) {
    o.problems.push(`call failed: ${(error as Error).message}`);
  } finally {
    caller.hangUp();
  }
  const entry = sessions.get(caller.callSid);
  if (entry !== undefined && !entry.session.isEnded) await Promise.race([entry.session.endedPromise, sleep(5000)]);
  o.session = entry?.session;
  o.events = entry?.events ?? [];
  return o;
}

function stat(values: number[]): string[] {
  return [String(values.length), fmt(quantile(values, 0.5), 0), fmt(quantile(values, 0.95), 0), fmt(values.length ? Math.max(...values) : NaN, 0)];
}

export async function runTurnLatencyBench(options: TurnLatencyOptions = {}): Promise<TurnLatencyResult> {
  const rounds = options.rounds ?? 3;
  const concurrent = options.concurrent ?? 4;
  const staggerMs = options.staggerMs ?? 1200;
  // The server's own default unless told otherwise (--asr-workers 2: one recognizer per core, where
  // 4 talking calls queue for the recognizer and the "yeah" waits for its final).
  const asrWorkers = options.asrWorkers;
  const clips = await Promise.all([
    loadClip('illDisposed', RECORDINGS.illDisposed),
    loadClip('amiable', RECORDINGS.amiable),
    loadClip('coldHearted', RECORDINGS.coldHearted),
  ]);
  const yeah = clipOf('yeah', await spokenWords('yeah'));
  const server = await startVoiceServer({
    AGENT_SCRIPT: 'test/fixtures/agents',
    ...(asrWorkers === undefined ? {} : { ASR_WORKERS: String(asrWorkers) }),
    LOG_LEVEL: process.env['BENCH_LOG_LEVEL'] ?? 'silent',
    ...(process.env['VAD_BATCH_WINDOW_MS'] === undefined ? {} : { VAD_BATCH_WINDOW_MS: process.env['VAD_BATCH_WINDOW_MS'] }),
  });
  console.log(
    `\n== Turn latency on real speech: ${rounds} rounds × ${concurrent} concurrent calls, starts ${staggerMs} ms apart (e2e fixture agent, ASR_WORKERS=${server.config.asrWorkers}) ==`,
  );
  const sessions = new Map<string, { session: CallSession; events: TimedEvent[] }>();
  const unsubscribe = server.sessions.onStarted((session) => {
    const events: TimedEvent[] = [];
    session.onEvent((event) => events.push({ ...event, at: performance.now() }));
    sessions.set(session.callId, { session, events });
  });
  const outcomes: CallOutcome[] = [];
  const machine0 = machineCpu();
  const cpu0 = processCpuMs().usage;
  const wall0 = performance.now();
  try {
    for (let r = 0; r < rounds; r++) {
      const calls: Array<Promise<CallOutcome>> = [];
      for (let c = 0; c < concurrent; c++) {
        const first = clips[(r + c) % clips.length]!;
        const second = clips[(r + c + 1) % clips.length]!;
        const label = `round ${r + 1} call ${c + 1} (${first.name} → ${second.name})`;
        calls.push(sleep(c * staggerMs).then(() => runCall(server, label, first, second, yeah, sessions)));
      }
      outcomes.push(...(await Promise.all(calls)));
    }
  } finally {
    unsubscribe();
    await server.close();
  }
  const busy = machineBusyFraction(machine0, machineCpu());
  const ownCores = processCpuMs(cpu0).ms / (performance.now() - wall0);

  const out: TurnLatencyResult = {
    bargeIn: [],
    bargeInByClip: {},
    bargeInDetect: [],
    bargeInServer: [],
    bargeInDelivery: [],
    decidedToFirstFrame: [],
    asrFinal: [],
    llmFirstToken: [],
    ttsFirstAudio: [],
    speechEndToDecided: [],
    callerResponse: [],
    backchannelSilence: [],
    backchannelResumed: 0,
    backchannelCalls: 0,
    problems: [],
    summary: [],
  };
  for (const o of outcomes) {
    const { caller, label } = o;
    for (const problem of o.problems) out.problems.push(`${label}: ${problem}`);
    if (caller.violations.length > 0) out.problems.push(`${label}: protocol: ${caller.violations.slice(0, 3).join('; ')}`);

    // (a) barge-in
    if (o.clip2Start !== undefined && o.onset !== undefined) {
      const clip2Start = o.clip2Start;
      const onsetMs = o.onset;
      const clear = caller.clearsAt.find((t) => t >= clip2Start - 20);
      if (o.playingAtBargeIn !== true) out.problems.push(`${label}: the reply had already finished at the barge-in`);
      else if (clear === undefined) out.problems.push(`${label}: no clear after the barge-in`);
      else {
        out.bargeIn.push(clear - onsetMs);
        (out.bargeInByClip[o.second.name] ??= []).push(clear - onsetMs);
        const onset = o.events.find((e) => e.type === 'speech_onset' && e.at >= caller.t0 + clip2Start - 20);
        const sent = onset === undefined ? undefined : o.events.find((e) => e.type === 'clear_sent' && e.at >= onset.at);
        if (onset !== undefined && sent !== undefined) {
          out.bargeInDetect.push(onset.at - (caller.t0 + onsetMs));
          out.bargeInServer.push(sent.at - onset.at);
          out.bargeInDelivery.push(caller.t0 + clear - sent.at);
        }
        if (!o.events.some((e) => e.type === 'interrupted')) out.problems.push(`${label}: the reply was paused but never interrupted`);
      }
    }

    // (c) backchannel: the agent's silence for it, and whether the reply went on
    if (o.backchannelStart !== undefined && o.clip2Start !== undefined) {
      const start = o.backchannelStart;
      const clip2Start = o.clip2Start;
      out.backchannelCalls++;
      const interruptions = o.events.filter((e) => e.type === 'interrupted' && e.at < caller.t0 + clip2Start).length;
      if (interruptions === 0) out.backchannelResumed++;
      else {
        const judged = o.events.find((e): e is Extract<TimedEvent, { type: 'backchannel_judged' }> => e.type === 'backchannel_judged' && e.at >= caller.t0 + start);
        const why = judged === undefined ? 'not judged (spoke past BACKCHANNEL_MAX_MS)' : `judged${judged.text === undefined ? '' : ` ${JSON.stringify(judged.text)}`}${judged.reason === undefined ? '' : `: ${judged.reason}`}`;
        out.problems.push(`${label}: the "yeah" interrupted the reply (${why})`);
      }
      const clear = caller.clearsAt.find((t) => t >= start - 20 && t < clip2Start);
      const resumed = clear === undefined ? undefined : caller.mediaAt.find((t) => t > clear);
      if (interruptions === 0 && clear !== undefined && resumed !== undefined && resumed < clip2Start) out.backchannelSilence.push(resumed - clear);
    }

    // (b) caller-side response latency
    if (o.end1 !== undefined && o.reply1 !== undefined) out.callerResponse.push(o.reply1 - o.end1);
    if (o.end2 !== undefined && o.reply2 !== undefined) out.callerResponse.push(o.reply2 - o.end2);

    // (b) server waterfall
    for (const turn of o.session?.turns ?? []) {
      const base = turn.turnDecidedAt;
      if (base === undefined || turn.firstFrameSentAt === undefined) continue;
      out.decidedToFirstFrame.push(turn.firstFrameSentAt - base);
      if (turn.asrFinalAt !== undefined) out.asrFinal.push(turn.asrFinalAt - base);
      if (turn.llmFirstTokenAt !== undefined) out.llmFirstToken.push(turn.llmFirstTokenAt - base);
      if (turn.ttsFirstAudioAt !== undefined) out.ttsFirstAudio.push(turn.ttsFirstAudioAt - base);
      if (turn.speechEndAt !== undefined) out.speechEndToDecided.push(base - turn.speechEndAt);
    }
    const turns = o.session?.turns.length ?? 0;
    if (turns < 2) out.problems.push(`${label}: the server recorded ${turns} of 2 caller turns`);
  }

  console.log('');
  printTable(
    ['figure (ms)', 'n', 'p50', 'p95', 'max'],
    [
      ['barge-in: caller speech onset → first clear received', ...stat(out.bargeIn)],
      ['  onset frame sent → server speech_onset (VAD)', ...stat(out.bargeInDetect)],
      ['  speech_onset → clear sent', ...stat(out.bargeInServer)],
      ['  clear sent → received by the caller', ...stat(out.bargeInDelivery)],
      ['server: speech end → turn decided (endpointing)', ...stat(out.speechEndToDecided)],
      ['server: turn decided → first frame sent', ...stat(out.decidedToFirstFrame)],
      ['  turn decided → ASR final', ...stat(out.asrFinal)],
      ['  turn decided → LLM first token', ...stat(out.llmFirstToken)],
      ['  turn decided → TTS first audio', ...stat(out.ttsFirstAudio)],
      ['caller: end of speech → first reply frame received', ...stat(out.callerResponse)],
      ['backchannel "yeah": agent silent (clear → next frame)', ...stat(out.backchannelSilence)],
    ],
  );
  console.log(
    `backchannel: the reply went on in ${out.backchannelResumed} of ${out.backchannelCalls} calls ("yeah" clip ${fmt(yeah.pcm.length / 8, 0)} ms, ` +
      `speech ${fmt((yeah.lastFrame - yeah.onsetFrame + 1) * 20, 0)} ms)`,
  );
  console.log(
    `machine busy during the calls: ${fmt(busy * 100, 0)}% of ${cpus().length} cores (this process — server and callers — ${fmt(ownCores * 100, 0)}% of one core; ` +
      `the rest is ASR/TTS processes and anything else running)`,
  );
  console.log(
    `barge-in by interrupting clip (ms): ${Object.entries(out.bargeInByClip)
      .map(([name, values]) => `${name} [${values.map((v) => v.toFixed(0)).join(', ')}]`)
      .join('; ')}`,
  );
  if (out.problems.length > 0) {
    console.log(`problems (${out.problems.length}):`);
    for (const problem of out.problems.slice(0, 8)) console.log(`  ${problem}`);
  }

  const p50p95 = (values: number[]): string => `${fmt(quantile(values, 0.5), 0)} / ${fmt(quantile(values, 0.95), 0)} ms`;
  const p95Barge = quantile(out.bargeIn, 0.95);
  out.summary.push(
    row('barge-in: caller onset → clear received, p50 / p95', `${p50p95(out.bargeIn)} (n=${out.bargeIn.length})`, 'p95 ≤ 150 ms', out.bargeIn.length > 0 && p95Barge <= 150),
    row('  of which onset → server speech_onset (VAD), p50 / p95', p50p95(out.bargeInDetect)),
    row('server: turn decided → first frame sent, p50 / p95', `${p50p95(out.decidedToFirstFrame)} (n=${out.decidedToFirstFrame.length})`),
    row('  decided → ASR final, p50 / p95', p50p95(out.asrFinal)),
    row('  decided → LLM first token, p50 / p95', p50p95(out.llmFirstToken)),
    row('  decided → TTS first audio, p50 / p95', p50p95(out.ttsFirstAudio)),
    row(
      'backchannel "yeah" during a reply: agent silent (clear → next frame), p50 / p95',
      `${p50p95(out.backchannelSilence)}; the reply went on in ${out.backchannelResumed} of ${out.backchannelCalls} calls`,
    ),
    row('caller: end of speech → first reply frame, p50 / p95', `${p50p95(out.callerResponse)} (n=${out.callerResponse.length}; incl. ${fmt(quantile(out.speechEndToDecided, 0.5), 0)} ms endpointing)`),
  );
  return out;
}

if (isMain(import.meta.url)) {
  const { values } = parseArgs({
    options: { rounds: { type: 'string', default: '3' }, concurrent: { type: 'string', default: '4' }, 'stagger-ms': { type: 'string', default: '1200' }, 'asr-workers': { type: 'string' } },
  });
  await runTurnLatencyBench({ rounds: Number(values.rounds), concurrent: Number(values.concurrent), staggerMs: Number(values['stagger-ms']), ...(values['asr-workers'] === undefined ? {} : { asrWorkers: Number(values['asr-workers']) }) });
  process.exit(0);
}
