// Guards the echo guard: the agent's own voice coming back on the line is told apart from the
// caller's, at the delays and losses phone lines have, and a clean line is never held back.
import { describe, expect, it } from 'vitest';
import { EchoGuard, type EchoGuardOptions } from '../../src/agent/echo-guard.js';
import { decodeG711, encodeG711 } from '../../src/audio/g711.js';
import { phoneSpeech, RECORDINGS, timeline } from '../helpers/speech.js';

const FRAME = 160;
const CHUNK = 256;

interface LineOptions {
  /** What the agent says (8 kHz), sent from t = 0 in 20 ms frames. */
  agent: Int16Array;
  /** What the caller says (8 kHz) on the same timeline; silence if absent. */
  caller?: Int16Array;
  /** Echo delay (agent send → back on the inbound stream) and level relative to the agent; undefined: no echo. */
  echo?: { delayMs: number; gainDb: number; room?: Float32Array };
  /** Network jitter on inbound arrival times, ms (uniform 0..jitter). */
  jitterMs?: number;
  /** Agent audio is sent this far ahead of its playout (default 0). */
  leadMs?: number;
  /** The far end's buffer is cleared then: the agent stops, unplayed audio never plays (nor echoes). */
  clearAtMs?: number;
  /** Whether the guard hears of that clear (default true). */
  tellClear?: boolean;
  /** The echo stops at this time (the phone's own echo canceller settles). */
  echoEndsAtMs?: number;
  /** Ask the guard only about chunks for which this says yes (as the session asks only of chunks the VAD calls speech). */
  askIf?: (chunk: number) => boolean;
  /** The agent's audio reaches the guard as these G.711 bytes (as the session sends them) instead of PCM. */
  agentEncoding?: 'mulaw' | 'alaw';
  guard?: EchoGuardOptions;
}

/** Plays a call through the guard; returns, for each 32 ms VAD chunk, whether it was called echo. */
function playLine(options: LineOptions): { echo: boolean[]; guard: EchoGuard } {
  const guard = new EchoGuard(options.guard);
  const total = Math.max(options.agent.length, options.caller?.length ?? 0);
  const gain = options.echo === undefined ? 0 : 10 ** (options.echo.gainDb / 20);
  const delay = options.echo === undefined ? 0 : Math.round((options.echo.delayMs * 8000) / 1000);
  let seed = 7;
  const random = (): number => ((seed = (seed * 16807) % 2147483647) / 2147483647);
  const echo: boolean[] = [];
  const leadSamples = ((options.leadMs ?? 0) * 8000) / 1000;
  const clearAt = options.clearAtMs === undefined ? Infinity : (options.clearAtMs * 8000) / 1000;
  const dry = (n: number): number => (n >= 0 && n < options.agent.length && n < clearAt ? options.agent[n]! : 0);
  // A room (speakerphone): the echo is the agent convolved with its impulse response.
  const room = options.echo?.room;
  const reverberant = room === undefined ? undefined : Float32Array.from({ length: total }, (_, n) => {
    let sum = 0;
    for (let k = 0; k < room.length && k <= n; k++) sum += room[k]! * dry(n - k);
    return sum;
  });
  const played = (n: number): number => (reverberant === undefined ? dry(n) : n >= 0 ? (reverberant[n] ?? 0) : 0);
  let agentSent = 0;
  let analysed = 0;
  for (let start = 0; start + FRAME <= total; start += FRAME) {
    const nowMs = (start / 8000) * 1000;
    if (start === clearAt && options.tellClear !== false) guard.onClear(nowMs);
    while (start < clearAt && agentSent + FRAME <= Math.min(options.agent.length, start + FRAME + leadSamples)) {
      const frame = options.agent.subarray(agentSent, agentSent + FRAME);
      if (options.agentEncoding === undefined) guard.onAgentAudio(frame, nowMs);
      else guard.onAgentG711(encodeG711(options.agentEncoding, frame), options.agentEncoding, nowMs);
      agentSent += FRAME;
    }
    // The inbound frame holding samples [start, start + FRAME): the caller, the echo, line noise,
    // through µ-law as on the wire. It arrives when its last sample is spoken, plus jitter.
    const inbound = new Int16Array(FRAME);
    for (let i = 0; i < FRAME; i++) {
      const n = start + i;
      const echoed = n < ((options.echoEndsAtMs ?? Infinity) * 8000) / 1000 ? played(n - delay) * gain : 0;
      const value = (options.caller?.[n] ?? 0) + echoed + (random() - 0.5) * 20;
      inbound[i] = Math.max(-32768, Math.min(32767, Math.round(value)));
    }
    guard.onCallerAudio(decodeG711('mulaw', encodeG711('mulaw', inbound)), nowMs + 20 + random() * (options.jitterMs ?? 0));
    const received = start + FRAME;
    while (analysed + CHUNK <= received) {
      analysed += CHUNK;
      echo.push(options.askIf === undefined || options.askIf(echo.length) ? guard.isEcho(analysed, CHUNK) : false);
    }
  }
  return { echo, guard };
}

/** Chunks (32 ms) within [fromMs, toMs). */
const chunksIn = (values: boolean[], fromMs: number, toMs: number): boolean[] => values.slice(Math.ceil(fromMs / 32), Math.floor(toMs / 32));
const share = (values: boolean[]): number => values.filter(Boolean).length / Math.max(1, values.length);

async function agentSpeech(): Promise<Int16Array> {
  const [a, b] = await Promise.all([RECORDINGS.amiable, RECORDINGS.coldHearted].map(phoneSpeech));
  return timeline(9000, [[0, a!], [4500, b!]]);
}

/** Per chunk: whether `speech`, `delayMs` later, is above `thresholdDb` (dBFS over the chunk). */
function loudChunks(speech: Int16Array, delayMs: number, thresholdDb = -45): boolean[] {
  const active: boolean[] = [];
  const delay = (delayMs * 8000) / 1000;
  for (let end = CHUNK; end <= speech.length; end += CHUNK) {
    let sum = 0;
    for (let n = end - CHUNK; n < end; n++) sum += (speech[n - delay] ?? 0) ** 2;
    active.push(10 * Math.log10(sum / CHUNK / 32768 ** 2 + 1e-12) > thresholdDb);
  }
  return active;
}

describe('echo guard', () => {
  it.each([
    { delayMs: 120, gainDb: -10 },
    { delayMs: 300, gainDb: -6 },
    { delayMs: 560, gainDb: -20 },
    { delayMs: 760, gainDb: -10 },
  ])('calls the agent’s own voice echo once the path is found (delay $delayMs ms, $gainDb dB)', async (echo) => {
    const agent = await agentSpeech();
    const { echo: verdicts, guard } = playLine({ agent, echo });
    expect(guard.echoPath?.delayMs).toBeGreaterThanOrEqual(echo.delayMs - 30);
    expect(guard.echoPath?.delayMs).toBeLessThanOrEqual(echo.delayMs + 30);
    expect(guard.echoPath?.lossDb).toBeGreaterThan(-echo.gainDb - 4);
    expect(guard.echoPath?.lossDb).toBeLessThan(-echo.gainDb + 4);
    // After the first 1.5 s (the path needs agent audio to be found), every chunk where the echo is
    // audible is called echo.
    const active = loudChunks(agent, echo.delayMs);
    const audible = verdicts.filter((_, i) => i * 32 >= 1500 && active[i]);
    expect(audible.length).toBeGreaterThan(80);
    expect(share(audible)).toBe(1);
  });

  it.each([200, 760])('holds back the echo of the agent’s first words, before any path is known (delay %i ms)', async (delayMs) => {
    const agent = await agentSpeech();
    const { echo: verdicts } = playLine({ agent, echo: { delayMs, gainDb: -10 } });
    const audible = loudChunks(agent, delayMs);
    // The first second and a half of echo: a long delay's path needs more of the agent's speech to
    // be found, and echo is not ruled out before every delay has had enough of it.
    const early = verdicts.filter((_, i) => i * 32 < delayMs + 1500 && audible[i]);
    expect(early.length).toBeGreaterThan(20);
    expect(share(early)).toBe(1);
  });

  it('follows a speakerphone’s echo: coloured and with a reverberant tail (RT60 300 ms)', async () => {
    const agent = await agentSpeech();
    // Impulse response: the direct path, then decaying noise (60 dB in 300 ms); its energy is
    // normalized so the echo is 10 dB under the agent.
    let seed = 3;
    const random = (): number => ((seed = (seed * 16807) % 2147483647) / 2147483647) - 0.5;
    const room = Float32Array.from({ length: 2400 }, (_, k) => (k === 0 ? 1 : 0.5 * random() * 10 ** ((-60 * k) / 2400 / 20)));
    const energy = Math.sqrt(room.reduce((sum, v) => sum + v * v, 0));
    room.forEach((v, k) => (room[k] = v / energy));
    const { echo: verdicts, guard } = playLine({ agent, echo: { delayMs: 250, gainDb: -10, room } });
    expect(guard.echoPath?.delayMs).toBeGreaterThanOrEqual(220);
    expect(guard.echoPath?.delayMs).toBeLessThanOrEqual(280);
    const audible = loudChunks(agent, 250);
    expect(share(verdicts.filter((_, i) => i * 32 >= 1500 && audible[i]))).toBeGreaterThan(0.95);
  });

  it('lets the caller through when they talk over the echo', async () => {
    const agent = await agentSpeech();
    const callerWords = await phoneSpeech(RECORDINGS.illDisposed);
    const caller = timeline(9000, [[3000, callerWords]]);
    const { echo: verdicts } = playLine({ agent, caller, echo: { delayMs: 200, gainDb: -10 } });
    // The echo is recognized before the caller starts…
    const active = loudChunks(agent, 200);
    expect(share(verdicts.filter((_, i) => i * 32 >= 1500 && i * 32 < 2900 && active[i]))).toBe(1);
    // …and the caller's words are not: where the caller speaks (above −35 dBFS; the recording's
    // breathing before the first word is quieter than the echo, and is held back), almost no chunk
    // is called echo, the first one included.
    const callerActive = loudChunks(caller, 0, -35);
    const talking = verdicts.filter((_, i) => callerActive[i]);
    expect(talking.length).toBeGreaterThan(30);
    expect(share(talking)).toBeLessThan(0.1);
    expect(verdicts[callerActive.indexOf(true)]).toBe(false);
  });

  it('holds nothing back on a clean line once the agent has spoken two seconds: the caller talking over the agent', async () => {
    const agent = await agentSpeech();
    const callerWords = await phoneSpeech(RECORDINGS.illDisposed);
    const caller = timeline(9000, [[2100, callerWords], [5000, callerWords]]);
    const { echo: verdicts, guard } = playLine({ agent, caller });
    const talking = loudChunks(caller, 0, -35);
    expect(talking.filter(Boolean).length).toBeGreaterThan(60);
    // Ruling echo out takes 0.75 s of agent speech at every delay up to 800 ms.
    expect(chunksIn(verdicts, 2000, 9000).every((v) => !v)).toBe(true);
    expect(guard.echoPath).toBeUndefined();
  });

  it('before that, holds back only what is 6 dB under the agent: a caller as loud as the agent gets through at once', async () => {
    const agent = await agentSpeech();
    const callerWords = await phoneSpeech(RECORDINGS.illDisposed);
    // From 300 ms, 6 dB louder than the recording (the agent's recording peaks about as high).
    const caller = timeline(9000, [[300, callerWords.map((s) => Math.max(-32768, Math.min(32767, s * 2)))]]);
    const { echo: verdicts } = playLine({ agent, caller });
    const talking = loudChunks(caller, 0, -25);
    const early = verdicts.filter((_, i) => talking[i] && i * 32 < 1500);
    expect(early.length).toBeGreaterThan(10);
    expect(share(early)).toBeLessThan(0.2);
    expect(verdicts[talking.indexOf(true)]).toBe(false);
  });

  it('holds nothing back when the agent is silent, even on a line that echoes', async () => {
    const agent = await agentSpeech();
    const callerWords = await phoneSpeech(RECORDINGS.illDisposed);
    // The agent stops at 3 s; the caller speaks from 5 s, long after any echo could arrive.
    const caller = timeline(9000, [[5000, callerWords]]);
    const { echo: verdicts } = playLine({ agent: agent.slice(0, 3 * 8000), caller, echo: { delayMs: 200, gainDb: -10 } });
    expect(chunksIn(verdicts, 4000, 9000).every((v) => !v)).toBe(true);
  });

  it('tolerates inbound jitter', async () => {
    const agent = await agentSpeech();
    const { echo: verdicts } = playLine({ agent, echo: { delayMs: 250, gainDb: -8 }, jitterMs: 15 });
    const active = loudChunks(agent, 250);
    expect(share(verdicts.filter((_, i) => i * 32 >= 1500 && active[i]))).toBeGreaterThan(0.95);
  });

  it('finds no path for an echo later than it searches', async () => {
    const agent = await agentSpeech();
    const { echo: verdicts, guard } = playLine({ agent, echo: { delayMs: 1200, gainDb: -6 }, guard: { maxDelayMs: 800 } });
    expect(guard.echoPath).toBeUndefined();
    expect(chunksIn(verdicts, 2000, 9000).every((v) => !v)).toBe(true);
  });

  it('reads the agent’s G.711 frames as it reads PCM (µ-law and A-law)', async () => {
    const agent = await agentSpeech();
    const line = { agent, echo: { delayMs: 260, gainDb: -12 } };
    const pcm = playLine(line);
    for (const agentEncoding of ['mulaw', 'alaw'] as const) {
      const coded = playLine({ ...line, agentEncoding });
      expect(coded.guard.echoPath?.delayMs).toBe(pcm.guard.echoPath?.delayMs);
      expect(coded.guard.echoPath?.lossDb).toBeCloseTo(pcm.guard.echoPath!.lossDb, 0);
      const differ = coded.echo.filter((v, i) => v !== pcm.echo[i]).length;
      expect(differ).toBeLessThanOrEqual(2);
    }
  });

  it('drops a path the VAD no longer needs: the echo stopped, and the next reply’s barge-in is not held', async () => {
    const [first, second] = await Promise.all([RECORDINGS.amiable, RECORDINGS.coldHearted].map(phoneSpeech));
    const callerWords = await phoneSpeech(RECORDINGS.illDisposed);
    // The agent talks 0–3.3 s; its echo stops at 1.5 s (the phone's canceller settles) while it
    // talks on. It speaks again from 5.5 s, and the caller, 6 dB under the recordings, talks over
    // it 100 ms later. As in a call, the guard is asked only about chunks that sound like speech:
    // the echo's before 1.5 s, then the caller's.
    const agent = timeline(12000, [[0, first!], [5500, second!]]);
    const caller = timeline(12000, [[5600, callerWords.map((v) => Math.round(v / 2))]]);
    const echoAudible = loudChunks(agent, 250);
    const talking = loudChunks(caller, 0, -40);
    const { echo: verdicts, guard } = playLine({
      agent,
      caller,
      echo: { delayMs: 250, gainDb: -10 },
      echoEndsAtMs: 1500,
      askIf: (i) => (i * 32 < 1500 && echoAudible[i]!) || talking[i]!,
    });
    // The path was found while the echo lasted…
    expect(verdicts.filter((_, i) => i * 32 >= 900 && i * 32 < 1500 && echoAudible[i]).some(Boolean)).toBe(true);
    // …and 1.8 s of agent speech without a question dropped it: the 2 s window at the barge-in holds
    // too little agent speech to judge afresh, and the old path would hold the quieter caller back.
    const whileTalking = verdicts.filter((_, i) => talking[i]);
    expect(whileTalking.length).toBeGreaterThan(30);
    expect(share(whileTalking)).toBe(0);
    expect(verdicts[talking.indexOf(true)]).toBe(false);
    expect(guard.echoPath).toBeUndefined();
  });

  it('forgets cleared audio: what the far end dropped cannot echo', async () => {
    const agent = await agentSpeech();
    const callerWords = await phoneSpeech(RECORDINGS.illDisposed);
    // Echo for 5 s, the agent 1.5 s ahead of playout; at 5 s the far end's buffer is cleared. The
    // caller, 20 dB quieter than the agent, speaks from 5.3 s, where the dropped audio would echo.
    // (Not told, the guard would also drop the path once the echo it expects fails to come, a
    // quarter second or so later: the first half second of the caller's speech is compared.)
    const caller = timeline(9000, [[5300, callerWords.map((s) => Math.round(s / 10))]]);
    const line = { agent, caller, echo: { delayMs: 200, gainDb: -10 }, leadMs: 1500, clearAtMs: 5000 };
    const callerActive = loudChunks(caller, 0, -55);
    const inWindow = (verdicts: boolean[]): boolean[] => verdicts.filter((_, i) => callerActive[i] && i * 32 < 5800);
    expect(inWindow(playLine({ ...line, tellClear: false }).echo).length).toBeGreaterThanOrEqual(5);
    // Told of the clear, the guard lets the caller through…
    expect(share(inWindow(playLine(line).echo))).toBe(0);
    // …not told, it would have taken the quiet caller for the echo of audio that never played.
    expect(share(inWindow(playLine({ ...line, tellClear: false }).echo))).toBeGreaterThan(0.2);
  });
});
