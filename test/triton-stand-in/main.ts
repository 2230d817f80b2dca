/**
 * Runs the Triton stand-in by hand, so the server can be pointed at it without a GPU:
 *
 *   npx tsx test/triton-stand-in/main.ts --port 8001
 *   npx tsx test/triton-stand-in/main.ts --port 8001 --scripted "i would like a table" --scripted "thanks bye" \
 *     --reply "Sure, for how many people?" --tokens-per-second 40 --first-token-ms 300
 *
 * Options: --port N (default 8001), --host H, --scripted TEXT (repeatable; default: pocketsphinx
 * recognition), --reply TEXT (every LLM reply; default a greeting), --tokens-per-second N,
 * --first-token-ms N, --first-audio-ms N, --models a,b (subset of silero_vad,parakeet_tdt,qwen3,tts).
 * Each request is logged on stderr; Ctrl-C stops it.
 */
import { parseArgs } from 'node:util';
import { ALL_MODELS, startTritonStandIn, type StandInModelName } from './index.js';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '8001' },
    host: { type: 'string', default: '127.0.0.1' },
    scripted: { type: 'string', multiple: true },
    reply: { type: 'string' },
    'tokens-per-second': { type: 'string' },
    'first-token-ms': { type: 'string' },
    'first-audio-ms': { type: 'string' },
    models: { type: 'string' },
  },
});

function number(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed < 0) throw new Error(`--${name} must be a non-negative number (got '${value}')`);
  return parsed;
}

const models = values.models?.split(',').map((m) => m.trim());
for (const model of models ?? []) {
  if (!ALL_MODELS.includes(model as StandInModelName)) throw new Error(`--models: unknown model '${model}' (known: ${ALL_MODELS.join(', ')})`);
}
const reply = values.reply;

const standIn = await startTritonStandIn({
  port: number('port', values.port),
  host: values.host,
  recognizer: values.scripted !== undefined ? { scripted: values.scripted } : 'pocketsphinx',
  llm: {
    ...(reply !== undefined ? { reply: () => reply } : {}),
    tokensPerSecond: number('tokens-per-second', values['tokens-per-second']),
    firstTokenDelayMs: number('first-token-ms', values['first-token-ms']),
  },
  tts: { firstAudioDelayMs: number('first-audio-ms', values['first-audio-ms']) },
  ...(models !== undefined ? { models: models as StandInModelName[] } : {}),
});

standIn.events.on('request', (r) => {
  const detail = r.llm?.prompt.slice(-120) ?? r.tts?.text ?? (r.asr !== undefined ? JSON.stringify(r.asr) : r.vad !== undefined ? `batch ${r.vad.batch}` : '');
  process.stderr.write(`${new Date().toISOString()} ${r.rpc} ${r.model} id=${r.id} ${JSON.stringify(detail)}\n`);
});
standIn.events.on('cancelled', (c) => process.stderr.write(`${new Date().toISOString()} cancelled ${c.model} id=${c.id}\n`));
process.stderr.write(`Triton stand-in listening on ${standIn.url}\n`);

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void standIn.stop().then(() => process.exit(0));
  });
}
