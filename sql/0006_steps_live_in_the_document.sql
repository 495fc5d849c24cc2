-- Steps live in the state's document.
--
-- Each state row keeps its JSON document (0003), written with every change. step_states held the
-- same steps a second time, and keeping the two in step cost more than half of PostgreSQL's work
-- on a save: parse every step of the body, read the stored ones, compare, upsert what changed. From
-- here on the document is where a state's steps are stored, so a write of a state or of one of its
-- steps writes one row, under that row's lock. step_states becomes a view over the documents, with
-- the columns it had, for whoever reads it with SQL.
--
-- The functions an earlier release calls keep their names and arguments and now work on the
-- document, so replicas still on the previous release stay correct while a rollout runs:
-- wss_save_state, wss_replace_state, wss_save_step, wss_write_steps and wss_state_json. A write that
-- leaves doc NULL (the previous release's PATCH, or any INSERT without one) has the document
-- rendered from the row by a trigger, with the steps the row's document had.

-- The steps of every document, from step_states one last time where they differ (a document that
-- is missing, or a row a writer other than this service changed).
UPDATE workflow_states w SET doc = wss_state_json(w)
WHERE w.doc IS NULL OR (w.doc -> 'steps')::jsonb IS DISTINCT FROM wss_steps_json(w.id)::jsonb;

-- One step as documents hold it: the members of render.ts's stepRecord, in its order, timestamps
-- as wss_ts prints them, p_outputs (JSON text) as given.
CREATE FUNCTION wss_step_text(p_step_id TEXT, p_status TEXT, p_started TIMESTAMPTZ, p_completed TIMESTAMPTZ,
    p_outputs TEXT, p_error TEXT, p_retry_count INTEGER) RETURNS TEXT
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN '{"step_id":' || to_json(p_step_id)::text || ',"status":' || to_json(p_status)::text ||
        ',"started_at":' || COALESCE('"' || wss_ts(p_started) || '"', 'null') ||
        ',"completed_at":' || COALESCE('"' || wss_ts(p_completed) || '"', 'null') ||
        ',"outputs":' || COALESCE(p_outputs, 'null') || ',"error":' || COALESCE(to_json(p_error)::text, 'null') ||
        ',"retry_count":' || COALESCE(p_retry_count, 0)::text || '}';

-- Step records given as a JSON array (as the service sends them to wss_save_state and
-- wss_write_steps), as a document's steps object: step ids in order, each mapped to its step.
CREATE FUNCTION wss_render_steps(p_records TEXT) RETURNS TEXT
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN (SELECT COALESCE('{' || string_agg(to_json(r.step_id)::text || ':' ||
            wss_step_text(r.step_id, r.status, r.started_at, r.completed_at, r.outputs::text, r.error, r.retry_count),
            ',' ORDER BY r.step_id) || '}', '{}')
        FROM json_to_recordset(p_records::json) AS r(step_id TEXT, status TEXT, started_at TIMESTAMPTZ,
            completed_at TIMESTAMPTZ, outputs JSON, error TEXT, retry_count INTEGER));

-- A steps object (p_old, NULL for none) with the steps of p_new put in (replacing those with the
-- same id) and the ids in p_delete taken out, as a steps object in step id order.
CREATE FUNCTION wss_merge_steps(p_old JSON, p_new JSON, p_delete TEXT[]) RETURNS TEXT
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN (SELECT COALESCE('{' || string_agg(to_json(s.k)::text || ':' || s.v, ',' ORDER BY s.k) || '}', '{}')
        FROM (SELECT n.key AS k, n.value::text AS v FROM json_each(p_new) n
              UNION ALL
              SELECT o.key, o.value::text FROM json_each(p_old) o
              WHERE o.key <> ALL (COALESCE(p_delete, '{}'))
                AND NOT EXISTS (SELECT 1 FROM json_each(p_new) n WHERE n.key = o.key)) s);

-- A state's document from its row and a steps object (compact JSON, the member order of
-- wss_compose_doc); the one-argument form takes the steps from the row's own document.
CREATE OR REPLACE FUNCTION wss_state_json(w workflow_states, steps JSON) RETURNS JSON
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN wss_compose_doc(w.id, w.workflow_id, w.workflow_name, w.status, w.user_id, w.started_at,
        w.updated_at, w.completed_at, w.context::text, w.error, COALESCE(steps::text, '{}'), w.version);

CREATE OR REPLACE FUNCTION wss_state_json(w workflow_states) RETURNS JSON
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN wss_state_json(w, w.doc -> 'steps');

-- A row written with doc NULL gets its document from its columns and the steps it had.
CREATE FUNCTION wss_fill_doc() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        NEW.doc := wss_state_json(NEW, OLD.doc -> 'steps');
    ELSE
        NEW.doc := wss_state_json(NEW, NULL);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER workflow_states_fill_doc BEFORE INSERT OR UPDATE ON workflow_states
    FOR EACH ROW WHEN (NEW.doc IS NULL) EXECUTE FUNCTION wss_fill_doc();

-- A PATCH's steps (p_replace false: upsert p_steps, delete the ids in p_delete) or a whole set of
-- steps (p_replace true), written into the document of a row the caller has already written.
CREATE OR REPLACE FUNCTION wss_write_steps(p_id UUID, p_steps TEXT, p_replace BOOLEAN, p_delete TEXT[])
RETURNS VOID
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    UPDATE workflow_states w
    SET doc = wss_state_json(w, wss_merge_steps(CASE WHEN p_replace THEN NULL ELSE w.doc -> 'steps' END,
        wss_render_steps(p_steps)::json, p_delete)::json)
    WHERE w.id = p_id;
END
$$;

-- The whole-state save: the row, with its document, written once. Same contract as in 0005.
CREATE OR REPLACE FUNCTION wss_replace_state(
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
    RETURN NEXT;
END
$$;

-- The save for steps given as records (JSON array) that PostgreSQL renders: bodies with a timestamp
-- the service does not render, and the previous release.
CREATE OR REPLACE FUNCTION wss_save_state(
    p_id UUID, p_mode TEXT, p_versions INTEGER[],
    p_workflow_id TEXT, p_workflow_name TEXT, p_status TEXT, p_user_id TEXT,
    p_started_at TEXT, p_updated_at TEXT, p_completed_at TEXT, p_context TEXT, p_error TEXT, p_steps TEXT)
RETURNS TABLE (version INTEGER, created BOOLEAN, body TEXT)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN QUERY SELECT * FROM wss_replace_state(p_id, p_mode, p_versions, p_workflow_id, p_workflow_name,
        p_status, p_user_id, p_started_at, p_updated_at, p_completed_at, p_context, p_error,
        wss_render_steps(p_steps));
END
$$;

-- One step: lock the state (with its version condition), put the step into the document, bump the
-- version and updated_at. Returns the step's JSON, whether it is new, and the state's new version.
CREATE OR REPLACE FUNCTION wss_save_step(
    p_id UUID, p_versions INTEGER[], p_step_id TEXT, p_status TEXT, p_started_at TEXT, p_completed_at TEXT,
    p_outputs TEXT, p_error TEXT, p_retry_count INTEGER)
RETURNS TABLE (version INTEGER, created BOOLEAN, body TEXT)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_step TEXT := wss_step_text(p_step_id, p_status, p_started_at::timestamptz, p_completed_at::timestamptz,
        p_outputs::json::text, p_error, p_retry_count);
    v_steps JSON;
    v_now TIMESTAMPTZ := now();
BEGIN
    SELECT w.doc -> 'steps' INTO v_steps FROM workflow_states w
    WHERE w.id = p_id AND (p_versions IS NULL OR w.version = ANY(p_versions))
    FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    created := (v_steps -> p_step_id) IS NULL;
    UPDATE workflow_states w SET version = w.version + 1, updated_at = v_now,
        doc = wss_compose_doc(w.id, w.workflow_id, w.workflow_name, w.status, w.user_id, w.started_at, v_now,
            w.completed_at, w.context::text, w.error,
            wss_merge_steps(v_steps, ('{' || to_json(p_step_id)::text || ':' || v_step || '}')::json, NULL),
            w.version + 1)
    WHERE w.id = p_id
    RETURNING w.version INTO version;
    body := v_step;
    RETURN NEXT;
END
$$;

DROP FUNCTION wss_replace_steps(UUID, TEXT);
DROP FUNCTION wss_steps_json(UUID);
DROP FUNCTION wss_step_json(step_states);
DROP TABLE step_states;

CREATE VIEW step_states AS
    SELECT w.id AS workflow_state_id, r.step_id, r.status, r.started_at, r.completed_at, r.outputs, r.error,
           r.retry_count
    FROM workflow_states w, json_each(w.doc -> 'steps') AS e,
         json_to_record(e.value) AS r(step_id VARCHAR(255), status VARCHAR(50), started_at TIMESTAMPTZ,
             completed_at TIMESTAMPTZ, outputs JSONB, error TEXT, retry_count INTEGER);
