/**
 * The durable store's repository: calls, their turns, post-call results, recording metadata and
 * numbers' agent profiles. Every write is an idempotent upsert keyed by its natural id (call SID,
 * call SID + turn + speaker, recording SID, number), so retries, reruns and duplicated callbacks
 * never double anything. Parameterized SQL only; the same SQL runs on PostgreSQL and PGlite.
 */
import type { Db, Queryable } from './database.js';
import type {
  CallDetail,
  CallEnd,
  CallInput,
  CallListItem,
  CallPage,
  CallRecord,
  CallStatus,
  CallDirection,
  FinishCallResult,
  Json,
  ListCallsQuery,
  NumberInput,
  NumberProfile,
  PostCallResult,
  PostCallResultInput,
  Recording,
  RecordingInput,
  Speaker,
  StoredTurn,
  TurnInput,
  TurnLatency,
} from './types.js';

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 500;

/** A write that needs the call's row (its turns, its post-call result) found none. */
export class CallNotFoundError extends Error {
  constructor(readonly callSid: string) {
    super(`call ${callSid} is not stored`);
    this.name = 'CallNotFoundError';
  }
}

/** A `cursor` that no page of listCalls handed out (the read API answers 400). */
export class InvalidCursorError extends Error {
  constructor(message = 'invalid cursor') {
    super(message);
    this.name = 'InvalidCursorError';
  }
}

// --- rows as the database returns them --------------------------------------------------------

interface CallRow {
  [column: string]: unknown;
  call_sid: string;
  provider: string;
  direction: CallDirection;
  from_number: string | null;
  to_number: string | null;
  number: string | null;
  started_at: Date;
  ended_at: Date | null;
  end_reason: string | null;
  status: CallStatus;
  post_call_error: string | null;
  owner_instance: string | null;
  created_at: Date;
  updated_at: Date;
}

interface CallListRow extends CallRow {
  disposition: string | null;
  sentiment: string | null;
  cursor_ts: string;
}

interface TurnRow {
  [column: string]: unknown;
  idx: number;
  speaker: Speaker;
  text: string | null;
  redacted_text: string | null;
  start_ms: number | null;
  end_ms: number | null;
  interrupted: boolean;
  latency: TurnLatency | null;
}

interface ResultRow {
  [column: string]: unknown;
  call_sid: string;
  summary: string;
  disposition: string | null;
  sentiment: string | null;
  action_items: Json[];
  model: string | null;
  extractive: boolean;
  redaction_counts: Record<string, number>;
  attempts: number;
  processed_at: Date;
  created_at: Date;
  updated_at: Date;
}

interface RecordingRow {
  [column: string]: unknown;
  recording_sid: string;
  call_sid: string;
  url: string | null;
  duration_seconds: number | null;
  channels: number | null;
  status: string | null;
  created_at: Date;
  updated_at: Date;
}

interface NumberRow {
  [column: string]: unknown;
  number: string;
  name: string;
  script_path: string | null;
  prompt: string | null;
  voice: string | null;
  language: string | null;
  recording_enabled: boolean;
  store_unredacted: boolean;
  dispositions: string[];
  created_at: Date;
  updated_at: Date;
}

const CALL_COLUMNS =
  'c.call_sid, c.provider, c.direction, c.from_number, c.to_number, c.number, c.started_at, c.ended_at, c.end_reason, ' +
  'c.status, c.post_call_error, c.owner_instance, c.created_at, c.updated_at';

/** Recording statuses after which a late `in-progress` callback changes nothing. */
const FINAL_RECORDING_STATUSES = ['completed', 'absent', 'failed'];

/** Turns per INSERT (8 parameters each, well under PostgreSQL's 65535). */
const TURNS_PER_STATEMENT = 500;

export class CallStore {
  constructor(private readonly db: Db) {}

  // --- numbers --------------------------------------------------------------------------------

  /**
   * Saves a number's whole profile (omitted optional fields: null, false, no dispositions); `created`
   * tells a new number from a replaced one (a row the INSERT wrote has no xmax yet).
   */
  async upsertNumber(input: NumberInput): Promise<{ profile: NumberProfile; created: boolean }> {
    const { rows } = await this.db.query<NumberRow & { created: boolean }>(
      `INSERT INTO numbers AS n (number, name, script_path, prompt, voice, language, recording_enabled, store_unredacted, dispositions)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text[])
       ON CONFLICT (number) DO UPDATE SET
         name = EXCLUDED.name, script_path = EXCLUDED.script_path, prompt = EXCLUDED.prompt, voice = EXCLUDED.voice,
         language = EXCLUDED.language, recording_enabled = EXCLUDED.recording_enabled,
         store_unredacted = EXCLUDED.store_unredacted, dispositions = EXCLUDED.dispositions, updated_at = now()
       RETURNING n.*, (n.xmax = 0) AS created`,
      [
        input.number,
        input.name,
        input.scriptPath ?? null,
        input.prompt ?? null,
        input.voice ?? null,
        input.language ?? null,
        input.recordingEnabled ?? false,
        input.storeUnredacted ?? false,
        input.dispositions ?? [],
      ],
    );
    const row = single(rows);
    return { profile: toNumber(row), created: row.created };
  }

  async getNumber(number: string): Promise<NumberProfile | undefined> {
    const { rows } = await this.db.query<NumberRow>('SELECT * FROM numbers WHERE number = $1', [number]);
    return rows[0] === undefined ? undefined : toNumber(rows[0]);
  }

  async listNumbers(): Promise<NumberProfile[]> {
    const { rows } = await this.db.query<NumberRow>('SELECT * FROM numbers ORDER BY number');
    return rows.map(toNumber);
  }

  // --- calls ----------------------------------------------------------------------------------

  /** Inserts the call as live, or fills in/updates the given fields of the stored one. */
  async upsertCall(input: CallInput): Promise<CallRecord> {
    const has = (value: unknown): boolean => value !== undefined;
    const { rows } = await this.db.query<CallRow>(
      `INSERT INTO calls AS c (call_sid, provider, direction, from_number, to_number, number, started_at, owner_instance)
       VALUES ($1, COALESCE($2, 'twilio'), $3, $4, $5, $6, COALESCE($7::timestamptz, now()), $8)
       ON CONFLICT (call_sid) DO UPDATE SET
         provider = COALESCE($2, c.provider),
         from_number = CASE WHEN $9::boolean THEN $4 ELSE c.from_number END,
         to_number = CASE WHEN $10::boolean THEN $5 ELSE c.to_number END,
         number = CASE WHEN $11::boolean THEN $6 ELSE c.number END,
         started_at = COALESCE($7::timestamptz, c.started_at),
         owner_instance = CASE WHEN $12::boolean THEN $8 ELSE c.owner_instance END,
         updated_at = now()
       RETURNING ${CALL_COLUMNS}`,
      [
        input.callSid,
        input.provider ?? null,
        input.direction,
        input.from ?? null,
        input.to ?? null,
        input.number ?? null,
        input.startedAt ?? null,
        input.ownerInstance ?? null,
        has(input.from),
        has(input.to),
        has(input.number),
        has(input.ownerInstance),
      ],
    );
    return toCall(single(rows));
  }

  /**
   * Ends the call, idempotently: the first end's time and reason stay, later ones change nothing
   * (however often and in whatever order `stop`, `completed`, the sweeper… report it). A live
   * call becomes `ended`; a processed or failed one keeps its status. Undefined when the call is
   * not stored.
   */
  async finishCall(callSid: string, end: CallEnd): Promise<FinishCallResult | undefined> {
    const { rows } = await this.db.query<CallRow & { first_end: boolean }>(
      `WITH prev AS (SELECT call_sid, ended_at FROM calls WHERE call_sid = $1 FOR UPDATE)
       UPDATE calls AS c SET
         ended_at = COALESCE(c.ended_at, $2::timestamptz, now()),
         end_reason = COALESCE(c.end_reason, $3),
         status = CASE WHEN c.status = 'live' THEN 'ended' ELSE c.status END,
         updated_at = CASE WHEN c.ended_at IS NULL THEN now() ELSE c.updated_at END
       FROM prev WHERE c.call_sid = prev.call_sid
       RETURNING ${CALL_COLUMNS}, prev.ended_at IS NULL AS first_end`,
      [callSid, end.endedAt ?? null, end.endReason],
    );
    const row = rows[0];
    return row === undefined ? undefined : { call: toCall(row), firstEnd: row.first_end };
  }

  /** The call with its turns, post-call result and recordings; undefined when not stored. */
  async getCall(callSid: string): Promise<CallDetail | undefined> {
    const [calls, turns, results, recordings] = await Promise.all([
      this.db.query<CallRow>(`SELECT ${CALL_COLUMNS} FROM calls c WHERE c.call_sid = $1`, [callSid]),
      this.db.query<TurnRow>(
        `SELECT idx, speaker, text, redacted_text, start_ms, end_ms, interrupted, latency FROM turns
         WHERE call_sid = $1 ORDER BY idx, CASE speaker WHEN 'caller' THEN 0 ELSE 1 END`,
        [callSid],
      ),
      this.db.query<ResultRow>('SELECT * FROM post_call_results WHERE call_sid = $1', [callSid]),
      this.db.query<RecordingRow>('SELECT * FROM recordings WHERE call_sid = $1 ORDER BY created_at, recording_sid', [callSid]),
    ]);
    const call = calls.rows[0];
    if (call === undefined) return undefined;
    const result = results.rows[0];
    return {
      call: toCall(call),
      turns: turns.rows.map(toTurn),
      result: result === undefined ? null : toResult(result),
      recordings: recordings.rows.map(toRecording),
    };
  }

  /**
   * A page of calls, newest first, filtered by our number, a started_at range [from, to) and the
   * post-call disposition. The cursor is opaque; pages stay stable when calls share a start time
   * (ties are broken by call SID) and when newer calls arrive meanwhile.
   */
  async listCalls(query: ListCallsQuery = {}): Promise<CallPage> {
    const limit = query.limit ?? DEFAULT_PAGE_SIZE;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_SIZE) {
      throw new RangeError(`limit must be an integer from 1 to ${MAX_PAGE_SIZE}`);
    }
    const params: unknown[] = [];
    const param = (value: unknown): string => {
      params.push(value);
      return `$${params.length}`;
    };
    const where: string[] = [];
    if (query.number !== undefined) where.push(`c.number = ${param(query.number)}`);
    if (query.from !== undefined) where.push(`c.started_at >= ${param(query.from)}::timestamptz`);
    if (query.to !== undefined) where.push(`c.started_at < ${param(query.to)}::timestamptz`);
    if (query.disposition !== undefined) where.push(`r.disposition = ${param(query.disposition)}`);
    if (query.direction !== undefined) where.push(`c.direction = ${param(query.direction)}`);
    if (query.status !== undefined) where.push(`c.status = ${param(query.status)}`);
    if (query.cursor !== undefined) {
      const cursor = decodeCursor(query.cursor);
      where.push(`(c.started_at, c.call_sid) < (${param(cursor.startedAt)}::timestamptz, ${param(cursor.callSid)})`);
    }
    const join = query.disposition === undefined ? 'LEFT JOIN' : 'JOIN';
    const { rows } = await this.db.query<CallListRow>(
      `SELECT ${CALL_COLUMNS}, r.disposition, r.sentiment,
              to_char(c.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS cursor_ts
       FROM calls c ${join} post_call_results r ON r.call_sid = c.call_sid
       ${where.length === 0 ? '' : `WHERE ${where.join(' AND ')}`}
       ORDER BY c.started_at DESC, c.call_sid DESC
       LIMIT ${param(limit + 1)}`,
      params,
    );
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return {
      calls: page.map((row): CallListItem => ({ ...toCall(row), disposition: row.disposition, sentiment: row.sentiment })),
      nextCursor: rows.length > limit && last !== undefined ? encodeCursor(last.cursor_ts, last.call_sid) : null,
    };
  }

  // --- turns ----------------------------------------------------------------------------------

  /**
   * Writes the call's turns; a turn already stored (same idx and speaker) is replaced, so writing
   * the same transcript again changes nothing. Throws CallNotFoundError when the call is not
   * stored. Returns the number of rows written.
   */
  async upsertTurns(callSid: string, turns: readonly TurnInput[]): Promise<number> {
    // Within one statement a key may appear once: the last write of a turn wins.
    const byKey = new Map<string, TurnInput>();
    for (const turn of turns) byKey.set(`${turn.idx}:${turn.speaker}`, turn);
    const unique = [...byKey.values()];
    if (unique.length === 0) return 0;
    return this.db.transaction(async (tx) => {
      let written = 0;
      for (let start = 0; start < unique.length; start += TURNS_PER_STATEMENT) {
        written += await insertTurns(tx, callSid, unique.slice(start, start + TURNS_PER_STATEMENT));
      }
      return written;
    });
  }

  // --- post-call ------------------------------------------------------------------------------

  /**
   * Stores the call's post-call result (replacing any earlier one: a rerun never duplicates),
   * marks the call `processed` and clears its last error, in one transaction. Throws
   * CallNotFoundError when the call is not stored.
   */
  async upsertPostCallResult(input: PostCallResultInput): Promise<PostCallResult> {
    return this.db.transaction(async (tx) => {
      const { rows } = await tx
        .query<ResultRow>(
          `INSERT INTO post_call_results AS r
             (call_sid, summary, disposition, sentiment, action_items, model, extractive, redaction_counts, attempts, processed_at)
           VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8::jsonb, $9, COALESCE($10::timestamptz, now()))
           ON CONFLICT (call_sid) DO UPDATE SET
             summary = EXCLUDED.summary, disposition = EXCLUDED.disposition, sentiment = EXCLUDED.sentiment,
             action_items = EXCLUDED.action_items, model = EXCLUDED.model, extractive = EXCLUDED.extractive,
             redaction_counts = EXCLUDED.redaction_counts, attempts = EXCLUDED.attempts,
             processed_at = EXCLUDED.processed_at, updated_at = now()
           RETURNING r.*`,
          [
            input.callSid,
            input.summary,
            input.disposition ?? null,
            input.sentiment ?? null,
            JSON.stringify(input.actionItems ?? []),
            input.model ?? null,
            input.extractive ?? false,
            JSON.stringify(input.redactionCounts ?? {}),
            input.attempts ?? 1,
            input.processedAt ?? null,
          ],
        )
        .catch((err: unknown) => rethrowMissingCall(err, input.callSid));
      await tx.query(`UPDATE calls SET status = 'processed', post_call_error = NULL, updated_at = now() WHERE call_sid = $1`, [
        input.callSid,
      ]);
      return toResult(single(rows));
    });
  }

  /**
   * Records why post-call processing failed: the call shows the error, and its status becomes
   * `failed` unless an earlier attempt already stored a result. False when the call is not stored.
   */
  async markPostCallFailed(callSid: string, error: string): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `UPDATE calls SET post_call_error = $2,
         status = CASE WHEN status = 'processed' THEN status ELSE 'failed' END,
         updated_at = now()
       WHERE call_sid = $1 RETURNING call_sid`,
      [callSid, error],
    );
    return rowCount > 0;
  }

  // --- recordings -----------------------------------------------------------------------------

  /**
   * Stores a recording callback's metadata, whether or not the call is stored yet (getCall joins
   * it either way). A repeated callback fills in what it adds; a late `in-progress` never
   * overwrites a final status.
   */
  async upsertRecording(input: RecordingInput): Promise<Recording> {
    const { rows } = await this.db.query<RecordingRow>(
      `INSERT INTO recordings AS g (recording_sid, call_sid, url, duration_seconds, channels, status)
       VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (recording_sid) DO UPDATE SET
         url = COALESCE(EXCLUDED.url, g.url),
         duration_seconds = COALESCE(EXCLUDED.duration_seconds, g.duration_seconds),
         channels = COALESCE(EXCLUDED.channels, g.channels),
         status = CASE WHEN g.status = ANY($7::text[]) AND EXCLUDED.status = 'in-progress' THEN g.status
                       ELSE COALESCE(EXCLUDED.status, g.status) END,
         updated_at = now()
       RETURNING g.*`,
      [
        input.recordingSid,
        input.callSid,
        input.url ?? null,
        input.durationSeconds === undefined || input.durationSeconds === null ? null : Math.round(input.durationSeconds),
        input.channels ?? null,
        input.status ?? null,
        FINAL_RECORDING_STATUSES,
      ],
    );
    return toRecording(single(rows));
  }
}

// --- helpers ----------------------------------------------------------------------------------

async function insertTurns(tx: Queryable, callSid: string, turns: readonly TurnInput[]): Promise<number> {
  const params: unknown[] = [callSid];
  const values = turns.map((turn) => {
    const base = params.length;
    params.push(
      turn.idx,
      turn.speaker,
      turn.text ?? null,
      turn.redactedText ?? null,
      roundOrNull(turn.startMs),
      roundOrNull(turn.endMs),
      turn.interrupted ?? false,
      turn.latency === undefined || turn.latency === null ? null : JSON.stringify(turn.latency),
    );
    const p = (i: number): string => `$${base + i}`;
    return `($1, ${p(1)}::integer, ${p(2)}, ${p(3)}, ${p(4)}, ${p(5)}::integer, ${p(6)}::integer, ${p(7)}::boolean, ${p(8)}::jsonb)`;
  });
  const { rowCount } = await tx
    .query(
      `INSERT INTO turns AS t (call_sid, idx, speaker, text, redacted_text, start_ms, end_ms, interrupted, latency)
       VALUES ${values.join(', ')}
       ON CONFLICT (call_sid, idx, speaker) DO UPDATE SET
         text = EXCLUDED.text, redacted_text = EXCLUDED.redacted_text, start_ms = EXCLUDED.start_ms,
         end_ms = EXCLUDED.end_ms, interrupted = EXCLUDED.interrupted, latency = EXCLUDED.latency`,
      params,
    )
    .catch((err: unknown) => rethrowMissingCall(err, callSid));
  return rowCount;
}

/** PostgreSQL's foreign_key_violation, as both `pg` and PGlite report it. */
function rethrowMissingCall(err: unknown, callSid: string): never {
  if (typeof err === 'object' && err !== null && 'code' in err && err.code === '23503') throw new CallNotFoundError(callSid);
  throw err;
}

function roundOrNull(value: number | null | undefined): number | null {
  return value === undefined || value === null ? null : Math.round(value);
}

function single<T>(rows: T[]): T {
  const row = rows[0];
  if (row === undefined) throw new Error('statement returned no row');
  return row;
}

/** Opaque to clients: base64url JSON of the last row's exact start (µs, UTC) and call SID. */
function encodeCursor(startedAt: string, callSid: string): string {
  return Buffer.from(JSON.stringify({ t: startedAt, s: callSid }), 'utf8').toString('base64url');
}

const CURSOR_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

function decodeCursor(cursor: string): { startedAt: string; callSid: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw new InvalidCursorError();
  }
  if (typeof parsed !== 'object' || parsed === null || !('t' in parsed) || !('s' in parsed)) throw new InvalidCursorError();
  const { t, s } = parsed;
  if (typeof t !== 'string' || !CURSOR_TIME.test(t) || Number.isNaN(Date.parse(t)) || typeof s !== 'string') throw new InvalidCursorError();
  return { startedAt: t, callSid: s };
}

function toDate(value: unknown): Date {
  return value instanceof Date ? value : new Date(String(value));
}

function toDateOrNull(value: unknown): Date | null {
  return value === null || value === undefined ? null : toDate(value);
}

function toCall(row: CallRow): CallRecord {
  return {
    callSid: row.call_sid,
    provider: row.provider,
    direction: row.direction,
    from: row.from_number,
    to: row.to_number,
    number: row.number,
    startedAt: toDate(row.started_at),
    endedAt: toDateOrNull(row.ended_at),
    endReason: row.end_reason,
    status: row.status,
    postCallError: row.post_call_error,
    ownerInstance: row.owner_instance,
    createdAt: toDate(row.created_at),
    updatedAt: toDate(row.updated_at),
  };
}

function toTurn(row: TurnRow): StoredTurn {
  return {
    idx: row.idx,
    speaker: row.speaker,
    text: row.text,
    redactedText: row.redacted_text,
    startMs: row.start_ms,
    endMs: row.end_ms,
    interrupted: row.interrupted,
    latency: row.latency,
  };
}

function toResult(row: ResultRow): PostCallResult {
  return {
    callSid: row.call_sid,
    summary: row.summary,
    disposition: row.disposition,
    sentiment: row.sentiment,
    actionItems: row.action_items,
    model: row.model,
    extractive: row.extractive,
    redactionCounts: row.redaction_counts,
    attempts: row.attempts,
    processedAt: toDate(row.processed_at),
    createdAt: toDate(row.created_at),
    updatedAt: toDate(row.updated_at),
  };
}

function toRecording(row: RecordingRow): Recording {
  return {
    recordingSid: row.recording_sid,
    callSid: row.call_sid,
    url: row.url,
    durationSeconds: row.duration_seconds,
    channels: row.channels,
    status: row.status,
    createdAt: toDate(row.created_at),
    updatedAt: toDate(row.updated_at),
  };
}

function toNumber(row: NumberRow): NumberProfile {
  return {
    number: row.number,
    name: row.name,
    scriptPath: row.script_path,
    prompt: row.prompt,
    voice: row.voice,
    language: row.language,
    recordingEnabled: row.recording_enabled,
    storeUnredacted: row.store_unredacted,
    dispositions: row.dispositions,
    createdAt: toDate(row.created_at),
    updatedAt: toDate(row.updated_at),
  };
}
