//! TagResource, UntagResource and ListTagsForResource on scalable targets,
//! named by their ARN.

use hail_model::autoscaling::{
    is_scalable_target_arn, validate_tags, ListTagsForResourceInput, TagMap, TagResourceInput,
    UntagResourceInput, MAX_TAGS,
};
use hail_model::ecs::Tag;
use hail_store::{autoscaling as store, tags, Connection};
use serde::Serialize;

use super::{AutoScalingError, AutoScalingErrorKind, Empty};
use crate::{Engine, EngineError};

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsForResourceOutput {
    pub tags: TagMap,
}

fn check_arn(arn: &str) -> Result<(), EngineError> {
    if is_scalable_target_arn(arn) {
        Ok(())
    } else {
        Err(AutoScalingError::validation(format!(
            "1 validation error detected: Value '{arn}' at 'resourceARN' failed to satisfy \
             constraint: Member must satisfy regular expression pattern: \
             ^arn:.+:application-autoscaling:.+:[0-9]+:scalable-target\\/[a-zA-Z0-9-]+$"
        ))
        .into())
    }
}

fn ensure_exists(conn: &Connection, arn: &str) -> Result<(), EngineError> {
    if store::get_target_by_arn(conn, arn)?.is_none() {
        return Err(AutoScalingError::new(
            AutoScalingErrorKind::ResourceNotFound,
            format!("No scalable target found for ARN {arn}"),
        )
        .into());
    }
    Ok(())
}

/// Adds or replaces tags; a target keeps at most 50.
pub async fn tag_resource(engine: &Engine, input: TagResourceInput) -> Result<Empty, EngineError> {
    check_arn(&input.resource_arn)?;
    validate_tags(&input.tags)?;
    let arn = input.resource_arn;
    let new: Vec<Tag> = input
        .tags
        .into_iter()
        .map(|(k, v)| Tag::new(k, v))
        .collect();
    engine
        .store()
        .write(move |tx| {
            ensure_exists(tx, &arn)?;
            tags::set(tx, &arn, &new)?;
            if tags::list(tx, &arn)?.len() > MAX_TAGS {
                return Err(AutoScalingError::new(
                    AutoScalingErrorKind::TooManyTags,
                    format!("A scalable target can have at most {MAX_TAGS} tags"),
                )
                .into());
            }
            Ok::<_, EngineError>(Empty {})
        })
        .await
}

pub async fn untag_resource(
    engine: &Engine,
    input: UntagResourceInput,
) -> Result<Empty, EngineError> {
    check_arn(&input.resource_arn)?;
    let arn = input.resource_arn;
    let keys = input.tag_keys;
    engine
        .store()
        .write(move |tx| {
            ensure_exists(tx, &arn)?;
            tags::remove(tx, &arn, &keys)?;
            Ok::<_, EngineError>(Empty {})
        })
        .await
}

pub async fn list_tags(
    engine: &Engine,
    input: ListTagsForResourceInput,
) -> Result<ListTagsForResourceOutput, EngineError> {
    check_arn(&input.resource_arn)?;
    let arn = input.resource_arn;
    let list = engine
        .store()
        .read(move |conn| {
            ensure_exists(conn, &arn)?;
            Ok::<_, EngineError>(tags::list(conn, &arn)?)
        })
        .await?;
    Ok(ListTagsForResourceOutput {
        tags: list
            .into_iter()
            .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
            .collect(),
    })
}

/// The tags of a target, as a map.
pub fn target_tags(conn: &Connection, arn: &str) -> Result<TagMap, EngineError> {
    Ok(tags::list(conn, arn)?
        .into_iter()
        .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
        .collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{call, engine, FakeClock};

    #[tokio::test]
    async fn tags_of_targets() {
        let (_d, engine) = engine(FakeClock::at(1_700_000_000));
        let out = call(
            &engine,
            "RegisterScalableTarget",
            json!({"ServiceNamespace": "ecs", "ResourceId": "service/c/s",
                   "ScalableDimension": "ecs:service:DesiredCount",
                   "MinCapacity": 1, "MaxCapacity": 2, "Tags": {"team": "beans"}}),
        )
        .await
        .unwrap();
        let arn = out["ScalableTargetARN"].as_str().unwrap();
        call(
            &engine,
            "TagResource",
            json!({"ResourceARN": arn, "Tags": {"env": "prod", "team": "counters"}}),
        )
        .await
        .unwrap();
        let listed = call(&engine, "ListTagsForResource", json!({"ResourceARN": arn}))
            .await
            .unwrap();
        assert_eq!(listed, json!({"Tags": {"env": "prod", "team": "counters"}}));
        call(
            &engine,
            "UntagResource",
            json!({"ResourceARN": arn, "TagKeys": ["env", "absent"]}),
        )
        .await
        .unwrap();
        let listed = call(&engine, "ListTagsForResource", json!({"ResourceARN": arn}))
            .await
            .unwrap();
        assert_eq!(listed, json!({"Tags": {"team": "counters"}}));

        let ghost = "arn:aws:application-autoscaling:us-east-1:000000000000:scalable-target/0ghost";
        let (code, _) = call(
            &engine,
            "ListTagsForResource",
            json!({"ResourceARN": ghost}),
        )
        .await
        .unwrap_err();
        assert_eq!(code, "ResourceNotFoundException");
        let (code, _) = call(
            &engine,
            "ListTagsForResource",
            json!({"ResourceARN": "nope"}),
        )
        .await
        .unwrap_err();
        assert_eq!(code, "ValidationException");
        let many: serde_json::Map<String, serde_json::Value> =
            (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
        let (code, _) = call(
            &engine,
            "TagResource",
            json!({"ResourceARN": arn, "Tags": many}),
        )
        .await
        .unwrap_err();
        assert_eq!(code, "TooManyTagsException");
    }
}
