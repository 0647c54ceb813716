//! PutScheduledAction, DescribeScheduledActions, DeleteScheduledAction.

use hail_model::autoscaling::{
    self as model, check_scheduled_action_name, check_target_action, scheduled_action_arn,
    target_key, DeleteScheduledActionInput, DescribeScheduledActionsInput, PutScheduledActionInput,
    Schedule, ScheduledAction, MAX_SCHEDULED_ACTIONS_PER_TARGET,
};
use hail_store::autoscaling as store;
use serde::Serialize;

use super::{no_target, zone, AutoScalingError, Empty};
use crate::{Engine, EngineError};

/// Most scheduled actions one page holds (and its default).
pub const MAX_RESULTS: u32 = 50;

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeScheduledActionsOutput {
    pub scheduled_actions: Vec<ScheduledAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// Creates or updates a scheduled action of a registered target; on an
/// update, what the request leaves out keeps its value.
pub async fn put(engine: &Engine, input: PutScheduledActionInput) -> Result<Empty, EngineError> {
    check_scheduled_action_name(&input.scheduled_action_name)?;
    let key = target_key(
        &input.service_namespace,
        &input.resource_id,
        &input.scalable_dimension,
    )?;
    if let Some(s) = &input.schedule {
        Schedule::parse(s)?;
    }
    if let Some(tz) = &input.timezone {
        zone::check_timezone(tz)?;
    }
    if let Some(action) = input.scalable_target_action {
        check_target_action(Some(action))?;
    }
    let scope = engine.scope().clone();
    let now = engine.now();
    engine
        .store()
        .write(move |tx| {
            if store::get_target(tx, &key)?.is_none() {
                return Err(no_target(&key));
            }
            let name = input.scheduled_action_name;
            let existing = store::get_scheduled_action(tx, &key, &name)?;
            let action = match existing {
                Some(old) => ScheduledAction {
                    schedule: input.schedule.unwrap_or(old.schedule),
                    timezone: input.timezone.or(old.timezone),
                    start_time: input.start_time.or(old.start_time),
                    end_time: input.end_time.or(old.end_time),
                    scalable_target_action: input
                        .scalable_target_action
                        .or(old.scalable_target_action),
                    ..old
                },
                None => {
                    let schedule = input.schedule.ok_or_else(|| {
                        AutoScalingError::validation(
                            "Schedule is required to create a scheduled action",
                        )
                    })?;
                    check_target_action(input.scalable_target_action)?;
                    if store::target_scheduled_actions(tx, &key)?.len()
                        >= MAX_SCHEDULED_ACTIONS_PER_TARGET
                    {
                        return Err(AutoScalingError::limit(format!(
                            "A scalable target can have at most \
                             {MAX_SCHEDULED_ACTIONS_PER_TARGET} scheduled actions"
                        ))
                        .into());
                    }
                    ScheduledAction {
                        scheduled_action_arn: scheduled_action_arn(
                            &scope.region,
                            &scope.account,
                            &key,
                            &name,
                        ),
                        scheduled_action_name: name,
                        service_namespace: key.service_namespace.clone(),
                        schedule,
                        timezone: input.timezone,
                        resource_id: key.resource_id.clone(),
                        scalable_dimension: key.scalable_dimension.clone(),
                        start_time: input.start_time,
                        end_time: input.end_time,
                        scalable_target_action: input.scalable_target_action,
                        creation_time: now,
                    }
                }
            };
            if let (Some(start), Some(end)) = (action.start_time, action.end_time) {
                if end < start {
                    return Err(AutoScalingError::validation(
                        "The end time of a scheduled action cannot be before its start time",
                    )
                    .into());
                }
            }
            store::put_scheduled_action(tx, &action)?;
            Ok::<_, EngineError>(Empty {})
        })
        .await
}

pub async fn describe(
    engine: &Engine,
    input: DescribeScheduledActionsInput,
) -> Result<DescribeScheduledActionsOutput, EngineError> {
    let filter = super::policies::filter(
        &input.service_namespace,
        input.resource_id.map(|id| vec![id]),
        input.scalable_dimension,
        input
            .scheduled_action_names
            .map(|n| ("scheduledActionNames", n)),
    )?;
    let limit = model::max_results(input.max_results, MAX_RESULTS)?;
    let token = input.next_token;
    let page = engine
        .store()
        .read(move |conn| store::list_scheduled_actions(conn, &filter, limit, token.as_deref()))
        .await?;
    Ok(DescribeScheduledActionsOutput {
        scheduled_actions: page.items,
        next_token: page.next_token,
    })
}

pub async fn delete(
    engine: &Engine,
    input: DeleteScheduledActionInput,
) -> Result<Empty, EngineError> {
    check_scheduled_action_name(&input.scheduled_action_name)?;
    let key = target_key(
        &input.service_namespace,
        &input.resource_id,
        &input.scalable_dimension,
    )?;
    engine
        .store()
        .write(move |tx| {
            if !store::delete_scheduled_action(tx, &key, &input.scheduled_action_name)? {
                return Err(AutoScalingError::not_found(format!(
                    "No scheduled action found for service namespace: {}, resource ID: {}, \
                     scalable dimension: {}, scheduled action name: {}",
                    key.service_namespace,
                    key.resource_id,
                    key.scalable_dimension,
                    input.scheduled_action_name
                ))
                .into());
            }
            Ok::<_, EngineError>(Empty {})
        })
        .await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{call, engine, FakeClock};

    const ID: &str = "service/c/s";

    #[tokio::test]
    async fn scheduled_actions_are_put_merged_described_and_deleted() {
        let (_d, engine) = engine(FakeClock::at(1_700_000_000));
        let action = json!({"ServiceNamespace": "ecs", "ResourceId": ID,
            "ScalableDimension": "ecs:service:DesiredCount",
            "ScheduledActionName": "business-hours",
            "Schedule": "cron(0 9 ? * MON-FRI *)", "Timezone": "Europe/London",
            "ScalableTargetAction": {"MinCapacity": 4, "MaxCapacity": 10}});
        let (code, _) = call(&engine, "PutScheduledAction", action.clone())
            .await
            .unwrap_err();
        assert_eq!(code, "ObjectNotFoundException");
        call(
            &engine,
            "RegisterScalableTarget",
            json!({"ServiceNamespace": "ecs", "ResourceId": ID,
                   "ScalableDimension": "ecs:service:DesiredCount",
                   "MinCapacity": 1, "MaxCapacity": 10}),
        )
        .await
        .unwrap();
        call(&engine, "PutScheduledAction", action).await.unwrap();
        // An update that names only the schedule keeps the rest.
        call(
            &engine,
            "PutScheduledAction",
            json!({"ServiceNamespace": "ecs", "ResourceId": ID,
                   "ScalableDimension": "ecs:service:DesiredCount",
                   "ScheduledActionName": "business-hours", "Schedule": "cron(0 8 ? * MON-FRI *)"}),
        )
        .await
        .unwrap();
        let described = call(
            &engine,
            "DescribeScheduledActions",
            json!({"ServiceNamespace": "ecs", "ScheduledActionNames": ["business-hours"]}),
        )
        .await
        .unwrap();
        let a = &described["ScheduledActions"][0];
        assert_eq!(a["Schedule"], "cron(0 8 ? * MON-FRI *)");
        assert_eq!(a["Timezone"], "Europe/London");
        assert_eq!(
            a["ScalableTargetAction"],
            json!({"MinCapacity": 4, "MaxCapacity": 10})
        );
        assert!(a["ScheduledActionARN"]
            .as_str()
            .unwrap()
            .ends_with(":resource/ecs/service/c/s:scheduledActionName/business-hours"));

        for (body, expected) in [
            (json!({"Schedule": "cron(0 8 * * MON *)"}), "Schedule"),
            (json!({"Timezone": "Moon/Base"}), "Timezone"),
            (json!({"ScalableTargetAction": {}}), "At least one of"),
            (
                json!({"ScheduledActionName": "new", "Schedule": "rate(1 hour)"}),
                "At least one of",
            ),
            (json!({"StartTime": 2000, "EndTime": 1000}), "end time"),
        ] {
            let mut b = json!({"ServiceNamespace": "ecs", "ResourceId": ID,
                "ScalableDimension": "ecs:service:DesiredCount",
                "ScheduledActionName": "business-hours"});
            for (k, v) in body.as_object().unwrap() {
                b[k] = v.clone();
            }
            let (code, message) = call(&engine, "PutScheduledAction", b).await.unwrap_err();
            assert_eq!(code, "ValidationException", "{message}");
            assert!(message.contains(expected), "{message} lacks {expected}");
        }

        let delete = json!({"ServiceNamespace": "ecs", "ResourceId": ID,
            "ScalableDimension": "ecs:service:DesiredCount",
            "ScheduledActionName": "business-hours"});
        call(&engine, "DeleteScheduledAction", delete.clone())
            .await
            .unwrap();
        let (code, _) = call(&engine, "DeleteScheduledAction", delete)
            .await
            .unwrap_err();
        assert_eq!(code, "ObjectNotFoundException");
    }
}
