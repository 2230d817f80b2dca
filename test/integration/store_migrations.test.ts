import { randomBytes } from 'node:crypto';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CallStore } from '../../src/store/call-store.js';
import { MIGRATIONS_DIR, MIGRATIONS_TABLE, openDatabase, type Db } from '../../src/store/database.js';
import { PG_URL } from '../helpers/test-services.js';

// The real PostgreSQL (trust auth); each run works in fresh schemas of its own, dropped after.
const TABLES = ['calls', 'numbers', 'post_call_results', 'recordings', 'turns'];

async function migrationNames(db: Db): Promise<string[]> {
  const { rows } = await db.query<{ name: string }>(`SELECT name FROM ${MIGRATIONS_TABLE} ORDER BY id`);
  return rows.map((row) => row.name);
}

async function tablesIn(db: Db, schema: string): Promise<string[]> {
  const { rows } = await db.query<{ table_name: string }>(
    `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_name <> $2 ORDER BY table_name`,
    [schema, MIGRATIONS_TABLE],
  );
  return rows.map((row) => row.table_name);
}

/** For the tests that make a migration fail on purpose. */
const silent = { info: () => {}, warn: () => {}, error: () => {} };

const ADD_COLUMN = '-- Up Migration\nALTER TABLE calls ADD COLUMN tag text;\n-- Down Migration\nALTER TABLE calls DROP COLUMN tag;\n';
const BROKEN = '-- Up Migration\nCREATE TABLE half_done (id int);\nSELECT no_such_function();\n';

/**
 * Versioning, on a database opened over a migrations folder of our own (`dir`, holding the real
 * first migration): a later migration applies alone, once; a failing one is rolled back entirely,
 * not recorded, and reported.
 */
async function checkVersioning(db: Db, dir: string, schema: string): Promise<void> {
  await copyFile(join(MIGRATIONS_DIR, '0001_initial-schema.sql'), join(dir, '0001_initial-schema.sql'));
  expect(await db.migrate()).toEqual(['0001_initial-schema']);
  await writeFile(join(dir, '0002_calls-tag.sql'), ADD_COLUMN);
  expect(await db.migrate()).toEqual(['0002_calls-tag']);
  expect(await db.migrate()).toEqual([]);
  await db.query('SELECT tag FROM calls');
  await writeFile(join(dir, '0003_broken.sql'), BROKEN);
  await expect(db.migrate()).rejects.toThrow(/no_such_function/);
  expect(await migrationNames(db)).toEqual(['0001_initial-schema', '0002_calls-tag']);
  expect(await tablesIn(db, schema)).not.toContain('half_done');
}

describe('store migrations on PostgreSQL', () => {
  const schemas: string[] = [];
  const freshSchema = (): string => {
    const schema = `store_test_${randomBytes(6).toString('hex')}`;
    schemas.push(schema);
    return schema;
  };

  afterAll(async () => {
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    for (const schema of schemas) await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.end();
  });

  it('applies the migrations into the given schema on open, and re-applying is a no-op', async () => {
    const schema = freshSchema();
    const db = await openDatabase({ url: PG_URL, schema });
    try {
      expect(db.kind).toBe('postgres');
      expect(db.schema).toBe(schema);
      expect(await tablesIn(db, schema)).toEqual(TABLES);
      expect(await tablesIn(db, 'public')).not.toContain('calls');
      expect(await migrationNames(db)).toEqual(['0001_initial-schema']);
      expect(await db.migrate()).toEqual([]);
      expect(await migrationNames(db)).toEqual(['0001_initial-schema']);
    } finally {
      await db.close();
    }
  });

  it('a second start keeps the data and runs nothing again', async () => {
    const schema = freshSchema();
    const first = await openDatabase({ url: PG_URL, schema });
    await new CallStore(first).upsertNumber({ number: '+15550001111', name: 'Kept' });
    await first.close();
    const second = await openDatabase({ url: PG_URL, schema });
    try {
      expect(await migrationNames(second)).toEqual(['0001_initial-schema']);
      expect((await new CallStore(second).getNumber('+15550001111'))?.name).toBe('Kept');
    } finally {
      await second.close();
    }
  });

  it('instances starting together migrate once, under the lock', async () => {
    const schema = freshSchema();
    const dbs = await Promise.all([1, 2, 3].map(() => openDatabase({ url: PG_URL, schema })));
    try {
      expect(await migrationNames(dbs[0]!)).toEqual(['0001_initial-schema']);
      expect(await tablesIn(dbs[0]!, schema)).toEqual(TABLES);
    } finally {
      await Promise.all(dbs.map((db) => db.close()));
    }
  });

  it('defaults to the connection\'s own schema (search_path in the URL)', async () => {
    const schema = freshSchema();
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    await admin.query(`CREATE SCHEMA "${schema}"`);
    await admin.end();
    const url = `${PG_URL}${PG_URL.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${schema}`)}`;
    const db = await openDatabase({ url });
    try {
      expect(db.schema).toBe(schema);
      expect(await tablesIn(db, schema)).toEqual(TABLES);
    } finally {
      await db.close();
    }
  });

  it('applies a later migration alone, and a failing one rolls back entirely', async () => {
    const schema = freshSchema();
    const dir = await mkdtemp(join(tmpdir(), 'store-migrations-'));
    const db = await openDatabase({ url: PG_URL, schema, migrate: false, migrationsDir: dir, logger: silent });
    try {
      await checkVersioning(db, dir, schema);
    } finally {
      await db.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('rejects a schema name that is not a plain identifier', async () => {
    await expect(openDatabase({ url: PG_URL, schema: 'x"; DROP TABLE calls; --' })).rejects.toThrow(/invalid schema name/);
  });
});

describe('store migrations on PGlite', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'store-pglite-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('in memory: applies the same migrations, and re-applying is a no-op', async () => {
    const db = await openDatabase();
    try {
      expect(db.kind).toBe('pglite');
      expect(await tablesIn(db, 'public')).toEqual(TABLES);
      expect(await migrationNames(db)).toEqual(['0001_initial-schema']);
      expect(await db.migrate()).toEqual([]);
      expect(await migrationNames(db)).toEqual(['0001_initial-schema']);
    } finally {
      await db.close();
    }
  });

  it('applies a later migration alone, and a failing one rolls back entirely', async () => {
    const migrations = await mkdtemp(join(tmpdir(), 'store-migrations-'));
    const db = await openDatabase({ migrate: false, migrationsDir: migrations, logger: silent });
    try {
      await checkVersioning(db, migrations, 'public');
    } finally {
      await db.close();
      await rm(migrations, { recursive: true, force: true });
    }
  });

  it('in a data folder: a restart keeps the data and runs nothing again', async () => {
    const first = await openDatabase({ pgliteDir: dir });
    await new CallStore(first).upsertNumber({ number: '+15550002222', name: 'Persisted' });
    await first.close();
    const second = await openDatabase({ pgliteDir: dir });
    try {
      expect(await migrationNames(second)).toEqual(['0001_initial-schema']);
      expect((await new CallStore(second).getNumber('+15550002222'))?.name).toBe('Persisted');
    } finally {
      await second.close();
    }
  });
});
