// Guards against an HTTP tool call that throws, hangs past its timeout, ignores a barge-in, sends bad arguments upstream, or floods the LLM context.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { HttpToolSpec } from '../../src/engines/local/agent-script.js';
import { HttpToolRunner, MAX_TOOL_CONTENT_CHARS, TOOL_FILLER_AFTER_MS, toolSpecs, type ToolLogger } from '../../src/agent/http-tools.js';

interface Seen {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  body: string;
  /** Resolves when the connection closed before the server answered. */
  closedEarly: Promise<void>;
}

let server: Server;
let base: string;
let seen: Seen[] = [];
let arrived: ((request: Seen) => void) | undefined;

function handle(req: IncomingMessage, res: ServerResponse, request: Seen): void {
  switch (request.path) {
    case '/echo':
      // Pretty-printed on purpose: the runner should hand it on compactly.
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ received: JSON.parse(request.body || 'null') }, null, 2));
      return;
    case '/text':
      res.writeHead(200, { 'content-type': 'text/plain' }).end('Order 10042 shipped with UPS.');
      return;
    case '/fail':
      res.writeHead(500, { 'content-type': 'text/plain' }).end('database\n   unavailable ' + 'x'.repeat(1000));
      return;
    case '/empty':
      res.writeHead(204).end();
      return;
    case '/big':
      res.writeHead(200, { 'content-type': 'text/plain' }).end('a'.repeat(5000));
      return;
    case '/slow':
      setTimeout(() => res.writeHead(200).end('too late'), 10_000).unref();
      return;
    default:
      res.writeHead(404).end();
  }
}

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const closedEarly = new Promise<void>((resolve) => res.on('close', () => !res.writableFinished && resolve()));
      const request: Seen = { method: req.method ?? '', path: url.pathname, query: url.searchParams, headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), closedEarly };
      seen.push(request);
      arrived?.(request);
      handle(req, res, request);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

beforeEach(() => {
  seen = [];
  arrived = undefined;
});

function nextRequest(): Promise<Seen> {
  return new Promise((resolve) => (arrived = resolve));
}

const logs: { level: string; obj: Record<string, unknown> }[] = [];
const logger: ToolLogger = {
  info: (obj) => logs.push({ level: 'info', obj }),
  warn: (obj) => logs.push({ level: 'warn', obj }),
};

function tool(path: string, overrides: Partial<HttpToolSpec> = {}): HttpToolSpec {
  return {
    name: 'lookup_order',
    description: 'Look up an order.',
    parameters: {
      type: 'object',
      properties: { order_number: { type: 'string' }, quantity: { type: 'integer' }, gift: { type: 'boolean' }, tags: { type: 'array' } },
      required: ['order_number'],
    },
    url: `${base}${path}`,
    method: 'POST',
    timeoutMs: 3000,
    headers: {},
    filler: 'One moment please.',
    ...overrides,
  };
}

function runner(...tools: HttpToolSpec[]): HttpToolRunner {
  return new HttpToolRunner(tools, logger);
}

const live = (): AbortSignal => new AbortController().signal;

describe('toolSpecs', () => {
  it('offers each declared tool to the LLM by name, description and argument schema only', () => {
    const spec = tool('/echo', { headers: { 'X-Api-Key': 'secret' } });
    expect(toolSpecs([spec])).toEqual([{ name: 'lookup_order', description: 'Look up an order.', parameters: spec.parameters }]);
    expect(JSON.stringify(toolSpecs([spec]))).not.toContain('secret');
    expect(TOOL_FILLER_AFTER_MS).toBe(1000);
  });
});

describe('HttpToolRunner', () => {
  it('POSTs the arguments as a JSON body with the declared headers, and hands JSON back compactly', async () => {
    const result = await runner(tool('/echo', { headers: { 'X-Api-Key': 'k-123' } })).run(
      { id: 'c1', name: 'lookup_order', arguments: { order_number: '10042', quantity: 2 } },
      live(),
    );
    expect(result).toEqual({ ok: true, content: '{"received":{"order_number":"10042","quantity":2}}' });
    expect(seen).toHaveLength(1);
    expect(seen[0]!.method).toBe('POST');
    expect(seen[0]!.headers['content-type']).toBe('application/json');
    expect(seen[0]!.headers['x-api-key']).toBe('k-123');
    expect(JSON.parse(seen[0]!.body)).toEqual({ order_number: '10042', quantity: 2 });
  });

  it('sends the arguments of a GET tool as query parameters, with no body', async () => {
    const result = await runner(tool('/text?src=phone', { method: 'GET' })).run(
      { id: 'c1', name: 'lookup_order', arguments: { order_number: '10 042', quantity: 3, gift: true, tags: ['a', 'b'] } },
      live(),
    );
    expect(result).toEqual({ ok: true, content: 'Order 10042 shipped with UPS.' });
    const request = seen[0]!;
    expect(request.method).toBe('GET');
    expect(request.body).toBe('');
    expect(Object.fromEntries(request.query)).toEqual({ src: 'phone', order_number: '10 042', quantity: '3', gift: 'true', tags: '["a","b"]' });
  });

  it('passes a text response on as it is', async () => {
    const result = await runner(tool('/text')).run({ id: 'c1', name: 'lookup_order', arguments: { order_number: '1' } }, live());
    expect(result).toEqual({ ok: true, content: 'Order 10042 shipped with UPS.' });
  });

  it('says so when the tool succeeds with an empty body', async () => {
    const result = await runner(tool('/empty')).run({ id: 'c1', name: 'lookup_order', arguments: { order_number: '1' } }, live());
    expect(result).toEqual({ ok: true, content: 'The tool lookup_order succeeded and returned no content.' });
  });

  it('reports a non-2xx answer as http_error with the status and a short excerpt of the body', async () => {
    const result = await runner(tool('/fail')).run({ id: 'c1', name: 'lookup_order', arguments: { order_number: '1' } }, live());
    expect(result.ok).toBe(false);
    expect(result).toMatchObject({ reason: 'http_error' });
    expect(result.content).toMatch(/^The tool lookup_order failed: the server answered HTTP 500 Internal Server Error: database unavailable x+…\.$/);
    expect(result.content.length).toBeLessThan(400);
  });

  it('gives up at the tool timeout, tells the LLM so, and closes the request', async () => {
    const request = nextRequest();
    const started = performance.now();
    const result = await runner(tool('/slow', { name: 'slow_tool', timeoutMs: 200 })).run({ id: 'c1', name: 'slow_tool', arguments: { order_number: '1' } }, live());
    const elapsed = performance.now() - started;
    expect(result).toEqual({ ok: false, reason: 'timeout', content: 'The tool slow_tool timed out after 200 ms.' });
    expect(elapsed).toBeGreaterThanOrEqual(180);
    expect(elapsed).toBeLessThan(5000); // the server would only answer after 10 s
    await (await request).closedEarly;
  });

  it('stops at once when the caller aborts (barge-in, hang-up), and the server sees the request closed', async () => {
    const controller = new AbortController();
    const request = nextRequest();
    const pending = runner(tool('/slow')).run({ id: 'c1', name: 'lookup_order', arguments: { order_number: '1' } }, controller.signal);
    await request;
    controller.abort();
    const result = await pending;
    expect(result).toEqual({ ok: false, reason: 'aborted', content: 'The call to lookup_order was cancelled.' });
    await (await request).closedEarly;
  });

  it('sends nothing when the caller has already aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    const result = await runner(tool('/echo')).run({ id: 'c1', name: 'lookup_order', arguments: { order_number: '1' } }, controller.signal);
    expect(result).toMatchObject({ ok: false, reason: 'aborted' });
    expect(seen).toHaveLength(0);
  });

  it('rejects arguments that do not fit the schema without calling the server, saying what to fix', async () => {
    const run = runner(tool('/echo', { parameters: { ...tool('/echo').parameters, additionalProperties: false } }));
    const missing = await run.run({ id: 'c1', name: 'lookup_order', arguments: { quantity: 1 } }, live());
    expect(missing).toEqual({
      ok: false,
      reason: 'invalid_arguments',
      content: 'The arguments for lookup_order are invalid: "order_number" is required. Call lookup_order again with corrected arguments.',
    });
    const wrongTypes = await run.run(
      { id: 'c2', name: 'lookup_order', arguments: { order_number: 10042, quantity: 1.5, gift: 'yes', tags: 'a', colour: 'red' } },
      live(),
    );
    expect(wrongTypes).toMatchObject({ ok: false, reason: 'invalid_arguments' });
    expect(wrongTypes.content).toContain('"order_number" must be a string (got 10042)');
    expect(wrongTypes.content).toContain('"quantity" must be an integer (got 1.5)');
    expect(wrongTypes.content).toContain('"gift" must be a boolean (got "yes")');
    expect(wrongTypes.content).toContain('"tags" must be an array (got "a")');
    expect(wrongTypes.content).toContain('"colour" is not an argument of this tool (its arguments: order_number, quantity, gift, tags)');
    const nullRequired = await run.run({ id: 'c3', name: 'lookup_order', arguments: { order_number: null } }, live());
    expect(nullRequired).toMatchObject({ ok: false, reason: 'invalid_arguments' });
    expect(seen).toHaveLength(0);
  });

  it('checks enums and lets extra arguments through unless the schema forbids them', async () => {
    const spec = tool('/echo', {
      parameters: { type: 'object', properties: { size: { type: 'string', enum: ['S', 'M', 'L'] } } },
    });
    const bad = await runner(spec).run({ id: 'c1', name: 'lookup_order', arguments: { size: 'XL' } }, live());
    expect(bad.content).toContain('"size" must be one of "S", "M", "L" (got "XL")');
    const good = await runner(spec).run({ id: 'c2', name: 'lookup_order', arguments: { size: 'M', note: 'hi', optional: null } }, live());
    expect(good.ok).toBe(true);
    expect(seen).toHaveLength(1);
  });

  it('answers a call to a tool it does not have with the tools it does have', async () => {
    const result = await runner(tool('/echo')).run({ id: 'c1', name: 'cancel_order', arguments: {} }, live());
    expect(result).toEqual({ ok: false, reason: 'unknown_tool', content: 'There is no tool named cancel_order. Available tools: lookup_order.' });
    expect(seen).toHaveLength(0);
  });

  it('cuts a long response to the content limit and says it did', async () => {
    const result = await runner(tool('/big')).run({ id: 'c1', name: 'lookup_order', arguments: { order_number: '1' } }, live());
    expect(result.ok).toBe(true);
    expect(result.content.startsWith('a'.repeat(MAX_TOOL_CONTENT_CHARS))).toBe(true);
    expect(result.content.slice(MAX_TOOL_CONTENT_CHARS)).toBe('… [truncated: the response had 5000 characters; only the first 2000 are shown]');
  });

  it('reports an unreachable server as a network failure', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const result = await runner(tool('/echo', { url: `http://127.0.0.1:${port}/x` })).run(
      { id: 'c1', name: 'lookup_order', arguments: { order_number: '1' } },
      live(),
    );
    expect(result).toEqual({ ok: false, reason: 'network', content: 'The tool lookup_order could not be reached (ECONNREFUSED).' });
  });

  it('never logs header values such as API keys', () => {
    expect(JSON.stringify(logs)).not.toContain('k-123');
    expect(logs.some((entry) => entry.obj['event'] === 'http_tool')).toBe(true);
  });
});
