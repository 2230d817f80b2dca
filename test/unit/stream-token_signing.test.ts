// Guards against media streams that could be opened without a webhook we accepted, or with a stale token.
import { describe, expect, it } from 'vitest';
import { signStreamToken, verifyStreamToken } from '../../src/telephony/stream-token.js';

const SECRET = 'test-secret';
const CALL = 'CA0123456789abcdef0123456789abcdef';

describe('stream tokens', () => {
  it('accepts a token for the same call before it expires', () => {
    const token = signStreamToken(SECRET, CALL, 1000);
    expect(verifyStreamToken(SECRET, CALL, token, 999)).toEqual({ ok: true });
  });

  it('rejects an expired token', () => {
    const token = signStreamToken(SECRET, CALL, 1000);
    expect(verifyStreamToken(SECRET, CALL, token, 1001)).toEqual({ ok: false, reason: 'stream token expired' });
  });

  it('rejects a token issued for another call or under another secret', () => {
    const token = signStreamToken(SECRET, CALL, 1000);
    expect(verifyStreamToken(SECRET, CALL.replace('0', '1'), token, 0).ok).toBe(false);
    expect(verifyStreamToken('other', CALL, token, 0).ok).toBe(false);
  });

  it('rejects a token whose expiry was edited', () => {
    const [, mac] = signStreamToken(SECRET, CALL, 1000).split('.');
    expect(verifyStreamToken(SECRET, CALL, `99999.${mac}`, 0)).toEqual({ ok: false, reason: 'stream token signature mismatch' });
  });

  it('rejects missing and malformed tokens with a reason', () => {
    expect(verifyStreamToken(SECRET, CALL, undefined, 0)).toEqual({ ok: false, reason: 'missing stream token' });
    expect(verifyStreamToken(SECRET, CALL, 'garbage', 0)).toEqual({ ok: false, reason: 'malformed stream token' });
    expect(verifyStreamToken(SECRET, CALL, '1.2.3', 0)).toEqual({ ok: false, reason: 'malformed stream token' });
  });
});
