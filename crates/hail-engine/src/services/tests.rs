use hail_model::arn::Scope;
use hail_model::ecs::service::{
    Deployment, DeploymentConfiguration, DeploymentController, SchedulingStrategy,
};
use hail_model::ecs::task::PropagateTags;

use super::*;

fn deployment(id: &str, status: DeploymentStatus) -> Deployment {
    Deployment {
        id: id.into(),
        status,
        task_definition: Scope::default().task_definition_arn("web", 1),
        desired_count: 0,
        pending_count: 0,
        running_count: 0,
        failed_tasks: 0,
        created_at: Timestamp::from_millis(0),
        updated_at: Timestamp::from_millis(0),
        launch_type: None,
        platform_version: None,
        platform_family: None,
        network_configuration: None,
        rollout_state: RolloutState::InProgress,
        rollout_state_reason: String::new(),
    }
}

fn service(desired: u32, max: u32, min: u32, deployments: Vec<Deployment>) -> Service {
    let scope = Scope::default();
    Service {
        service_arn: scope.service_arn("c", "web"),
        service_name: "web".into(),
        cluster_arn: scope.cluster_arn("c"),
        load_balancers: vec![],
        service_registries: vec![],
        status: ServiceStatus::Active,
        desired_count: desired,
        running_count: 0,
        pending_count: 0,
        launch_type: None,
        capacity_provider_strategy: None,
        platform_version: None,
        platform_family: None,
        task_definition: scope.task_definition_arn("web", 1),
        deployment_configuration: DeploymentConfiguration {
            maximum_percent: Some(max),
            minimum_healthy_percent: Some(min),
            ..DeploymentConfiguration::default()
        },
        deployments,
        role_arn: None,
        events: vec![],
        created_at: Timestamp::from_millis(0),
        placement_constraints: vec![],
        placement_strategy: vec![],
        network_configuration: None,
        health_check_grace_period_seconds: None,
        scheduling_strategy: SchedulingStrategy::Replica,
        deployment_controller: DeploymentController {
            controller_type: "ECS".into(),
        },
        tags: None,
        created_by: String::new(),
        enable_ecs_managed_tags: false,
        propagate_tags: PropagateTags::None,
        enable_execute_command: false,
        paused_desired_count: None,
    }
}

fn task(id: &str, deployment: &str, healthy: bool, at: i64) -> TaskView {
    TaskView {
        id: id.into(),
        deployment: deployment.into(),
        active: true,
        running: healthy,
        healthy,
        unhealthy: false,
        created_at: Timestamp::from_millis(at),
    }
}

#[test]
fn a_new_service_starts_its_desired_count() {
    let s = service(
        3,
        200,
        100,
        vec![deployment("new", DeploymentStatus::Primary)],
    );
    assert_eq!(plan_pass(&s, &[], true).launch, 3);
    // In backoff: nothing starts.
    assert_eq!(plan_pass(&s, &[], false).launch, 0);
    // One already pending counts.
    let tasks = [task("a", "new", false, 1)];
    assert_eq!(plan_pass(&s, &tasks, true).launch, 2);
}

#[test]
fn scale_in_stops_tasks_not_serving_first_then_the_newest() {
    let s = service(
        1,
        200,
        100,
        vec![deployment("d", DeploymentStatus::Primary)],
    );
    let tasks = [
        task("old-healthy", "d", true, 1),
        task("new-healthy", "d", true, 3),
        task("pending", "d", false, 2),
    ];
    let plan = plan_pass(&s, &tasks, true);
    let stopped: Vec<&str> = plan.stop.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(stopped, ["pending", "new-healthy"]);
    assert_eq!(plan.launch, 0);
    assert!(plan.stop[0]
        .1
        .starts_with("Scaling activity initiated by (deployment d)"));
}

#[test]
fn rolling_at_max_100_min_50_replaces_one_at_a_time() {
    // The workshop's service: desired 2, maximum 100 %, minimum healthy 50 %.
    let deployments = vec![
        deployment("new", DeploymentStatus::Primary),
        deployment("old", DeploymentStatus::Active),
    ];
    let s = service(2, 100, 50, deployments);
    // Both old tasks healthy: one may go (2 healthy > 1), and its place is
    // taken by a new one.
    let tasks = [task("o1", "old", true, 1), task("o2", "old", true, 2)];
    let plan = plan_pass(&s, &tasks, true);
    assert_eq!(plan.stop.len(), 1);
    assert_eq!(plan.stop[0].0, "o1");
    assert_eq!(plan.launch, 1);
    // The new one is pending: the last old one stays (it is the only healthy one).
    let tasks = [task("o2", "old", true, 2), task("n1", "new", false, 3)];
    let plan = plan_pass(&s, &tasks, true);
    assert!(plan.stop.is_empty(), "{plan:?}");
    assert_eq!(plan.launch, 0);
    // The new one serves: the old one goes and the second new one starts.
    let tasks = [task("o2", "old", true, 2), task("n1", "new", true, 3)];
    let plan = plan_pass(&s, &tasks, true);
    assert_eq!(
        plan.stop,
        vec![(
            "o2".into(),
            "Scaling activity initiated by (deployment new)".into()
        )]
    );
    assert_eq!(plan.launch, 1);
}

#[test]
fn rolling_at_max_200_min_100_starts_before_stopping() {
    let deployments = vec![
        deployment("new", DeploymentStatus::Primary),
        deployment("old", DeploymentStatus::Active),
    ];
    let s = service(1, 200, 100, deployments);
    let tasks = [task("o1", "old", true, 1)];
    let plan = plan_pass(&s, &tasks, true);
    assert!(plan.stop.is_empty());
    assert_eq!(plan.launch, 1);
    let tasks = [task("o1", "old", true, 1), task("n1", "new", true, 2)];
    let plan = plan_pass(&s, &tasks, true);
    assert_eq!(plan.stop.len(), 1);
    assert_eq!(plan.launch, 0);
}

#[test]
fn unhealthy_tasks_are_replaced_and_failed_deployments_launch_nothing() {
    let s = service(
        1,
        200,
        100,
        vec![deployment("d", DeploymentStatus::Primary)],
    );
    let mut sick = task("sick", "d", false, 1);
    sick.running = true;
    sick.unhealthy = true;
    let plan = plan_pass(&s, &[sick], true);
    assert_eq!(
        plan.stop,
        vec![("sick".into(), "Task failed container health checks".into())]
    );
    assert_eq!(plan.launch, 1);

    let mut failed = deployment("d", DeploymentStatus::Primary);
    failed.rollout_state = RolloutState::Failed;
    let s = service(1, 200, 100, vec![failed]);
    assert_eq!(plan_pass(&s, &[], true).launch, 0);
}

#[test]
fn a_draining_service_stops_everything() {
    let mut s = service(
        2,
        200,
        100,
        vec![deployment("d", DeploymentStatus::Primary)],
    );
    s.status = ServiceStatus::Draining;
    let tasks = [task("a", "d", true, 1), task("b", "d", false, 2)];
    let plan = plan_pass(&s, &tasks, true);
    assert_eq!(plan.stop.len(), 2);
    assert_eq!(plan.launch, 0);
}
