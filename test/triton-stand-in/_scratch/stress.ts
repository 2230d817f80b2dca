import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { tritonProtocol, isFinalResponse, type ModelInferRequest, type ModelStreamInferResponse } from '../../../src/engines/triton/protocol.js';
import { inferRequest, bytesTensor, boolTensor, fp32Tensor, param, responseOutputs, readStrings } from '../../../src/engines/triton/tensors.js';
import { readWav } from '../../../src/audio/wav.js';
import { startTritonStandIn } from '../index.js';

const mode = process.argv[2] ?? 'stress';
const standIn = await startTritonStandIn({ recognizer: mode === 'ps' ? 'pocketsphinx' : { scripted: ['one two three four five'] }, llm: { tokensPerSecond: 50, firstTokenDelayMs: 100 } });
const { InferenceClient } = tritonProtocol();
const client = new InferenceClient(standIn.url, grpc.credentials.createInsecure());
const def = tritonProtocol().inferenceService.ModelStreamInfer!;
function open() {
  return client.makeBidiStreamRequest(def.path, def.requestSerialize as (v: ModelInferRequest) => Buffer, def.responseDeserialize as (b: Buffer) => ModelStreamInferResponse, new grpc.Metadata());
}
function run(requests: ModelInferRequest[], lastId: string, paceMs = 0): Promise<ModelStreamInferResponse[]> {
  return new Promise((resolve, reject) => {
    const call = open();
    const out: ModelStreamInferResponse[] = [];
    call.on('data', (r: ModelStreamInferResponse) => { out.push(r); if (r.error_message) reject(new Error(r.error_message)); if (r.infer_response?.id === lastId && isFinalResponse(r.infer_response)) { call.end(); resolve(out); } });
    call.on('error', reject);
    void (async () => { for (const r of requests) { call.write(r); if (paceMs) await new Promise((res) => setTimeout(res, paceMs)); } })();
  });
}
const t0 = Date.now();
standIn.events.on('request', (r) => { if (r.seq % 5 === 0) console.log('req', r.id, Date.now() - t0); });
standIn.events.on('response', (r) => { if (r.request.seq % 5 === 0) console.log('resp', r.request.id, Date.now() - t0); });
if (mode === 'ps') {
  const wav = readWav(readFileSync('/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0890.wav'));
  const f = Float32Array.from(wav.samples, (s) => s / 32768);
  const reqs: ModelInferRequest[] = [];
  for (let s = 0, i = 0; s < f.length; s += 3200, i++) reqs.push(inferRequest({ model: 'parakeet_tdt', id: `c${i}`, inputs: [fp32Tensor('audio_chunk', f.slice(s, s + 3200))], parameters: { sequence_id: param.string('x'), sequence_start: param.bool(s === 0), sequence_end: param.bool(false) } }));
  reqs.push(inferRequest({ model: 'parakeet_tdt', id: 'end', inputs: [fp32Tensor('audio_chunk', new Float32Array(0))], parameters: { sequence_id: param.string('x'), sequence_start: param.bool(false), sequence_end: param.bool(true) } }));
  const out = await run(reqs, 'end', 200);
  for (const r of out) console.log(Date.now() - t0, r.infer_response!.id, readStrings(responseOutputs(r.infer_response!).get('transcript')!)[0]);
} else {
  const jobs: Promise<unknown>[] = [];
  for (let i = 0; i < 30; i++) {
    jobs.push(run([inferRequest({ model: 'qwen3', id: `q${i}`, inputs: [bytesTensor('text_input', ['hi']), boolTensor('stream', [true])] })], `q${i}`));
    const reqs: ModelInferRequest[] = [];
    for (let k = 0; k < 20; k++) reqs.push(inferRequest({ model: 'parakeet_tdt', id: `a${i}-${k}`, inputs: [fp32Tensor('audio_chunk', new Float32Array(1600))], parameters: { sequence_id: param.int64(i + 1), sequence_start: param.bool(k === 0), sequence_end: param.bool(k === 19) } }));
    jobs.push(run(reqs, `a${i}-19`, 20));
    if (i < 10) jobs.push(run([inferRequest({ model: 'tts', id: `t${i}`, inputs: [bytesTensor('text', ['This is a test sentence number ' + i])], parameters: { triton_enable_empty_final_response: param.bool(true) } })], `t${i}`));
  }
  const results = await Promise.allSettled(jobs);
  console.log('done', Date.now() - t0, 'ms', results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason)));
  console.log('requests', standIn.observed.requests.length);
}
client.close();
await standIn.stop();
