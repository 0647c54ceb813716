-- ECS services (the JSON document of hail_model::ecs::Service). A name is
-- unique within its cluster among services that are not INACTIVE: a deleted
-- service stays describable while a new one of the same name is created.
CREATE TABLE services (
    service_arn  TEXT NOT NULL,
    cluster_arn  TEXT NOT NULL,
    service_name TEXT NOT NULL,
    status       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    version      INTEGER NOT NULL,
    doc          TEXT NOT NULL,
    seq          INTEGER PRIMARY KEY AUTOINCREMENT
);
CREATE UNIQUE INDEX services_live_by_name
    ON services (cluster_arn, service_name) WHERE status != 'INACTIVE';
CREATE INDEX services_by_arn ON services (service_arn, seq);
CREATE INDEX services_by_status ON services (status, updated_at);
CREATE INDEX tasks_by_service ON tasks (cluster_arn, service_name, last_status);
