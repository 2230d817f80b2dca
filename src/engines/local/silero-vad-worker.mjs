// The Silero VAD inference thread. onnxruntime-node runs a session synchronously on the thread
// that calls it, so inference lives here, off the event loop that paces every call's audio.
// Plain JavaScript on purpose: a worker thread gets no TypeScript loader under every runner we use
// (tsx, vitest), and this file only moves tensors in and out.
import { parentPort, workerData } from 'node:worker_threads';
import ort from 'onnxruntime-node';

const { modelPath, derivedModel, sampleRate, chunkWithContext, stateSize } = workerData;
/**
 * How far the derived graph's speech probabilities may stray from the exported graph's before we
 * distrust it. The two differ only in float summation order: ~1e-7 measured here.
 */
const PARITY_TOLERANCE = 1e-4;
const options = { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all' };
const sr = new ort.Tensor('int64', BigInt64Array.from([BigInt(sampleRate)]), []);

function feeds(session, size, input, state) {
  const feed = {
    input: new ort.Tensor('float32', input, [size, chunkWithContext]),
    state: new ort.Tensor('float32', state, [2, size, stateSize]),
  };
  if (session.inputNames.includes('sr')) feed.sr = sr;
  return feed;
}

/**
 * Runs both graphs over the same few seconds of a voiced test signal (3 streams, state carried),
 * and returns the largest difference in speech probability between them.
 */
async function largestDifference(exported, derived) {
  const size = 3;
  let stateA = new Float32Array(2 * size * stateSize);
  let stateB = new Float32Array(2 * size * stateSize);
  let seed = 12345;
  const noise = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648 - 0.5) * 0.02;
  let largest = 0;
  for (let step = 0; step < 64; step++) {
    const input = new Float32Array(size * chunkWithContext);
    for (let stream = 0; stream < size; stream++) {
      const pitch = 110 + 60 * stream;
      const voiced = (step + 8 * stream) % 24 < 14 ? 0.3 : 0;
      for (let i = 0; i < chunkWithContext; i++) {
        const t = (step * (chunkWithContext - 32) + i) / sampleRate;
        let sample = noise();
        for (let harmonic = 1; harmonic <= 8; harmonic++) sample += (voiced / harmonic) * Math.sin(2 * Math.PI * pitch * harmonic * t);
        input[stream * chunkWithContext + i] = sample;
      }
    }
    const a = await exported.run(feeds(exported, size, input, stateA));
    const b = await derived.run(feeds(derived, size, input, stateB));
    for (let i = 0; i < size; i++) largest = Math.max(largest, Math.abs(a.output.data[i] - b.output.data[i]));
    stateA = Float32Array.from(a.stateN.data);
    stateB = Float32Array.from(b.stateN.data);
  }
  return largest;
}

const exported = await ort.InferenceSession.create(modelPath, options);
const missing = ['input', 'state', 'sr'].filter((name) => !exported.inputNames.includes(name));
let session = exported;
let graph = 'exported';
let fallbackReason;
if (missing.length === 0 && derivedModel !== undefined) {
  try {
    const derived = await ort.InferenceSession.create(derivedModel, options);
    const gap = await largestDifference(exported, derived);
    if (gap <= PARITY_TOLERANCE) {
      session = derived;
      graph = 'derived';
      await exported.release();
    } else {
      fallbackReason = `the derived 8 kHz graph's probabilities differ from the exported graph's by ${gap.toPrecision(3)}`;
      await derived.release();
    }
  } catch (error) {
    fallbackReason = `the derived 8 kHz graph failed to load: ${error?.message ?? error}`;
  }
}
if (missing.length === 0) {
  // Warm up before reporting ready: the first runs (at each batch size) are several times slower,
  // and the first call should not pay for that.
  for (const size of [1, 16]) {
    await session.run(feeds(session, size, new Float32Array(size * chunkWithContext), new Float32Array(2 * size * stateSize)));
  }
}

// One message at a time, in order: `session.run` yields (onnxruntime-node runs it from a
// setImmediate), and a close must not release the session under a run still in flight.
let done = Promise.resolve();
parentPort.on('message', (message) => {
  done = done.then(() => handle(message));
});

let closed = false;
async function handle(message) {
  if (closed) return;
  if (message.type === 'close') {
    closed = true;
    try {
      await session.release();
    } finally {
      parentPort.close(); // nothing else keeps this thread alive: it exits
    }
    return;
  }
  const { id, size, input, state } = message;
  try {
    const started = performance.now();
    const out = await session.run(feeds(session, size, input, state));
    const probabilities = Float32Array.from(out.output.data);
    const nextState = Float32Array.from(out.stateN.data);
    const inferenceMs = performance.now() - started;
    parentPort.postMessage({ id, probabilities, nextState, inferenceMs }, [probabilities.buffer, nextState.buffer]);
  } catch (error) {
    parentPort.postMessage({ id, error: String(error?.message ?? error) });
  }
}
parentPort.postMessage({ type: 'ready', missing, graph, fallbackReason });
