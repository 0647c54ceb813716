//! ECS-shaped resources: task definitions, tasks, clusters and tags, with the
//! validation rules and messages of the ECS API.

pub mod cluster;
pub mod decode;
pub mod service;
pub mod tags;
pub mod task;
pub mod task_definition;
pub mod timestamp;
pub mod validate;

pub use cluster::{Cluster, ClusterStatus, CreateClusterInput, DEFAULT_CLUSTER_NAME};
pub use decode::{decode, DecodeError};
pub use service::{Deployment, Service, ServiceStatus};
pub use tags::Tag;
pub use task::{
    effective_containers, Container, EffectiveContainer, Failure, RunTaskInput, StopCode, Task,
    TaskStatus, TransitionError,
};
pub use task_definition::{
    ContainerDefinition, KeyValuePair, RegisterTaskDefinitionInput, TaskDefinition,
};
pub use timestamp::Timestamp;
pub use validate::{ErrorCode, ValidationError};
