/** A bare Fastify app with the analysts' read API on a fresh PostgreSQL schema, for `app.inject`. */
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import Fastify, { type FastifyInstance, type InjectOptions, type LightMyRequestResponse } from 'fastify';
import { parseApiKeys, registerAnalystApi } from '../../src/api/index.js';
import { CallStore } from '../../src/store/call-store.js';
import { openDatabase, type Db } from '../../src/store/database.js';

export const PG_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export const ADMIN_KEY = 'admin-key-5f3a9c1e7b2d4680';
export const ANALYST_KEY = 'analyst-key-0c9e8d7f6a5b4c3d';
export const TEST_API_KEYS = `${ADMIN_KEY}:admin, ${ANALYST_KEY}:analyst`;

export interface ApiTestApp {
  app: FastifyInstance;
  store: CallStore;
  db: Db;
  /** Every log line the app wrote (pino JSON, level warn and up). */
  logs: string[];
  /** Injects with `Authorization: Bearer <key>` (no header when key is undefined). */
  as(key: string | undefined, request: InjectOptions | string): Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

export async function openApiTestApp(options: { apiKeys?: string } = {}): Promise<ApiTestApp> {
  const schema = `api_test_${randomBytes(6).toString('hex')}`;
  const db = await openDatabase({ url: PG_URL, schema });
  const store = new CallStore(db);
  const logs: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logs.push(chunk.toString('utf8'));
      callback();
    },
  });
  // The server's body limit (src/server.ts), so routes needing more must say so themselves.
  const app = Fastify({ logger: { level: 'warn', stream }, bodyLimit: 64 * 1024 });
  await registerAnalystApi(app, { store, apiKeys: parseApiKeys(options.apiKeys ?? TEST_API_KEYS) });
  await app.ready();
  return {
    app,
    store,
    db,
    logs,
    as(key, request) {
      const opts: InjectOptions = typeof request === 'string' ? { url: request } : request;
      const headers = { ...(opts.headers ?? {}), ...(key === undefined ? {} : { authorization: `Bearer ${key}` }) };
      return app.inject({ ...opts, headers });
    },
    async close() {
      await app.close();
      await db.query(`DROP SCHEMA "${schema}" CASCADE`);
      await db.close();
    },
  };
}

let seq = 0;
/** Unique per test, so tests sharing one schema never see each other's rows. */
export const uniqueSid = (prefix = 'CA'): string => `${prefix}${randomBytes(8).toString('hex')}${(seq++).toString().padStart(4, '0')}`;
const numberBase = Math.floor(Math.random() * 9_000_000);
export const uniqueNumber = (): string => `+1555${String((numberBase + seq++) % 10_000_000).padStart(7, '0')}`;
