-- Application Auto Scaling. Each resource is stored as its API JSON shape
-- (hail_model::autoscaling) in `doc`, beside the columns queries use.

-- Scalable targets, one per (namespace, resource id, dimension). `state` is
-- the controller's memory of its last scale-out and scale-in (JSON), kept
-- with the target so cooldowns survive a restart.
CREATE TABLE scalable_targets (
    service_namespace  TEXT NOT NULL,
    resource_id        TEXT NOT NULL,
    scalable_dimension TEXT NOT NULL,
    arn                TEXT NOT NULL UNIQUE,
    doc                TEXT NOT NULL,
    state              TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (service_namespace, resource_id, scalable_dimension)
);

CREATE TABLE scaling_policies (
    service_namespace  TEXT NOT NULL,
    resource_id        TEXT NOT NULL,
    scalable_dimension TEXT NOT NULL,
    policy_name        TEXT NOT NULL,
    policy_arn         TEXT NOT NULL UNIQUE,
    doc                TEXT NOT NULL,
    PRIMARY KEY (service_namespace, resource_id, scalable_dimension, policy_name)
);

CREATE TABLE scheduled_actions (
    service_namespace     TEXT NOT NULL,
    resource_id           TEXT NOT NULL,
    scalable_dimension    TEXT NOT NULL,
    scheduled_action_name TEXT NOT NULL,
    doc                   TEXT NOT NULL,
    PRIMARY KEY (service_namespace, resource_id, scalable_dimension, scheduled_action_name)
);

-- Activities are listed newest first; `seq` breaks ties between activities
-- started in the same millisecond and orders the keyset pages.
CREATE TABLE scaling_activities (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,
    activity_id        TEXT NOT NULL UNIQUE,
    service_namespace  TEXT NOT NULL,
    resource_id        TEXT NOT NULL,
    scalable_dimension TEXT NOT NULL,
    start_time         INTEGER NOT NULL,
    doc                TEXT NOT NULL
);
CREATE INDEX scaling_activities_by_target
    ON scaling_activities (service_namespace, resource_id, scalable_dimension, seq);
CREATE INDEX scaling_activities_by_age ON scaling_activities (start_time);
