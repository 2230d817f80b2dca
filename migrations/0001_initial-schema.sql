-- Durable store, first version (issue 4). Applied by node-pg-migrate (src/store/database.ts) at
-- start-up, against PostgreSQL or embedded PGlite alike: plain SQL, nothing PGlite lacks.
-- Later changes go in new files (0002_..., 0003_...); never edit an applied one.

-- Up Migration

-- Numbers this server answers, each with its agent profile. The admin side builds on this table.
CREATE TABLE numbers (
  number            text PRIMARY KEY CHECK (number ~ '^\+[1-9][0-9]{6,14}$'),  -- E.164
  name              text NOT NULL,
  -- One of the two, or neither (then the server's default script answers).
  script_path       text,
  prompt            text,
  voice             text,
  language          text,
  recording_enabled boolean NOT NULL DEFAULT false,
  -- Keep the unredacted transcript too (off: only the redacted one is stored).
  store_unredacted  boolean NOT NULL DEFAULT false,
  -- The dispositions the post-call LLM picks one from.
  dispositions      text[] NOT NULL DEFAULT '{}',
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE calls (
  call_sid        text PRIMARY KEY,
  provider        text NOT NULL DEFAULT 'twilio',
  direction       text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
  from_number     text,
  to_number       text,
  -- Our number on this call (the called one inbound, the caller id outbound). Not a foreign key:
  -- numbers may be configured by script files only, and a call must be stored whatever its number.
  number          text,
  started_at      timestamptz NOT NULL DEFAULT now(),
  ended_at        timestamptz,
  end_reason      text,
  status          text NOT NULL DEFAULT 'live' CHECK (status IN ('live', 'ended', 'processed', 'failed')),
  -- Why post-call processing failed last (kept until a later attempt succeeds).
  post_call_error text,
  -- The server instance handling the live call (the orphan sweeper's key).
  owner_instance  text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Read API: newest first, cursor on (started_at, call_sid), optionally for one number.
CREATE INDEX calls_started_idx ON calls (started_at DESC, call_sid DESC);
CREATE INDEX calls_number_started_idx ON calls (number, started_at DESC, call_sid DESC);
-- Live calls by owner, for the orphan sweeper.
CREATE INDEX calls_live_owner_idx ON calls (owner_instance) WHERE status = 'live';

-- One row per speaker per turn: turn idx's caller utterance and the agent's reply to it.
CREATE TABLE turns (
  call_sid      text NOT NULL REFERENCES calls (call_sid) ON DELETE CASCADE,
  idx           integer NOT NULL CHECK (idx >= 0),
  speaker       text NOT NULL CHECK (speaker IN ('caller', 'agent')),
  -- Unredacted text: NULL unless the number's profile keeps it.
  text          text,
  redacted_text text,
  -- Offsets from the call's start, ms.
  start_ms      integer,
  end_ms        integer,
  interrupted   boolean NOT NULL DEFAULT false,
  -- Per-turn latency waterfall, ms relative to the turn decision: speechEnd, turnDecided, asrFinal,
  -- llmRequest, llmFirstToken, firstSegmentToTts, ttsFirstAudio, firstFrameSent.
  latency       jsonb,
  PRIMARY KEY (call_sid, idx, speaker)
);

CREATE TABLE post_call_results (
  call_sid         text PRIMARY KEY REFERENCES calls (call_sid) ON DELETE CASCADE,
  summary          text NOT NULL,
  disposition      text,
  sentiment        text,
  action_items     jsonb NOT NULL DEFAULT '[]',
  model            text,
  -- Made by the extractive fallback (no LLM configured or reachable), not by an LLM.
  extractive       boolean NOT NULL DEFAULT false,
  -- Redactions applied, by kind, e.g. {"card": 1, "email": 2}.
  redaction_counts jsonb NOT NULL DEFAULT '{}',
  attempts         integer NOT NULL DEFAULT 1,
  processed_at     timestamptz NOT NULL DEFAULT now(),
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX post_call_results_disposition_idx ON post_call_results (disposition, call_sid);

-- Recording metadata (never the audio). call_sid is deliberately not a foreign key: the recording
-- callback may arrive before the call row is written (or after), and must be stored either way;
-- reads join on call_sid whichever came first.
CREATE TABLE recordings (
  recording_sid    text PRIMARY KEY,
  call_sid         text NOT NULL,
  url              text,
  duration_seconds integer,
  channels         integer,
  status           text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX recordings_call_idx ON recordings (call_sid);

-- Down Migration

DROP TABLE recordings;
DROP TABLE post_call_results;
DROP TABLE turns;
DROP TABLE calls;
DROP TABLE numbers;
