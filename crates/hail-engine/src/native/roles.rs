//! Roles: CreateRole, GetRole, ListRoles, PutRolePolicy, DeleteRole.

use hail_model::iam::{self, Policy, Role};
use hail_store::identity;
use serde::{Deserialize, Serialize};

use crate::identity::Identity;
use crate::{Engine, EngineError};

/// A policy as a JSON object, or as a string holding one (IAM's
/// `PolicyDocument` is a string; both are taken).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PolicyInput {
    Document(Policy),
    Text(String),
}

impl PolicyInput {
    fn parse(self) -> Result<Policy, EngineError> {
        let policy = match self {
            PolicyInput::Document(p) => p,
            PolicyInput::Text(text) => serde_json::from_str(&text).map_err(|e| {
                EngineError::invalid("policy", format!("not a policy document: {e}"))
            })?,
        };
        policy
            .validate()
            .map_err(|m| EngineError::invalid("policy", m))?;
        Ok(policy)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRoleInput {
    pub role_name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub policy: PolicyInput,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleNameInput {
    pub role_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PutRolePolicyInput {
    pub role_name: String,
    pub policy: PolicyInput,
}

#[derive(Debug, Serialize)]
pub struct RoleOutput {
    pub role: Role,
}

#[derive(Debug, Serialize)]
pub struct ListRolesOutput {
    pub roles: Vec<Role>,
}

#[derive(Debug, Serialize)]
pub struct Empty {}

fn identity(engine: &Engine) -> Result<&Identity, EngineError> {
    engine.identity().ok_or(EngineError::Unsupported {
        service: "hail",
        operation: "roles (this server has no identity service)".to_owned(),
    })
}

fn not_found(name: &str) -> EngineError {
    EngineError::NotFound {
        what: format!("role {name}"),
    }
}

pub async fn create_role(
    engine: &Engine,
    input: CreateRoleInput,
) -> Result<RoleOutput, EngineError> {
    let identity = identity(engine)?;
    iam::validate_role_name(&input.role_name).map_err(|m| EngineError::invalid("roleName", m))?;
    if input.description.as_ref().is_some_and(|d| d.len() > 1000) {
        return Err(EngineError::invalid(
            "description",
            "at most 1000 characters",
        ));
    }
    let role = Role {
        role_arn: iam::role_arn(&engine.scope().account, &input.role_name),
        role_name: input.role_name,
        description: input.description,
        policy: input.policy.parse()?,
        created_at: engine.now(),
    };
    let stored = role.clone();
    engine
        .store()
        .write(move |tx| identity::insert_role(tx, &stored))
        .await
        .map_err(|e| match e {
            hail_store::StoreError::Conflict { what } => EngineError::AlreadyExists { what },
            other => other.into(),
        })?;
    identity.role_changed(&role.role_name, Some(role.clone()));
    Ok(RoleOutput { role })
}

pub async fn get_role(engine: &Engine, input: RoleNameInput) -> Result<RoleOutput, EngineError> {
    let name = input.role_name;
    let lookup = name.clone();
    let role = engine
        .store()
        .read(move |conn| identity::get_role(conn, &lookup))
        .await?;
    role.map(|role| RoleOutput { role })
        .ok_or_else(|| not_found(&name))
}

pub async fn list_roles(engine: &Engine) -> Result<ListRolesOutput, EngineError> {
    let roles = engine.store().read(identity::list_roles).await?;
    Ok(ListRolesOutput { roles })
}

pub async fn put_role_policy(
    engine: &Engine,
    input: PutRolePolicyInput,
) -> Result<RoleOutput, EngineError> {
    let identity = identity(engine)?;
    let policy = input.policy.parse()?;
    let name = input.role_name;
    let lookup = name.clone();
    let updated = engine
        .store()
        .write(move |tx| {
            let Some(mut role) = identity::get_role(tx, &lookup)? else {
                return Ok::<_, hail_store::StoreError>(None);
            };
            role.policy = policy;
            identity::update_role(tx, &role)?;
            Ok(Some(role))
        })
        .await?;
    let role = updated.ok_or_else(|| not_found(&name))?;
    identity.role_changed(&role.role_name, Some(role.clone()));
    Ok(RoleOutput { role })
}

pub async fn delete_role(engine: &Engine, input: RoleNameInput) -> Result<Empty, EngineError> {
    let identity = identity(engine)?;
    let name = input.role_name;
    let lookup = name.clone();
    let deleted = engine
        .store()
        .write(move |tx| identity::delete_role(tx, &lookup))
        .await?;
    if !deleted {
        return Err(not_found(&name));
    }
    identity.role_changed(&name, None);
    Ok(Empty {})
}
