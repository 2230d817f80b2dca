// Guards the admins' number configuration: only admin keys may read or change a number's agent
// profile (analysts get 403), a PUT replaces the whole profile and a GET reads back what was
// saved, and a malformed number or body is refused before anything is written.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, ANALYST_KEY, openApiTestApp, uniqueNumber, type ApiTestApp } from '../helpers/analyst-api.js';

let api: ApiTestApp;

beforeAll(async () => {
  api = await openApiTestApp();
});
afterAll(async () => {
  await api?.close();
});

const put = (key: string | undefined, number: string, payload: unknown) =>
  api.as(key, { method: 'PUT', url: `/v1/numbers/${encodeURIComponent(number)}`, payload: payload as object });

describe('numbers: who may', () => {
  it('answers 403 to an analyst key on every numbers endpoint, and writes nothing', async () => {
    const number = uniqueNumber();
    const attempts = [
      await api.as(ANALYST_KEY, '/v1/numbers'),
      await api.as(ANALYST_KEY, `/v1/numbers/${encodeURIComponent(number)}`),
      await put(ANALYST_KEY, number, { name: 'Sales', recordingEnabled: true }),
    ];
    for (const response of attempts) {
      expect(response.statusCode).toBe(403);
      expect(response.headers['www-authenticate']).toContain('insufficient_scope');
      expect(response.json()).toMatchObject({ statusCode: 403, code: 'forbidden' });
    }
    expect(await api.store.getNumber(number)).toBeUndefined();
  });

  it('answers 401 to a PUT without a key, before looking at its body', async () => {
    const number = uniqueNumber();
    const response = await put(undefined, number, { bogus: true });
    expect(response.statusCode).toBe(401);
    expect(await api.store.getNumber(number)).toBeUndefined();
  });
});

describe('numbers: PUT and GET', () => {
  it('saves a profile with PUT and reads it back with GET, one number and the list', async () => {
    const number = uniqueNumber();
    const profile = {
      name: 'Sales line',
      prompt: 'You sell solar panels. Be brief.',
      voice: 'en_US-amy',
      language: 'en-US',
      recordingEnabled: true,
      storeUnredacted: false,
      dispositions: ['sold', 'callback', 'not_interested'],
    };
    const saved = await put(ADMIN_KEY, number, profile);
    expect(saved.statusCode, saved.body).toBe(201);
    expect(saved.headers['location']).toBe(`/v1/numbers/${encodeURIComponent(number)}`);
    expect(saved.json()).toEqual({ number, scriptPath: null, ...profile, createdAt: expect.any(String), updatedAt: expect.any(String) });

    const one = await api.as(ADMIN_KEY, `/v1/numbers/${encodeURIComponent(number)}`);
    expect(one.statusCode).toBe(200);
    expect(one.json()).toEqual(saved.json());
    // A bare + in the path is the number too.
    expect((await api.as(ADMIN_KEY, `/v1/numbers/${number}`)).json()).toEqual(saved.json());

    const all = await api.as(ADMIN_KEY, '/v1/numbers');
    expect(all.statusCode).toBe(200);
    expect(all.json<{ numbers: Array<{ number: string }> }>().numbers.find((n) => n.number === number)).toEqual(saved.json());

    expect(await api.store.getNumber(number)).toMatchObject({ ...profile, number });
  });

  it('replaces the whole profile: a field left out of the PUT returns to its default', async () => {
    const number = uniqueNumber();
    await put(ADMIN_KEY, number, { name: 'Support', scriptPath: 'agents/support.json', recordingEnabled: true, storeUnredacted: true, dispositions: ['resolved'] });
    const replaced = await put(ADMIN_KEY, number, { name: 'Support (no recording)' });
    expect(replaced.statusCode).toBe(200);
    expect(replaced.headers['location']).toBeUndefined();
    expect(replaced.json()).toMatchObject({ name: 'Support (no recording)', scriptPath: null, recordingEnabled: false, storeUnredacted: false, dispositions: [] });
    expect(await api.store.getNumber(number)).toMatchObject({ recordingEnabled: false, storeUnredacted: false });
  });

  it('takes a prompt longer than the server-wide body limit, and refuses one over its own maximum', async () => {
    const number = uniqueNumber();
    const prompt = 'Answer in one sentence. '.repeat(4_000).slice(0, 90_000);
    const saved = await put(ADMIN_KEY, number, { name: 'Long prompt', prompt });
    expect(saved.statusCode, saved.body.slice(0, 200)).toBe(201);
    expect((await api.store.getNumber(number))?.prompt).toBe(prompt);

    const tooLong = await put(ADMIN_KEY, number, { name: 'Long prompt', prompt: `${prompt}${'x'.repeat(20_000)}` });
    expect(tooLong.statusCode).toBe(400);
    expect(tooLong.json()).toMatchObject({ code: 'invalid_request', message: expect.stringContaining('prompt') });
  });

  it('answers 404 for a number that is not configured', async () => {
    const response = await api.as(ADMIN_KEY, `/v1/numbers/${encodeURIComponent(uniqueNumber())}`);
    expect(response.statusCode).toBe(404);
    expect(response.json()).toMatchObject({ code: 'not_found' });
  });

  it.each([
    ['a number that is not E.164', '5551234567', { name: 'x' }, 'number'],
    ['a number starting with 0', '+0551234567', { name: 'x' }, 'number'],
    ['no name', undefined, { recordingEnabled: true }, 'name'],
    ['an empty name', undefined, { name: '' }, 'name'],
    ['a string for a boolean', undefined, { name: 'x', recordingEnabled: 'yes' }, 'recordingEnabled'],
    ['an unknown field', undefined, { name: 'x', recordingEnabld: true }, 'recordingEnabld'],
    ['the number in the body', undefined, { name: 'x', number: '+15550000000' }, 'number'],
    ['a repeated disposition', undefined, { name: 'x', dispositions: ['sold', 'sold'] }, 'dispositions'],
    ['both a script and a prompt', undefined, { name: 'x', scriptPath: 'a.json', prompt: 'Be brief.' }, 'prompt'],
  ])('answers 400 naming the field for %s, and saves nothing', async (_case, pathNumber, body, field) => {
    const number = pathNumber ?? uniqueNumber();
    const response = await put(ADMIN_KEY, number, body);
    expect(response.statusCode, response.body).toBe(400);
    const error = response.json<{ code: string; message: string }>();
    expect(error.code).toBe('invalid_request');
    expect(error.message).toContain(field);
    if (pathNumber === undefined) expect(await api.store.getNumber(number)).toBeUndefined();
  });

  it('answers 400 for a body that is not JSON', async () => {
    const response = await api.as(ADMIN_KEY, {
      method: 'PUT',
      url: `/v1/numbers/${encodeURIComponent(uniqueNumber())}`,
      headers: { 'content-type': 'application/json' },
      payload: '{"name": ',
    });
    expect(response.statusCode).toBe(400);
    expect(response.json()).toMatchObject({ statusCode: 400, code: 'invalid_request' });
  });
});
