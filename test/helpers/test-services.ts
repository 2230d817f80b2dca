/** The PostgreSQL and Redis the tests run against (every developer machine and CI has both). */
export const PG_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/**
 * DATABASE_URL for a process that must keep its tables in `schema` (chosen through the
 * connection's search_path), optionally reaching PostgreSQL through another local port (a fault proxy).
 */
export function databaseUrlForSchema(schema: string, options: { viaPort?: number } = {}): string {
  const url = new URL(PG_URL);
  if (options.viaPort !== undefined) url.host = `127.0.0.1:${options.viaPort}`;
  url.searchParams.set('options', `-c search_path=${schema}`);
  return url.toString();
}
