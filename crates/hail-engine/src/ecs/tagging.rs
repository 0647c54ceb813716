//! TagResource, UntagResource and ListTagsForResource on ECS resources:
//! clusters, task definitions, tasks and services, named by ARN.

use hail_model::arn::{EcsArn, EcsResource};
use hail_model::ecs::tags::validate_tags;
use hail_model::ecs::{Tag, ValidationError};
use hail_store::{clusters, services, tags, task_definitions, tasks, Connection};
use serde::{Deserialize, Serialize};

use crate::{Engine, EngineError};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TagResourceInput {
    pub resource_arn: String,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UntagResourceInput {
    pub resource_arn: String,
    pub tag_keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListTagsForResourceInput {
    pub resource_arn: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Empty {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTagsForResourceOutput {
    pub tags: Vec<Tag>,
}

/// Most tags a resource may carry, as in ECS.
const MAX_TAGS: usize = 50;

/// Adds or replaces tags; the resource keeps at most 50.
pub async fn tag_resource(engine: &Engine, input: TagResourceInput) -> Result<Empty, EngineError> {
    let arn = parse(engine, &input.resource_arn)?;
    if input.tags.is_empty() {
        return Err(
            ValidationError::invalid_parameter("tags", "at least one tag is required").into(),
        );
    }
    validate_tags(&input.tags, "tags")?;
    let resource_arn = input.resource_arn;
    let new_tags = input.tags;
    engine
        .store()
        .write(move |tx| {
            ensure_exists(tx, &arn, &resource_arn)?;
            tags::set(tx, &resource_arn, &new_tags)?;
            if tags::list(tx, &resource_arn)?.len() > MAX_TAGS {
                return Err(ValidationError::invalid_parameter(
                    "tags",
                    format!("a resource may carry at most {MAX_TAGS} tags"),
                )
                .into());
            }
            Ok::<_, EngineError>(Empty {})
        })
        .await
}

/// Removes the named tags; keys the resource does not carry are ignored.
pub async fn untag_resource(
    engine: &Engine,
    input: UntagResourceInput,
) -> Result<Empty, EngineError> {
    let arn = parse(engine, &input.resource_arn)?;
    let resource_arn = input.resource_arn;
    let keys = input.tag_keys;
    engine
        .store()
        .write(move |tx| {
            ensure_exists(tx, &arn, &resource_arn)?;
            tags::remove(tx, &resource_arn, &keys)?;
            Ok::<_, EngineError>(Empty {})
        })
        .await
}

pub async fn list_tags_for_resource(
    engine: &Engine,
    input: ListTagsForResourceInput,
) -> Result<ListTagsForResourceOutput, EngineError> {
    let arn = parse(engine, &input.resource_arn)?;
    let resource_arn = input.resource_arn;
    engine
        .store()
        .read(move |conn| {
            ensure_exists(conn, &arn, &resource_arn)?;
            Ok::<_, EngineError>(ListTagsForResourceOutput {
                tags: tags::list(conn, &resource_arn)?,
            })
        })
        .await
}

fn parse(engine: &Engine, value: &str) -> Result<EcsArn, EngineError> {
    let arn = EcsArn::parse(value).map_err(|source| EngineError::Arn {
        field: "resourceArn",
        source,
    })?;
    if !engine.scope().owns(&arn) {
        return Err(EngineError::ResourceNotFound {
            arn: value.to_owned(),
        });
    }
    Ok(arn)
}

/// Tags belong to resources that exist; ECS refuses the others.
fn ensure_exists(conn: &Connection, arn: &EcsArn, given: &str) -> Result<(), EngineError> {
    let found = match &arn.resource {
        EcsResource::Cluster { name } => clusters::get(conn, name)?.is_some(),
        EcsResource::TaskDefinition {
            family,
            revision: Some(revision),
        } => task_definitions::get(conn, family, *revision)?.is_some(),
        EcsResource::Task { id, .. } => tasks::get(conn, id)?.is_some(),
        EcsResource::Service { cluster, name } => {
            let cluster_arn = clusters::get(conn, cluster)?.map(|c| c.cluster_arn);
            match cluster_arn {
                Some(c) => services::get_live(conn, &c, name)?.is_some(),
                None => false,
            }
        }
        EcsResource::TaskDefinition { revision: None, .. } | EcsResource::Container { .. } => false,
    };
    if found {
        Ok(())
    } else {
        Err(EngineError::ResourceNotFound {
            arn: given.to_owned(),
        })
    }
}
