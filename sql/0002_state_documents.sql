-- From the seed's schema (0001) to the service's model, on an empty database or on a seed database
-- with its rows.
--
-- A state is one JSON document (doc), rendered by the service (JSON.stringify) and stored as it
-- was rendered, so reads send it as is. The other columns hold what is filtered, sorted, locked or
-- joined on; the service writes them from the same values as the document, in the same statement.
-- A checkpoint is its own fields (doc) and the snapshot it holds. PostgreSQL stores and filters;
-- it renders no JSON.

-- States: the seed's columns that only the document needs go, once their values are in it.
ALTER TABLE workflow_states
    ADD COLUMN version INTEGER NOT NULL DEFAULT 1,
    ADD COLUMN doc JSON;

UPDATE workflow_states SET status = lower(status) WHERE status <> lower(status);

-- A seed row's document, with its steps, in the service's members and formats (UTC timestamps
-- with six fraction digits and a Z). This is the one time PostgreSQL builds a document: an adopted
-- state is rendered by the service again at its first write.
UPDATE workflow_states w SET doc = json_build_object(
    'id', w.id,
    'workflow_id', w.workflow_id,
    'workflow_name', w.workflow_name,
    'status', w.status,
    'user_id', w.user_id,
    'started_at', to_char(w.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'updated_at', to_char(w.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'completed_at', to_char(w.completed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'context', COALESCE(NULLIF(w.context, ''), '{}')::json,
    'error', w.error,
    'steps', COALESCE((
        SELECT json_object_agg(s.step_id, json_build_object(
            'step_id', s.step_id,
            'status', lower(s.status),
            'started_at', to_char(s.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            'completed_at', to_char(s.completed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            'outputs', s.outputs::json,
            'error', s.error,
            'retry_count', COALESCE(s.retry_count, 0)) ORDER BY s.step_id COLLATE "C")
        FROM step_states s WHERE s.workflow_state_id = w.id), '{}'::json),
    'version', 1);

-- The seed's indexes go with the columns and tables they were on, or are replaced below.
DROP TABLE step_states;
DROP INDEX IF EXISTS idx_workflow_id_status;
DROP INDEX IF EXISTS idx_status;
DROP INDEX IF EXISTS idx_user_id;
DROP INDEX IF EXISTS idx_updated_at;
ALTER TABLE workflow_states
    DROP COLUMN workflow_name,
    DROP COLUMN started_at,
    DROP COLUMN completed_at,
    DROP COLUMN context,
    DROP COLUMN error,
    ALTER COLUMN version DROP DEFAULT,
    ALTER COLUMN doc SET NOT NULL,
    ADD CONSTRAINT workflow_states_status_check
        CHECK (status IN ('pending', 'running', 'paused', 'completed', 'failed')),
    ADD CONSTRAINT workflow_states_version_check CHECK (version >= 1);

-- Lists are keyset-paged on (updated_at, id), newest first, under each filter; purge uses status.
CREATE INDEX workflow_states_updated_idx ON workflow_states (updated_at DESC, id DESC);
CREATE INDEX workflow_states_status_updated_idx ON workflow_states (status, updated_at DESC, id DESC);
CREATE INDEX workflow_states_workflow_id_updated_idx ON workflow_states (workflow_id, updated_at DESC, id DESC);
CREATE INDEX workflow_states_user_id_updated_idx ON workflow_states (user_id, updated_at DESC, id DESC);

-- Checkpoints: ordered by seq, the order they were made in (a state's checkpoints are made one at a
-- time, under its row lock); a seed database's are numbered in the order of their timestamps.
ALTER TABLE checkpoints
    ADD COLUMN seq BIGINT,
    ADD COLUMN doc JSON,
    ALTER COLUMN snapshot TYPE JSON USING snapshot::json;

UPDATE checkpoints c SET
    seq = o.n,
    doc = json_build_object(
        'id', c.id,
        'workflow_state_id', c.workflow_state_id,
        'step_id', c.step_id,
        'timestamp', to_char(c.timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'parent_id', NULL)
FROM (SELECT id, row_number() OVER (ORDER BY timestamp, id) AS n FROM checkpoints) o
WHERE c.id = o.id;

DROP INDEX IF EXISTS idx_checkpoint_workflow_timestamp;
DROP INDEX IF EXISTS idx_checkpoint_id;
ALTER TABLE checkpoints
    DROP COLUMN step_id,
    DROP COLUMN timestamp,
    ALTER COLUMN seq SET NOT NULL,
    ALTER COLUMN seq ADD GENERATED ALWAYS AS IDENTITY,
    ALTER COLUMN doc SET NOT NULL;
SELECT setval(pg_get_serial_sequence('checkpoints', 'seq'), max(seq)) FROM checkpoints HAVING count(*) > 0;

CREATE INDEX checkpoints_state_seq_idx ON checkpoints (workflow_state_id, seq DESC);
