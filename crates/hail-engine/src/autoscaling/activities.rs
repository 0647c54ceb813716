//! DescribeScalingActivities, and the words activities are recorded in.

use hail_model::autoscaling::{
    self as model, ActivityStatus, DescribeScalingActivitiesInput, ScalingActivity, TargetKey,
};
use hail_model::ecs::Timestamp;
use hail_store::autoscaling as store;
use serde::Serialize;

use crate::{Engine, EngineError};

/// Most activities one page holds (and its default).
pub const MAX_RESULTS: u32 = 50;

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeScalingActivitiesOutput {
    pub scaling_activities: Vec<ScalingActivity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// The activities of the last six weeks, newest first.
pub async fn describe(
    engine: &Engine,
    input: DescribeScalingActivitiesInput,
) -> Result<DescribeScalingActivitiesOutput, EngineError> {
    let filter = super::policies::filter(
        &input.service_namespace,
        input.resource_id.map(|id| vec![id]),
        input.scalable_dimension,
        None,
    )?;
    let limit = model::max_results(input.max_results, MAX_RESULTS)?;
    let token = input.next_token;
    let page = engine
        .store()
        .read(move |conn| store::list_activities(conn, &filter, limit, token.as_deref()))
        .await?;
    Ok(DescribeScalingActivitiesOutput {
        scaling_activities: page.items,
        next_token: page.next_token,
    })
}

/// A new activity setting the desired count of the target to `count`,
/// in progress, in AWS's words: "Setting desired count to 3.".
pub fn setting_desired_count(
    key: &TargetKey,
    count: u32,
    cause: String,
    now: Timestamp,
) -> ScalingActivity {
    ScalingActivity {
        activity_id: model::new_uuid(),
        service_namespace: key.service_namespace.clone(),
        resource_id: key.resource_id.clone(),
        scalable_dimension: key.scalable_dimension.clone(),
        description: format!("Setting desired count to {count}."),
        cause,
        start_time: now,
        end_time: None,
        status_code: ActivityStatus::InProgress,
        status_message: None,
        details: None,
    }
}

/// The activity after the desired count was set (or could not be).
pub fn finished(
    mut activity: ScalingActivity,
    count: u32,
    outcome: Result<(), String>,
    now: Timestamp,
) -> ScalingActivity {
    activity.end_time = Some(now);
    match outcome {
        Ok(()) => {
            activity.status_code = ActivityStatus::Successful;
            activity.status_message = Some(format!(
                "Successfully set desired count to {count}. Change successfully fulfilled by ecs."
            ));
        }
        Err(reason) => {
            activity.status_code = ActivityStatus::Failed;
            activity.status_message = Some(format!(
                "Failed to set desired count to {count}. Reason: {reason}"
            ));
        }
    }
    activity
}

/// The activity of a scheduled action that changed a target's range, done
/// when it is recorded: "Setting min capacity to 1 and max capacity to 10".
pub fn scheduled_range(
    key: &TargetKey,
    action: &str,
    min: Option<u32>,
    max: Option<u32>,
    now: Timestamp,
) -> ScalingActivity {
    let what = match (min, max) {
        (Some(min), Some(max)) => format!("min capacity to {min} and max capacity to {max}"),
        (Some(min), None) => format!("min capacity to {min}"),
        (None, Some(max)) => format!("max capacity to {max}"),
        (None, None) => "no capacity".to_owned(),
    };
    ScalingActivity {
        activity_id: model::new_uuid(),
        service_namespace: key.service_namespace.clone(),
        resource_id: key.resource_id.clone(),
        scalable_dimension: key.scalable_dimension.clone(),
        description: format!("Setting {what}"),
        cause: format!("scheduled action name {action} was triggered"),
        start_time: now,
        end_time: Some(now),
        status_code: ActivityStatus::Successful,
        status_message: Some(format!("Successfully set {what}")),
        details: None,
    }
}
