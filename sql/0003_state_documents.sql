-- Each state keeps its rendered JSON document (the answer of GET, with steps and version), written
-- in the same transaction as every change to the state or its steps. Reads and lists then send
-- stored text instead of rendering 20+ step objects per state on every request. NULL means "not
-- rendered": readers fall back to rendering, so a row written by other means is never served stale
-- as long as that writer leaves doc NULL.

ALTER TABLE workflow_states ADD COLUMN doc JSON;

CREATE FUNCTION wss_step_json(step_id TEXT, status TEXT, started_at TIMESTAMPTZ, completed_at TIMESTAMPTZ,
                              outputs JSONB, error TEXT, retry_count INTEGER) RETURNS JSON
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN json_build_object(
        'step_id', step_id,
        'status', status,
        'started_at', wss_ts(started_at),
        'completed_at', wss_ts(completed_at),
        'outputs', outputs,
        'error', error,
        'retry_count', retry_count);

CREATE OR REPLACE FUNCTION wss_step_json(s step_states) RETURNS JSON
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN wss_step_json(s.step_id::text, s.status::text, s.started_at, s.completed_at, s.outputs, s.error, s.retry_count);

UPDATE workflow_states w SET doc = wss_state_json(w);
