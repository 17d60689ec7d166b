CREATE TABLE galtea_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE spans (
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_span_id TEXT, name TEXT NOT NULL, kind TEXT NOT NULL,
    start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL, status INTEGER NOT NULL, error TEXT, session_event TEXT,
    own_custom_id TEXT, own_version TEXT, resource_version TEXT, custom_id TEXT, version TEXT,
    test_case_id TEXT, context TEXT, input TEXT, output TEXT, model TEXT,
    input_tokens INTEGER, output_tokens INTEGER, cache_read_tokens INTEGER, total_tokens INTEGER, cost REAL,
    abandoned INTEGER NOT NULL, metadata TEXT, received_ns INTEGER NOT NULL, user_id TEXT, key_weak INTEGER, input_messages TEXT, output_messages TEXT, finish_reason TEXT, evaluations TEXT,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX spans_by_session ON spans (custom_id, version);
CREATE INDEX spans_unresolved ON spans (trace_id) WHERE own_custom_id IS NULL OR own_version IS NULL;
CREATE INDEX spans_held ON spans (received_ns) WHERE custom_id IS NULL;
CREATE TABLE sessions (
    custom_id TEXT NOT NULL, version TEXT NOT NULL, status TEXT NOT NULL, error TEXT, test_case_id TEXT,
    context TEXT, metadata TEXT NOT NULL, started_ns INTEGER, ended_ns INTEGER, last_activity_ns INTEGER NOT NULL,
    turn_count INTEGER NOT NULL, input_tokens INTEGER, output_tokens INTEGER, total_tokens INTEGER, cost REAL,
    latency_ms REAL, assembly TEXT NOT NULL, updated_ns INTEGER NOT NULL, user_id TEXT, first_input TEXT, last_output TEXT, model TEXT, cache_read_tokens INTEGER,
    PRIMARY KEY (custom_id, version)
);
CREATE INDEX sessions_by_activity ON sessions (status, last_activity_ns);
CREATE INDEX sessions_by_start ON sessions (started_ns);
CREATE TABLE test_cases (
    id TEXT PRIMARY KEY, input TEXT, expected_output TEXT, context TEXT, metadata TEXT NOT NULL
);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE galtea_outbox (
    custom_id TEXT NOT NULL, version TEXT NOT NULL, seq INTEGER NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL, next_attempt_ns INTEGER NOT NULL, enqueued_ns INTEGER NOT NULL,
    last_error TEXT,
    PRIMARY KEY (custom_id, version)
);
CREATE INDEX galtea_outbox_due ON galtea_outbox (state, next_attempt_ns);
CREATE TABLE galtea_sync_sessions (
    custom_id TEXT NOT NULL, version TEXT NOT NULL, platform_id TEXT, version_id TEXT, status TEXT,
    fingerprint TEXT, synced_updated_ns INTEGER, updated_ns INTEGER NOT NULL,
    PRIMARY KEY (custom_id, version)
);
CREATE TABLE galtea_sync_turns (
    custom_id TEXT NOT NULL, version TEXT NOT NULL, turn_id TEXT NOT NULL,
    platform_id TEXT NOT NULL, spans_sent TEXT NOT NULL, fingerprint TEXT,
    PRIMARY KEY (custom_id, version, turn_id)
);
CREATE TABLE galtea_sync_intents (
    custom_id TEXT NOT NULL, version TEXT NOT NULL, turn_id TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (custom_id, version, turn_id)
);
CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_by_start_key ON sessions (started_ns DESC, custom_id, version);
CREATE INDEX sessions_by_status_start ON sessions (status, started_ns DESC, custom_id, version);
CREATE INDEX sessions_by_version_start ON sessions (version, started_ns DESC, custom_id, version);
CREATE INDEX sessions_by_user_start ON sessions (user_id, started_ns DESC, custom_id, version);
CREATE TABLE evaluations (
    id TEXT PRIMARY KEY, custom_id TEXT NOT NULL, version TEXT NOT NULL,
    target_trace_id TEXT, target_span_id TEXT, name TEXT NOT NULL, score REAL, label TEXT,
    explanation TEXT, evaluator_name TEXT, evaluator_version TEXT, source TEXT NOT NULL,
    created_ns INTEGER NOT NULL, error TEXT, superseded INTEGER NOT NULL, run_end_ns INTEGER, metadata TEXT
);
CREATE INDEX evaluations_by_session ON evaluations (custom_id, version);
CREATE INDEX evaluations_by_name ON evaluations (name, score);
CREATE TABLE evaluation_queue (
    custom_id TEXT NOT NULL, version TEXT NOT NULL, end_ns INTEGER NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL, next_attempt_ns INTEGER NOT NULL, enqueued_ns INTEGER NOT NULL,
    PRIMARY KEY (custom_id, version)
);
CREATE INDEX evaluation_queue_due ON evaluation_queue (state, next_attempt_ns);
