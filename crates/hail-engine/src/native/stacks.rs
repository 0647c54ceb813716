//! Stacks: ApplyStack, DeleteStack, ListStacks, DescribeStack.
//!
//! A stack is a manifest (`hail.yaml`, sent as JSON) of buckets, roles,
//! task definitions, target groups and listeners, services with their
//! autoscaling, and triggers. ApplyStack decodes and checks it
//! ([`hail_model::stack`]), checks it against the engine (buckets and roles
//! it refers to, resources of the same name it does not own), computes the
//! plan from what the stack recorded, and carries the plan out through the
//! same operations the APIs serve — RegisterTaskDefinition, CreateService
//! and UpdateService, RegisterScalableTarget, PutScalingPolicy,
//! CreateTrigger… — so every rule of those operations holds.
//!
//! Each resource is recorded before it is acted on (PENDING, or DELETING)
//! and settled after (READY, or forgotten), so an apply interrupted by a
//! crash is finished by the next one: the plan shows the interrupted
//! resources again and applies them once more, and every step is
//! idempotent. Deletions that must wait — a target group while its service
//! drains, a cluster while tasks stop — are reported as `waiting`; the
//! caller repeats the request until nothing waits.

use std::collections::BTreeSet;

use hail_api::Service as Api;
use hail_model::autoscaling::TargetKey;
use hail_model::ecs::cluster::ClusterStatus;
use hail_model::ecs::service::ServiceStatus;
use hail_model::elb::{Action as ElbAction, CreateListenerInput, CreateTargetGroupInput};
use hail_model::stack::{
    self as model, Action, Change, Desired, Kind, Manifest, Observed, ResourceState, Stack,
    StackError, StackResource, StackStatus, STACK_TAG,
};
use hail_store::{
    autoscaling, clusters, identity, load_balancing, objects, services, stacks as store,
    task_definitions, triggers, Connection, StoreError,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{Engine, EngineError};

/// One apply or delete at a time: two interleaved passes over one stack
/// would each act on a plan the other is changing.
static PASS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplyStackInput {
    /// The manifest, as JSON.
    pub manifest: Value,
    /// Plan only.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteStackInput {
    pub stack_name: String,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StackNameInput {
    pub stack_name: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StackPassOutput {
    pub stack_name: String,
    /// The plan: what this request changes (or would, on a dry run).
    pub changes: Vec<Change>,
    pub dry_run: bool,
    /// Deletions that wait for something to finish; repeat the request.
    pub waiting: Vec<String>,
    /// Nothing waits: the engine matches the manifest (or the stack is gone).
    pub complete: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StackSummary {
    pub stack_name: String,
    pub status: StackStatus,
    pub resource_count: usize,
    pub updated_at: hail_model::ecs::Timestamp,
}

#[derive(Debug, Serialize)]
pub struct ListStacksOutput {
    pub stacks: Vec<StackSummary>,
}

#[derive(Debug, Serialize)]
pub struct DescribeStackOutput {
    pub stack: Stack,
    pub resources: Vec<StackResource>,
}

fn stack_error(e: StackError) -> EngineError {
    EngineError::invalid(e.path, e.message)
}

/// A failure of one resource's step, named by where the manifest declares
/// it; the engine's own failures keep their kind.
fn at(path: &str, e: EngineError) -> EngineError {
    match e {
        EngineError::Store(_) | EngineError::Encode { .. } | EngineError::NoDataPlane => e,
        other => EngineError::invalid(path, other.to_string()),
    }
}

fn service_parts(name: &str) -> (&str, &str) {
    name.split_once('/').unwrap_or(("default", name))
}

fn target_key(service: &str) -> TargetKey {
    let (cluster, name) = service_parts(service);
    TargetKey {
        service_namespace: "ecs".into(),
        resource_id: format!("service/{cluster}/{name}"),
        scalable_dimension: "ecs:service:DesiredCount".into(),
    }
}

/// Whether a resource of this kind and name exists on the engine now.
fn exists(conn: &Connection, kind: Kind, name: &str) -> Result<bool, StoreError> {
    Ok(match kind {
        Kind::Cluster => {
            clusters::get(conn, name)?.is_some_and(|c| c.status != ClusterStatus::Inactive)
        }
        Kind::Bucket => objects::bucket_exists(conn, name)?,
        Kind::Role => identity::get_role(conn, name)?.is_some(),
        Kind::TaskDefinition => task_definitions::latest_active(conn, name)?.is_some(),
        Kind::TargetGroup => load_balancing::get_target_group(conn, name)?.is_some(),
        Kind::Listener => load_balancing::list_listeners(conn)?
            .iter()
            .any(|l| l.port.to_string() == name),
        Kind::Service => {
            let (cluster, service) = service_parts(name);
            match clusters::get(conn, cluster)? {
                Some(c) => services::get_live(conn, &c.cluster_arn, service)?
                    .is_some_and(|s| s.service.status == ServiceStatus::Active),
                None => false,
            }
        }
        Kind::ScalableTarget => autoscaling::get_target(conn, &target_key(name))?.is_some(),
        Kind::ScalingPolicy => match name.rsplit_once('/') {
            Some((service, policy)) => {
                autoscaling::get_policy(conn, &target_key(service), policy)?.is_some()
            }
            None => false,
        },
        Kind::Trigger => triggers::get(conn, name)?.is_some(),
    })
}

/// What the plan needs to know of the engine, read in one snapshot.
struct Observation {
    recorded: Vec<StackResource>,
    present: BTreeSet<(Kind, String)>,
    /// Desired resources another stack owns: (path, message).
    owned_elsewhere: Vec<(String, String)>,
    /// Buckets and roles the manifest refers to from outside, that exist.
    outside_buckets: BTreeSet<String>,
    outside_roles: BTreeSet<String>,
    /// Recorded buckets that hold objects.
    non_empty_buckets: BTreeSet<String>,
}

async fn observe(
    engine: &Engine,
    stack: &str,
    desired: &[Desired],
    buckets: Vec<String>,
    roles: Vec<String>,
) -> Result<Observation, EngineError> {
    let stack = stack.to_owned();
    let wanted: Vec<(Kind, String, String)> = desired
        .iter()
        .map(|d| (d.kind, d.name.clone(), d.path.clone()))
        .collect();
    let o = engine
        .store()
        .read(move |conn| {
            let recorded = store::resources(conn, &stack)?;
            let mut present = BTreeSet::new();
            let mut owned_elsewhere = Vec::new();
            for (kind, name, path) in &wanted {
                if exists(conn, *kind, name)? {
                    present.insert((*kind, name.clone()));
                }
                if let Some(other) = store::owner(conn, *kind, name)? {
                    if other.stack_name != stack {
                        owned_elsewhere.push((
                            path.clone(),
                            format!(
                                "{} {name} belongs to stack {}",
                                kind.as_str(),
                                other.stack_name
                            ),
                        ));
                    }
                }
            }
            let mut non_empty_buckets = BTreeSet::new();
            for r in &recorded {
                if exists(conn, r.kind, &r.name)? {
                    present.insert((r.kind, r.name.clone()));
                }
                if r.kind == Kind::Bucket
                    && !objects::list_objects(conn, &r.name, "", None, 1)?.is_empty()
                {
                    non_empty_buckets.insert(r.name.clone());
                }
            }
            let mut outside_buckets = BTreeSet::new();
            for b in buckets {
                if objects::bucket_exists(conn, &b)? {
                    outside_buckets.insert(b);
                }
            }
            let mut outside_roles = BTreeSet::new();
            for r in roles {
                if identity::get_role(conn, &r)?.is_some() {
                    outside_roles.insert(r);
                }
            }
            Ok::<_, StoreError>(Observation {
                recorded,
                present,
                owned_elsewhere,
                outside_buckets,
                outside_roles,
                non_empty_buckets,
            })
        })
        .await?;
    Ok(o)
}

/// Checks what only the engine can: references out of the stack, names
/// taken outside it, and the operations' own rules for triggers and
/// listeners — all before anything changes.
fn check_against_engine(
    engine: &Engine,
    manifest: &Manifest,
    desired: &[Desired],
    o: &Observation,
) -> Result<(), EngineError> {
    if let Some((path, message)) = o.owned_elsewhere.first() {
        return Err(EngineError::invalid(path, message));
    }
    let recorded: BTreeSet<(Kind, &str)> = o
        .recorded
        .iter()
        .map(|r| (r.kind, r.name.as_str()))
        .collect();
    for d in desired {
        let adoptable = matches!(d.kind, Kind::Cluster | Kind::TaskDefinition);
        if !adoptable
            && o.present.contains(&(d.kind, d.name.clone()))
            && !recorded.contains(&(d.kind, d.name.as_str()))
        {
            return Err(EngineError::invalid(
                &d.path,
                format!(
                    "{} {} already exists and is not part of stack {}; delete it or rename it here",
                    d.kind.as_str(),
                    d.name,
                    manifest.stack
                ),
            ));
        }
    }
    for (name, t) in &manifest.triggers {
        if !manifest.buckets.contains_key(&t.bucket) && !o.outside_buckets.contains(&t.bucket) {
            return Err(EngineError::invalid(
                format!("triggers.{name}.bucket"),
                format!(
                    "bucket {} does not exist and is not declared under buckets",
                    t.bucket
                ),
            ));
        }
        let input = trigger_input(
            &manifest.cluster,
            name,
            &desired_spec(desired, Kind::Trigger, name),
        )?;
        super::triggers::trigger_of(engine, input).map_err(|e| match e {
            EngineError::InvalidParameter { field, message } => {
                EngineError::invalid(format!("triggers.{name}.{field}"), message)
            }
            other => at(&format!("triggers.{name}"), other),
        })?;
    }
    for (family, def) in &manifest.task_definitions {
        let Some(role) = def.task_role_arn.as_deref() else {
            continue;
        };
        let Some(role_name) = hail_model::iam::role_name_of(role) else {
            continue;
        };
        if engine.identity().is_some()
            && !manifest.roles.contains_key(role_name)
            && !o.outside_roles.contains(role_name)
        {
            return Err(EngineError::invalid(
                format!("taskDefinitions.{family}.taskRoleArn"),
                format!("role {role_name} does not exist and is not declared under roles"),
            ));
        }
    }
    for d in desired.iter().filter(|d| d.kind == Kind::Listener) {
        listener_input(&d.spec, "arn:check".into())
            .into_listener(String::new(), engine.now())
            .map_err(|e| EngineError::invalid(format!("{}.{}", d.path, e.field), e.message))?;
    }
    Ok(())
}

fn desired_spec(desired: &[Desired], kind: Kind, name: &str) -> Value {
    desired
        .iter()
        .find(|d| d.kind == kind && d.name == name)
        .map(|d| d.spec.clone())
        .unwrap_or(Value::Null)
}

fn trigger_input(
    cluster: &str,
    name: &str,
    spec: &Value,
) -> Result<hail_model::triggers::CreateTriggerInput, EngineError> {
    let mut body = spec.clone();
    body["triggerName"] = name.into();
    body["cluster"] = cluster.into();
    hail_model::ecs::decode::decode_value(body)
        .map_err(|e| EngineError::invalid(format!("triggers.{name}.{}", e.path), e.message))
}

fn listener_input(spec: &Value, target_group_arn: String) -> CreateListenerInput {
    CreateListenerInput {
        port: spec["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(0),
        address: spec["address"].as_str().map(str::to_owned),
        protocol: None,
        default_actions: vec![ElbAction {
            action_type: "forward".into(),
            target_group_arn: Some(target_group_arn),
            fixed_response_config: None,
        }],
        rules: Vec::new(),
        idle_timeout_seconds: spec["idleTimeoutSeconds"]
            .as_u64()
            .and_then(|v| u32::try_from(v).ok()),
    }
}

fn tags(stack: &str) -> Value {
    json!([{"key": STACK_TAG, "value": stack}])
}

pub async fn apply_stack(
    engine: &Engine,
    input: ApplyStackInput,
) -> Result<StackPassOutput, EngineError> {
    let manifest = Manifest::from_value(input.manifest.clone()).map_err(stack_error)?;
    let _pass = PASS.lock().await;
    let desired = manifest.resources();
    let outside_buckets: Vec<String> = manifest
        .triggers
        .values()
        .map(|t| t.bucket.clone())
        .filter(|b| !manifest.buckets.contains_key(b))
        .collect();
    let outside_roles: Vec<String> = manifest
        .task_definitions
        .values()
        .filter_map(|d| d.task_role_arn.as_deref())
        .filter_map(hail_model::iam::role_name_of)
        .filter(|r| !manifest.roles.contains_key(*r))
        .map(str::to_owned)
        .collect();
    let o = observe(
        engine,
        &manifest.stack,
        &desired,
        outside_buckets,
        outside_roles,
    )
    .await?;
    check_against_engine(engine, &manifest, &desired, &o)?;
    let changes = model::diff(&desired, &o.recorded, |k, n| {
        if o.present.contains(&(k, n.to_owned())) {
            Observed::Present
        } else {
            Observed::Absent
        }
    });
    refuse_non_empty_buckets(&changes, &o)?;
    if input.dry_run {
        return Ok(StackPassOutput {
            stack_name: manifest.stack,
            complete: changes.is_empty(),
            changes,
            dry_run: true,
            waiting: Vec::new(),
        });
    }
    let now = engine.now();
    let stack_name = manifest.stack.clone();
    let previous = {
        let name = stack_name.clone();
        engine.store().read(move |c| store::get(c, &name)).await?
    };
    let stack = Stack {
        stack_name: stack_name.clone(),
        description: manifest.description.clone(),
        status: StackStatus::ApplyInProgress,
        manifest: input.manifest,
        created_at: previous.as_ref().map_or(now, |s| s.created_at),
        updated_at: now,
    };
    put_stack(engine, &stack).await?;
    let mut pass = Pass {
        engine,
        stack: &stack_name,
        cluster: &manifest.cluster,
        recorded: &o.recorded,
        waiting: Vec::new(),
    };
    for change in &changes {
        match change.action {
            Action::Create | Action::Update => {
                let d = desired
                    .iter()
                    .find(|d| d.kind == change.kind && d.name == change.name)
                    .ok_or_else(|| EngineError::invalid("", "plan and manifest disagree"))?;
                pass.ensure(d, o.present.contains(&(d.kind, d.name.clone())))
                    .await?;
            }
            Action::Delete => pass.remove(change.kind, &change.name).await?,
        }
    }
    let waiting = pass.waiting;
    let mut done = stack;
    done.status = if waiting.is_empty() {
        StackStatus::ApplyComplete
    } else {
        StackStatus::ApplyInProgress
    };
    done.updated_at = engine.now();
    put_stack(engine, &done).await?;
    Ok(StackPassOutput {
        stack_name,
        changes,
        dry_run: false,
        complete: waiting.is_empty(),
        waiting,
    })
}

fn refuse_non_empty_buckets(changes: &[Change], o: &Observation) -> Result<(), EngineError> {
    for c in changes {
        if c.action == Action::Delete
            && c.kind == Kind::Bucket
            && o.non_empty_buckets.contains(&c.name)
        {
            return Err(EngineError::invalid(
                "buckets",
                format!(
                    "bucket {} still holds objects; empty it (aws s3 rm s3://{} --recursive) before \
                     the stack can delete it",
                    c.name, c.name
                ),
            ));
        }
    }
    Ok(())
}

pub async fn delete_stack(
    engine: &Engine,
    input: DeleteStackInput,
) -> Result<StackPassOutput, EngineError> {
    let _pass = PASS.lock().await;
    let name = input.stack_name.clone();
    let existing = engine.store().read(move |c| store::get(c, &name)).await?;
    let Some(mut stack) = existing else {
        return Err(EngineError::NotFound {
            what: format!("stack {}", input.stack_name),
        });
    };
    let o = observe(engine, &stack.stack_name, &[], Vec::new(), Vec::new()).await?;
    let changes = model::diff(&[], &o.recorded, |k, n| {
        if o.present.contains(&(k, n.to_owned())) {
            Observed::Present
        } else {
            Observed::Absent
        }
    });
    refuse_non_empty_buckets(&changes, &o)?;
    if input.dry_run {
        return Ok(StackPassOutput {
            stack_name: stack.stack_name,
            complete: changes.is_empty(),
            changes,
            dry_run: true,
            waiting: Vec::new(),
        });
    }
    stack.status = StackStatus::DeleteInProgress;
    stack.updated_at = engine.now();
    put_stack(engine, &stack).await?;
    let cluster = stack.manifest["cluster"]
        .as_str()
        .unwrap_or(model::DEFAULT_CLUSTER)
        .to_owned();
    let mut pass = Pass {
        engine,
        stack: &stack.stack_name,
        cluster: &cluster,
        recorded: &o.recorded,
        waiting: Vec::new(),
    };
    for change in &changes {
        pass.remove(change.kind, &change.name).await?;
    }
    let waiting = pass.waiting;
    if waiting.is_empty() {
        let name = stack.stack_name.clone();
        engine
            .store()
            .write(move |tx| store::delete(tx, &name))
            .await?;
    }
    Ok(StackPassOutput {
        stack_name: stack.stack_name,
        changes,
        dry_run: false,
        complete: waiting.is_empty(),
        waiting,
    })
}

pub async fn list_stacks(engine: &Engine) -> Result<ListStacksOutput, EngineError> {
    let stacks = engine
        .store()
        .read(|conn| {
            store::list(conn)?
                .into_iter()
                .map(|s| {
                    let count = store::resources(conn, &s.stack_name)?.len();
                    Ok(StackSummary {
                        stack_name: s.stack_name,
                        status: s.status,
                        resource_count: count,
                        updated_at: s.updated_at,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()
        })
        .await?;
    Ok(ListStacksOutput { stacks })
}

pub async fn describe_stack(
    engine: &Engine,
    input: StackNameInput,
) -> Result<DescribeStackOutput, EngineError> {
    let name = input.stack_name.clone();
    let found = engine
        .store()
        .read(move |conn| {
            let Some(stack) = store::get(conn, &name)? else {
                return Ok(None);
            };
            let resources = store::resources(conn, &name)?;
            Ok::<_, StoreError>(Some(DescribeStackOutput { stack, resources }))
        })
        .await?;
    found.ok_or_else(|| EngineError::NotFound {
        what: format!("stack {}", input.stack_name),
    })
}

async fn put_stack(engine: &Engine, stack: &Stack) -> Result<(), EngineError> {
    let stored = stack.clone();
    engine
        .store()
        .write(move |tx| store::put(tx, &stored))
        .await?;
    Ok(())
}

/// One apply or delete pass over a stack's changes.
struct Pass<'a> {
    engine: &'a Engine,
    stack: &'a str,
    cluster: &'a str,
    recorded: &'a [StackResource],
    waiting: Vec<String>,
}

impl Pass<'_> {
    fn recorded(&self, kind: Kind, name: &str) -> Option<&StackResource> {
        self.recorded
            .iter()
            .find(|r| r.kind == kind && r.name == name)
    }

    async fn record(
        &self,
        kind: Kind,
        name: &str,
        arn: Option<String>,
        spec: Value,
        state: ResourceState,
    ) -> Result<(), EngineError> {
        let resource = StackResource {
            stack_name: self.stack.to_owned(),
            kind,
            name: name.to_owned(),
            arn,
            spec,
            state,
            updated_at: self.engine.now(),
        };
        self.engine
            .store()
            .write(move |tx| store::put_resource(tx, &resource))
            .await?;
        Ok(())
    }

    /// Runs an operation as the API serves it (stacks' own excepted).
    async fn call(&self, api: Api, op: &str, body: Value) -> Result<Value, EngineError> {
        match api {
            Api::Ecs => crate::ecs::dispatch(self.engine, op, body).await,
            Api::ApplicationAutoScaling => {
                crate::autoscaling::dispatch(self.engine, op, body).await
            }
            Api::Hail => super::dispatch_resources(self.engine, op, body).await,
            other => Err(EngineError::Unsupported {
                service: other.signing_name(),
                operation: op.to_owned(),
            }),
        }
    }

    /// Creates or updates one resource to its spec, recording it first as
    /// PENDING and then as READY with its ARN.
    async fn ensure(&mut self, d: &Desired, present: bool) -> Result<(), EngineError> {
        let old = self.recorded(d.kind, &d.name).cloned();
        let old_arn = old.as_ref().and_then(|r| r.arn.clone());
        // The spec recorded while pending is the old one, so that a crash
        // leaves the difference for the next plan to see.
        let pending_spec = old.as_ref().map_or(Value::Null, |r| r.spec.clone());
        self.record(
            d.kind,
            &d.name,
            old_arn.clone(),
            pending_spec,
            ResourceState::Pending,
        )
        .await?;
        let arn = self
            .apply(d, present, old.as_ref())
            .await
            .map_err(|e| at(&d.path, e))?;
        self.record(d.kind, &d.name, arn, d.spec.clone(), ResourceState::Ready)
            .await
    }

    async fn apply(
        &self,
        d: &Desired,
        present: bool,
        old: Option<&StackResource>,
    ) -> Result<Option<String>, EngineError> {
        let engine = self.engine;
        match d.kind {
            Kind::Cluster => {
                let out = self
                    .call(
                        Api::Ecs,
                        "CreateCluster",
                        json!({"clusterName": d.name, "tags": tags(self.stack)}),
                    )
                    .await?;
                Ok(out["cluster"]["clusterArn"].as_str().map(str::to_owned))
            }
            Kind::Bucket => {
                let name = d.name.clone();
                let now = engine.now().as_millis();
                engine
                    .store()
                    .write(move |tx| objects::create_bucket(tx, &name, now))
                    .await?;
                Ok(Some(format!("arn:aws:s3:::{}", d.name)))
            }
            Kind::Role => {
                let spec: model::RoleSpec = serde_json::from_value(d.spec.clone())
                    .map_err(|source| EngineError::Encode { source })?;
                if !present {
                    let mut body = json!({"roleName": d.name, "policy": spec.policy});
                    if let Some(desc) = &spec.description {
                        body["description"] = desc.clone().into();
                    }
                    let out = self.call(Api::Hail, "CreateRole", body).await?;
                    return Ok(out["role"]["roleArn"].as_str().map(str::to_owned));
                }
                let name = d.name.clone();
                let updated = engine
                    .store()
                    .write(move |tx| {
                        let Some(mut role) = identity::get_role(tx, &name)? else {
                            return Ok::<_, StoreError>(None);
                        };
                        role.policy = spec.policy;
                        role.description = spec.description;
                        identity::update_role(tx, &role)?;
                        Ok(Some(role))
                    })
                    .await?
                    .ok_or_else(|| EngineError::NotFound {
                        what: format!("role {}", d.name),
                    })?;
                if let Some(identity) = engine.identity() {
                    identity.role_changed(&updated.role_name, Some(updated.clone()));
                }
                Ok(Some(updated.role_arn))
            }
            Kind::TaskDefinition => {
                let mut body = d.spec.clone();
                let mut all_tags = body["tags"].as_array().cloned().unwrap_or_default();
                all_tags.retain(|t| t["key"] != STACK_TAG);
                all_tags.push(json!({"key": STACK_TAG, "value": self.stack}));
                body["tags"] = Value::Array(all_tags);
                let out = self.call(Api::Ecs, "RegisterTaskDefinition", body).await?;
                Ok(out["taskDefinition"]["taskDefinitionArn"]
                    .as_str()
                    .map(str::to_owned))
            }
            Kind::TargetGroup => {
                let input: CreateTargetGroupInput =
                    hail_model::ecs::decode::decode_value(d.spec.clone()).map_err(|source| {
                        EngineError::Decode {
                            operation: "CreateTargetGroup".into(),
                            source,
                        }
                    })?;
                let name = d.name.clone();
                let existing = engine
                    .store()
                    .read(move |c| load_balancing::get_target_group(c, &name))
                    .await?;
                let Some(existing) = existing else {
                    let out = self
                        .call(Api::Hail, "CreateTargetGroup", d.spec.clone())
                        .await?;
                    return Ok(out["targetGroup"]["targetGroupArn"]
                        .as_str()
                        .map(str::to_owned));
                };
                let tg = input
                    .into_target_group(existing.target_group_arn.clone(), existing.created_at)?;
                let stored = tg.clone();
                engine
                    .store()
                    .write(move |tx| load_balancing::update_target_group(tx, &stored))
                    .await?;
                if let Some(lb) = engine.balancing() {
                    lb.apply(engine).await?;
                }
                Ok(Some(tg.target_group_arn))
            }
            Kind::Listener => {
                let group = d.spec["targetGroup"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let port = d.spec["port"].as_u64().unwrap_or_default();
                let (tg, existing) = engine
                    .store()
                    .read(move |c| {
                        let tg = load_balancing::get_target_group(c, &group)?;
                        let listener = load_balancing::list_listeners(c)?
                            .into_iter()
                            .find(|l| u64::from(l.port) == port);
                        Ok::<_, StoreError>((tg, listener))
                    })
                    .await?;
                let tg = tg.ok_or_else(|| EngineError::NotFound {
                    what: format!("target group {}", d.spec["targetGroup"]),
                })?;
                let input = listener_input(&d.spec, tg.target_group_arn);
                match existing {
                    None => {
                        let body = serde_json::to_value(&input)
                            .map_err(|source| EngineError::Encode { source })?;
                        let out = self.call(Api::Hail, "CreateListener", body).await?;
                        Ok(out["listener"]["listenerArn"].as_str().map(str::to_owned))
                    }
                    Some(l) => {
                        let listener = input.into_listener(l.listener_arn.clone(), l.created_at)?;
                        let stored = listener.clone();
                        engine
                            .store()
                            .write(move |tx| load_balancing::update_listener(tx, &stored))
                            .await?;
                        if let Some(lb) = engine.balancing() {
                            lb.apply(engine).await?;
                        }
                        Ok(Some(listener.listener_arn))
                    }
                }
            }
            Kind::Service => self.apply_service(d, present, old).await,
            Kind::ScalableTarget => {
                let key = target_key(&d.name);
                let out = self
                    .call(
                        Api::ApplicationAutoScaling,
                        "RegisterScalableTarget",
                        json!({
                            "ServiceNamespace": key.service_namespace,
                            "ResourceId": key.resource_id,
                            "ScalableDimension": key.scalable_dimension,
                            "MinCapacity": d.spec["min"],
                            "MaxCapacity": d.spec["max"],
                            "Tags": {STACK_TAG: self.stack},
                        }),
                    )
                    .await?;
                Ok(out["ScalableTargetARN"].as_str().map(str::to_owned))
            }
            Kind::ScalingPolicy => {
                let (service, policy) = d.name.rsplit_once('/').unwrap_or((&d.name, ""));
                let key = target_key(service);
                let s = &d.spec;
                let mut metric = json!({"PredefinedMetricType": s["metric"]});
                if let Some(label) = s.get("resourceLabel") {
                    metric["ResourceLabel"] = label.clone();
                }
                let mut config = json!({
                    "TargetValue": s["targetValue"],
                    "PredefinedMetricSpecification": metric,
                });
                for (from, to) in [
                    ("scaleOutCooldown", "ScaleOutCooldown"),
                    ("scaleInCooldown", "ScaleInCooldown"),
                    ("disableScaleIn", "DisableScaleIn"),
                ] {
                    if let Some(v) = s.get(from) {
                        config[to] = v.clone();
                    }
                }
                let out = self
                    .call(
                        Api::ApplicationAutoScaling,
                        "PutScalingPolicy",
                        json!({
                            "PolicyName": policy,
                            "ServiceNamespace": key.service_namespace,
                            "ResourceId": key.resource_id,
                            "ScalableDimension": key.scalable_dimension,
                            "PolicyType": "TargetTrackingScaling",
                            "TargetTrackingScalingPolicyConfiguration": config,
                        }),
                    )
                    .await?;
                Ok(out["PolicyARN"].as_str().map(str::to_owned))
            }
            Kind::Trigger => {
                // Triggers have no update: the new one replaces the old,
                // with its bucket rule.
                if present {
                    ignore_missing(
                        self.call(Api::Hail, "DeleteTrigger", json!({"triggerName": d.name}))
                            .await,
                    )?;
                }
                let input = trigger_input(self.cluster, &d.name, &d.spec)?;
                let out = super::triggers::create_trigger(engine, input).await?;
                Ok(Some(out.trigger.trigger_arn))
            }
        }
    }

    async fn apply_service(
        &self,
        d: &Desired,
        present: bool,
        old: Option<&StackResource>,
    ) -> Result<Option<String>, EngineError> {
        let s = &d.spec;
        let family = s["taskDefinition"].as_str().unwrap_or_default().to_owned();
        let lookup = family.clone();
        let revision = self
            .engine
            .store()
            .read(move |c| task_definitions::latest_active(c, &lookup))
            .await?
            .ok_or(EngineError::TaskDefinitionNotFound)?;
        let load_balancers = match s.get("loadBalancer") {
            Some(lb) => {
                let group = lb["targetGroup"].as_str().unwrap_or_default().to_owned();
                let tg = self
                    .engine
                    .store()
                    .read(move |c| load_balancing::get_target_group(c, &group))
                    .await?
                    .ok_or_else(|| EngineError::NotFound {
                        what: format!("target group {}", lb["targetGroup"]),
                    })?;
                json!([{
                    "targetGroupArn": tg.target_group_arn,
                    "containerName": lb["containerName"],
                    "containerPort": lb["containerPort"],
                }])
            }
            None => json!([]),
        };
        let cluster = s["cluster"].clone();
        let name = s["serviceName"].clone();
        if !present {
            let mut body = json!({
                "cluster": cluster,
                "serviceName": name,
                "taskDefinition": revision.task_definition_arn,
                "desiredCount": s["desiredCount"],
                "loadBalancers": load_balancers,
                "tags": tags(self.stack),
            });
            for field in [
                "deploymentConfiguration",
                "networkConfiguration",
                "healthCheckGracePeriodSeconds",
            ] {
                if let Some(v) = s.get(field) {
                    body[field] = v.clone();
                }
            }
            let out = self.call(Api::Ecs, "CreateService", body).await?;
            return Ok(out["service"]["serviceArn"].as_str().map(str::to_owned));
        }
        let old_spec = old.map_or(&Value::Null, |r| &r.spec);
        let mut body = json!({"cluster": cluster, "service": name});
        let interrupted = old.is_none_or(|r| r.state != ResourceState::Ready);
        // What runs changes only when the task definition, the load
        // balancer or the network does: each starts a deployment.
        let rolls = interrupted
            || old_spec.get("taskDefinitionSpec") != s.get("taskDefinitionSpec")
            || old_spec.get("taskDefinition") != s.get("taskDefinition")
            || old_spec.get("loadBalancer") != s.get("loadBalancer")
            || old_spec.get("networkConfiguration") != s.get("networkConfiguration");
        if rolls {
            body["taskDefinition"] = revision.task_definition_arn.clone().into();
            body["loadBalancers"] = load_balancers;
            if let Some(n) = s.get("networkConfiguration") {
                body["networkConfiguration"] = n.clone();
            }
        }
        // The desired count is the manifest's only when the manifest changed
        // it: autoscaling and `hail service scale` move it in between.
        if interrupted || old_spec.get("desiredCount") != s.get("desiredCount") {
            body["desiredCount"] = s["desiredCount"].clone();
        }
        for field in ["deploymentConfiguration", "healthCheckGracePeriodSeconds"] {
            if let Some(v) = s.get(field) {
                body[field] = v.clone();
            }
        }
        let out = self.call(Api::Ecs, "UpdateService", body).await?;
        Ok(out["service"]["serviceArn"].as_str().map(str::to_owned))
    }

    /// Deletes one resource; one that must wait for another to finish
    /// stays recorded as DELETING and is named in `waiting`.
    async fn remove(&mut self, kind: Kind, name: &str) -> Result<(), EngineError> {
        let Some(r) = self.recorded(kind, name).cloned() else {
            return Ok(());
        };
        self.record(
            kind,
            name,
            r.arn.clone(),
            r.spec.clone(),
            ResourceState::Deleting,
        )
        .await?;
        let path = format!("{} {name}", kind.as_str());
        let waiting = self.delete(&r).await.map_err(|e| at(&path, e))?;
        match waiting {
            Some(why) => self
                .waiting
                .push(format!("{} {name}: {why}", kind.as_str())),
            None => {
                let n = name.to_owned();
                self.engine
                    .store()
                    .write(move |tx| store::delete_resource(tx, kind, &n))
                    .await?;
            }
        }
        Ok(())
    }

    /// Deletes `r`; `Some(reason)` when it cannot go yet.
    async fn delete(&self, r: &StackResource) -> Result<Option<String>, EngineError> {
        let engine = self.engine;
        let name = r.name.as_str();
        match r.kind {
            Kind::Trigger => {
                ignore_missing(
                    self.call(Api::Hail, "DeleteTrigger", json!({"triggerName": name}))
                        .await,
                )?;
            }
            Kind::ScalingPolicy | Kind::ScalableTarget => {
                let (service, policy) = match r.kind {
                    Kind::ScalingPolicy => name.rsplit_once('/').unwrap_or((name, "")),
                    _ => (name, ""),
                };
                let key = target_key(service);
                let mut body = json!({
                    "ServiceNamespace": key.service_namespace,
                    "ResourceId": key.resource_id,
                    "ScalableDimension": key.scalable_dimension,
                });
                let op = if r.kind == Kind::ScalingPolicy {
                    body["PolicyName"] = policy.into();
                    "DeleteScalingPolicy"
                } else {
                    "DeregisterScalableTarget"
                };
                ignore_missing(self.call(Api::ApplicationAutoScaling, op, body).await)?;
            }
            Kind::Service => {
                let (cluster, service) = service_parts(name);
                ignore_missing(
                    self.call(
                        Api::Ecs,
                        "DeleteService",
                        json!({"cluster": cluster, "service": service, "force": true}),
                    )
                    .await,
                )?;
                let (c, s) = (cluster.to_owned(), service.to_owned());
                let draining = engine
                    .store()
                    .read(move |conn| match clusters::get(conn, &c)? {
                        Some(cl) => Ok::<_, StoreError>(
                            services::get_live(conn, &cl.cluster_arn, &s)?.is_some(),
                        ),
                        None => Ok(false),
                    })
                    .await?;
                if draining {
                    return Ok(Some("draining: its tasks are stopping".into()));
                }
            }
            Kind::Listener => {
                if let Some(arn) = &r.arn {
                    ignore_missing(
                        self.call(Api::Hail, "DeleteListener", json!({"listenerArn": arn}))
                            .await,
                    )?;
                }
            }
            Kind::TargetGroup => {
                match self
                    .call(Api::Hail, "DeleteTargetGroup", json!({"targetGroup": name}))
                    .await
                {
                    Ok(_) | Err(EngineError::NotFound { .. }) => {}
                    Err(EngineError::InvalidParameter { message, .. })
                        if message.contains("ResourceInUse") =>
                    {
                        return Ok(Some(message));
                    }
                    Err(e) => return Err(e),
                }
            }
            Kind::TaskDefinition => self.deregister_family(name).await?,
            Kind::Role => {
                ignore_missing(
                    self.call(Api::Hail, "DeleteRole", json!({"roleName": name}))
                        .await,
                )?;
            }
            Kind::Bucket => {
                let b = name.to_owned();
                let outcome = engine
                    .store()
                    .write(move |tx| objects::delete_bucket(tx, &b))
                    .await?;
                if outcome == objects::BucketDeletion::NotEmpty {
                    return Err(EngineError::invalid(
                        "buckets",
                        format!("bucket {name} still holds objects; empty it first"),
                    ));
                }
            }
            Kind::Cluster => {
                match self
                    .call(Api::Ecs, "DeleteCluster", json!({"cluster": name}))
                    .await
                {
                    Ok(_) | Err(EngineError::ClusterNotFound { .. }) => {}
                    Err(
                        e @ (EngineError::ClusterContainsServices { .. }
                        | EngineError::ClusterContainsTasks { .. }),
                    ) => return Ok(Some(e.to_string())),
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(None)
    }

    /// Deregisters every ACTIVE revision of `family` this stack registered.
    async fn deregister_family(&self, family: &str) -> Result<(), EngineError> {
        let mut token: Option<String> = None;
        let mut mine = Vec::new();
        loop {
            let mut body = json!({"familyPrefix": family, "status": "ACTIVE"});
            if let Some(t) = &token {
                body["nextToken"] = t.clone().into();
            }
            let out = self.call(Api::Ecs, "ListTaskDefinitions", body).await?;
            for arn in out["taskDefinitionArns"].as_array().into_iter().flatten() {
                let Some(arn) = arn.as_str() else { continue };
                let tags = self
                    .call(Api::Ecs, "ListTagsForResource", json!({"resourceArn": arn}))
                    .await?;
                let ours = tags["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|t| t["key"] == STACK_TAG && t["value"].as_str() == Some(self.stack));
                if ours {
                    mine.push(arn.to_owned());
                }
            }
            token = out["nextToken"].as_str().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        for arn in mine {
            ignore_missing(
                self.call(
                    Api::Ecs,
                    "DeregisterTaskDefinition",
                    json!({"taskDefinition": arn}),
                )
                .await,
            )?;
        }
        Ok(())
    }
}

/// A deletion of something already gone succeeded.
fn ignore_missing(result: Result<Value, EngineError>) -> Result<(), EngineError> {
    match result {
        Ok(_)
        | Err(EngineError::NotFound { .. })
        | Err(EngineError::ServiceNotFound)
        | Err(EngineError::ClusterNotFound { .. })
        | Err(EngineError::TaskDefinitionMissing { .. }) => Ok(()),
        Err(EngineError::AutoScaling(e))
            if e.kind == crate::autoscaling::AutoScalingErrorKind::ObjectNotFound =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}
