-- Tenants: every state belongs to the tenant of the credential that created it; its checkpoints
-- belong to it through their state. States that exist already (created without authentication)
-- go to the tenant "default", the one a service without credentials writes to.
ALTER TABLE workflow_states ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE workflow_states ALTER COLUMN tenant DROP DEFAULT;

-- A tenant's list, newest first, as the unscoped list uses workflow_states_updated_idx.
CREATE INDEX workflow_states_tenant_updated_idx ON workflow_states (tenant, updated_at DESC, id DESC);
