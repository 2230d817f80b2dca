/**
 * `tts`: a decoupled Python TTS model in the CosyVoice mould: text in, audio chunks out as they are
 * synthesized, then a flag-only final. The speech is real: espeak-ng, one process per request (text
 * through stdin, never argv), killed on cancel.
 */
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { WavStreamParser } from '../../../src/engines/local/espeak-tts.js';
import { fp32Tensor, int32Tensor, readStrings, type RawTensor } from '../../../src/engines/triton/tensors.js';
import { ModelError, type InferContext, type ModelSpec, type ResponseSink, type StandInModel } from '../model.js';
import type { ObservedInputs } from '../observed.js';

export interface TtsOptions {
  /** Added before the first audio chunk (default 0). */
  firstAudioDelayMs?: number;
  /** Audio per response (default 160 ms). */
  chunkMs?: number;
  /** espeak-ng voice for every request (default en-us); the request's `voice` is recorded, not used. */
  espeakVoice?: string;
}

export const TTS_SPEC: ModelSpec = {
  name: 'tts',
  platform: 'python',
  backend: 'python',
  decoupled: true,
  instanceKind: 'KIND_GPU',
  inputs: [
    { name: 'text', datatype: 'BYTES', dims: [1] },
    { name: 'voice', datatype: 'BYTES', dims: [1], optional: true },
  ],
  outputs: [
    { name: 'audio', datatype: 'FP32', dims: [-1] },
    { name: 'sample_rate', datatype: 'INT32', dims: [1] },
  ],
};

export class TtsModel implements StandInModel {
  readonly spec = TTS_SPEC;

  constructor(private readonly options: TtsOptions = {}) {}

  observe(inputs: ReadonlyMap<string, RawTensor>): ObservedInputs {
    const text = inputs.get('text');
    if (text === undefined) return {};
    const voice = inputs.get('voice');
    return { tts: { text: readStrings(text)[0] ?? '', voice: voice !== undefined ? readStrings(voice)[0] : undefined } };
  }

  async execute(context: InferContext, sink: ResponseSink): Promise<void> {
    const text = readStrings(context.inputs.get('text')!)[0] ?? '';
    if (text.trim() === '') {
      sink.complete();
      return;
    }
    const signal = context.signal;
    const firstDelay = this.options.firstAudioDelayMs ?? 0;
    let delayed = firstDelay > 0;
    let chunker: Chunker | undefined;
    const send = async (pcm: Int16Array, sampleRate: number): Promise<void> => {
      if (delayed) {
        delayed = false;
        await sleep(firstDelay, undefined, { signal });
      }
      sink.send(audioOutputs(pcm, sampleRate), false);
    };
    let sampleRate = 0;
    for await (const pcm of espeak(text, this.options.espeakVoice ?? 'en-us', signal, (rate) => (sampleRate = rate))) {
      chunker ??= new Chunker(Math.max(1, Math.round((sampleRate * (this.options.chunkMs ?? 160)) / 1000)));
      for (const chunk of chunker.push(pcm)) await send(chunk, sampleRate);
    }
    const rest = chunker?.rest();
    if (rest !== undefined) await send(rest, sampleRate);
    sink.complete();
  }
}

/** Regroups PCM pieces into fixed-size chunks. */
class Chunker {
  private parts: Int16Array[] = [];
  private size = 0;

  constructor(private readonly chunkSamples: number) {}

  push(pcm: Int16Array): Int16Array[] {
    this.parts.push(pcm);
    this.size += pcm.length;
    const out: Int16Array[] = [];
    while (this.size >= this.chunkSamples) out.push(this.take(this.chunkSamples));
    return out;
  }

  rest(): Int16Array | undefined {
    return this.size > 0 ? this.take(this.size) : undefined;
  }

  private take(count: number): Int16Array {
    const out = new Int16Array(count);
    let filled = 0;
    while (filled < count) {
      const part = this.parts[0]!;
      const n = Math.min(part.length, count - filled);
      out.set(part.subarray(0, n), filled);
      filled += n;
      if (n === part.length) this.parts.shift();
      else this.parts[0] = part.subarray(n);
    }
    this.size -= count;
    return out;
  }
}

function audioOutputs(pcm: Int16Array, sampleRate: number): RawTensor[] {
  const audio = new Float32Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) audio[i] = pcm[i]! / 32768;
  return [fp32Tensor('audio', audio), int32Tensor('sample_rate', [sampleRate])];
}

/** espeak-ng's streamed WAV as PCM pieces; `onRate` is called once the header is read. */
async function* espeak(text: string, voice: string, signal: AbortSignal, onRate: (rate: number) => void): AsyncGenerator<Int16Array> {
  const child = spawn('espeak-ng', ['--stdout', '-v', voice], { stdio: ['pipe', 'pipe', 'pipe'] });
  const kill = (): void => void child.kill('SIGKILL');
  signal.addEventListener('abort', kill, { once: true });
  const exited = new Promise<{ code: number | null; error?: Error }>((resolve) => {
    child.once('error', (error) => resolve({ code: null, error }));
    child.once('close', (code) => resolve({ code }));
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-500)));
  child.stdin.on('error', () => {});
  child.stdin.end(text);
  const parser = new WavStreamParser();
  let rateKnown = false;
  try {
    for await (const data of child.stdout as AsyncIterable<Buffer>) {
      const pcm = parser.push(data);
      if (pcm === undefined || pcm.length === 0) continue;
      if (!rateKnown) {
        rateKnown = true;
        onRate(parser.sampleRate);
      }
      yield pcm;
    }
    const { code, error } = await exited;
    signal.throwIfAborted();
    if (error !== undefined) throw new ModelError(`espeak-ng could not start: ${error.message}`);
    if (code !== 0) throw new ModelError(`espeak-ng exited with ${code}: ${stderr.trim()}`);
  } finally {
    signal.removeEventListener('abort', kill);
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}
