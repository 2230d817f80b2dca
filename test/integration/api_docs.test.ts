// Guards the OpenAPI document at /docs: every read-API route is in it with its bearer security,
// its inputs and its error answers, nothing outside /v1 leaks into it, and the UI is served.
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openApiTestApp, type ApiTestApp } from '../helpers/analyst-api.js';

let api: ApiTestApp;
let doc: {
  openapi: string;
  paths: Record<string, Record<string, { security?: unknown; parameters?: Array<{ name: string; in: string }>; requestBody?: unknown; responses: Record<string, unknown> }>>;
  components: { securitySchemes: Record<string, unknown> };
};

beforeAll(async () => {
  api = await openApiTestApp();
  const response = await api.app.inject('/docs/json');
  expect(response.statusCode).toBe(200);
  doc = response.json();
});
afterAll(async () => {
  await api?.close();
});

describe('/docs', () => {
  it('serves an OpenAPI 3 document listing the read API with a bearer scheme', () => {
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.paths).sort()).toEqual(['/v1/calls', '/v1/calls/{callSid}', '/v1/numbers', '/v1/numbers/{number}']);
    expect(Object.keys(doc.paths['/v1/numbers/{number}'] ?? {}).sort()).toEqual(['get', 'put']);
    expect(doc.components.securitySchemes['bearerAuth']).toEqual(expect.objectContaining({ type: 'http', scheme: 'bearer' }));
  });

  it('documents each operation with its security, inputs and error answers', () => {
    const list = doc.paths['/v1/calls']?.['get'];
    expect(list?.security).toEqual([{ bearerAuth: [] }]);
    expect(list?.parameters?.map((p) => `${p.in}:${p.name}`).sort()).toEqual(
      ['query:cursor', 'query:direction', 'query:disposition', 'query:from', 'query:limit', 'query:number', 'query:status', 'query:to'],
    );
    expect(Object.keys(list?.responses ?? {}).sort()).toEqual(['200', '400', '401', '403', '500']);
    expect(Object.keys(doc.paths['/v1/calls/{callSid}']?.['get']?.responses ?? {})).toContain('404');
    expect(doc.paths['/v1/numbers/{number}']?.['put']?.requestBody).toBeDefined();
  });

  it('leaves routes outside /v1 out of the document', async () => {
    const app = Fastify({ logger: false });
    const { registerApiDocs } = await import('../../src/api/docs.js');
    await registerApiDocs(app);
    app.get('/health', { schema: { response: { 200: { type: 'object', properties: { ok: { type: 'boolean' } } } } } }, async () => ({ ok: true }));
    app.get('/v1/ping', { schema: { tags: ['calls'] } }, async () => 'pong');
    await app.ready();
    const paths = Object.keys((await app.inject('/docs/json')).json<{ paths: object }>().paths);
    await app.close();
    expect(paths).toEqual(['/v1/ping']);
  });

  it('serves the Swagger UI page without a key', async () => {
    const response = await api.app.inject('/docs');
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toContain('text/html');
  });
});
