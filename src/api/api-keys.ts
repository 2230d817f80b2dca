/**
 * The read API's keys, from `API_KEYS`: comma-separated `key:role` entries, role `admin` or
 * `analyst`. Only SHA-256 digests of the keys are kept, and a presented key is compared with every
 * one of them in constant time, so neither the comparison nor which entry matched shows in timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

export const API_ROLES = ['admin', 'analyst'] as const;
export type ApiRole = (typeof API_ROLES)[number];

/** Shortest key accepted: 16 characters (a random 16-character token68 string is ~96 bits). */
export const MIN_API_KEY_LENGTH = 16;

/** RFC 6750's token68: what a `Bearer` credential may contain, so every key can be presented. */
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/;

/** `API_KEYS` is malformed; `problems` names each bad entry (never a whole key). */
export class ApiKeysError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid API_KEYS:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ApiKeysError';
  }
}

interface KeyEntry {
  digest: Buffer;
  role: ApiRole;
  /** The digest's first 8 hex digits: names the key in logs without revealing it. */
  fingerprint: string;
}

export interface ApiKeyMatch {
  role: ApiRole;
  fingerprint: string;
}

export class ApiKeys {
  private readonly entries: readonly KeyEntry[];

  constructor(keys: Iterable<readonly [key: string, role: ApiRole]> = []) {
    this.entries = [...keys].map(([key, role]) => {
      const digest = sha256(key);
      return { digest, role, fingerprint: digest.toString('hex').slice(0, 8) };
    });
  }

  /** No keys configured: every request is refused. */
  get size(): number {
    return this.entries.length;
  }

  /** The presented key's role, or undefined for an unknown key. Constant time in the key. */
  match(presented: string): ApiKeyMatch | undefined {
    const digest = sha256(presented);
    let found: KeyEntry | undefined;
    // Every entry is compared, whichever matches, so the time taken does not tell which one did.
    for (const entry of this.entries) {
      if (timingSafeEqual(digest, entry.digest) && found === undefined) found = entry;
    }
    return found === undefined ? undefined : { role: found.role, fingerprint: found.fingerprint };
  }
}

/**
 * Parses `API_KEYS`. Unset or blank: no keys (the API refuses everything). Whitespace around
 * entries and empty entries (a trailing comma) are ignored; the role follows the last colon.
 * Every bad entry is reported at once, by position and its key's first 4 characters.
 */
export function parseApiKeys(value: string | undefined): ApiKeys {
  const problems: string[] = [];
  const keys = new Map<string, ApiRole>();
  const entries = (value ?? '').split(',').map((entry) => entry.trim());
  for (const [index, entry] of entries.entries()) {
    if (entry === '') continue;
    const colon = entry.lastIndexOf(':');
    const key = colon === -1 ? entry : entry.slice(0, colon).trim();
    const role = colon === -1 ? undefined : entry.slice(colon + 1).trim();
    const problem = problemWith(key, role, keys);
    if (problem !== undefined) problems.push(`entry ${index + 1}${key === '' ? '' : ` (${preview(key)})`}: ${problem}`);
    else keys.set(key, role as ApiRole);
  }
  if (problems.length > 0) throw new ApiKeysError(problems);
  return new ApiKeys(keys);
}

/** What is wrong with one `key:role` entry, or undefined when nothing is. */
function problemWith(key: string, role: string | undefined, seen: ReadonlyMap<string, ApiRole>): string | undefined {
  if (role === undefined) return 'expected key:role, found no ":role"';
  if (key === '') return 'the key is empty';
  if (!isRole(role)) {
    if (isRole(key)) return 'the role comes after the key: key:role';
    // A long "role" may be a key written in the wrong place: never echo it whole.
    const shown = /^[A-Za-z]{1,12}$/.test(role) ? JSON.stringify(role) : preview(role);
    return `role must be ${API_ROLES.join(' or ')}, got ${shown}`;
  }
  if (key.length < MIN_API_KEY_LENGTH) return `the key is ${key.length} characters, at least ${MIN_API_KEY_LENGTH} are required`;
  if (!TOKEN68.test(key)) return 'the key may only contain A-Z a-z 0-9 - . _ ~ + / (and a trailing =), to fit a Bearer header';
  if (seen.has(key)) return 'the same key is listed twice';
  return undefined;
}

function isRole(value: string): value is ApiRole {
  return (API_ROLES as readonly string[]).includes(value);
}

/** The key's first 4 characters, enough to find the entry, not to use it. */
function preview(key: string): string {
  return `"${key.slice(0, 4)}…"`;
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}
