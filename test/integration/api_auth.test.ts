// Guards the read API's locks: with API_KEYS unset every /v1 request is refused and the server
// says so once at start, and no refusal ever writes the presented key to the log.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, ANALYST_KEY, openApiTestApp, type ApiTestApp } from '../helpers/analyst-api.js';

describe('with API_KEYS unset', () => {
  let api: ApiTestApp;
  beforeAll(async () => {
    api = await openApiTestApp({ apiKeys: '' });
  });
  afterAll(async () => {
    await api?.close();
  });

  it('refuses every /v1 request with 401, whatever key is sent', async () => {
    for (const url of ['/v1/calls', '/v1/calls/CA0123', '/v1/numbers', '/v1/numbers/%2B15551234567']) {
      for (const key of [undefined, ADMIN_KEY, ANALYST_KEY]) {
        const response = await api.as(key, url);
        expect(response.statusCode, `${url} with ${key ?? 'no key'}`).toBe(401);
      }
    }
    const put = await api.as(ADMIN_KEY, { method: 'PUT', url: '/v1/numbers/%2B15551234567', payload: { name: 'x' } });
    expect(put.statusCode).toBe(401);
  });

  it('logged once at registration that the API is closed', () => {
    const closed = api.logs.filter((line) => line.includes('"api_closed"'));
    expect(closed).toHaveLength(1);
    expect(closed[0]).toContain('API_KEYS');
  });
});

describe('refusal logs', () => {
  let api: ApiTestApp;
  beforeAll(async () => {
    api = await openApiTestApp();
  });
  afterAll(async () => {
    await api?.close();
  });

  it('log why each request was refused, never the key itself', async () => {
    const wrongKey = 'wrong-key-9a8b7c6d5e4f3a2b';
    api.logs.length = 0;
    await api.as(undefined, '/v1/calls');
    await api.as(wrongKey, '/v1/calls');
    await api.app.inject({ url: '/v1/calls', headers: { authorization: `Token ${wrongKey}` } });
    await api.as(ANALYST_KEY, '/v1/numbers');

    const refusals = api.logs.map((line) => JSON.parse(line) as { event?: string; reason?: string; role?: string });
    expect(refusals.filter((l) => l.event === 'api_auth_refused').map((l) => l.reason)).toEqual([
      'no_credentials',
      'unknown_key',
      'malformed_authorization',
      'role',
    ]);
    expect(refusals.find((l) => l.reason === 'role')?.role).toBe('analyst');
    const all = api.logs.join('\n');
    expect(all).not.toContain(wrongKey);
    expect(all).not.toContain(ANALYST_KEY);
  });

  it('does not log a request that was let in', async () => {
    api.logs.length = 0;
    expect((await api.as(ANALYST_KEY, '/v1/calls')).statusCode).toBe(200);
    expect(api.logs.filter((line) => line.includes('api_auth_refused'))).toEqual([]);
  });
});
