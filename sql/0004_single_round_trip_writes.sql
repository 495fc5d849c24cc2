-- Saves and step writes in one round trip (wss_write_steps is shared with PATCH). A save must write (and so lock) the state row before it
-- replaces the steps, and the steps statement must then see every step committed while it waited for
-- that lock: two statements with two snapshots. Inside a PL/pgSQL function under READ COMMITTED each
-- statement takes a fresh snapshot, so both run in one call instead of BEGIN, two statements, COMMIT.
-- JSON and timestamps arrive as text and are cast here, so no client serializer can alter them.

-- Writes steps given as a JSON array: changed or new ones are upserted, unchanged ones are neither
-- rewritten nor locked (a save after a step usually changes one of many). p_replace deletes the
-- steps absent from the array (a save); otherwise only the ids in p_delete go (a PATCH).
CREATE FUNCTION wss_write_steps(p_id UUID, p_steps TEXT, p_replace BOOLEAN, p_delete TEXT[])
RETURNS VOID
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    WITH input AS (
        SELECT * FROM jsonb_to_recordset(p_steps::jsonb) AS r(
            step_id TEXT, status TEXT, started_at TIMESTAMPTZ, completed_at TIMESTAMPTZ,
            outputs JSONB, error TEXT, retry_count INTEGER)),
    removed AS (
        DELETE FROM step_states d WHERE d.workflow_state_id = p_id
            AND CASE WHEN p_replace THEN d.step_id NOT IN (SELECT i.step_id FROM input i)
                     ELSE d.step_id = ANY(p_delete) END)
    INSERT INTO step_states AS s
        (workflow_state_id, step_id, status, started_at, completed_at, outputs, error, retry_count)
    SELECT p_id, i.step_id, i.status, i.started_at, i.completed_at, i.outputs, i.error, i.retry_count
    FROM input i
    WHERE NOT EXISTS (
        SELECT 1 FROM step_states c
        WHERE c.workflow_state_id = p_id AND c.step_id = i.step_id
          AND (c.status, c.started_at, c.completed_at, c.outputs, c.error, c.retry_count)
              IS NOT DISTINCT FROM (i.status, i.started_at, i.completed_at, i.outputs, i.error, i.retry_count))
    ON CONFLICT (workflow_state_id, step_id) DO UPDATE SET
        status = EXCLUDED.status, started_at = EXCLUDED.started_at, completed_at = EXCLUDED.completed_at,
        outputs = EXCLUDED.outputs, error = EXCLUDED.error, retry_count = EXCLUDED.retry_count;
END
$$;

CREATE FUNCTION wss_save_state(
    p_id UUID, p_mode TEXT, p_versions INTEGER[],
    p_workflow_id TEXT, p_workflow_name TEXT, p_status TEXT, p_user_id TEXT,
    p_started_at TEXT, p_updated_at TEXT, p_completed_at TEXT, p_context TEXT, p_error TEXT, p_steps TEXT)
RETURNS TABLE (version INTEGER, created BOOLEAN, body TEXT)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_version INTEGER;
    v_created BOOLEAN;
    v_started TIMESTAMPTZ := p_started_at::timestamptz;
    v_updated TIMESTAMPTZ := p_updated_at::timestamptz;
BEGIN
    -- p_mode: 'any' (last write wins), 'absent' (create only), 'exists', 'version' (= ANY(p_versions)).
    IF p_mode = 'any' OR p_mode = 'absent' THEN
        INSERT INTO workflow_states AS w (id, workflow_id, workflow_name, status, user_id,
            started_at, updated_at, completed_at, context, error, version)
        VALUES (p_id, p_workflow_id, p_workflow_name, p_status, p_user_id,
            COALESCE(v_started, now()), COALESCE(v_updated, now()), p_completed_at::timestamptz,
            p_context::jsonb, p_error, 1)
        ON CONFLICT (id) DO UPDATE SET
            workflow_id = EXCLUDED.workflow_id, workflow_name = EXCLUDED.workflow_name,
            status = EXCLUDED.status, user_id = EXCLUDED.user_id,
            started_at = COALESCE(v_started, w.started_at),
            -- A replace never moves a state back in time: an older updated_at is stamped now.
            updated_at = COALESCE(CASE WHEN v_updated > w.updated_at THEN v_updated END, now()),
            completed_at = EXCLUDED.completed_at, context = EXCLUDED.context, error = EXCLUDED.error,
            version = w.version + 1, doc = NULL
            WHERE p_mode = 'any'
        RETURNING w.version, (w.xmax = 0) INTO v_version, v_created;
    ELSE
        UPDATE workflow_states AS w SET
            workflow_id = p_workflow_id, workflow_name = p_workflow_name, status = p_status,
            user_id = p_user_id, started_at = COALESCE(v_started, w.started_at),
            updated_at = COALESCE(CASE WHEN v_updated > w.updated_at THEN v_updated END, now()),
            completed_at = p_completed_at::timestamptz, context = p_context::jsonb, error = p_error,
            version = w.version + 1, doc = NULL
        WHERE w.id = p_id AND (p_mode = 'exists' OR w.version = ANY(p_versions))
        RETURNING w.version, false INTO v_version, v_created;
    END IF;
    IF v_version IS NULL THEN
        RETURN; -- precondition failed: no row
    END IF;

    PERFORM wss_write_steps(p_id, p_steps, true, NULL);
    UPDATE workflow_states w SET doc = wss_state_json(w) WHERE w.id = p_id RETURNING w.doc::text INTO body;
    version := v_version;
    created := v_created;
    RETURN NEXT;
END
$$;

-- One step: bump the state's version and updated_at (locking it), write the step, re-render the
-- document. Returns the step's JSON, whether it was created, and the state's new version.
CREATE FUNCTION wss_save_step(
    p_id UUID, p_versions INTEGER[], p_step_id TEXT, p_status TEXT, p_started_at TEXT, p_completed_at TEXT,
    p_outputs TEXT, p_error TEXT, p_retry_count INTEGER)
RETURNS TABLE (version INTEGER, created BOOLEAN, body TEXT)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_version INTEGER;
BEGIN
    UPDATE workflow_states w SET version = w.version + 1, updated_at = now(), doc = NULL
    WHERE w.id = p_id AND (p_versions IS NULL OR w.version = ANY(p_versions))
    RETURNING w.version INTO v_version;
    IF v_version IS NULL THEN
        RETURN;
    END IF;
    -- The state row is locked: nothing else writes this state's steps until commit.
    created := NOT EXISTS (SELECT 1 FROM step_states s WHERE s.workflow_state_id = p_id AND s.step_id = p_step_id);
    PERFORM wss_write_steps(p_id, jsonb_build_array(jsonb_build_object(
        'step_id', p_step_id, 'status', p_status, 'started_at', p_started_at, 'completed_at', p_completed_at,
        'outputs', p_outputs::jsonb, 'error', p_error, 'retry_count', p_retry_count))::text, false, NULL);
    UPDATE workflow_states w SET doc = wss_state_json(w) WHERE w.id = p_id;
    SELECT wss_step_json(s)::text INTO body FROM step_states s
    WHERE s.workflow_state_id = p_id AND s.step_id = p_step_id;
    version := v_version;
    RETURN NEXT;
END
$$;
