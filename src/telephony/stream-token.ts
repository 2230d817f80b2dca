/**
 * Stream tokens: Twilio's <Stream url> cannot carry a query string, so the webhook hands the media
 * socket an HMAC of (call SID, expiry) as a <Parameter>; the socket's `start` must present it. This
 * ties every media stream to a webhook we signed off on, a few minutes earlier.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export function signStreamToken(secret: string, callSid: string, expiresAtSeconds: number): string {
  const expiry = Math.floor(expiresAtSeconds).toString(10);
  return `${expiry}.${mac(secret, callSid, expiry)}`;
}

export type TokenCheck = { ok: true } | { ok: false; reason: string };

export function verifyStreamToken(secret: string, callSid: string, token: string | undefined, nowSeconds: number): TokenCheck {
  if (token === undefined || token === '') return { ok: false, reason: 'missing stream token' };
  const [expiry, signature, extra] = token.split('.');
  if (expiry === undefined || signature === undefined || extra !== undefined || !/^\d{1,12}$/.test(expiry)) {
    return { ok: false, reason: 'malformed stream token' };
  }
  const expected = Buffer.from(mac(secret, callSid, expiry), 'base64url');
  const given = Buffer.from(signature, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return { ok: false, reason: 'stream token signature mismatch' };
  }
  if (Number(expiry) < nowSeconds) return { ok: false, reason: 'stream token expired' };
  return { ok: true };
}

function mac(secret: string, callSid: string, expiry: string): string {
  return createHmac('sha256', secret).update(`${callSid}\n${expiry}`).digest('base64url');
}
