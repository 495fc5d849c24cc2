-- From the seed's schema to the service's: JSON kept as JSONB, a version per state for optimistic
-- concurrency, statuses checked (the seed stored them lowercase; older rows are folded to be sure),
-- checkpoint lineage and a tie-breaking sequence, and indexes that fit the list filters.

ALTER TABLE workflow_states
    ALTER COLUMN context TYPE JSONB USING COALESCE(NULLIF(context, ''), '{}')::jsonb,
    ALTER COLUMN context SET DEFAULT '{}'::jsonb,
    ADD COLUMN IF NOT EXISTS version INTEGER NOT NULL DEFAULT 1;
UPDATE workflow_states SET status = lower(status) WHERE status <> lower(status);
ALTER TABLE workflow_states
    ADD CONSTRAINT workflow_states_status_check
        CHECK (status IN ('pending', 'running', 'paused', 'completed', 'failed')),
    ADD CONSTRAINT workflow_states_version_check CHECK (version >= 1);

ALTER TABLE step_states
    ALTER COLUMN outputs TYPE JSONB USING outputs::jsonb;
UPDATE step_states SET status = lower(status) WHERE status <> lower(status);
UPDATE step_states SET retry_count = 0 WHERE retry_count IS NULL;
ALTER TABLE step_states
    ALTER COLUMN retry_count SET NOT NULL,
    ADD CONSTRAINT step_states_status_check
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'skipped')),
    ADD CONSTRAINT step_states_retry_count_check CHECK (retry_count >= 0);

ALTER TABLE checkpoints
    ALTER COLUMN snapshot TYPE JSONB USING snapshot::jsonb,
    ADD COLUMN IF NOT EXISTS parent_id UUID,
    ADD COLUMN IF NOT EXISTS seq BIGINT GENERATED ALWAYS AS IDENTITY;

-- The seed's indexes are replaced by ones whose order matches the queries' (keyset on updated_at, id).
DROP INDEX IF EXISTS idx_workflow_id_status;
DROP INDEX IF EXISTS idx_status;
DROP INDEX IF EXISTS idx_user_id;
DROP INDEX IF EXISTS idx_updated_at;
DROP INDEX IF EXISTS idx_step_workflow_state;
DROP INDEX IF EXISTS idx_checkpoint_workflow_timestamp;
DROP INDEX IF EXISTS idx_checkpoint_id;

CREATE INDEX workflow_states_updated_idx ON workflow_states (updated_at DESC, id DESC);
CREATE INDEX workflow_states_status_updated_idx ON workflow_states (status, updated_at DESC, id DESC);
CREATE INDEX workflow_states_workflow_id_updated_idx ON workflow_states (workflow_id, updated_at DESC, id DESC);
CREATE INDEX workflow_states_user_id_updated_idx ON workflow_states (user_id, updated_at DESC, id DESC);
CREATE INDEX checkpoints_workflow_order_idx ON checkpoints (workflow_state_id, timestamp DESC, seq DESC);

-- JSON rendering, done by PostgreSQL so that answers leave as text: timestamps in UTC with a Z at
-- the microsecond precision stored, keys in a fixed order.
CREATE FUNCTION wss_ts(t TIMESTAMPTZ) RETURNS TEXT
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');

CREATE FUNCTION wss_step_json(s step_states) RETURNS JSON
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN json_build_object(
        'step_id', s.step_id,
        'status', s.status,
        'started_at', wss_ts(s.started_at),
        'completed_at', wss_ts(s.completed_at),
        'outputs', s.outputs,
        'error', s.error,
        'retry_count', s.retry_count);

CREATE FUNCTION wss_steps_json(state_id UUID) RETURNS JSON
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN (SELECT COALESCE(json_object_agg(s.step_id, wss_step_json(s) ORDER BY s.step_id), '{}'::json)
            FROM step_states s WHERE s.workflow_state_id = state_id);

CREATE FUNCTION wss_state_json(w workflow_states, steps JSON) RETURNS JSON
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN json_build_object(
        'id', w.id,
        'workflow_id', w.workflow_id,
        'workflow_name', w.workflow_name,
        'status', w.status,
        'user_id', w.user_id,
        'started_at', wss_ts(w.started_at),
        'updated_at', wss_ts(w.updated_at),
        'completed_at', wss_ts(w.completed_at),
        'context', w.context,
        'error', w.error,
        'steps', steps,
        'version', w.version);

CREATE FUNCTION wss_state_json(w workflow_states) RETURNS JSON
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN wss_state_json(w, wss_steps_json(w.id));

CREATE FUNCTION wss_checkpoint_json(c checkpoints, with_snapshot BOOLEAN) RETURNS JSON
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN CASE WHEN with_snapshot THEN
        json_build_object('id', c.id, 'workflow_state_id', c.workflow_state_id, 'step_id', c.step_id,
                          'timestamp', wss_ts(c.timestamp), 'parent_id', c.parent_id, 'snapshot', c.snapshot)
    ELSE
        json_build_object('id', c.id, 'workflow_state_id', c.workflow_state_id, 'step_id', c.step_id,
                          'timestamp', wss_ts(c.timestamp), 'parent_id', c.parent_id)
    END;
