-- Each state keeps its rendered JSON document (the answer of GET, with steps and version), written
-- in the same transaction as every change to the state or its steps. Reads and lists then send
-- stored text instead of rendering 20+ step objects per state on every request. NULL means "not
-- rendered": readers fall back to rendering, so a row written by other means is never served stale
-- as long as that writer leaves doc NULL.

ALTER TABLE workflow_states ADD COLUMN doc JSON;

UPDATE workflow_states w SET doc = wss_state_json(w);
