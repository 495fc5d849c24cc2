-- Threads: LangGraph's checkpoints (a checkpoint saver's storage, /v1/threads), a second resource
-- family beside workflow states. The service stores and assembles; it never parses a value: the
-- saver's serialized bytes (checkpoints, metadata, channel values, writes) are bytea, returned as
-- stored, so a NUL or a lone surrogate in a graph's state is kept, not refused.
--
-- Identifiers compare byte-wise (COLLATE "C": code point order in UTF-8), as LangGraph compares
-- them, whatever the database's locale: "latest" is the greatest checkpoint id, `before` and the
-- search order use checkpoint-id order, pending writes come in (task_path, task_id, idx) order.

-- A thread belongs to a tenant; its id is the client's, unique within the tenant. The surrogate
-- key keeps the other tables' keys narrow, and deleting the row deletes everything of the thread,
-- in every namespace, at once (ON DELETE CASCADE). Every put and write bumps updated_at under the
-- row's lock (which also serialises a thread's pruning): updated_at is in no index, so the bump is
-- a HOT update, and fillfactor leaves room on the page for it.
CREATE TABLE threads (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant          text NOT NULL,
    thread_id       text COLLATE "C" NOT NULL CHECK (length(thread_id) BETWEEN 1 AND 255),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    max_checkpoints integer CHECK (max_checkpoints >= 1),   -- NULL: keep every checkpoint (the default)
    ttl_seconds     integer CHECK (ttl_seconds >= 1),       -- NULL: no TTL; else purge deletes it once idle this long
    UNIQUE (tenant, thread_id)
) WITH (fillfactor = 80);
-- Purge finds the threads that have a TTL (few, usually) without reading the others.
CREATE INDEX threads_ttl_idx ON threads (tenant) WHERE ttl_seconds IS NOT NULL;

-- A checkpoint without its channel values: those are stored once per version (below) and named by
-- channel_versions, so a checkpoint that carries a channel over does not copy its value.
CREATE TABLE thread_checkpoints (
    thread           bigint NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    checkpoint_ns    text COLLATE "C" NOT NULL DEFAULT '',
    checkpoint_id    text COLLATE "C" NOT NULL,
    parent_id        text COLLATE "C",          -- as the client gave it; not a foreign key (retention)
    v                integer NOT NULL,          -- LangGraph's format version; < 4: pending sends are migrated
    checkpoint_type  text NOT NULL,             -- the serializer's type of the bytes ("json")
    checkpoint       bytea NOT NULL,            -- the serialized checkpoint WITHOUT channel_values
    channel_versions jsonb NOT NULL,            -- {"channel": "version as text"}: what a read assembles
    metadata_type    text NOT NULL,
    metadata         bytea NOT NULL,            -- the serialized metadata, answered as stored
    metadata_filter  jsonb NOT NULL,            -- a sanitised copy of JSON metadata, for search's filter (@>)
    digest           bytea NOT NULL,            -- sha256 of what the PUT stored: the same again is a 200, else 409
    PRIMARY KEY (thread, checkpoint_ns, checkpoint_id)
);
-- Search across a tenant's threads (or all, for an operator), newest id first.
CREATE INDEX thread_checkpoints_id_idx ON thread_checkpoints (checkpoint_id DESC);

-- A channel's value at a version, stored by the checkpoint that wrote it and read by every later
-- checkpoint that names the version. Type 'empty' (no bytes) records that the channel had no value.
CREATE TABLE thread_channel_values (
    thread        bigint NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    checkpoint_ns text COLLATE "C" NOT NULL DEFAULT '',
    channel       text COLLATE "C" NOT NULL,
    version       text COLLATE "C" NOT NULL,
    type          text NOT NULL,
    value         bytea,
    PRIMARY KEY (thread, checkpoint_ns, channel, version),
    CHECK ((type = 'empty') = (value IS NULL))
);

-- Pending writes of a checkpoint's tasks. No foreign key to the checkpoint: with LangGraph's
-- default (async) durability a checkpoint's writes can arrive before the checkpoint itself.
CREATE TABLE thread_writes (
    thread        bigint NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    checkpoint_ns text COLLATE "C" NOT NULL DEFAULT '',
    checkpoint_id text COLLATE "C" NOT NULL,
    task_id       text COLLATE "C" NOT NULL,
    idx           integer NOT NULL,            -- < 0: a special channel (__error__ -1 ... __resume__ -4), upserted
    task_path     text COLLATE "C" NOT NULL DEFAULT '',
    channel       text NOT NULL,
    type          text NOT NULL,
    value         bytea NOT NULL,
    PRIMARY KEY (thread, checkpoint_ns, checkpoint_id, task_id, idx)
);
