// Guards API_KEYS parsing: a malformed entry stops start-up with a message naming it (but never
// the whole key), and a parsed key matches its own role and nothing else.
import { describe, expect, it } from 'vitest';
import { ApiKeys, ApiKeysError, parseApiKeys } from '../../src/api/api-keys.js';

const ADMIN = 'Adm1n-key_0123456789';
const ANALYST = 'anaLyst.key~0123456789+/==';

describe('parseApiKeys', () => {
  it('parses key:role entries, ignoring whitespace and empty entries', () => {
    const keys = parseApiKeys(` ${ADMIN}:admin ,${ANALYST} : analyst,, `);
    expect(keys.size).toBe(2);
    expect(keys.match(ADMIN)?.role).toBe('admin');
    expect(keys.match(ANALYST)?.role).toBe('analyst');
  });

  it('refuses a key holding a colon (the role follows the last one), as a Bearer header could not carry it', () => {
    expect(() => parseApiKeys('abc:def:0123456789abcdef:admin')).toThrow(/entry 1 \("abc:…"\).*may only contain/);
  });

  it('gives no keys for an unset or blank value', () => {
    expect(parseApiKeys(undefined).size).toBe(0);
    expect(parseApiKeys('  ').size).toBe(0);
    expect(parseApiKeys(undefined).match('')).toBeUndefined();
  });

  it.each([
    [`${ADMIN}:root`, /entry 1 \("Adm1…"\): role must be admin or analyst, got "root"/],
    [`${ADMIN}:Admin`, /role must be admin or analyst/],
    [`${ADMIN}`, /entry 1 \("Adm1…"\): expected key:role/],
    [':admin', /entry 1: the key is empty/],
    ['short-key:admin', /entry 1 \("shor…"\): the key is 9 characters, at least 16/],
    ['a key with spaces 0123:admin', /may only contain/],
    [`${ADMIN}:admin,${ADMIN}:analyst`, /entry 2 \("Adm1…"\): the same key is listed twice/],
    [`admin:${ADMIN}`, /entry 1 \("admi…"\): the role comes after the key/],
  ])('refuses %j with a message naming the entry', (value, message) => {
    expect(() => parseApiKeys(value)).toThrow(ApiKeysError);
    expect(() => parseApiKeys(value)).toThrow(message);
  });

  it('reports every bad entry at once, and never a whole key', () => {
    const secret = 'Zz9-very-secret-key-material';
    let error: unknown;
    try {
      parseApiKeys(`${secret}:superuser,${ADMIN}:admin,tiny:analyst,${ANALYST}:${secret}`);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ApiKeysError);
    const { problems, message } = error as ApiKeysError;
    expect(problems).toHaveLength(3);
    expect(problems[0]).toMatch(/^entry 1 /);
    expect(problems[1]).toMatch(/^entry 3 /);
    expect(problems[2]).toMatch(/^entry 4 .*got "Zz9-…"/);
    expect(message).not.toContain(secret);
  });
});

describe('ApiKeys.match', () => {
  const keys = parseApiKeys(`${ADMIN}:admin,${ANALYST}:analyst`);

  it('matches only the exact key', () => {
    for (const near of [ADMIN.slice(0, -1), `${ADMIN}x`, ADMIN.toLowerCase(), ` ${ADMIN}`, '']) {
      expect(keys.match(near), near).toBeUndefined();
    }
  });

  it('names a matched key by a fingerprint that is not the key', () => {
    const match = keys.match(ADMIN);
    expect(match?.fingerprint).toMatch(/^[0-9a-f]{8}$/);
    expect(ADMIN).not.toContain(match?.fingerprint);
    expect(keys.match(ANALYST)?.fingerprint).not.toBe(match?.fingerprint);
  });

  it('keeps no key in a form that serializes', () => {
    const serialized = JSON.stringify(keys) + JSON.stringify(new ApiKeys([[ADMIN, 'admin']]));
    expect(serialized).not.toContain(ADMIN);
  });
});
