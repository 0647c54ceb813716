-- Hail's control-plane state. Every resource keeps its full API shape as a
-- JSON document in `doc`; the other columns exist only so queries can filter,
-- order and paginate without parsing documents.

CREATE TABLE clusters (
    name   TEXT PRIMARY KEY NOT NULL,
    arn    TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    doc    TEXT NOT NULL
);

-- One row per family, holding the last revision ever handed out, so that
-- revisions are never reused even when revisions are deregistered or deleted.
CREATE TABLE task_definition_families (
    family        TEXT PRIMARY KEY NOT NULL,
    last_revision INTEGER NOT NULL
);

CREATE TABLE task_definitions (
    family   TEXT NOT NULL REFERENCES task_definition_families (family),
    revision INTEGER NOT NULL,
    arn      TEXT NOT NULL UNIQUE,
    status   TEXT NOT NULL,
    doc      TEXT NOT NULL,
    PRIMARY KEY (family, revision)
);
CREATE INDEX task_definitions_by_status ON task_definitions (status, family, revision);

-- `seq` orders tasks created within the same millisecond; `version` is the
-- optimistic-concurrency token that every update must present.
CREATE TABLE tasks (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT NOT NULL UNIQUE,
    arn            TEXT NOT NULL UNIQUE,
    cluster_arn    TEXT NOT NULL,
    family         TEXT NOT NULL,
    desired_status TEXT NOT NULL,
    last_status    TEXT NOT NULL,
    started_by     TEXT,
    service_name   TEXT,
    launch_type    TEXT,
    created_at     INTEGER NOT NULL,
    stopped_at     INTEGER,
    version        INTEGER NOT NULL,
    doc            TEXT NOT NULL
);
CREATE INDEX tasks_by_cluster ON tasks (cluster_arn, created_at DESC, seq DESC);
CREATE INDEX tasks_by_cluster_status ON tasks (cluster_arn, last_status);
CREATE INDEX tasks_stopped ON tasks (last_status, stopped_at);

CREATE TABLE tags (
    resource_arn TEXT NOT NULL,
    key          TEXT NOT NULL,
    value        TEXT NOT NULL,
    PRIMARY KEY (resource_arn, key)
);

-- AUTOINCREMENT keeps event ids strictly increasing even after acknowledged
-- events are deleted, so a consumer's "highest id seen" stays meaningful.
CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid       TEXT NOT NULL UNIQUE,
    topic      TEXT NOT NULL,
    key        TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX outbox_by_topic ON outbox (topic, id);

CREATE TABLE log_groups (
    name              TEXT PRIMARY KEY NOT NULL,
    created_at        INTEGER NOT NULL,
    retention_in_days INTEGER,
    tags              TEXT NOT NULL
);

CREATE TABLE log_streams (
    group_name            TEXT NOT NULL REFERENCES log_groups (name) ON DELETE CASCADE,
    name                  TEXT NOT NULL,
    created_at            INTEGER NOT NULL,
    first_event_timestamp INTEGER,
    last_event_timestamp  INTEGER,
    last_ingestion_time   INTEGER,
    stored_bytes          INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (group_name, name)
);

-- `seq` (the rowid) breaks ties between events with equal timestamps and is
-- what read tokens point at, so paging resumes exactly.
CREATE TABLE log_events (
    seq            INTEGER PRIMARY KEY,
    group_name     TEXT NOT NULL,
    stream_name    TEXT NOT NULL,
    timestamp      INTEGER NOT NULL,
    ingestion_time INTEGER NOT NULL,
    message        TEXT NOT NULL,
    FOREIGN KEY (group_name, stream_name) REFERENCES log_streams (group_name, name) ON DELETE CASCADE
);
CREATE INDEX log_events_by_stream ON log_events (group_name, stream_name, timestamp, seq);
CREATE INDEX log_events_by_group ON log_events (group_name, timestamp, seq);
