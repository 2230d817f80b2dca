/**
 * `npm run call -- <file.wav> [--url http://localhost:8080] [--public-url …] [--auth-token …]
 *   [--out agent.wav] [--dtmf 1@3000]… [--hang-up-after ms] [--idle ms] [--max-duration ms]`
 *
 * Calls our server the way Twilio does (signed webhook, Media Stream), plays the WAV as the caller,
 * writes what the agent said to a WAV and prints each turn with its response latency. Transcripts come
 * from the local ASR engine when it loads.
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { SAMPLE_RATE_8K } from '../audio/frames.js';
import { writeWav } from '../audio/wav.js';
import { placeCall, type CallEvent, type CallOptions, type Turn } from './twilio-caller.js';

const USAGE =
  'usage: npm run call -- <file.wav> [--url http://localhost:8080] [--public-url URL] [--auth-token TOKEN] ' +
  '[--out agent.wav] [--dtmf DIGIT@MS]... [--hang-up-after MS] [--idle MS] [--max-duration MS] [--from E164] [--to E164]';

type Transcriber = (pcm8k: Int16Array) => Promise<string>;

interface AsrEventLike {
  type: string;
  text?: string;
  error?: unknown;
}
interface AsrStreamLike {
  push(pcm8k: Int16Array): void;
  end(): void;
}
interface AsrLike {
  createStream(callId: string, onEvent: (event: AsrEventLike) => void): AsrStreamLike;
  close(): Promise<void> | void;
}

function isAsr(value: unknown): value is AsrLike {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { createStream?: unknown }).createStream === 'function' &&
    typeof (value as { close?: unknown }).close === 'function'
  );
}

/** Loads the local PocketSphinx engine if it is there; otherwise says why not. */
async function loadLocalAsr(): Promise<{ asr: AsrLike } | { reason: string }> {
  try {
    // A computed specifier: the engine is optional, so the type checker must not require the file.
    const specifier = new URL('../engines/local/pocketsphinx-asr.js', import.meta.url).href;
    const mod = (await import(specifier)) as { PocketsphinxAsr?: { start?: (options: { workers: number }) => unknown } };
    const start = mod.PocketsphinxAsr?.start;
    if (typeof start !== 'function') return { reason: 'PocketsphinxAsr.start not found' };
    const asr: unknown = await start.call(mod.PocketsphinxAsr, { workers: 1 });
    if (!isAsr(asr)) return { reason: 'PocketsphinxAsr.start did not return an ASR engine' };
    return { asr };
  } catch (err) {
    return { reason: err instanceof Error ? err.message.split('\n')[0] ?? err.message : String(err) };
  }
}

function transcriberFor(asr: AsrLike, callId: string): Transcriber {
  return (pcm8k) =>
    new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('ASR timed out')), 30_000);
      const stream = asr.createStream(callId, (event) => {
        if (event.type === 'final') {
          clearTimeout(timer);
          resolve(event.text ?? '');
        } else if (event.type === 'error') {
          clearTimeout(timer);
          reject(event.error instanceof Error ? event.error : new Error(String(event.error)));
        }
      });
      stream.push(pcm8k);
      stream.end();
    });
}

function parseDtmf(spec: string): CallEvent {
  const match = /^([0-9*#A-Da-dw])@(\d+)$/.exec(spec);
  if (match === null) throw new Error(`--dtmf expects DIGIT@MS (e.g. 1@3000), got "${spec}"`);
  return { kind: 'dtmf', digit: match[1] ?? '', atMs: Number(match[2]) };
}

function optionalNumber(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} expects a number of ms, got "${value}"`);
  return n;
}

const fmtMs = (ms: number | null): string => (ms === null ? '—' : `${Math.round(ms)} ms`);
const fmtS = (ms: number | null): string => (ms === null ? '?' : (ms / 1000).toFixed(2));

function printTurn(turn: Turn, index: number): void {
  if (turn.kind === 'greeting') {
    console.log(`[greeting] first agent audio at ${fmtMs(turn.agentFirstFrameMs)}`);
    if (turn.agentText !== undefined) console.log(`  agent:  ${turn.agentText || '(silence)'}`);
    return;
  }
  console.log(`[turn ${index}] caller ${fmtS(turn.callerStartMs)}–${fmtS(turn.callerEndMs)} s, response latency ${fmtMs(turn.responseLatencyMs)}`);
  if (turn.callerText !== undefined) console.log(`  caller: ${turn.callerText || '(nothing recognised)'}`);
  if (turn.agentText !== undefined) console.log(`  agent:  ${turn.agentText || '(silence)'}`);
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      url: { type: 'string', default: 'http://localhost:8080' },
      'public-url': { type: 'string' },
      'auth-token': { type: 'string' },
      out: { type: 'string' },
      dtmf: { type: 'string', multiple: true },
      'hang-up-after': { type: 'string' },
      idle: { type: 'string' },
      'max-duration': { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const wavPath = positionals[0];
  if (values.help === true || wavPath === undefined) {
    console.error(USAGE);
    return values.help === true ? 0 : 2;
  }

  const url = values.url ?? 'http://localhost:8080';
  const loaded = await loadLocalAsr();
  const asr = 'asr' in loaded ? loaded.asr : undefined;
  if (asr === undefined && 'reason' in loaded) console.error(`(no transcript: ${loaded.reason})`);

  const controller = new AbortController();
  const onSigint = (): void => {
    console.error('hanging up…');
    controller.abort();
  };
  process.once('SIGINT', onSigint);

  const options: CallOptions = {
    url,
    publicUrl: values['public-url'] ?? process.env.PUBLIC_URL ?? url,
    audio: wavPath,
    events: (values.dtmf ?? []).map(parseDtmf),
    signal: controller.signal,
  };
  const authToken = values['auth-token'] ?? process.env.TWILIO_AUTH_TOKEN;
  if (authToken !== undefined && authToken !== '') options.authToken = authToken;
  if (values.from !== undefined) options.from = values.from;
  if (values.to !== undefined) options.to = values.to;
  const hangUpAfterMs = optionalNumber(values['hang-up-after'], '--hang-up-after');
  if (hangUpAfterMs !== undefined) options.hangUpAfterMs = hangUpAfterMs;
  const idleHangUpMs = optionalNumber(values.idle, '--idle');
  if (idleHangUpMs !== undefined) options.idleHangUpMs = idleHangUpMs;
  const maxDurationMs = optionalNumber(values['max-duration'], '--max-duration');
  if (maxDurationMs !== undefined) options.maxDurationMs = maxDurationMs;
  if (asr !== undefined) options.transcribe = transcriberFor(asr, `softphone-${process.pid}`);

  console.error(`calling ${url} (public URL ${options.publicUrl}) with ${wavPath}…`);
  try {
    const result = await placeCall(options);
    const out = values.out ?? `call-${result.callSid}.wav`;
    await writeFile(out, writeWav({ samples: result.agentAudio, sampleRate: SAMPLE_RATE_8K }));

    console.log(`call ${result.callSid} stream ${result.streamSid}: ${(result.durationMs / 1000).toFixed(1)} s, ended by ${result.closedBy}`);
    if (Object.keys(result.customParameters).length > 0) {
      console.log(`custom parameters: ${Object.keys(result.customParameters).join(', ')}`);
    }
    result.turns.forEach(printTurn);
    const after = result.afterStream;
    if (after !== undefined) {
      const what = after.next === 'transfer' ? `transfer to ${after.to ?? '?'}` : after.next === 'hangup' ? 'hang up' : `other TwiML: ${after.twiml.slice(0, 200)}`;
      console.log(`after the stream (HTTP ${after.status}): ${what}`);
    }
    if (asr === undefined && 'reason' in loaded) console.log(`(no transcript: ${loaded.reason})`);
    console.log(`marks echoed: ${result.marksEchoed.length}, clears: ${result.clears.length}, messages received: ${result.messages.length}`);
    if (result.violations.length > 0) {
      console.log(`protocol violations (${result.violations.length}):`);
      for (const v of result.violations.slice(0, 50)) console.log(`  ${v}`);
      if (result.violations.length > 50) console.log(`  … ${result.violations.length - 50} more`);
    }
    console.log(`agent audio written to ${out}`);
    return result.violations.length > 0 ? 1 : 0;
  } finally {
    process.off('SIGINT', onSigint);
    if (asr !== undefined) await asr.close();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : String(err));
    const code = (err as { code?: unknown } | null)?.code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) console.error(USAGE);
    process.exitCode = 1;
  },
);
