//! PutScalingPolicy, DescribeScalingPolicies, DeleteScalingPolicy.

use hail_model::autoscaling::{
    self as model, check_dimension, check_namespace, check_policy_name, policy_arn, target_key,
    target_tracking_alarms, Alarm, DeleteScalingPolicyInput, DescribeScalingPoliciesInput,
    PolicyRule, PutScalingPolicyInput, ScalingPolicy, ValidationError, MAX_POLICIES_PER_TARGET,
    POLICY_TYPES,
};
use hail_store::autoscaling::{self as store, Filter};
use serde::Serialize;

use super::{no_target, AutoScalingError, Empty};
use crate::{Engine, EngineError};

/// Most policies one DescribeScalingPolicies page holds (and its default).
pub const MAX_RESULTS: u32 = 10;
/// Most names a Describe* filter may list.
const MAX_FILTER_NAMES: usize = 50;

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutScalingPolicyOutput {
    #[serde(rename = "PolicyARN")]
    pub policy_arn: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<Alarm>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeScalingPoliciesOutput {
    pub scaling_policies: Vec<ScalingPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// The store filter of a Describe* request, its values checked.
pub(crate) fn filter(
    service_namespace: &str,
    resource_ids: Option<Vec<String>>,
    scalable_dimension: Option<String>,
    names: Option<(&str, Vec<String>)>,
) -> Result<Filter, ValidationError> {
    check_namespace(service_namespace)?;
    if let Some(d) = &scalable_dimension {
        check_dimension(d)?;
    }
    if let Some(ids) = &resource_ids {
        if ids.len() > MAX_FILTER_NAMES {
            return Err(ValidationError::new(format!(
                "1 validation error detected: Value at 'resourceIds' failed to satisfy \
                 constraint: Member must have length less than or equal to {MAX_FILTER_NAMES}"
            )));
        }
    }
    let names = match names {
        Some((member, names)) if names.len() > MAX_FILTER_NAMES => {
            return Err(ValidationError::new(format!(
                "1 validation error detected: Value at '{member}' failed to satisfy \
                 constraint: Member must have length less than or equal to {MAX_FILTER_NAMES}"
            )))
        }
        Some((_, names)) => Some(names),
        None => None,
    };
    Ok(Filter {
        service_namespace: service_namespace.to_owned(),
        // An empty list filters nothing, as on AWS.
        resource_ids: resource_ids.filter(|ids| !ids.is_empty()),
        scalable_dimension,
        names: names.filter(|n| !n.is_empty()),
    })
}

/// Creates or replaces a scaling policy of a registered target. A policy
/// keeps its ARN (and a target tracking policy its alarms) when replaced.
pub async fn put(
    engine: &Engine,
    input: PutScalingPolicyInput,
) -> Result<PutScalingPolicyOutput, EngineError> {
    check_policy_name(&input.policy_name)?;
    let key = target_key(
        &input.service_namespace,
        &input.resource_id,
        &input.scalable_dimension,
    )?;
    if let Some(t) = &input.policy_type {
        if !POLICY_TYPES.contains(&t.as_str()) {
            return Err(ValidationError::not_in_enum(t, "policyType", POLICY_TYPES).into());
        }
    }
    if input.policy_type.as_deref() == Some("PredictiveScaling")
        || input.predictive_scaling_policy_configuration.is_some()
    {
        return Err(AutoScalingError::validation(
            "PredictiveScaling policies are not supported by hail, which keeps no metric \
             history to forecast from",
        )
        .into());
    }
    let scope = engine.scope().clone();
    let now = engine.now();
    engine
        .store()
        .write(move |tx| {
            if store::get_target(tx, &key)?.is_none() {
                return Err(no_target(&key));
            }
            let existing = store::get_policy(tx, &key, &input.policy_name)?;
            let policy_type = match (&input.policy_type, &existing) {
                (Some(t), _) => t.clone(),
                (None, Some(old)) => old.policy_type.clone(),
                (None, None) => {
                    return Err(AutoScalingError::validation(
                        "PolicyType is required to create a scaling policy",
                    )
                    .into())
                }
            };
            let same_type = existing.as_ref().filter(|p| p.policy_type == policy_type);
            let mut policy = ScalingPolicy {
                policy_arn: match &existing {
                    Some(old) => old.policy_arn.clone(),
                    None => policy_arn(&scope.region, &scope.account, &key, &input.policy_name),
                },
                policy_name: input.policy_name.clone(),
                service_namespace: key.service_namespace.clone(),
                resource_id: key.resource_id.clone(),
                scalable_dimension: key.scalable_dimension.clone(),
                policy_type: policy_type.clone(),
                step_scaling_policy_configuration: None,
                target_tracking_scaling_policy_configuration: None,
                alarms: Vec::new(),
                creation_time: existing.as_ref().map_or(now, |p| p.creation_time),
            };
            match policy_type.as_str() {
                "TargetTrackingScaling" => {
                    if input.step_scaling_policy_configuration.is_some() {
                        return Err(AutoScalingError::validation(
                            "StepScalingPolicyConfiguration cannot be used with a \
                             TargetTrackingScaling policy",
                        )
                        .into());
                    }
                    policy.target_tracking_scaling_policy_configuration = input
                        .target_tracking_scaling_policy_configuration
                        .clone()
                        .or_else(|| {
                            same_type.and_then(|p| {
                                p.target_tracking_scaling_policy_configuration.clone()
                            })
                        });
                    if policy
                        .target_tracking_scaling_policy_configuration
                        .is_none()
                    {
                        return Err(AutoScalingError::validation(
                            "TargetTrackingScalingPolicyConfiguration is required for a \
                             TargetTrackingScaling policy",
                        )
                        .into());
                    }
                }
                _ => {
                    if input.target_tracking_scaling_policy_configuration.is_some() {
                        return Err(AutoScalingError::validation(
                            "TargetTrackingScalingPolicyConfiguration cannot be used with a \
                             StepScaling policy",
                        )
                        .into());
                    }
                    policy.step_scaling_policy_configuration =
                        input.step_scaling_policy_configuration.clone().or_else(|| {
                            same_type.and_then(|p| p.step_scaling_policy_configuration.clone())
                        });
                    if policy.step_scaling_policy_configuration.is_none() {
                        return Err(AutoScalingError::validation(
                            "StepScalingPolicyConfiguration is required for a StepScaling \
                             policy",
                        )
                        .into());
                    }
                }
            }
            let rule = policy.rule().transpose()?;
            if let Some(PolicyRule::TargetTracking(t)) = &rule {
                let with_low = !t.disable_scale_in;
                let mut alarms = same_type.map(|p| p.alarms.clone()).unwrap_or_default();
                if alarms.is_empty() {
                    alarms = target_tracking_alarms(
                        &scope.region,
                        &scope.account,
                        &key.resource_id,
                        with_low,
                    );
                } else if with_low && alarms.len() == 1 {
                    alarms.extend(
                        target_tracking_alarms(
                            &scope.region,
                            &scope.account,
                            &key.resource_id,
                            true,
                        )
                        .into_iter()
                        .skip(1),
                    );
                } else if !with_low {
                    alarms.retain(|a| !a.alarm_name.contains("-AlarmLow-"));
                }
                policy.alarms = alarms;
            }
            if existing.is_none()
                && store::target_policies(tx, &key)?.len() >= MAX_POLICIES_PER_TARGET
            {
                return Err(AutoScalingError::limit(format!(
                    "A scalable target can have at most {MAX_POLICIES_PER_TARGET} scaling policies"
                ))
                .into());
            }
            store::put_policy(tx, &policy)?;
            Ok::<_, EngineError>(PutScalingPolicyOutput {
                policy_arn: policy.policy_arn,
                alarms: policy.alarms,
            })
        })
        .await
}

pub async fn describe(
    engine: &Engine,
    input: DescribeScalingPoliciesInput,
) -> Result<DescribeScalingPoliciesOutput, EngineError> {
    let filter = filter(
        &input.service_namespace,
        input.resource_id.map(|id| vec![id]),
        input.scalable_dimension,
        input.policy_names.map(|n| ("policyNames", n)),
    )?;
    let limit = model::max_results(input.max_results, MAX_RESULTS)?;
    let token = input.next_token;
    let page = engine
        .store()
        .read(move |conn| store::list_policies(conn, &filter, limit, token.as_deref()))
        .await?;
    Ok(DescribeScalingPoliciesOutput {
        scaling_policies: page.items,
        next_token: page.next_token,
    })
}

pub async fn delete(
    engine: &Engine,
    input: DeleteScalingPolicyInput,
) -> Result<Empty, EngineError> {
    check_policy_name(&input.policy_name)?;
    let key = target_key(
        &input.service_namespace,
        &input.resource_id,
        &input.scalable_dimension,
    )?;
    engine
        .store()
        .write(move |tx| {
            if !store::delete_policy(tx, &key, &input.policy_name)? {
                return Err(AutoScalingError::not_found(format!(
                    "No scaling policy found for service namespace: {}, resource ID: {}, \
                     scalable dimension: {}, policy name: {}",
                    key.service_namespace,
                    key.resource_id,
                    key.scalable_dimension,
                    input.policy_name
                ))
                .into());
            }
            Ok::<_, EngineError>(Empty {})
        })
        .await
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::testing::{call, engine, FakeClock};

    const ID: &str = "service/c/s";

    fn target_body() -> Value {
        json!({"ServiceNamespace": "ecs", "ResourceId": ID,
               "ScalableDimension": "ecs:service:DesiredCount",
               "MinCapacity": 1, "MaxCapacity": 10})
    }

    fn cpu_policy(name: &str, extra: Value) -> Value {
        let mut config = json!({"TargetValue": 75.0,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"},
            "ScaleOutCooldown": 60, "ScaleInCooldown": 60});
        for (k, v) in extra.as_object().unwrap() {
            config[k] = v.clone();
        }
        json!({"PolicyName": name, "ServiceNamespace": "ecs", "ResourceId": ID,
               "ScalableDimension": "ecs:service:DesiredCount",
               "PolicyType": "TargetTrackingScaling",
               "TargetTrackingScalingPolicyConfiguration": config})
    }

    #[tokio::test]
    async fn target_tracking_policies_get_alarms_and_keep_them() {
        let (_d, engine) = engine(FakeClock::at(1_700_000_000));
        let (code, message) = call(&engine, "PutScalingPolicy", cpu_policy("cpu", json!({})))
            .await
            .unwrap_err();
        assert_eq!(code, "ObjectNotFoundException");
        assert_eq!(
            message,
            format!("No scalable target registered for service namespace: ecs, resource ID: {ID}, scalable dimension: ecs:service:DesiredCount")
        );
        call(&engine, "RegisterScalableTarget", target_body())
            .await
            .unwrap();
        let out = call(&engine, "PutScalingPolicy", cpu_policy("cpu", json!({})))
            .await
            .unwrap();
        let arn = out["PolicyARN"].as_str().unwrap().to_owned();
        assert!(
            arn.ends_with(&format!(":resource/ecs/{ID}:policyName/cpu")),
            "{arn}"
        );
        let alarms = out["Alarms"].as_array().unwrap();
        assert_eq!(alarms.len(), 2);
        assert!(alarms[0]["AlarmName"]
            .as_str()
            .unwrap()
            .starts_with(&format!("TargetTracking-{ID}-AlarmHigh-")));
        assert!(alarms[1]["AlarmName"]
            .as_str()
            .unwrap()
            .starts_with(&format!("TargetTracking-{ID}-AlarmLow-")));

        // Replacing keeps ARN and alarms; disabling scale-in drops the low alarm.
        let again = call(
            &engine,
            "PutScalingPolicy",
            cpu_policy("cpu", json!({"TargetValue": 50.0, "DisableScaleIn": true})),
        )
        .await
        .unwrap();
        assert_eq!(again["PolicyARN"], arn.as_str());
        assert_eq!(again["Alarms"], json!([alarms[0]]));

        let described = call(
            &engine,
            "DescribeScalingPolicies",
            json!({"ServiceNamespace": "ecs", "ResourceId": ID}),
        )
        .await
        .unwrap();
        let p = &described["ScalingPolicies"][0];
        assert_eq!(p["PolicyName"], "cpu");
        assert_eq!(p["PolicyType"], "TargetTrackingScaling");
        assert_eq!(
            p["TargetTrackingScalingPolicyConfiguration"]["TargetValue"],
            50.0
        );
        assert_eq!(
            p["TargetTrackingScalingPolicyConfiguration"]["DisableScaleIn"],
            true
        );
        assert_eq!(p["CreationTime"], 1_700_000_000);

        call(
            &engine,
            "DeleteScalingPolicy",
            json!({"PolicyName": "cpu", "ServiceNamespace": "ecs", "ResourceId": ID,
                   "ScalableDimension": "ecs:service:DesiredCount"}),
        )
        .await
        .unwrap();
        let (code, message) = call(
            &engine,
            "DeleteScalingPolicy",
            json!({"PolicyName": "cpu", "ServiceNamespace": "ecs", "ResourceId": ID,
                   "ScalableDimension": "ecs:service:DesiredCount"}),
        )
        .await
        .unwrap_err();
        assert_eq!(code, "ObjectNotFoundException");
        assert!(message.ends_with("policy name: cpu"), "{message}");
    }

    #[tokio::test]
    async fn step_policies_and_bad_policies() {
        let (_d, engine) = engine(FakeClock::at(1_700_000_000));
        call(&engine, "RegisterScalableTarget", target_body())
            .await
            .unwrap();
        let step = json!({"PolicyName": "steps", "ServiceNamespace": "ecs", "ResourceId": ID,
            "ScalableDimension": "ecs:service:DesiredCount", "PolicyType": "StepScaling",
            "StepScalingPolicyConfiguration": {"AdjustmentType": "ChangeInCapacity",
                "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 2}],
                "Cooldown": 30, "MetricAggregationType": "Maximum"}});
        let out = call(&engine, "PutScalingPolicy", step).await.unwrap();
        assert!(out.get("Alarms").is_none(), "{out}");

        let cases = [
            (cpu_policy("x", json!({"TargetValue": -1})), "TargetValue"),
            (
                cpu_policy(
                    "x",
                    json!({"PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPU"}}),
                ),
                "enum value set",
            ),
            (
                json!({"PolicyName": "x", "ServiceNamespace": "ecs", "ResourceId": ID,
                       "ScalableDimension": "ecs:service:DesiredCount", "PolicyType": "StepScaling"}),
                "StepScalingPolicyConfiguration is required",
            ),
            (
                json!({"PolicyName": "x", "ServiceNamespace": "ecs", "ResourceId": ID,
                       "ScalableDimension": "ecs:service:DesiredCount"}),
                "PolicyType is required",
            ),
            (
                json!({"PolicyName": "x", "ServiceNamespace": "ecs", "ResourceId": ID,
                       "ScalableDimension": "ecs:service:DesiredCount", "PolicyType": "Simple"}),
                "enum value set",
            ),
            (
                json!({"PolicyName": "x", "ServiceNamespace": "ecs", "ResourceId": ID,
                       "ScalableDimension": "ecs:service:DesiredCount",
                       "PolicyType": "PredictiveScaling"}),
                "not supported",
            ),
        ];
        for (body, expected) in cases {
            let (code, message) = call(&engine, "PutScalingPolicy", body).await.unwrap_err();
            assert_eq!(code, "ValidationException", "{message}");
            assert!(message.contains(expected), "{message} lacks {expected}");
        }
        let (code, _) = call(
            &engine,
            "DescribeScalingPolicies",
            json!({"ServiceNamespace": "ecs", "MaxResults": 11}),
        )
        .await
        .unwrap_err();
        assert_eq!(code, "ValidationException");
    }

    #[tokio::test]
    async fn policies_page_and_filter_by_name() {
        let (_d, engine) = engine(FakeClock::at(1_700_000_000));
        call(&engine, "RegisterScalableTarget", target_body())
            .await
            .unwrap();
        for name in ["a", "b", "c"] {
            call(&engine, "PutScalingPolicy", cpu_policy(name, json!({})))
                .await
                .unwrap();
        }
        let page = call(
            &engine,
            "DescribeScalingPolicies",
            json!({"ServiceNamespace": "ecs", "MaxResults": 2}),
        )
        .await
        .unwrap();
        assert_eq!(page["ScalingPolicies"].as_array().unwrap().len(), 2);
        let rest = call(
            &engine,
            "DescribeScalingPolicies",
            json!({"ServiceNamespace": "ecs", "NextToken": page["NextToken"]}),
        )
        .await
        .unwrap();
        assert_eq!(rest["ScalingPolicies"][0]["PolicyName"], "c");
        let named = call(
            &engine,
            "DescribeScalingPolicies",
            json!({"ServiceNamespace": "ecs", "PolicyNames": ["b"]}),
        )
        .await
        .unwrap();
        assert_eq!(named["ScalingPolicies"].as_array().unwrap().len(), 1);
        // Deregistering the target takes its policies with it.
        call(
            &engine,
            "DeregisterScalableTarget",
            json!({"ServiceNamespace": "ecs", "ResourceId": ID,
                   "ScalableDimension": "ecs:service:DesiredCount"}),
        )
        .await
        .unwrap();
        let none = call(
            &engine,
            "DescribeScalingPolicies",
            json!({"ServiceNamespace": "ecs"}),
        )
        .await
        .unwrap();
        assert_eq!(none["ScalingPolicies"], json!([]));
    }
}
