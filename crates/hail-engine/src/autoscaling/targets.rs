//! RegisterScalableTarget, DeregisterScalableTarget, DescribeScalableTargets.

use hail_model::autoscaling::{
    self as model, default_role_arn, new_scalable_target_id, registered_capacity,
    scalable_target_arn, target_key, validate_tags, DescribeScalableTargetsInput,
    RegisterScalableTargetInput, ScalableTarget, SuspendedState, TargetKeyInput, MAX_TAGS,
    MAX_TARGETS,
};
use hail_model::ecs::Tag;
use hail_store::{autoscaling as store, tags};
use serde::Serialize;

use super::{AutoScalingError, Empty};
use crate::{Engine, EngineError};

/// Most targets one DescribeScalableTargets page holds (and its default).
pub const MAX_RESULTS: u32 = 50;

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegisterScalableTargetOutput {
    #[serde(rename = "ScalableTargetARN")]
    pub scalable_target_arn: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeScalableTargetsOutput {
    pub scalable_targets: Vec<ScalableTarget>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// Registers a target, or updates the one registered under the same key:
/// capacities and suspended state given replace the old ones, those left
/// out are kept. Tags apply when the target is created; later ones go
/// through TagResource. The service's capacity is brought into the range
/// by the controller's next pass.
pub async fn register(
    engine: &Engine,
    input: RegisterScalableTargetInput,
) -> Result<RegisterScalableTargetOutput, EngineError> {
    let key = target_key(
        &input.service_namespace,
        &input.resource_id,
        &input.scalable_dimension,
    )?;
    if let Some(role) = &input.role_arn {
        if role.is_empty() || role.chars().count() > 1600 {
            return Err(model::ValidationError::length(role, "roleARN", 1, 1600).into());
        }
    }
    let tags = input.tags.unwrap_or_default();
    validate_tags(&tags)?;
    if tags.len() > MAX_TAGS {
        return Err(AutoScalingError::validation(format!(
            "A scalable target can have at most {MAX_TAGS} tags, not {}",
            tags.len()
        ))
        .into());
    }
    // Fail early for a range that cannot be right whatever is stored.
    if let (Some(min), Some(max)) = (input.min_capacity, input.max_capacity) {
        registered_capacity(Some(min), Some(max), None)?;
    }
    if let Some(resources) = engine.scalable_resources() {
        if resources.desired_count(&key.resource_id).await?.is_none() {
            return Err(AutoScalingError::validation(format!(
                "ECS service doesn't exist: {}",
                key.resource_id
            ))
            .into());
        }
    }
    let scope = engine.scope().clone();
    let now = engine.now();
    let (min, max, suspended) = (
        input.min_capacity,
        input.max_capacity,
        input.suspended_state,
    );
    let role = input.role_arn;
    engine
        .store()
        .write(move |tx| {
            let existing = store::get_target(tx, &key)?;
            let (min_capacity, max_capacity) = registered_capacity(
                min,
                max,
                existing.as_ref().map(|t| (t.min_capacity, t.max_capacity)),
            )?;
            let target = match existing {
                Some(old) => ScalableTarget {
                    min_capacity,
                    max_capacity,
                    role_arn: role.unwrap_or(old.role_arn),
                    suspended_state: old.suspended_state.merged(suspended.unwrap_or_default()),
                    ..old
                },
                None => {
                    if store::count_targets(tx, &key.service_namespace)? >= MAX_TARGETS {
                        return Err(AutoScalingError::limit(format!(
                            "You have reached the maximum of {MAX_TARGETS} scalable targets \
                             for service namespace {}",
                            key.service_namespace
                        ))
                        .into());
                    }
                    let arn = scalable_target_arn(
                        &scope.region,
                        &scope.account,
                        &new_scalable_target_id(),
                    );
                    let tag_list: Vec<Tag> = tags
                        .iter()
                        .map(|(k, v)| Tag::new(k.clone(), v.clone()))
                        .collect();
                    tags::set(tx, &arn, &tag_list)?;
                    ScalableTarget {
                        service_namespace: key.service_namespace.clone(),
                        resource_id: key.resource_id.clone(),
                        scalable_dimension: key.scalable_dimension.clone(),
                        min_capacity,
                        max_capacity,
                        role_arn: role.unwrap_or_else(|| default_role_arn(&scope.account)),
                        creation_time: now,
                        suspended_state: SuspendedState::default()
                            .merged(suspended.unwrap_or_default()),
                        scalable_target_arn: arn,
                    }
                }
            };
            store::put_target(tx, &target)?;
            Ok::<_, EngineError>(RegisterScalableTargetOutput {
                scalable_target_arn: target.scalable_target_arn,
            })
        })
        .await
}

/// Deregisters a target with its scaling policies, scheduled actions and
/// tags. The service keeps the capacity it has.
pub async fn deregister(engine: &Engine, input: TargetKeyInput) -> Result<Empty, EngineError> {
    let key = target_key(
        &input.service_namespace,
        &input.resource_id,
        &input.scalable_dimension,
    )?;
    engine
        .store()
        .write(move |tx| {
            let Some(target) = store::get_target(tx, &key)? else {
                return Err(AutoScalingError::not_found(format!(
                    "No scalable target found for service namespace: {}, resource ID: {}, \
                     scalable dimension: {}",
                    key.service_namespace, key.resource_id, key.scalable_dimension
                ))
                .into());
            };
            store::delete_target(tx, &key)?;
            tags::remove_all(tx, &target.scalable_target_arn)?;
            Ok::<_, EngineError>(Empty {})
        })
        .await
}

pub async fn describe(
    engine: &Engine,
    input: DescribeScalableTargetsInput,
) -> Result<DescribeScalableTargetsOutput, EngineError> {
    let filter = super::policies::filter(
        &input.service_namespace,
        input.resource_ids,
        input.scalable_dimension,
        None,
    )?;
    let limit = model::max_results(input.max_results, MAX_RESULTS)?;
    let token = input.next_token;
    let page = engine
        .store()
        .read(move |conn| store::list_targets(conn, &filter, limit, token.as_deref()))
        .await?;
    Ok(DescribeScalableTargetsOutput {
        scalable_targets: page.items,
        next_token: page.next_token,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{call, engine, FakeClock, FakeServices};
    use super::*;

    const ID: &str = "service/bean-counter-cluster/bean-counter-service";

    fn register_body(min: i64, max: i64) -> serde_json::Value {
        json!({"ServiceNamespace": "ecs", "ResourceId": ID,
               "ScalableDimension": "ecs:service:DesiredCount",
               "MinCapacity": min, "MaxCapacity": max})
    }

    #[tokio::test]
    async fn register_update_describe_deregister() {
        let (_d, engine) = engine(FakeClock::at(1_700_000_000));
        let out = call(&engine, "RegisterScalableTarget", register_body(2, 4))
            .await
            .unwrap();
        let arn = out["ScalableTargetARN"].as_str().unwrap().to_owned();
        assert!(model::is_scalable_target_arn(&arn), "{arn}");

        // Re-registering updates in place: same ARN, new range, state merged.
        let mut body = json!({"ServiceNamespace": "ecs", "ResourceId": ID,
            "ScalableDimension": "ecs:service:DesiredCount", "MaxCapacity": 8,
            "SuspendedState": {"DynamicScalingInSuspended": true}});
        let again = call(&engine, "RegisterScalableTarget", body.clone())
            .await
            .unwrap();
        assert_eq!(again["ScalableTargetARN"], arn.as_str());
        body["SuspendedState"] = json!({"ScheduledScalingSuspended": true});
        call(&engine, "RegisterScalableTarget", body).await.unwrap();

        let described = call(
            &engine,
            "DescribeScalableTargets",
            json!({"ServiceNamespace": "ecs", "ResourceIds": [ID]}),
        )
        .await
        .unwrap();
        let t = &described["ScalableTargets"][0];
        assert_eq!(t["MinCapacity"], 2);
        assert_eq!(t["MaxCapacity"], 8);
        assert_eq!(t["CreationTime"], 1_700_000_000);
        assert_eq!(
            t["RoleARN"],
            "arn:aws:iam::000000000000:role/aws-service-role/ecs.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService"
        );
        assert_eq!(
            t["SuspendedState"],
            json!({"DynamicScalingInSuspended": true, "DynamicScalingOutSuspended": false,
                   "ScheduledScalingSuspended": true})
        );
        assert!(described.get("NextToken").is_none());

        call(
            &engine,
            "DeregisterScalableTarget",
            json!({"ServiceNamespace": "ecs", "ResourceId": ID,
                   "ScalableDimension": "ecs:service:DesiredCount"}),
        )
        .await
        .unwrap();
        let (code, message) = call(
            &engine,
            "DeregisterScalableTarget",
            json!({"ServiceNamespace": "ecs", "ResourceId": ID,
                   "ScalableDimension": "ecs:service:DesiredCount"}),
        )
        .await
        .unwrap_err();
        assert_eq!(code, "ObjectNotFoundException");
        assert_eq!(
            message,
            format!("No scalable target found for service namespace: ecs, resource ID: {ID}, scalable dimension: ecs:service:DesiredCount")
        );
    }

    #[tokio::test]
    async fn bad_registrations_are_validation_errors() {
        let (_d, engine) = engine(FakeClock::at(1_700_000_000));
        let (code, message) = call(&engine, "RegisterScalableTarget", register_body(5, 4))
            .await
            .unwrap_err();
        assert_eq!(code, "ValidationException");
        assert_eq!(
            message,
            "Minimum capacity cannot be greater than maximum capacity"
        );
        let mut body = register_body(1, 2);
        body["ScalableDimension"] = json!("ecs:service:DesiredCapacity");
        let (code, message) = call(&engine, "RegisterScalableTarget", body)
            .await
            .unwrap_err();
        assert_eq!(code, "ValidationException");
        assert!(
            message.contains("Member must satisfy enum value set"),
            "{message}"
        );
        let body = json!({"ServiceNamespace": "ecs", "ResourceId": ID,
            "ScalableDimension": "ecs:service:DesiredCount", "MinCapacity": 1});
        let (code, _) = call(&engine, "RegisterScalableTarget", body)
            .await
            .unwrap_err();
        assert_eq!(code, "ValidationException");
        let mut body = register_body(1, 2);
        body["MinCapacty"] = json!(1);
        let (code, message) = call(&engine, "RegisterScalableTarget", body)
            .await
            .unwrap_err();
        assert_eq!(code, "ValidationException");
        assert!(message.contains("MinCapacty"), "{message}");
        let (code, _) = call(
            &engine,
            "DescribeScalableTargets",
            json!({"ServiceNamespace": "ecs", "MaxResults": 51}),
        )
        .await
        .unwrap_err();
        assert_eq!(code, "ValidationException");
        let (code, _) = call(
            &engine,
            "DescribeScalableTargets",
            json!({"ServiceNamespace": "ecs", "NextToken": "garbage"}),
        )
        .await
        .unwrap_err();
        assert_eq!(code, "InvalidNextTokenException");
    }

    #[tokio::test]
    async fn registration_checks_the_service_exists_when_services_are_known() {
        let (_d, engine) = engine(FakeClock::at(1_700_000_000));
        let engine = engine.with_scalable_resources(FakeServices::with(&[(ID, 1)]));
        call(&engine, "RegisterScalableTarget", register_body(1, 3))
            .await
            .unwrap();
        let mut body = register_body(1, 3);
        body["ResourceId"] = json!("service/bean-counter-cluster/ghost");
        let (code, message) = call(&engine, "RegisterScalableTarget", body)
            .await
            .unwrap_err();
        assert_eq!(code, "ValidationException");
        assert_eq!(
            message,
            "ECS service doesn't exist: service/bean-counter-cluster/ghost"
        );
    }

    #[tokio::test]
    async fn describe_pages_through_targets() {
        let (_d, engine) = engine(FakeClock::at(1_700_000_000));
        for i in 0..3 {
            let mut body = register_body(1, 3);
            body["ResourceId"] = json!(format!("service/c/s{i}"));
            call(&engine, "RegisterScalableTarget", body).await.unwrap();
        }
        let first = call(
            &engine,
            "DescribeScalableTargets",
            json!({"ServiceNamespace": "ecs", "MaxResults": 2}),
        )
        .await
        .unwrap();
        assert_eq!(first["ScalableTargets"].as_array().unwrap().len(), 2);
        let token = first["NextToken"].as_str().unwrap();
        let rest = call(
            &engine,
            "DescribeScalableTargets",
            json!({"ServiceNamespace": "ecs", "MaxResults": 2, "NextToken": token}),
        )
        .await
        .unwrap();
        assert_eq!(rest["ScalableTargets"][0]["ResourceId"], "service/c/s2");
        assert!(rest.get("NextToken").is_none());
    }
}
