// Guards against the Triton stand-in drifting from Triton's gRPC behaviour (final flags, empty finals, sequence rules, error shapes, cancellation), which would let the server's Triton client pass here and fail on a real Triton.
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadResampler, resampleAll } from '../../src/audio/resampler.js';
import { readWav } from '../../src/audio/wav.js';
import {
  isFinalResponse,
  tritonProtocol,
  type InferParameter,
  type ModelConfig,
  type ModelInferRequest,
  type ModelInferResponse,
  type ModelMetadataResponse,
  type ModelStreamInferResponse,
  type ServerMetadataResponse,
} from '../../src/engines/triton/protocol.js';
import {
  boolTensor,
  bytesTensor,
  fp32Tensor,
  inferRequest,
  int64Tensor,
  param,
  readBool,
  readFp32,
  readInt32,
  readStrings,
  responseOutputs,
  type RawTensor,
} from '../../src/engines/triton/tensors.js';
import { startTritonStandIn, type TritonStandIn } from '../triton-stand-in/index.js';

const RECORDING = '/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav'; // "he was not an ill disposed young man"
const TOOL_REPLY = 'Goodbye, have a nice day!\n<tool_call>\n{"name": "end_call", "arguments": {}}\n</tool_call>';
const LONG_REPLY = 'word '.repeat(300).trim();

// ── a raw KServe v2 client ─────────────────────────────────────────────────────────────────────────
class RawClient {
  readonly client: grpc.Client;
  private readonly health: grpc.Client;

  constructor(url: string) {
    const { InferenceClient, HealthClient } = tritonProtocol();
    this.client = new InferenceClient(url, grpc.credentials.createInsecure(), { 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 200 });
    this.health = new HealthClient(url, grpc.credentials.createInsecure());
  }

  unary<Res>(method: string, request: object, client = this.client, service = tritonProtocol().inferenceService): Promise<Res> {
    const definition = service[method]!;
    return new Promise((resolve, reject) => {
      client.makeUnaryRequest(
        definition.path,
        definition.requestSerialize as (value: object) => Buffer,
        definition.responseDeserialize as (bytes: Buffer) => Res,
        request,
        new grpc.Metadata(),
        { deadline: Date.now() + 10_000 },
        (error, response) => (error ? reject(error) : resolve(response as Res)),
      );
    });
  }

  healthCheck(): Promise<{ status: string }> {
    return this.unary('Check', { service: '' }, this.health, tritonProtocol().healthService);
  }

  stream(metadata = new grpc.Metadata()): OpenStream {
    const definition = tritonProtocol().inferenceService.ModelStreamInfer!;
    const call = this.client.makeBidiStreamRequest(
      definition.path,
      definition.requestSerialize as (value: ModelInferRequest) => Buffer,
      definition.responseDeserialize as (bytes: Buffer) => ModelStreamInferResponse,
      metadata,
    );
    return new OpenStream(call);
  }

  close(): void {
    this.client.close();
    this.health.close();
  }
}

class OpenStream {
  readonly responses: ModelStreamInferResponse[] = [];
  error: grpc.ServiceError | undefined;
  ended = false;

  constructor(readonly call: grpc.ClientDuplexStream<ModelInferRequest, ModelStreamInferResponse>) {
    call.on('data', (response: ModelStreamInferResponse) => this.responses.push(response));
    call.on('error', (error: grpc.ServiceError) => (this.error = error));
    call.on('end', () => (this.ended = true));
  }

  send(request: ModelInferRequest): void {
    this.call.write(request);
  }

  /** Responses (data or error) for one request id. */
  of(id: string): ModelStreamInferResponse[] {
    return this.responses.filter((r) => r.infer_response?.id === id);
  }

  /** Waits until request `id` got its final response (or an error). */
  async complete(id: string, timeout = 10_000): Promise<ModelStreamInferResponse[]> {
    await vi.waitFor(
      () => {
        if (this.error !== undefined) throw new Error(`stream failed: ${this.error.message}`);
        const last = this.of(id).at(-1);
        if (last === undefined || (last.error_message === '' && !isFinalResponse(last.infer_response!))) throw new Error(`request ${id} not complete`);
      },
      { timeout, interval: 10 },
    );
    return this.of(id);
  }

  async failed(timeout = 10_000): Promise<grpc.ServiceError> {
    await vi.waitFor(() => expect(this.error).toBeDefined(), { timeout, interval: 10 });
    return this.error!;
  }

  end(): void {
    this.call.end();
  }
}

function outputs(response: ModelStreamInferResponse | ModelInferResponse): Map<string, RawTensor> {
  return responseOutputs('infer_response' in response ? response.infer_response! : response);
}

function text(response: ModelStreamInferResponse, name: string): string {
  return readStrings(outputs(response).get(name)!)[0]!;
}

function llmRequest(id: string, prompt: string, extra: RawTensor[] = [boolTensor('exclude_input_in_output', [true])]): ModelInferRequest {
  return inferRequest({ model: 'qwen3', id, inputs: [bytesTensor('text_input', [prompt]), boolTensor('stream', [true]), ...extra] });
}

function chatPrompt(user: string): string {
  return `<|im_start|>system\nYou are a phone agent.<|im_end|>\n<|im_start|>user\n${user}<|im_end|>\n<|im_start|>assistant\n`;
}

function asrRequest(id: string, audio: Float32Array, parameters: Record<string, InferParameter>): ModelInferRequest {
  return inferRequest({ model: 'parakeet_tdt', id, inputs: [fp32Tensor('audio_chunk', audio)], parameters });
}

function expectCode(error: unknown, code: grpc.status, details: string | RegExp): void {
  const serviceError = error as grpc.ServiceError;
  expect(grpc.status[serviceError.code]).toBe(grpc.status[code]);
  if (typeof details === 'string') expect(serviceError.details).toContain(details);
  else expect(serviceError.details).toMatch(details);
}

async function speech16k(): Promise<Int16Array> {
  const wav = readWav(readFileSync(RECORDING));
  expect(wav.sampleRate).toBe(16000);
  return wav.samples;
}

function toFloat(pcm: Int16Array): Float32Array {
  return Float32Array.from(pcm, (s) => s / 32768);
}

// ── the shared stand-in ────────────────────────────────────────────────────────────────────────────
let standIn: TritonStandIn;
let client: RawClient;

beforeAll(async () => {
  standIn = await startTritonStandIn({
    recognizer: { scripted: ['i would like to book a table', 'thanks bye'], msPerWord: 200 },
    llm: {
      reply: [
        { match: 'goodbye', reply: TOOL_REPLY },
        { match: /long story/i, reply: LONG_REPLY },
      ],
      defaultReply: 'Sure, I can help with that.',
      tokensPerSecond: 400,
      firstTokenDelayMs: 5,
    },
    tts: { chunkMs: 100 },
  });
  client = new RawClient(standIn.url);
});

afterAll(async () => {
  client?.close();
  await standIn?.stop();
});

describe('health and metadata', () => {
  it('reports the server, each model and the health service ready, and unknown models not ready', async () => {
    expect(await client.unary<{ live: boolean }>('ServerLive', {})).toEqual({ live: true });
    expect(await client.unary<{ ready: boolean }>('ServerReady', {})).toEqual({ ready: true });
    for (const name of ['silero_vad', 'parakeet_tdt', 'qwen3', 'tts']) {
      expect(await client.unary<{ ready: boolean }>('ModelReady', { name, version: '' })).toEqual({ ready: true });
    }
    expect(await client.unary<{ ready: boolean }>('ModelReady', { name: 'nope', version: '' })).toEqual({ ready: false });
    expect(await client.healthCheck()).toEqual({ status: 'SERVING' });
    const server = await client.unary<ServerMetadataResponse>('ServerMetadata', {});
    expect(server.name).toBe('triton');
    expect(server.extensions).toContain('sequence');
  });

  it('describes each model with Triton datatypes and -1 for variable dimensions', async () => {
    const qwen = await client.unary<ModelMetadataResponse>('ModelMetadata', { name: 'qwen3', version: '' });
    expect(qwen.versions).toEqual(['1']);
    expect(qwen.inputs.find((i) => i.name === 'text_input')).toEqual({ name: 'text_input', datatype: 'BYTES', shape: [1] });
    expect(qwen.outputs).toEqual([{ name: 'text_output', datatype: 'BYTES', shape: [-1] }]);
    const vad = await client.unary<ModelMetadataResponse>('ModelMetadata', { name: 'silero_vad', version: '' });
    expect(vad.inputs.map((i) => [i.name, i.datatype, i.shape])).toEqual([
      ['input', 'FP32', [-1, -1]],
      ['state', 'FP32', [2, -1, 128]],
      ['sr', 'INT64', [1]],
    ]);
    await expect(client.unary('ModelMetadata', { name: 'nope', version: '' })).rejects.toMatchObject({
      details: "Request for unknown model: 'nope' is not found",
    });
  });

  it('returns model configs with backend, max_batch_size 0, TYPE_* data types and the transaction policy', async () => {
    const { config: asr } = await client.unary<{ config: ModelConfig }>('ModelConfig', { name: 'parakeet_tdt', version: '' });
    expect(asr).toMatchObject({ name: 'parakeet_tdt', backend: 'python', max_batch_size: 0, model_transaction_policy: { decoupled: true } });
    expect(asr.input).toEqual([expect.objectContaining({ name: 'audio_chunk', data_type: 'TYPE_FP32', dims: [-1] })]);
    expect(asr.output.map((o) => [o.name, o.data_type])).toEqual([['transcript', 'TYPE_STRING'], ['is_final', 'TYPE_BOOL']]);
    expect(asr['sequence_batching']).toMatchObject({ max_sequence_idle_microseconds: 60_000_000, oldest: { max_candidate_sequences: 1024 } });
    const { config: llm } = await client.unary<{ config: ModelConfig }>('ModelConfig', { name: 'qwen3', version: '' });
    expect(llm).toMatchObject({ backend: 'vllm', model_transaction_policy: { decoupled: true } });
    expect(llm.input.find((i) => i.name === 'sampling_parameters')).toMatchObject({ data_type: 'TYPE_STRING', optional: true });
    const { config: vad } = await client.unary<{ config: ModelConfig }>('ModelConfig', { name: 'silero_vad', version: '' });
    expect(vad).toMatchObject({ backend: 'onnxruntime', model_transaction_policy: { decoupled: false } });
    expect(vad.input.find((i) => i.name === 'sr')).toMatchObject({ dims: [1], reshape: { shape: [] } });
  });
});

describe('silero_vad', () => {
  it('runs the real Silero model on a batch of two streams: speech scores high, silence low, state comes back', async () => {
    await loadResampler();
    const speech = resampleAll(await speech16k(), 16000, 8000);
    const states = new Float32Array(2 * 2 * 128);
    const context = [new Float32Array(32), new Float32Array(32)];
    let state = states;
    const peak = [0, 0];
    for (let start = 0; start + 256 <= speech.length; start += 256) {
      const chunks = [toFloat(speech.subarray(start, start + 256)), new Float32Array(256)];
      const input = new Float32Array(2 * 288);
      chunks.forEach((chunk, row) => {
        input.set(context[row]!, row * 288);
        input.set(chunk, row * 288 + 32);
        context[row] = chunk.slice(-32);
      });
      const response = await client.unary<ModelInferResponse>(
        'ModelInfer',
        inferRequest({ model: 'silero_vad', id: `vad-${start}`, inputs: [fp32Tensor('input', input, [2, 288]), fp32Tensor('state', state, [2, 2, 128]), int64Tensor('sr', [8000])] }),
      );
      const out = outputs(response);
      expect(out.get('output')!.shape).toEqual([2, 1]);
      expect(out.get('stateN')!.shape).toEqual([2, 2, 128]);
      const probabilities = readFp32(out.get('output')!);
      peak[0] = Math.max(peak[0]!, probabilities[0]!);
      peak[1] = Math.max(peak[1]!, probabilities[1]!);
      state = Float32Array.from(readFp32(out.get('stateN')!));
    }
    expect(peak[0]).toBeGreaterThan(0.8);
    expect(peak[1]).toBeLessThan(0.2);
  });

  it('also answers on a stream, with the final flag, and takes a scalar sr', async () => {
    const stream = client.stream();
    stream.send(inferRequest({ model: 'silero_vad', id: 'vad-s', inputs: [fp32Tensor('input', new Float32Array(288), [1, 288]), fp32Tensor('state', new Float32Array(256), [2, 1, 128]), int64Tensor('sr', [8000], [])] }));
    const [response] = await stream.complete('vad-s');
    expect(response!.error_message).toBe('');
    expect(response!.infer_response!.parameters['triton_final_response']?.bool_param).toBe(true);
    expect(response!.infer_response).toMatchObject({ model_name: 'silero_vad', model_version: '1' });
    stream.end();
  });

  it('refuses a wrong shape or a missing input with a message naming the tensor', async () => {
    const badShape = inferRequest({ model: 'silero_vad', id: 'bad', inputs: [fp32Tensor('input', new Float32Array(288)), fp32Tensor('state', new Float32Array(256), [2, 1, 128]), int64Tensor('sr', [8000])] });
    await expect(client.unary('ModelInfer', badShape)).rejects.toSatisfy((e: unknown) => {
      expectCode(e, grpc.status.INVALID_ARGUMENT, "[request id: bad] unexpected shape for input 'input' for model 'silero_vad'. Expected [-1,-1], got [288]");
      return true;
    });
    const missing = inferRequest({ model: 'silero_vad', inputs: [fp32Tensor('input', new Float32Array(288), [1, 288]), fp32Tensor('state', new Float32Array(256), [2, 1, 128])] });
    await expect(client.unary('ModelInfer', missing)).rejects.toSatisfy((e: unknown) => {
      expectCode(e, grpc.status.INVALID_ARGUMENT, "missing required input(s) ['sr']");
      return true;
    });
  });
});

describe('parakeet_tdt', () => {
  const seq = (id: string | number, start: boolean, end: boolean, emptyFinal: boolean): Record<string, InferParameter> => ({
    sequence_id: typeof id === 'string' ? param.string(id) : param.int64(id),
    sequence_start: param.bool(start),
    sequence_end: param.bool(end),
    ...(emptyFinal ? { triton_enable_empty_final_response: param.bool(true) } : {}),
  });
  const audio = (ms: number) => new Float32Array((16000 * ms) / 1000);

  it('streams partials revealing the scripted words, flag-only finals on request, and one final transcript', async () => {
    const stream = client.stream();
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      ids.push(`a${i}`);
      stream.send(asrRequest(`a${i}`, audio(250), seq('call-1', i === 0, false, true)));
    }
    stream.send(asrRequest('a-end', audio(0), seq('call-1', false, true, true)));
    const final = await stream.complete('a-end');
    const chunkResponses = await Promise.all(ids.map((id) => stream.complete(id)));

    const partials = chunkResponses.flat().filter((r) => r.infer_response!.outputs.length > 0);
    expect(partials.length).toBeGreaterThan(1);
    for (const partial of partials) {
      expect(readBool(outputs(partial).get('is_final')!)).toEqual([false]);
      expect(isFinalResponse(partial.infer_response!)).toBe(false);
      expect('i would like to book a table').toContain(text(partial, 'transcript'));
    }
    // Every chunk ends with a flag-only final: no outputs, triton_final_response=true.
    for (const responses of chunkResponses) {
      const last = responses.at(-1)!.infer_response!;
      expect(last.outputs).toEqual([]);
      expect(isFinalResponse(last)).toBe(true);
    }
    expect(final).toHaveLength(1);
    expect(text(final[0]!, 'transcript')).toBe('i would like to book a table');
    expect(readBool(outputs(final[0]!).get('is_final')!)).toEqual([true]);
    expect(isFinalResponse(final[0]!.infer_response!)).toBe(true);
    const observed = standIn.observed.forModel('parakeet_tdt').filter((r) => r.asr?.sequenceId === 'call-1');
    expect(observed.map((r) => [r.asr!.start, r.asr!.end, r.asr!.samples])).toEqual([
      [true, false, 4000], [false, false, 4000], [false, false, 4000], [false, false, 4000], [false, true, 0],
    ]);
    stream.end();
  });

  it('sends no empty finals without triton_enable_empty_final_response, and gives the next utterance of the id the next script', async () => {
    const stream = client.stream();
    stream.send(asrRequest('b0', audio(500), seq(77, true, false, false)));
    stream.send(asrRequest('b1', audio(0), seq(77, false, true, false)));
    await stream.complete('b1');
    // 500 ms of audio at 200 ms per word: two words.
    expect(stream.of('b0').map((r) => text(r, 'transcript'))).toEqual(['i would']);
    // A second utterance on the same id starts a new sequence.
    stream.send(asrRequest('c0', audio(100), seq(77, true, false, false)));
    stream.send(asrRequest('c1', audio(0), seq(77, false, true, false)));
    const [final] = await stream.complete('c1');
    expect(text(final!, 'transcript')).toBe('thanks bye');
    expect(stream.of('c0')).toEqual([]);
    expect(stream.responses.every((r) => r.infer_response!.outputs.length > 0)).toBe(true);
    stream.end();
  });

  it('rejects a uint64 sequence_id, a sequence without START and ModelInfer, in Triton words', async () => {
    const stream = client.stream();
    stream.send(asrRequest('u', audio(10), { sequence_id: { uint64_param: 5 }, sequence_start: param.bool(true) }));
    stream.send(asrRequest('n', audio(10), seq('never-started', false, false, true)));
    stream.send(asrRequest('z', audio(10), {}));
    const [uint] = await stream.complete('u');
    expect(uint!.error_message).toBe("invalid value type for 'sequence_id' parameter, expected int64_param or string_param.");
    expect(uint!.infer_response!.id).toBe('u');
    const [noStart] = await stream.complete('n');
    expect(noStart!.error_message).toBe(
      "inference request for sequence never-started to model 'parakeet_tdt' must specify the START flag on the first request of the sequence",
    );
    const [noId] = await stream.complete('z');
    expect(noId!.error_message).toBe("inference request to model 'parakeet_tdt' must specify a non-zero or non-empty correlation ID");
    expect(stream.error).toBeUndefined();
    stream.end();
    await expect(client.unary('ModelInfer', asrRequest('m', audio(10), seq(9, true, true, false)))).rejects.toSatisfy((e: unknown) => {
      expectCode(e, grpc.status.UNIMPLEMENTED, "ModelInfer RPC doesn't support models with decoupled transaction policy");
      return true;
    });
  });

  it('recognizes real speech with pocketsphinx', async () => {
    const asrStandIn = await startTritonStandIn({ models: ['parakeet_tdt'], recognizer: 'pocketsphinx' });
    const asrClient = new RawClient(asrStandIn.url);
    try {
      const speech = toFloat(await speech16k());
      const stream = asrClient.stream();
      const chunk = 3200;
      let n = 0;
      for (let start = 0; start < speech.length; start += chunk) {
        stream.send(asrRequest(`p${n++}`, speech.subarray(start, start + chunk), seq('real', start === 0, false, false)));
      }
      stream.send(asrRequest('p-end', new Float32Array(0), seq('real', false, true, false)));
      const [final] = await stream.complete('p-end', 20_000);
      const words = text(final!, 'transcript').split(' ');
      const expected = ['he', 'was', 'not', 'an', 'ill', 'disposed', 'young', 'man'];
      expect(expected.filter((w) => words.includes(w)).length).toBeGreaterThanOrEqual(4);
      stream.end();
    } finally {
      asrClient.close();
      await asrStandIn.stop();
    }
  });
});

describe('qwen3', () => {
  it('streams token deltas whose concatenation is the scripted reply, tool call included, the last one final', async () => {
    const stream = client.stream();
    stream.send(llmRequest('q1', chatPrompt('ok goodbye then'), [boolTensor('exclude_input_in_output', [true]), bytesTensor('sampling_parameters', ['{"temperature": 0.7}'])]));
    const responses = await stream.complete('q1');
    expect(responses.length).toBeGreaterThan(10);
    expect(responses.map((r) => text(r, 'text_output')).join('')).toBe(TOOL_REPLY);
    expect(responses.map((r) => text(r, 'text_output'))).toContain('<tool_call>');
    expect(responses.slice(0, -1).every((r) => !isFinalResponse(r.infer_response!))).toBe(true);
    expect(isFinalResponse(responses.at(-1)!.infer_response!)).toBe(true);
    const observed = standIn.observed.forModel('qwen3').find((r) => r.id === 'q1')!;
    expect(observed.llm).toEqual({ prompt: chatPrompt('ok goodbye then'), stream: true, samplingParameters: '{"temperature": 0.7}', excludeInputInOutput: true });
    stream.end();
  });

  it('answers unmatched prompts with the default reply, and in one response with the prompt prepended when not streaming', async () => {
    const stream = client.stream();
    stream.send(inferRequest({ model: 'qwen3', id: 'q2', inputs: [bytesTensor('text_input', ['Hi. ']), boolTensor('stream', [false])] }));
    const responses = await stream.complete('q2');
    expect(responses).toHaveLength(1);
    expect(text(responses[0]!, 'text_output')).toBe('Hi. Sure, I can help with that.');
    stream.end();
  });

  it('refuses exclude_input_in_output=false when streaming, as a final error response', async () => {
    const stream = client.stream();
    stream.send(llmRequest('q3', chatPrompt('hello'), [boolTensor('exclude_input_in_output', [false])]));
    const [response] = await stream.complete('q3');
    expect(response!.error_message).toContain('When streaming, `exclude_input_in_output` = False is not allowed.');
    expect(response!.infer_response).toMatchObject({ id: 'q3', model_name: 'qwen3', outputs: [] });
    expect(isFinalResponse(response!.infer_response!)).toBe(true);
    stream.end();
  });

  it('stops generating when the client cancels the call, and records the cancel', async () => {
    const stream = client.stream();
    stream.send(llmRequest('q-cancel', chatPrompt('tell me a long story')));
    await vi.waitFor(() => expect(stream.of('q-cancel').length).toBeGreaterThan(3), { interval: 5 });
    stream.call.cancel();
    await vi.waitFor(() => expect(standIn.observed.cancelledIds('qwen3')).toContain('q-cancel'));
    const request = standIn.observed.forModel('qwen3').find((r) => r.id === 'q-cancel')!;
    const sentAtCancel = request.responses;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(request.responses).toBe(sentAtCancel);
    expect(sentAtCancel).toBeLessThan(100);
  });
});

describe('tts', () => {
  it('streams espeak audio chunks with the sample rate, then a flag-only final', async () => {
    const stream = client.stream();
    stream.send(inferRequest({ model: 'tts', id: 't1', inputs: [bytesTensor('text', ['Hello, how can I help you today?'])], parameters: { triton_enable_empty_final_response: param.bool(true) } }));
    const responses = await stream.complete('t1');
    const chunks = responses.slice(0, -1);
    expect(chunks.length).toBeGreaterThan(5);
    let samples = 0;
    for (const chunk of chunks) {
      const out = outputs(chunk);
      expect(readInt32(out.get('sample_rate')!)).toEqual(Int32Array.from([22050]));
      const audio = readFp32(out.get('audio')!);
      samples += audio.length;
      expect(isFinalResponse(chunk.infer_response!)).toBe(false);
    }
    expect(samples / 22050).toBeGreaterThan(1);
    const last = responses.at(-1)!.infer_response!;
    expect(last).toMatchObject({ id: 't1', model_name: 'tts', outputs: [] });
    expect(isFinalResponse(last)).toBe(true);
    expect(standIn.observed.ttsTexts()).toContain('Hello, how can I help you today?');
    // Empty text: only the final.
    stream.send(inferRequest({ model: 'tts', id: 't2', inputs: [bytesTensor('text', [''])], parameters: { triton_enable_empty_final_response: param.bool(true) } }));
    const empty = await stream.complete('t2');
    expect(empty).toHaveLength(1);
    expect(empty[0]!.infer_response!.outputs).toEqual([]);
    stream.end();
  });
});

describe('errors and faults', () => {
  it('answers an unknown model on the stream with error_message and keeps the stream open', async () => {
    const stream = client.stream();
    stream.send(inferRequest({ model: 'nope', id: 'x1', inputs: [] }));
    const [error] = await stream.complete('x1');
    expect(error).toMatchObject({ error_message: "Request for unknown model: 'nope' is not found", infer_response: { id: 'x1' } });
    stream.send(llmRequest('x2', chatPrompt('hi')));
    await stream.complete('x2');
    stream.end();
    await vi.waitFor(() => expect(stream.ended).toBe(true));
    expect(stream.error).toBeUndefined();
  });

  it('injects an error, a delay and a cut stream', async () => {
    const stream = client.stream();
    standIn.faults.tts = { error: 'CUDA out of memory' };
    stream.send(inferRequest({ model: 'tts', id: 'f1', inputs: [bytesTensor('text', ['hi'])] }));
    const [error] = await stream.complete('f1');
    expect(error).toMatchObject({ error_message: 'CUDA out of memory', infer_response: { id: 'f1', model_name: 'tts' } });
    delete standIn.faults.tts;

    standIn.faults.qwen3 = { delayMs: 300 };
    const sentAt = Date.now();
    stream.send(llmRequest('f2', chatPrompt('hi')));
    await vi.waitFor(() => expect(stream.of('f2').length).toBeGreaterThan(0), { interval: 5 });
    expect(Date.now() - sentAt).toBeGreaterThanOrEqual(290);
    await stream.complete('f2');
    stream.end();

    standIn.faults.qwen3 = { cutAfterResponses: 2 };
    const cut = client.stream();
    cut.send(llmRequest('f3', chatPrompt('tell me a long story')));
    const failure = await cut.failed();
    expect(grpc.status[failure.code]).toBe('UNAVAILABLE');
    expect(cut.of('f3')).toHaveLength(2);
    delete standIn.faults.qwen3;
    expect(standIn.observed.cancelledIds()).not.toContain('f3');
  });

  it('records a ModelInfer call the client cancelled while the model was delayed', async () => {
    standIn.faults.silero_vad = { delayMs: 5000 };
    const definition = tritonProtocol().inferenceService.ModelInfer!;
    const request = inferRequest({ model: 'silero_vad', id: 'vad-cancel', inputs: [fp32Tensor('input', new Float32Array(288), [1, 288]), fp32Tensor('state', new Float32Array(256), [2, 1, 128]), int64Tensor('sr', [8000])] });
    const call = client.client.makeUnaryRequest(
      definition.path,
      definition.requestSerialize as (value: ModelInferRequest) => Buffer,
      definition.responseDeserialize as (bytes: Buffer) => ModelInferResponse,
      request,
      () => {},
    );
    await vi.waitFor(() => expect(standIn.observed.forModel('silero_vad').map((r) => r.id)).toContain('vad-cancel'));
    call.cancel();
    await vi.waitFor(() => expect(standIn.observed.cancelled).toContainEqual(expect.objectContaining({ rpc: 'ModelInfer', model: 'silero_vad', id: 'vad-cancel', responses: 0 })));
    delete standIn.faults.silero_vad;
  });

  it('ends the stream with a gRPC status instead when the client asked with triton_grpc_error', async () => {
    const metadata = new grpc.Metadata();
    metadata.set('triton_grpc_error', 'true');
    const stream = client.stream(metadata);
    stream.send(inferRequest({ model: 'nope', id: 'g1', inputs: [] }));
    const failure = await stream.failed();
    expectCode(failure, grpc.status.INVALID_ARGUMENT, "Request for unknown model: 'nope' is not found");
  });

  it('reports a model marked unready, and the server and health service with it', async () => {
    standIn.faults.qwen3 = { unready: true };
    expect(await client.unary<{ ready: boolean }>('ModelReady', { name: 'qwen3', version: '' })).toEqual({ ready: false });
    expect(await client.unary<{ ready: boolean }>('ModelReady', { name: 'tts', version: '' })).toEqual({ ready: true });
    expect(await client.unary<{ ready: boolean }>('ServerReady', {})).toEqual({ ready: false });
    expect(await client.healthCheck()).toEqual({ status: 'NOT_SERVING' });
    delete standIn.faults.qwen3;
    expect(await client.healthCheck()).toEqual({ status: 'SERVING' });
  });

  it('kills in-flight streams with UNAVAILABLE on restart and serves again on the same port', async () => {
    const stream = client.stream();
    stream.send(llmRequest('r1', chatPrompt('tell me a long story')));
    await vi.waitFor(() => expect(stream.of('r1').length).toBeGreaterThan(0), { interval: 5 });
    await standIn.restart();
    const failure = await stream.failed();
    expect(grpc.status[failure.code]).toBe('UNAVAILABLE');
    expect(standIn.observed.cancelledIds()).not.toContain('r1');
    await vi.waitFor(async () => expect(await client.unary<{ ready: boolean }>('ServerReady', {})).toEqual({ ready: true }), { timeout: 5000, interval: 100 });
    const again = client.stream();
    again.send(llmRequest('r2', chatPrompt('ok goodbye')));
    const responses = await again.complete('r2');
    expect(responses.map((r) => text(r, 'text_output')).join('')).toBe(TOOL_REPLY);
    again.end();
  });
});
