//! Service operations: CreateService, UpdateService, DeleteService,
//! DescribeServices and ListServices, with ECS's semantics. Each commits the
//! service's desired state and wakes the service controller
//! ([`crate::services::ServiceController`]), which starts and stops tasks to
//! match it.

use hail_model::ecs::service::{
    service_name_of, CreateServiceInput, DeleteServiceInput, Deployment, DeploymentController,
    DeploymentStatus, DescribeServicesInput, ListServicesInput, RolloutState, SchedulingStrategy,
    UpdateServiceInput,
};
use hail_model::ecs::task::{LaunchType, NetworkConfiguration, PropagateTags};
use hail_model::ecs::task_definition::{Compatibility, NetworkMode};
use hail_model::ecs::{
    Failure, Service, ServiceStatus, TaskDefinition, Timestamp, ValidationError,
};
use hail_store::{services, tags, Connection};
use serde::{Deserialize, Serialize};

use super::tasks::{active_cluster_arn, find_definition};
use crate::{Engine, EngineError};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceOutput {
    pub service: Service,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeServicesOutput {
    pub services: Vec<Service>,
    pub failures: Vec<Failure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListServicesOutput {
    pub service_arns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// The native PauseService / ResumeService body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PauseServiceInput {
    #[serde(default)]
    pub cluster: Option<String>,
    pub service: String,
}

pub async fn create_service(
    engine: &Engine,
    input: CreateServiceInput,
) -> Result<ServiceOutput, EngineError> {
    let scope = engine.scope().clone();
    input.validate(&scope)?;
    let cluster = input.cluster_name(&scope)?;
    let reference = input.task_definition_ref(&scope)?;
    let now = engine.now();
    let created_by = format!("arn:aws:iam::{}:root", scope.account);
    let balanced = engine.balancing().is_some();
    let service = engine
        .store()
        .write(move |tx| {
            let cluster_arn = active_cluster_arn(tx, &cluster)?;
            let def = find_definition(tx, &reference)?;
            check_definition(&def, &input)?;
            if balanced {
                check_target_groups(tx, input.load_balancers.as_deref().unwrap_or_default())?;
            }
            if let Some(live) = services::get_live(tx, &cluster_arn, &input.service_name)? {
                // ECS answers a repeated create of an identical service with
                // the service; anything else is a clash of names.
                if live.service.task_definition == def.task_definition_arn
                    && live.service.desired_count == input.desired_count.unwrap_or(0)
                    && live.service.status == ServiceStatus::Active
                {
                    return Ok(live.service);
                }
                return Err(ValidationError::invalid_parameter(
                    "serviceName",
                    "Creation of service was not idempotent.",
                )
                .into());
            }
            let fargate = input.launch_type == Some(LaunchType::Fargate)
                || (input.launch_type.is_none()
                    && input.capacity_provider_strategy.is_none()
                    && def.compatibilities.contains(&Compatibility::Fargate));
            let launch_type = if fargate {
                Some(LaunchType::Fargate)
            } else {
                input.launch_type.or(Some(LaunchType::Ec2))
            };
            let platform_version = fargate.then(|| {
                input
                    .platform_version
                    .clone()
                    .unwrap_or_else(|| "LATEST".to_owned())
            });
            let desired = input.desired_count.unwrap_or(0);
            let deployment = new_deployment(
                &def,
                desired,
                launch_type,
                platform_version.clone(),
                input.network_configuration.clone(),
                now,
            );
            let service = Service {
                service_arn: scope.service_arn(&cluster, &input.service_name),
                service_name: input.service_name.clone(),
                cluster_arn: cluster_arn.clone(),
                load_balancers: input.load_balancers.clone().unwrap_or_default(),
                service_registries: input.service_registries.clone().unwrap_or_default(),
                status: ServiceStatus::Active,
                desired_count: desired,
                running_count: 0,
                pending_count: 0,
                launch_type,
                capacity_provider_strategy: input.capacity_provider_strategy.clone(),
                platform_version,
                platform_family: fargate.then(|| "Linux".to_owned()),
                task_definition: def.task_definition_arn.clone(),
                deployment_configuration: input
                    .deployment_configuration
                    .clone()
                    .unwrap_or_default(),
                deployments: vec![deployment],
                role_arn: input.role.clone(),
                events: Vec::new(),
                created_at: now,
                placement_constraints: input.placement_constraints.clone().unwrap_or_default(),
                placement_strategy: input.placement_strategy.clone().unwrap_or_default(),
                network_configuration: input.network_configuration.clone(),
                health_check_grace_period_seconds: input.health_check_grace_period_seconds,
                scheduling_strategy: SchedulingStrategy::Replica,
                deployment_controller: input.deployment_controller.clone().unwrap_or(
                    DeploymentController {
                        controller_type: "ECS".to_owned(),
                    },
                ),
                tags: None,
                created_by: created_by.clone(),
                enable_ecs_managed_tags: input.enable_ecs_managed_tags.unwrap_or(false),
                propagate_tags: input.propagate_tags.unwrap_or(PropagateTags::None),
                enable_execute_command: input.enable_execute_command.unwrap_or(false),
                paused_desired_count: None,
            };
            let stored = services::insert(tx, &service)?;
            if let Some(t) = input.tags.as_ref().filter(|t| !t.is_empty()) {
                tags::set(tx, &service.service_arn, t)?;
            }
            Ok::<_, EngineError>(stored.service)
        })
        .await?;
    engine.wake_services();
    Ok(ServiceOutput { service })
}

pub async fn update_service(
    engine: &Engine,
    input: UpdateServiceInput,
) -> Result<ServiceOutput, EngineError> {
    let scope = engine.scope().clone();
    input.validate(&scope)?;
    let cluster = input.cluster_name(&scope)?;
    let name = input.service_name()?;
    let reference = input.task_definition_ref(&scope)?;
    let now = engine.now();
    let service = engine
        .store()
        .write(move |tx| {
            let cluster_arn = active_cluster_arn(tx, &cluster)?;
            let stored =
                services::get_live(tx, &cluster_arn, &name)?.ok_or(EngineError::ServiceNotFound)?;
            let mut service = stored.service.clone();
            if service.status != ServiceStatus::Active {
                return Err(EngineError::ServiceNotActive);
            }
            if let Some(count) = input.desired_count {
                service.desired_count = count;
                service.paused_desired_count = None;
            }
            if let Some(d) = &input.deployment_configuration {
                // Fields left out keep their values, as ECS merges them.
                let current = &mut service.deployment_configuration;
                if d.maximum_percent.is_some() {
                    current.maximum_percent = d.maximum_percent;
                }
                if d.minimum_healthy_percent.is_some() {
                    current.minimum_healthy_percent = d.minimum_healthy_percent;
                }
                if d.deployment_circuit_breaker.is_some() {
                    current.deployment_circuit_breaker = d.deployment_circuit_breaker.clone();
                }
                if d.alarms.is_some() {
                    current.alarms = d.alarms.clone();
                }
            }
            if let Some(g) = input.health_check_grace_period_seconds {
                service.health_check_grace_period_seconds = Some(g);
            }
            if let Some(e) = input.enable_execute_command {
                service.enable_execute_command = e;
            }
            if let Some(p) = input.propagate_tags {
                service.propagate_tags = p;
            }
            if input.starts_deployment() {
                let def = match &reference {
                    Some(r) => find_definition(tx, r)?,
                    None => {
                        let r = hail_model::arn::TaskDefinitionRef::parse(
                            &service.task_definition,
                            &scope,
                        )
                        .map_err(|source| EngineError::Arn {
                            field: "taskDefinition",
                            source,
                        })?;
                        find_definition(tx, &r)?
                    }
                };
                if let Some(lbs) = &input.load_balancers {
                    service.load_balancers = lbs.clone();
                }
                if let Some(n) = &input.network_configuration {
                    service.network_configuration = Some(n.clone());
                }
                if let Some(p) = &input.platform_version {
                    service.platform_version = Some(p.clone());
                }
                check_service_against(&def, &service)?;
                for d in &mut service.deployments {
                    if d.status == DeploymentStatus::Primary {
                        d.status = DeploymentStatus::Active;
                        d.updated_at = now;
                    }
                }
                let deployment = new_deployment(
                    &def,
                    service.desired_count,
                    service.launch_type,
                    service.platform_version.clone(),
                    service.network_configuration.clone(),
                    now,
                );
                service.task_definition = def.task_definition_arn.clone();
                service.deployments.insert(0, deployment);
            }
            let desired = service.desired_count;
            if let Some(primary) = service.primary_mut() {
                primary.desired_count = desired;
                primary.updated_at = now;
            }
            let updated = services::update(tx, stored.seq, stored.version, &service, now)?;
            Ok::<_, EngineError>(updated.service)
        })
        .await?;
    engine.wake_services();
    Ok(ServiceOutput { service })
}

pub async fn delete_service(
    engine: &Engine,
    input: DeleteServiceInput,
) -> Result<ServiceOutput, EngineError> {
    let scope = engine.scope().clone();
    let cluster = input.cluster_name(&scope)?;
    let name = input.service_name()?;
    let force = input.force.unwrap_or(false);
    let now = engine.now();
    let service = engine
        .store()
        .write(move |tx| {
            let cluster_arn = active_cluster_arn(tx, &cluster)?;
            let stored =
                services::get_live(tx, &cluster_arn, &name)?.ok_or(EngineError::ServiceNotFound)?;
            let mut service = stored.service.clone();
            if service.status == ServiceStatus::Draining {
                return Ok(service);
            }
            if service.desired_count > 0 && !force {
                return Err(ValidationError::invalid_parameter(
                    "service",
                    "The service cannot be stopped while it is scaled above 0.",
                )
                .into());
            }
            service.desired_count = 0;
            service.status = ServiceStatus::Draining;
            for d in &mut service.deployments {
                d.desired_count = 0;
                d.updated_at = now;
            }
            let updated = services::update(tx, stored.seq, stored.version, &service, now)?;
            Ok::<_, EngineError>(updated.service)
        })
        .await?;
    engine.wake_services();
    Ok(ServiceOutput { service })
}

pub async fn describe_services(
    engine: &Engine,
    input: DescribeServicesInput,
) -> Result<DescribeServicesOutput, EngineError> {
    let scope = engine.scope().clone();
    input.validate(&scope)?;
    let cluster = input.cluster_name(&scope)?;
    let include_tags = input.include_tags();
    engine
        .store()
        .read(move |conn| {
            let cluster_arn = active_cluster_arn(conn, &cluster)?;
            let mut out = DescribeServicesOutput {
                services: Vec::new(),
                failures: Vec::new(),
            };
            for given in &input.services {
                let found = match service_name_of(given, "services") {
                    Ok(name) => services::get_latest(conn, &cluster_arn, &name)?,
                    Err(_) => None,
                };
                match found {
                    Some(stored) => {
                        let mut service = stored.service;
                        if include_tags {
                            service.tags = Some(tags::list(conn, &service.service_arn)?);
                        }
                        out.services.push(service);
                    }
                    None => out.failures.push(Failure {
                        arn: Some(if given.starts_with("arn:") {
                            given.clone()
                        } else {
                            scope.service_arn(&cluster, given)
                        }),
                        reason: Some("MISSING".to_owned()),
                        detail: None,
                    }),
                }
            }
            Ok::<_, EngineError>(out)
        })
        .await
}

pub async fn list_services(
    engine: &Engine,
    input: ListServicesInput,
) -> Result<ListServicesOutput, EngineError> {
    let cluster = input.cluster_name(engine.scope())?;
    engine
        .store()
        .read(move |conn| {
            let cluster_arn = active_cluster_arn(conn, &cluster)?;
            let page = services::list_arns(
                conn,
                &cluster_arn,
                input.max_results,
                input.next_token.as_deref(),
            )?;
            Ok::<_, EngineError>(ListServicesOutput {
                service_arns: page.items,
                next_token: page.next_token,
            })
        })
        .await
}

/// Hail's PauseService: desired count 0, the count remembered for
/// ResumeService. Pausing a paused service changes nothing.
pub async fn pause_service(
    engine: &Engine,
    input: PauseServiceInput,
) -> Result<ServiceOutput, EngineError> {
    set_paused(engine, input, true).await
}

/// Hail's ResumeService: back to the count before the pause.
pub async fn resume_service(
    engine: &Engine,
    input: PauseServiceInput,
) -> Result<ServiceOutput, EngineError> {
    set_paused(engine, input, false).await
}

async fn set_paused(
    engine: &Engine,
    input: PauseServiceInput,
    pause: bool,
) -> Result<ServiceOutput, EngineError> {
    let scope = engine.scope().clone();
    let cluster = match input.cluster.as_deref() {
        None => hail_model::ecs::DEFAULT_CLUSTER_NAME.to_owned(),
        Some(c) => hail_model::arn::cluster_name(c, &scope).map_err(|source| EngineError::Arn {
            field: "cluster",
            source,
        })?,
    };
    let name = service_name_of(&input.service, "service")?;
    let now = engine.now();
    let service = engine
        .store()
        .write(move |tx| {
            let cluster_arn = active_cluster_arn(tx, &cluster)?;
            let stored =
                services::get_live(tx, &cluster_arn, &name)?.ok_or(EngineError::ServiceNotFound)?;
            let mut service = stored.service.clone();
            if service.status != ServiceStatus::Active {
                return Err(EngineError::ServiceNotActive);
            }
            match (pause, service.paused_desired_count) {
                (true, None) => {
                    service.paused_desired_count = Some(service.desired_count);
                    service.desired_count = 0;
                    service.push_event(
                        hail_model::ids::new_event_id(),
                        now,
                        format!("(service {name}) was paused."),
                    );
                }
                (false, Some(count)) => {
                    service.paused_desired_count = None;
                    service.desired_count = count;
                    service.push_event(
                        hail_model::ids::new_event_id(),
                        now,
                        format!("(service {name}) was resumed with a desired count of {count}."),
                    );
                }
                _ => return Ok(service),
            }
            let desired = service.desired_count;
            if let Some(primary) = service.primary_mut() {
                primary.desired_count = desired;
                primary.updated_at = now;
            }
            Ok::<_, EngineError>(
                services::update(tx, stored.seq, stored.version, &service, now)?.service,
            )
        })
        .await?;
    engine.wake_services();
    Ok(ServiceOutput { service })
}

fn new_deployment(
    def: &TaskDefinition,
    desired: u32,
    launch_type: Option<LaunchType>,
    platform_version: Option<String>,
    network_configuration: Option<NetworkConfiguration>,
    now: Timestamp,
) -> Deployment {
    let id = hail_model::ids::new_deployment_id();
    Deployment {
        rollout_state_reason: format!("ECS deployment {id} in progress."),
        id,
        status: DeploymentStatus::Primary,
        task_definition: def.task_definition_arn.clone(),
        desired_count: desired,
        pending_count: 0,
        running_count: 0,
        failed_tasks: 0,
        created_at: now,
        updated_at: now,
        platform_family: (launch_type == Some(LaunchType::Fargate)).then(|| "Linux".to_owned()),
        launch_type,
        platform_version,
        network_configuration,
        rollout_state: RolloutState::InProgress,
    }
}

/// What CreateService checks against the definition before committing.
fn check_definition(def: &TaskDefinition, input: &CreateServiceInput) -> Result<(), EngineError> {
    if def.network_mode == Some(NetworkMode::Awsvpc) && input.network_configuration.is_none() {
        return Err(ValidationError::invalid_parameter(
            "networkConfiguration",
            "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
        )
        .into());
    }
    check_load_balancers(def, input.load_balancers.as_deref().unwrap_or_default())
}

fn check_service_against(def: &TaskDefinition, service: &Service) -> Result<(), EngineError> {
    if def.network_mode == Some(NetworkMode::Awsvpc) && service.network_configuration.is_none() {
        return Err(ValidationError::invalid_parameter(
            "networkConfiguration",
            "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
        )
        .into());
    }
    check_load_balancers(def, &service.load_balancers)
}

/// Each load balancer names a container of the definition and one of its
/// container ports, in ECS's words when not.
fn check_load_balancers(
    def: &TaskDefinition,
    lbs: &[hail_model::ecs::service::LoadBalancer],
) -> Result<(), EngineError> {
    for (i, lb) in lbs.iter().enumerate() {
        let name = lb.container_name.as_deref().unwrap_or_default();
        let port = lb.container_port.map(u32::from);
        let Some(container) = def.container_definitions.iter().find(|c| c.name() == name) else {
            return Err(ValidationError::invalid_parameter(
                format!("loadBalancers[{i}].containerName"),
                format!("The container {name} does not exist in the task definition."),
            )
            .into());
        };
        if !container
            .port_mappings
            .iter()
            .any(|p| p.container_port == port)
        {
            return Err(ValidationError::invalid_parameter(
                format!("loadBalancers[{i}].containerPort"),
                format!(
                    "The container {name} did not have a container port {} defined.",
                    port.unwrap_or(0)
                ),
            )
            .into());
        }
    }
    Ok(())
}

/// Each load balancer's target group exists, in ECS's words when not.
fn check_target_groups(
    conn: &Connection,
    lbs: &[hail_model::ecs::service::LoadBalancer],
) -> Result<(), EngineError> {
    for (i, lb) in lbs.iter().enumerate() {
        let arn = lb.target_group_arn.as_deref().unwrap_or_default();
        let Some(tg) = hail_store::load_balancing::get_target_group(conn, arn)? else {
            return Err(ValidationError::invalid_parameter(
                format!("loadBalancers[{i}].targetGroupArn"),
                format!("The target group with targetGroupArn {arn} does not exist."),
            )
            .into());
        };
        // Targets of a group no listener uses would never be checked, so
        // never healthy: ECS refuses such a group the same way.
        let listened = hail_store::load_balancing::list_listeners(conn)?
            .iter()
            .any(|l| l.target_groups().any(|t| t == tg.target_group_arn));
        if !listened {
            return Err(ValidationError::invalid_parameter(
                format!("loadBalancers[{i}].targetGroupArn"),
                format!(
                    "The target group with targetGroupArn {arn} does not have an associated \
                     load balancer."
                ),
            )
            .into());
        }
    }
    Ok(())
}

/// The service of `name` in the cluster, for other modules (autoscaling).
pub fn live_service(
    conn: &Connection,
    cluster: &str,
    name: &str,
) -> Result<Option<services::StoredService>, EngineError> {
    let cluster_arn = match active_cluster_arn(conn, cluster) {
        Ok(arn) => arn,
        Err(EngineError::ClusterNotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(services::get_live(conn, &cluster_arn, name)?)
}
