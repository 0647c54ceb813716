-- RunTask's clientToken: the tasks one request started, so that a retry of
-- the same request (SDKs fill the token in and resend it on a timeout)
-- returns them instead of starting more. `request` is a digest of the
-- request without its token: reusing a token for another request is refused.
CREATE TABLE run_task_tokens (
    token      TEXT PRIMARY KEY NOT NULL,
    request    TEXT NOT NULL,
    task_arns  TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX run_task_tokens_by_age ON run_task_tokens (created_at);
