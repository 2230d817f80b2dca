/**
 * The durable store's connection: PostgreSQL through a `pg` pool when a URL is given, embedded
 * PGlite (in memory, or in a data folder) otherwise, so a fresh machine needs no database server.
 * Either way the versioned migrations in `migrations/` are applied on open by node-pg-migrate,
 * under its advisory lock: instances starting together wait for each other, and a re-run with
 * nothing new is a no-op.
 */
import { fileURLToPath } from 'node:url';
import { PGlite, type Transaction as PGliteTransaction } from '@electric-sql/pglite';
import pg from 'pg';
import { runner, type RunnerOption } from 'node-pg-migrate';

/** The folder of versioned migrations (`NNNN_name.sql`, `-- Up Migration` / `-- Down Migration`). */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations', import.meta.url));

/** node-pg-migrate's bookkeeping table, in the store's schema. */
export const MIGRATIONS_TABLE = 'pgmigrations';

export type Row = Record<string, unknown>;

export interface QueryResult<T> {
  rows: T[];
  /** Rows the statement returned or touched. */
  rowCount: number;
}

/** Something SQL runs on: the database, or one transaction of it. Parameterized SQL only ($1, $2…). */
export interface Queryable {
  query<T extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<T>>;
}

export interface Db extends Queryable {
  readonly kind: 'postgres' | 'pglite';
  /** The schema the store's tables live in. */
  readonly schema: string;
  /** Runs `fn` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<R>(fn: (tx: Queryable) => Promise<R>): Promise<R>;
  /** Applies the migrations not applied yet (done by `openDatabase` already); their names. */
  migrate(): Promise<string[]>;
  close(): Promise<void>;
}

export interface StoreLogger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export interface OpenDatabaseOptions {
  /** PostgreSQL connection string (`DATABASE_URL`); without it, embedded PGlite. */
  url?: string;
  /** PGlite only: data folder to keep the database in (`PGLITE_DIR`); in memory without it. */
  pgliteDir?: string;
  /**
   * PostgreSQL only: the schema to keep the tables in, created when missing, set as every
   * connection's search_path (tests use a fresh one each). Default: the connection's current
   * schema (its search_path, usually `public`).
   */
  schema?: string;
  /** Apply pending migrations on open (default true). */
  migrate?: boolean;
  /** Folder of migrations to apply (default MIGRATIONS_DIR; tests use others). */
  migrationsDir?: string;
  /** PostgreSQL only: pool size (default 10). */
  poolMax?: number;
  /** Migration progress and pool errors; default: warnings and errors to the console only. */
  logger?: StoreLogger;
}

const quietLogger: StoreLogger = {
  info: () => {},
  warn: (msg) => console.warn(msg),
  error: (msg) => console.error(msg),
};

/** Advisory lock key serializing schema creation (node-pg-migrate's own lock guards migrations). */
const SCHEMA_LOCK_ID = 7241865325823965;

const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** Opens the store (and migrates it unless told not to). */
export async function openDatabase(options: OpenDatabaseOptions = {}): Promise<Db> {
  const db = options.url === undefined ? await openPglite(options) : await openPostgres(options.url, options);
  if (options.migrate !== false) {
    try {
      await db.migrate();
    } catch (err) {
      await db.close().catch(() => {});
      throw err;
    }
  }
  return db;
}

/** `DATABASE_URL` → PostgreSQL; otherwise PGlite, in `PGLITE_DIR` when set, else in memory. */
export function openDatabaseFromEnv(env: NodeJS.ProcessEnv = process.env, logger?: StoreLogger): Promise<Db> {
  const url = env.DATABASE_URL?.trim();
  const dir = env.PGLITE_DIR?.trim();
  return openDatabase({
    ...(url ? { url } : {}),
    ...(dir ? { pgliteDir: dir } : {}),
    ...(logger === undefined ? {} : { logger }),
  });
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

async function openPostgres(url: string, options: OpenDatabaseOptions): Promise<Db> {
  const logger = options.logger ?? quietLogger;
  const migrationsDir = options.migrationsDir ?? MIGRATIONS_DIR;
  const explicitSchema = options.schema;
  if (explicitSchema !== undefined && !SCHEMA_NAME.test(explicitSchema)) throw new Error(`invalid schema name: ${explicitSchema}`);
  const connection: pg.ClientConfig = {
    connectionString: url,
    ...(explicitSchema === undefined ? {} : { options: `-c search_path=${explicitSchema}` }),
  };

  // Schema first (every pooled connection's search_path names it), then learn which one it is.
  const schema = await withClient(connection, async (client) => {
    if (explicitSchema !== undefined) {
      // IF NOT EXISTS alone still races (two instances starting together: one fails on the
      // catalog's unique index), so creators take turns under a transaction-scoped lock.
      await client.query('BEGIN');
      try {
        await client.query('SELECT pg_advisory_xact_lock($1)', [SCHEMA_LOCK_ID]);
        await client.query(`CREATE SCHEMA IF NOT EXISTS "${explicitSchema}"`);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw err;
      }
      return explicitSchema;
    }
    const { rows } = await client.query<{ schema: string | null }>('SELECT current_schema() AS schema');
    const current = rows[0]?.schema;
    if (current === null || current === undefined) throw new Error('the connection\'s search_path names no existing schema; create it or pass `schema`');
    return current;
  });

  // A database that vanishes silently (packets dropped, not refused) must fail a connect in
  // seconds, and a half-open connection must be noticed: otherwise a job or a call-row write
  // hangs for minutes instead of failing into its retry.
  const pool = new pg.Pool({ ...connection, max: options.poolMax ?? 10, connectionTimeoutMillis: 10_000, keepAlive: true, keepAliveInitialDelayMillis: 10_000 });
  // An idle connection that breaks (server restart, network) must not crash the process: the
  // pool drops it and the next query gets a fresh one.
  pool.on('error', (err) => logger.warn(`postgres pool: idle connection error: ${err.message}`));

  const asQueryable = (target: pg.Pool | pg.PoolClient): Queryable => ({
    async query<T extends Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<T>> {
      const result = await target.query<T>(sql, params === undefined ? undefined : [...params]);
      return { rows: result.rows, rowCount: result.rowCount ?? result.rows.length };
    },
  });
  const direct = asQueryable(pool);

  return {
    kind: 'postgres',
    schema,
    query: direct.query,
    async transaction<R>(fn: (tx: Queryable) => Promise<R>): Promise<R> {
      const client = await pool.connect();
      let broken: Error | undefined;
      // A checked-out client has no pool listener, and pg emits 'error' on it when its connection
      // drops (besides failing the query in flight): unheard, that event would crash the process.
      const onError = (err: Error): void => {
        broken ??= err;
      };
      client.on('error', onError);
      try {
        await client.query('BEGIN');
        const result = await fn(asQueryable(client));
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch((rollbackErr: unknown) => {
          broken = rollbackErr instanceof Error ? rollbackErr : new Error(String(rollbackErr));
        });
        throw err;
      } finally {
        // A connection whose rollback failed (or that dropped) is in an unknown state: destroy it, not reuse it.
        client.removeListener('error', onError);
        client.release(broken);
      }
    },
    migrate: () =>
      withClient(connection, (client) => applyMigrations(client, schema, migrationsDir, logger)),
    close: () => pool.end(),
  };
}

async function withClient<R>(config: pg.ClientConfig, fn: (client: pg.Client) => Promise<R>): Promise<R> {
  const client = new pg.Client(config);
  // Errors after connect (server gone) surface through the pending query; don't crash on the event.
  client.on('error', () => {});
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------
// PGlite

async function openPglite(options: OpenDatabaseOptions): Promise<Db> {
  const logger = options.logger ?? quietLogger;
  const migrationsDir = options.migrationsDir ?? MIGRATIONS_DIR;
  const pglite = options.pgliteDir === undefined ? await PGlite.create() : await PGlite.create(options.pgliteDir);

  const asQueryable = (target: PGlite | PGliteTransaction): Queryable => ({
    async query<T extends Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<T>> {
      const result = await target.query<T>(sql, params === undefined ? undefined : [...params]);
      // PGlite's affectedRows is 0 for a SELECT; rows returned count as well.
      return { rows: result.rows, rowCount: Math.max(result.rows.length, result.affectedRows ?? 0) };
    },
  });
  const direct = asQueryable(pglite);

  return {
    kind: 'pglite',
    schema: 'public',
    query: direct.query,
    // PGlite is one connection: its transaction() holds a lock that queues every other query
    // until the transaction ends, so transactions never interleave.
    transaction: <R>(fn: (tx: Queryable) => Promise<R>): Promise<R> => pglite.transaction((tx) => fn(asQueryable(tx))),
    migrate: () => applyMigrations(pgliteMigrationClient(pglite), 'public', migrationsDir, logger),
    close: () => pglite.close(),
  };
}

/**
 * node-pg-migrate's runner takes a connected `pg` client (`dbClient`) and only ever calls its
 * `query(text)`, always without parameters, and only reads `rows` from the result (see its
 * `db.ts`: a client with a `query` function counts as external, so it neither connects nor ends
 * it). PGlite's `query()` uses the extended protocol, which takes one statement at a time, while
 * a SQL migration file is many statements in one string; PGlite's `exec()` is the simple
 * protocol and runs them all, as `pg`'s `query(text)` does. So this adapter sends parameterless
 * SQL through `exec()` and answers with the last statement's rows, which is all the runner needs.
 * node-pg-migrate has no PGlite driver of its own; this keeps the one maintained tool (same
 * files, same bookkeeping table, same advisory lock) for both back ends.
 */
function pgliteMigrationClient(pglite: PGlite): pg.ClientBase {
  const client = {
    async query(text: string | { text: string; values?: unknown[] }, values?: unknown[]): Promise<{ rows: Row[]; rowCount: number }> {
      const sql = typeof text === 'string' ? text : text.text;
      const params = values ?? (typeof text === 'string' ? undefined : text.values);
      if (params !== undefined && params.length > 0) {
        const result = await pglite.query<Row>(sql, params);
        return { rows: result.rows, rowCount: Math.max(result.rows.length, result.affectedRows ?? 0) };
      }
      const results = await pglite.exec(sql);
      const last = results[results.length - 1];
      const rows = (last?.rows ?? []) as Row[];
      return { rows, rowCount: Math.max(rows.length, last?.affectedRows ?? 0) };
    },
  };
  // Structurally what the runner uses of a pg client (see above), not a whole one.
  return client as unknown as pg.ClientBase;
}

// ---------------------------------------------------------------------------------------------
// Migrations

async function applyMigrations(client: pg.ClientBase, schema: string, dir: string, logger: StoreLogger): Promise<string[]> {
  const options: RunnerOption = {
    dbClient: client,
    dir,
    // Only the .sql files are migrations (not dotfiles or notes kept beside them).
    ignorePattern: '(\\..*|(?!.*\\.sql$).*)',
    migrationsTable: MIGRATIONS_TABLE,
    schema,
    direction: 'up',
    checkOrder: true,
    // All pending migrations in one transaction: a failed one leaves the schema as it was.
    singleTransaction: true,
    // Another instance migrating holds the advisory lock: wait for it, then find nothing to do.
    advisoryLockMode: 'wait',
    logger: { info: (msg: string) => logger.info(msg), warn: (msg: string) => logger.warn(msg), error: (msg: string) => logger.error(msg) },
  };
  const applied = await runner(options);
  return applied.map((m) => m.name);
}
