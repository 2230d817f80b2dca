// The Silero VAD inference thread. onnxruntime-node runs a session synchronously on the thread
// that calls it, so inference lives here, off the event loop that paces every call's audio.
// Plain JavaScript on purpose: a worker thread gets no TypeScript loader under every runner we use
// (tsx, vitest), and this file only moves tensors in and out.
import { parentPort, workerData } from 'node:worker_threads';
import ort from 'onnxruntime-node';

const { modelPath, sampleRate, chunkWithContext, stateSize } = workerData;
const session = await ort.InferenceSession.create(modelPath, {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  graphOptimizationLevel: 'all',
});
const missing = ['input', 'state', 'sr'].filter((name) => !session.inputNames.includes(name));
const sr = new ort.Tensor('int64', BigInt64Array.from([BigInt(sampleRate)]), []);
if (missing.length === 0) {
  // Warm up before reporting ready: the first runs (at each batch size) are several times slower,
  // and the first call should not pay for that.
  for (const size of [1, 16]) {
    await session.run({
      input: new ort.Tensor('float32', new Float32Array(size * chunkWithContext), [size, chunkWithContext]),
      state: new ort.Tensor('float32', new Float32Array(2 * size * stateSize), [2, size, stateSize]),
      sr,
    });
  }
}

parentPort.on('message', async (message) => {
  if (message.type === 'close') {
    await session.release();
    parentPort.close();
    return;
  }
  const { id, size, input, state } = message;
  try {
    const started = performance.now();
    const out = await session.run({
      input: new ort.Tensor('float32', input, [size, chunkWithContext]),
      state: new ort.Tensor('float32', state, [2, size, stateSize]),
      sr,
    });
    const probabilities = Float32Array.from(out.output.data);
    const nextState = Float32Array.from(out.stateN.data);
    const inferenceMs = performance.now() - started;
    parentPort.postMessage({ id, probabilities, nextState, inferenceMs }, [probabilities.buffer, nextState.buffer]);
  } catch (error) {
    parentPort.postMessage({ id, error: String(error?.message ?? error) });
  }
});
parentPort.postMessage({ type: 'ready', missing });
