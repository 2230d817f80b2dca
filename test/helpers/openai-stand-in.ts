/**
 * A protocol-true stand-in for an OpenAI-compatible chat endpoint: a real HTTP server on 127.0.0.1
 * that answers POST /v1/chat/completions with the SSE stream OpenAI sends (`chat.completion.chunk`
 * objects, a role chunk, content deltas, tool-call fragments split across chunks, a finish_reason
 * chunk and `data: [DONE]`). Behaviour is configurable per test, and every request body and every
 * connection the client dropped mid-response is recorded.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface StandInToolCall {
  id: string;
  name: string;
  /** The raw JSON argument string, streamed in `argumentPieces` fragments. */
  arguments: string;
}

export interface StandInBehavior {
  /**
   * stream: answer normally; http_error: answer `errorStatus` with `errorBody`;
   * stall: send the headers (and the first `afterTokens` tokens), then go silent until the client leaves;
   * truncate: send the first `afterTokens` tokens, then end the response cleanly without finish_reason or [DONE];
   * reset: send the first `afterTokens` tokens, then destroy the socket;
   * hang: never send even the headers.
   */
  mode: 'stream' | 'http_error' | 'stall' | 'truncate' | 'reset' | 'hang';
  /** Content deltas, one chunk each. */
  tokens: string[];
  toolCalls: StandInToolCall[];
  /** How many fragments each tool call's arguments are split into. */
  argumentPieces: number;
  /** Delay before each chunk after the role chunk. */
  tokenDelayMs: number;
  /** For stall, truncate and reset: how many tokens are sent first. */
  afterTokens: number;
  errorStatus: number;
  errorBody: string;
  /** Write the response in pieces of this many bytes, one per event-loop turn (0: one write per event). */
  fragmentBytes: number;
  /** Interleave SSE comments and extra blank lines, as proxies and some servers do. */
  keepAliveComments: boolean;
}

export type ResponseOutcome = 'completed' | 'client_closed' | 'server_closed';

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: unknown;
  /**
   * How the response ended: completed (fully written), client_closed (the client dropped the
   * connection first, e.g. on abort) or server_closed (the stand-in destroyed it, `reset` mode).
   */
  outcome: Promise<ResponseOutcome>;
}

const DEFAULT_BEHAVIOR: StandInBehavior = {
  mode: 'stream',
  tokens: ['Hello', ' there', '!'],
  toolCalls: [],
  argumentPieces: 3,
  tokenDelayMs: 0,
  afterTokens: 0,
  errorStatus: 500,
  errorBody: '{"error":{"message":"The server had an error while processing your request.","type":"server_error"}}',
  fragmentBytes: 0,
  keepAliveComments: false,
};

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function split(text: string, pieces: number): string[] {
  const size = Math.max(1, Math.ceil(text.length / Math.max(1, pieces)));
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out.length > 0 ? out : [''];
}

export class OpenAiStandIn {
  behavior: StandInBehavior = { ...DEFAULT_BEHAVIOR };
  readonly requests: RecordedRequest[] = [];
  /** Responses whose connection the client closed before the stand-in finished them. */
  abortedConnections = 0;
  private readonly abortWaiters: (() => void)[] = [];
  private readonly server: Server;

  private constructor() {
    this.server = createServer((req, res) => void this.handle(req, res));
  }

  static async start(behavior: Partial<StandInBehavior> = {}): Promise<OpenAiStandIn> {
    const standIn = new OpenAiStandIn();
    standIn.configure(behavior);
    await new Promise<void>((resolve) => standIn.server.listen(0, '127.0.0.1', resolve));
    return standIn;
  }

  /** Base URL in the form the engine is configured with, e.g. http://127.0.0.1:1234/v1. */
  get url(): string {
    const { port } = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${port}/v1`;
  }

  configure(behavior: Partial<StandInBehavior>): void {
    this.behavior = { ...DEFAULT_BEHAVIOR, ...behavior };
  }

  /** Resolves once `count` responses in all have been cut off by the client; rejects after `timeoutMs`. */
  waitForAbortedConnections(count: number, timeoutMs = 2000): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        if (this.abortedConnections < count) return false;
        clearTimeout(timer);
        resolve();
        return true;
      };
      const timer = setTimeout(
        () => reject(new Error(`only ${this.abortedConnections} of ${count} connections were aborted within ${timeoutMs} ms`)),
        timeoutMs,
      );
      if (!check()) this.abortWaiters.push(() => void check());
    });
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let closedEarly = false;
    let destroyedByUs = false;
    const outcome = new Promise<ResponseOutcome>((resolve) => {
      res.on('close', () => {
        if (res.writableFinished) return resolve('completed');
        closedEarly = true;
        if (destroyedByUs) return resolve('server_closed');
        this.abortedConnections++;
        for (const waiter of this.abortWaiters.splice(0)) waiter();
        resolve('client_closed');
      });
    });

    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // Recorded as the raw text; the test will notice.
    }
    this.requests.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers, body, outcome });

    if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end('{"error":{"message":"not found"}}');
      return;
    }
    const b = this.behavior;
    if (b.mode === 'hang') return;
    if (b.mode === 'http_error') {
      res.writeHead(b.errorStatus, { 'content-type': 'application/json' });
      res.end(b.errorBody);
      return;
    }

    const model = typeof body === 'object' && body !== null && 'model' in body ? String(body.model) : 'unknown';
    const id = `chatcmpl-standin${this.requests.length}`;
    const created = Math.floor(Date.now() / 1000);
    const chunk = (delta: Record<string, unknown>, finishReason: string | null = null): string =>
      `data: ${JSON.stringify({
        id,
        object: 'chat.completion.chunk',
        created,
        model,
        system_fingerprint: 'fp_standin',
        choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
      })}\n\n`;

    const send = async (data: string): Promise<void> => {
      if (closedEarly) return;
      if (b.fragmentBytes <= 0) {
        res.write(data);
        return;
      }
      const bytes = Buffer.from(data, 'utf8');
      for (let i = 0; i < bytes.length && !closedEarly; i += b.fragmentBytes) {
        res.write(bytes.subarray(i, i + b.fragmentBytes));
        await sleep(1);
      }
    };
    const pause = async (): Promise<void> => {
      if (b.tokenDelayMs > 0) await sleep(b.tokenDelayMs);
    };

    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
    res.flushHeaders();
    if (b.keepAliveComments) await send(': keep-alive\n\n\n');
    await send(chunk({ role: 'assistant', content: '', refusal: null }));

    const cut = b.mode === 'stall' || b.mode === 'truncate' || b.mode === 'reset';
    for (const [sent, token] of b.tokens.entries()) {
      if (cut && sent >= b.afterTokens) break;
      await pause();
      if (closedEarly) return;
      await send(chunk({ content: token }));
      if (b.keepAliveComments) await send(': ping\n\n');
    }
    if (b.mode === 'stall') return;
    if (b.mode === 'truncate') {
      await pause();
      res.end();
      return;
    }
    if (b.mode === 'reset') {
      await pause();
      destroyedByUs = true;
      res.destroy();
      return;
    }

    for (const [index, call] of b.toolCalls.entries()) {
      await pause();
      await send(
        chunk({ tool_calls: [{ index, id: call.id, type: 'function', function: { name: call.name, arguments: '' } }] }),
      );
      for (const piece of split(call.arguments, b.argumentPieces)) {
        await pause();
        await send(chunk({ tool_calls: [{ index, function: { arguments: piece } }] }));
      }
    }
    await pause();
    await send(chunk({}, b.toolCalls.length > 0 ? 'tool_calls' : 'stop'));
    await send('data: [DONE]\n\n');
    if (!closedEarly) res.end();
  }
}
