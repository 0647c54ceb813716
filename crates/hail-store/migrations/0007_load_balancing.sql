-- Load balancing (the JSON documents of hail_model::elb::TargetGroup and
-- Listener). A listener owns its port.
CREATE TABLE target_groups (
    target_group_name TEXT PRIMARY KEY NOT NULL,
    target_group_arn  TEXT NOT NULL UNIQUE,
    doc               TEXT NOT NULL
);
CREATE TABLE listeners (
    listener_arn TEXT PRIMARY KEY NOT NULL,
    port         INTEGER NOT NULL UNIQUE,
    doc          TEXT NOT NULL
);
