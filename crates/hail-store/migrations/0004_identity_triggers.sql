-- Roles: a name, its ARN and its policy document (JSON).
CREATE TABLE roles (
    role_name TEXT PRIMARY KEY NOT NULL,
    role_arn  TEXT NOT NULL UNIQUE,
    doc       TEXT NOT NULL
);

-- Temporary credentials handed to tasks through the credentials endpoint.
-- A task may hold several at once while they rotate; all go when it stops.
CREATE TABLE task_credentials (
    access_key_id     TEXT PRIMARY KEY NOT NULL,
    secret_access_key TEXT NOT NULL,
    session_token     TEXT NOT NULL,
    task_arn          TEXT NOT NULL,
    role_arn          TEXT NOT NULL,
    issued_at         INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL
);
CREATE INDEX task_credentials_by_task ON task_credentials (task_arn, expires_at);

-- Triggers (the JSON document of hail_model::triggers::Trigger).
CREATE TABLE triggers (
    trigger_name TEXT PRIMARY KEY NOT NULL,
    doc          TEXT NOT NULL
);

-- One row per event on its way to a task, keyed by the event's id so that a
-- redelivered event is recognised. `next_attempt_at` orders the queue.
CREATE TABLE trigger_invocations (
    invocation_id   TEXT PRIMARY KEY NOT NULL,
    trigger_name    TEXT NOT NULL,
    status          TEXT NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    doc             TEXT NOT NULL
);
CREATE INDEX trigger_invocations_queue
    ON trigger_invocations (trigger_name, status, next_attempt_at);
CREATE INDEX trigger_invocations_by_age ON trigger_invocations (status, updated_at);
