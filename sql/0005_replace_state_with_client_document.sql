-- A whole-state save (PUT) with less work in PostgreSQL than wss_save_state (0004), which stays for
-- replicas still running the previous release and for the rare body the service cannot render.
--
-- * The service renders the steps from the validated body, as a JSON object of step records by id
--   with timestamps already in the form wss_ts gives. That text is both what is written to
--   step_states and the document's "steps"; the rest of the document is joined around it here, so
--   no step is read back or rendered.
-- * The row is written once: the UPDATE (or INSERT) that locks it also stores the new document.
--   The steps statement that follows takes a fresh snapshot, so it sees every step committed while
--   this call waited for the row lock.
-- * Existing steps are read once, and only changed or new steps are written.

-- Makes a state's steps exactly p_steps (a JSON object of step records): absent ones are deleted,
-- changed or new ones upserted, unchanged ones neither rewritten nor locked.
CREATE FUNCTION wss_replace_steps(p_id UUID, p_steps TEXT)
RETURNS VOID
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    WITH input AS (
        SELECT r.* FROM json_each(p_steps::json) AS e, json_to_record(e.value) AS r(
            step_id TEXT, status TEXT, started_at TIMESTAMPTZ, completed_at TIMESTAMPTZ,
            outputs JSONB, error TEXT, retry_count INTEGER)),
    existing AS (
        SELECT c.step_id, c.status, c.started_at, c.completed_at, c.outputs, c.error, c.retry_count
        FROM step_states c WHERE c.workflow_state_id = p_id),
    removed AS (
        DELETE FROM step_states d WHERE d.workflow_state_id = p_id AND d.step_id = ANY (ARRAY(
            SELECT c.step_id FROM existing c WHERE NOT EXISTS (SELECT 1 FROM input i WHERE i.step_id = c.step_id))))
    INSERT INTO step_states AS s
        (workflow_state_id, step_id, status, started_at, completed_at, outputs, error, retry_count)
    SELECT p_id, i.step_id, i.status, i.started_at, i.completed_at, i.outputs, i.error, i.retry_count
    FROM input i LEFT JOIN existing c ON c.step_id = i.step_id
    WHERE c.step_id IS NULL
       OR (c.status, c.started_at, c.completed_at, c.outputs, c.error, c.retry_count)
          IS DISTINCT FROM (i.status, i.started_at, i.completed_at, i.outputs, i.error, i.retry_count)
    ON CONFLICT (workflow_state_id, step_id) DO UPDATE SET
        status = EXCLUDED.status, started_at = EXCLUDED.started_at, completed_at = EXCLUDED.completed_at,
        outputs = EXCLUDED.outputs, error = EXCLUDED.error, retry_count = EXCLUDED.retry_count;
END
$$;

-- The stored document, in the member order of wss_state_json, with p_context and p_steps as given.
CREATE FUNCTION wss_compose_doc(p_id UUID, p_workflow_id TEXT, p_workflow_name TEXT, p_status TEXT,
    p_user_id TEXT, p_started TIMESTAMPTZ, p_updated TIMESTAMPTZ, p_completed TIMESTAMPTZ, p_context TEXT,
    p_error TEXT, p_steps TEXT, p_version INTEGER) RETURNS JSON
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN ('{"id":"' || p_id::text || '","workflow_id":' || to_json(p_workflow_id)::text ||
            ',"workflow_name":' || to_json(p_workflow_name)::text || ',"status":' || to_json(p_status)::text ||
            ',"user_id":' || COALESCE(to_json(p_user_id)::text, 'null') ||
            ',"started_at":"' || wss_ts(p_started) || '","updated_at":"' || wss_ts(p_updated) ||
            '","completed_at":' || COALESCE('"' || wss_ts(p_completed) || '"', 'null') ||
            ',"context":' || p_context || ',"error":' || COALESCE(to_json(p_error)::text, 'null') ||
            ',"steps":' || p_steps || ',"version":' || p_version::text || '}')::json;

CREATE FUNCTION wss_replace_state(
    p_id UUID, p_mode TEXT, p_versions INTEGER[],
    p_workflow_id TEXT, p_workflow_name TEXT, p_status TEXT, p_user_id TEXT,
    p_started_at TEXT, p_updated_at TEXT, p_completed_at TEXT, p_context TEXT, p_error TEXT, p_steps TEXT)
RETURNS TABLE (version INTEGER, created BOOLEAN, body TEXT)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_started TIMESTAMPTZ := p_started_at::timestamptz;
    v_updated TIMESTAMPTZ := p_updated_at::timestamptz;
    v_completed TIMESTAMPTZ := p_completed_at::timestamptz;
    v_now TIMESTAMPTZ := now();
BEGIN
    -- p_mode: 'any' (last write wins), 'absent' (create only), 'exists', 'version' (= ANY(p_versions)).
    LOOP
        IF p_mode <> 'absent' THEN
            -- A replace never moves a state back in time: an older updated_at is stamped now.
            UPDATE workflow_states AS s SET
                workflow_id = p_workflow_id, workflow_name = p_workflow_name, status = p_status,
                user_id = p_user_id, started_at = COALESCE(v_started, s.started_at),
                updated_at = CASE WHEN v_updated > s.updated_at THEN v_updated ELSE v_now END,
                completed_at = v_completed, context = p_context::jsonb, error = p_error,
                version = s.version + 1,
                doc = wss_compose_doc(p_id, p_workflow_id, p_workflow_name, p_status, p_user_id,
                    COALESCE(v_started, s.started_at), CASE WHEN v_updated > s.updated_at THEN v_updated ELSE v_now END,
                    v_completed, p_context, p_error, p_steps, s.version + 1)
            WHERE s.id = p_id AND (p_mode <> 'version' OR s.version = ANY(p_versions))
            RETURNING s.version, false, s.doc::text INTO version, created, body;
            EXIT WHEN FOUND;
            IF p_mode <> 'any' THEN
                RETURN; -- precondition failed: no row
            END IF;
        END IF;
        INSERT INTO workflow_states AS s (id, workflow_id, workflow_name, status, user_id,
            started_at, updated_at, completed_at, context, error, version, doc)
        VALUES (p_id, p_workflow_id, p_workflow_name, p_status, p_user_id,
            COALESCE(v_started, v_now), COALESCE(v_updated, v_now), v_completed,
            p_context::jsonb, p_error, 1,
            wss_compose_doc(p_id, p_workflow_id, p_workflow_name, p_status, p_user_id,
                COALESCE(v_started, v_now), COALESCE(v_updated, v_now), v_completed, p_context, p_error, p_steps, 1))
        ON CONFLICT (id) DO NOTHING
        RETURNING s.version, true, s.doc::text INTO version, created, body;
        EXIT WHEN FOUND;
        IF p_mode = 'absent' THEN
            RETURN;
        END IF;
        -- 'any', and a concurrent save created the state first: replace it.
    END LOOP;
    -- The row is written and locked: its steps follow, in a statement with a fresh snapshot.
    PERFORM wss_replace_steps(p_id, p_steps);
    RETURN NEXT;
END
$$;
