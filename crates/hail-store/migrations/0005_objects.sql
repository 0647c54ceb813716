-- The object store's metadata. Object bytes live in files named by data
-- id under the objects directory; a row names the files (segments) that
-- hold an object's bytes in order. A file no row names is garbage.
CREATE TABLE buckets (
    name         TEXT PRIMARY KEY NOT NULL,
    created_at   INTEGER NOT NULL,
    -- hail_model::s3::NotificationConfiguration as JSON, NULL when none.
    notification TEXT
);

CREATE TABLE objects (
    bucket        TEXT NOT NULL,
    key           TEXT NOT NULL,
    size          INTEGER NOT NULL,
    etag          TEXT NOT NULL,
    last_modified INTEGER NOT NULL,
    segments      TEXT NOT NULL,
    meta          TEXT NOT NULL,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;

CREATE TABLE uploads (
    upload_id TEXT PRIMARY KEY NOT NULL,
    bucket    TEXT NOT NULL,
    key       TEXT NOT NULL,
    initiated INTEGER NOT NULL,
    meta      TEXT NOT NULL
);
CREATE INDEX uploads_by_key ON uploads (bucket, key, upload_id);

CREATE TABLE upload_parts (
    upload_id     TEXT NOT NULL,
    part_number   INTEGER NOT NULL,
    data_id       TEXT NOT NULL,
    size          INTEGER NOT NULL,
    etag          TEXT NOT NULL,
    last_modified INTEGER NOT NULL,
    PRIMARY KEY (upload_id, part_number)
) WITHOUT ROWID;

-- The sequencer of object events: strictly increasing across the store.
CREATE TABLE object_sequence (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO object_sequence (id, value) VALUES (1, 0);
