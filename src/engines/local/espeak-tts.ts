/**
 * Local TTS: the espeak-ng binary (Debian package `espeak-ng`), one short-lived process per text
 * segment. A process keeps synthesis off the event loop (in-process WASM would stall the audio
 * pacing of every call while it runs) and killing it is an instant, complete cancel. espeak-ng
 * starts and speaks a sentence in ~20 ms here.
 */
import { spawn } from 'node:child_process';
import type { Tts, TtsChunk, TtsRequest } from '../types.js';

export interface EspeakOptions {
  binary?: string;
  voice?: string;
  /** Words per minute. */
  rate?: number;
}

export class EspeakTts implements Tts {
  readonly name = 'espeak-ng';
  private readonly binary: string;
  private readonly voice: string;
  private readonly rate: number;

  constructor(options: EspeakOptions = {}) {
    this.binary = options.binary ?? 'espeak-ng';
    this.voice = options.voice ?? 'en-us';
    this.rate = options.rate ?? 165;
  }

  /** Fails with a clear message when the binary is missing (checked at start-up). */
  async check(): Promise<void> {
    const chunks: TtsChunk[] = [];
    const controller = new AbortController();
    for await (const chunk of this.synthesizeSegment('ok', 0, this.voice, controller.signal)) chunks.push(chunk);
    if (chunks.every((c) => c.pcm.length === 0)) throw new Error(`${this.binary} produced no audio`);
  }

  async *synthesize(request: TtsRequest): AsyncIterable<TtsChunk> {
    let segment = 0;
    for await (const text of request.text) {
      if (request.signal.aborted) return;
      if (text.trim() === '') continue;
      yield* this.synthesizeSegment(text, segment, request.voice ?? this.voice, request.signal);
      segment++;
    }
  }

  private async *synthesizeSegment(text: string, segment: number, voice: string, signal: AbortSignal): AsyncIterable<TtsChunk> {
    if (signal.aborted) return;
    // Text goes through stdin, never argv: nothing the LLM says can become an option.
    const child = spawn(this.binary, ['--stdout', '-v', voice, '-s', String(this.rate)], { stdio: ['pipe', 'pipe', 'pipe'], detached: true }); // see pocketsphinx-asr.ts: group signals must not cut a drain's prompts
    const abort = (): void => void child.kill('SIGKILL');
    signal.addEventListener('abort', abort, { once: true });
    const exited = new Promise<{ code: number | null; error?: Error }>((resolve) => {
      child.once('error', (error) => resolve({ code: null, error }));
      child.once('close', (code) => resolve({ code }));
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()).length > 2000 && (stderr = stderr.slice(-2000)));
    child.stdin.on('error', () => {});
    child.stdin.end(text);
    const parser = new WavStreamParser();
    let emitted = false;
    try {
      for await (const data of child.stdout as AsyncIterable<Buffer>) {
        if (signal.aborted) return;
        const pcm = parser.push(data);
        if (pcm !== undefined && pcm.length > 0) {
          emitted = true;
          yield { segment, text, pcm, sampleRate: parser.sampleRate, segmentEnd: false };
        }
      }
      const { code, error } = await exited;
      if (signal.aborted) return;
      if (error !== undefined) throw new Error(`espeak-ng could not start (${this.binary}): ${error.message}`);
      if (code !== 0) throw new Error(`espeak-ng exited with ${code}: ${stderr.trim()}`);
      yield { segment, text, pcm: new Int16Array(0), sampleRate: parser.sampleRate || 22050, segmentEnd: true };
      void emitted;
    } finally {
      signal.removeEventListener('abort', abort);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }
}

/**
 * espeak-ng writes a streaming WAV to stdout (header first, with a placeholder length), so the
 * header is parsed here and the PCM after it is handed on as it arrives.
 */
export class WavStreamParser {
  sampleRate = 0;
  private header: Buffer = Buffer.alloc(0);
  private inData = false;
  private odd: number | undefined;

  push(data: Buffer): Int16Array | undefined {
    let body = data;
    if (!this.inData) {
      this.header = Buffer.concat([this.header, data]);
      const start = this.findData();
      if (start === undefined) return undefined;
      this.inData = true;
      body = this.header.subarray(start);
      this.header = Buffer.alloc(0);
    }
    let bytes = body;
    if (this.odd !== undefined) {
      bytes = Buffer.concat([Buffer.from([this.odd]), body]);
      this.odd = undefined;
    }
    if (bytes.length % 2 === 1) {
      this.odd = bytes[bytes.length - 1];
      bytes = bytes.subarray(0, bytes.length - 1);
    }
    const pcm = new Int16Array(bytes.length / 2);
    for (let i = 0; i < pcm.length; i++) pcm[i] = bytes.readInt16LE(i * 2);
    return pcm;
  }

  private findData(): number | undefined {
    const h = this.header;
    if (h.length < 12) return undefined;
    if (h.toString('ascii', 0, 4) !== 'RIFF' || h.toString('ascii', 8, 12) !== 'WAVE') throw new Error('espeak-ng output is not WAV');
    let offset = 12;
    while (offset + 8 <= h.length) {
      const id = h.toString('ascii', offset, offset + 4);
      const size = h.readUInt32LE(offset + 4);
      if (id === 'fmt ' && offset + 16 <= h.length) this.sampleRate = h.readUInt32LE(offset + 12);
      if (id === 'data') return offset + 8;
      offset += 8 + size + (size % 2);
    }
    return undefined;
  }
}
