//! Task definition operations: RegisterTaskDefinition, DescribeTaskDefinition,
//! ListTaskDefinitions, ListTaskDefinitionFamilies and
//! DeregisterTaskDefinition, with ECS's semantics.

use hail_model::arn::TaskDefinitionRef;
use hail_model::ecs::task_definition::{
    RegisterTaskDefinitionInput, RegisterTaskDefinitionOutput, TaskDefinitionStatus,
};
use hail_model::ecs::{TaskDefinition, ValidationError};
use hail_store::tags;
use hail_store::task_definitions::{self, FamilyStatus, ListFilter, Sort};
use serde::{Deserialize, Serialize};

use crate::{Engine, EngineError};

/// Registers the next revision of the input's family (1, 2, … per family,
/// never reused) with its tags, stamped with the engine's clock.
pub async fn register_task_definition(
    engine: &Engine,
    input: RegisterTaskDefinitionInput,
) -> Result<RegisterTaskDefinitionOutput, EngineError> {
    let scope = engine.scope().clone();
    let now = engine.now();
    // The engine serves only the account's root credentials, so every
    // registration is the root user's.
    let registered_by = format!("arn:aws:iam::{}:root", scope.account);
    let family = input.family.clone();
    engine
        .store()
        .write(move |tx| {
            let mut tags_in = Vec::new();
            let def = task_definitions::try_register(tx, &family, |revision| {
                let (def, tags) =
                    TaskDefinition::register(input, &scope, revision, now, Some(registered_by))?;
                tags_in = tags;
                Ok::<_, EngineError>(def)
            })?;
            tags::set(tx, &def.task_definition_arn, &tags_in)?;
            let tags = tags::list(tx, &def.task_definition_arn)?;
            Ok::<_, EngineError>(RegisterTaskDefinitionOutput {
                task_definition: def,
                tags,
            })
        })
        .await
}

/// The optional details DescribeTaskDefinition adds on request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskDefinitionField {
    Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DescribeTaskDefinitionInput {
    /// `family`, `family:revision` or a task definition ARN.
    pub task_definition: String,
    #[serde(default)]
    pub include: Option<Vec<TaskDefinitionField>>,
}

/// Describes a revision in any status; `family` alone names its latest ACTIVE
/// revision. Tags are reported only when `include` asks for TAGS.
pub async fn describe_task_definition(
    engine: &Engine,
    input: DescribeTaskDefinitionInput,
) -> Result<RegisterTaskDefinitionOutput, EngineError> {
    let reference = resolve(engine, &input.task_definition)?;
    let with_tags = input
        .include
        .unwrap_or_default()
        .contains(&TaskDefinitionField::Tags);
    engine
        .store()
        .read(move |conn| {
            let found = match reference.revision {
                Some(revision) => task_definitions::get(conn, &reference.family, revision)?,
                None => task_definitions::latest_active(conn, &reference.family)?,
            };
            let def = found.ok_or_else(|| EngineError::TaskDefinitionNotDescribed {
                reference: reference.to_string(),
            })?;
            let tags = if with_tags {
                tags::list(conn, &def.task_definition_arn)?
            } else {
                Vec::new()
            };
            Ok::<_, EngineError>(RegisterTaskDefinitionOutput {
                task_definition: def,
                tags,
            })
        })
        .await
}

/// The order ListTaskDefinitions returns revisions in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SortOrder {
    Asc,
    Desc,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListTaskDefinitionsInput {
    /// Despite its name, a whole family name, as in ECS.
    #[serde(default)]
    pub family_prefix: Option<String>,
    /// ACTIVE when absent, as in ECS.
    #[serde(default)]
    pub status: Option<TaskDefinitionStatus>,
    #[serde(default)]
    pub sort: Option<SortOrder>,
    #[serde(default)]
    pub next_token: Option<String>,
    #[serde(default)]
    pub max_results: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTaskDefinitionsOutput {
    pub task_definition_arns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// The ARNs of the revisions in one status (ACTIVE by default), by family
/// and revision, a page at a time.
pub async fn list_task_definitions(
    engine: &Engine,
    input: ListTaskDefinitionsInput,
) -> Result<ListTaskDefinitionsOutput, EngineError> {
    let filter = ListFilter {
        family: input.family_prefix,
        status: Some(input.status.unwrap_or(TaskDefinitionStatus::Active)),
        sort: match input.sort {
            Some(SortOrder::Desc) => Sort::Desc,
            Some(SortOrder::Asc) | None => Sort::Asc,
        },
    };
    let page = engine
        .store()
        .read(move |conn| {
            task_definitions::list_arns(
                conn,
                &filter,
                input.max_results,
                input.next_token.as_deref(),
            )
        })
        .await?;
    Ok(ListTaskDefinitionsOutput {
        task_definition_arns: page.items,
        next_token: page.next_token,
    })
}

/// Which families ListTaskDefinitionFamilies reports, on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FamilyStatusParam {
    Active,
    Inactive,
    All,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListTaskDefinitionFamiliesInput {
    #[serde(default)]
    pub family_prefix: Option<String>,
    /// ALL when absent, as in ECS.
    #[serde(default)]
    pub status: Option<FamilyStatusParam>,
    #[serde(default)]
    pub next_token: Option<String>,
    #[serde(default)]
    pub max_results: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTaskDefinitionFamiliesOutput {
    pub families: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// Family names starting with `familyPrefix`, in name order: ACTIVE families
/// have an ACTIVE revision, INACTIVE ones have none.
pub async fn list_task_definition_families(
    engine: &Engine,
    input: ListTaskDefinitionFamiliesInput,
) -> Result<ListTaskDefinitionFamiliesOutput, EngineError> {
    let status = match input.status {
        Some(FamilyStatusParam::Active) => FamilyStatus::Active,
        Some(FamilyStatusParam::Inactive) => FamilyStatus::Inactive,
        Some(FamilyStatusParam::All) | None => FamilyStatus::All,
    };
    let page = engine
        .store()
        .read(move |conn| {
            task_definitions::list_families(
                conn,
                input.family_prefix.as_deref(),
                status,
                input.max_results,
                input.next_token.as_deref(),
            )
        })
        .await?;
    Ok(ListTaskDefinitionFamiliesOutput {
        families: page.items,
        next_token: page.next_token,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeregisterTaskDefinitionInput {
    /// `family:revision` or a task definition ARN; ECS requires the revision.
    pub task_definition: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeregisterTaskDefinitionOutput {
    pub task_definition: TaskDefinition,
}

/// Marks the revision INACTIVE, stamping `deregisteredAt`, and returns it;
/// deregistering an INACTIVE revision again returns it unchanged, as in ECS.
pub async fn deregister_task_definition(
    engine: &Engine,
    input: DeregisterTaskDefinitionInput,
) -> Result<DeregisterTaskDefinitionOutput, EngineError> {
    let reference = resolve(engine, &input.task_definition)?;
    let Some(revision) = reference.revision else {
        return Err(ValidationError::client(
            "taskDefinition",
            format!(
                "{reference} names no revision; deregister family:revision or a task definition ARN"
            ),
        )
        .into());
    };
    let at = engine.now();
    let task_definition = engine
        .store()
        .write(move |tx| {
            if task_definitions::get(tx, &reference.family, revision)?.is_none() {
                return Err(EngineError::TaskDefinitionMissing {
                    reference: reference.to_string(),
                });
            }
            Ok(task_definitions::set_status(
                tx,
                &reference.family,
                revision,
                TaskDefinitionStatus::Inactive,
                at,
            )?)
        })
        .await?;
    Ok(DeregisterTaskDefinitionOutput { task_definition })
}

/// The revision a `taskDefinition` parameter names.
fn resolve(engine: &Engine, value: &str) -> Result<TaskDefinitionRef, EngineError> {
    TaskDefinitionRef::parse(value, engine.scope()).map_err(|source| EngineError::Arn {
        field: "taskDefinition",
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use hail_api::{ApiError, Clock, ErrorCode, JsonApi, RequestContext, Service};
    use hail_model::arn::Scope;
    use hail_store::Store;
    use serde_json::{json, Value};

    use crate::Engine;

    /// A clock the test moves by hand.
    struct FixedClock(Mutex<SystemTime>);

    impl Clock for FixedClock {
        fn now(&self) -> SystemTime {
            *self.0.lock().unwrap()
        }
    }

    fn engine() -> (tempfile::TempDir, Arc<FixedClock>, Engine) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("state.db")).unwrap();
        let clock = Arc::new(FixedClock(Mutex::new(
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_250),
        )));
        let engine =
            Engine::new(store, Scope::new("eu-west-1", "123456789012")).with_clock(clock.clone());
        (dir, clock, engine)
    }

    async fn call(engine: &Engine, op: &str, body: Value) -> Result<Value, ApiError> {
        let ctx = RequestContext {
            request_id: "r".into(),
            access_key_id: "AKIA".into(),
            region: "eu-west-1".into(),
        };
        engine.call(Service::Ecs, op, body, ctx).await
    }

    fn tom_thumb() -> Value {
        serde_json::from_str(include_str!(
            "../../../hail-model/testdata/tom-thumb-task.json"
        ))
        .unwrap()
    }

    fn simple(family: &str) -> Value {
        json!({
            "family": family,
            "containerDefinitions": [{"name": "app", "image": "busybox", "memory": 64}]
        })
    }

    const ARN: &str = "arn:aws:ecs:eu-west-1:123456789012:task-definition/tom-thumb-task";

    #[tokio::test(flavor = "multi_thread")]
    async fn register_numbers_revisions_and_fills_in_what_ecs_adds() {
        let (_dir, _clock, engine) = engine();
        let mut body = tom_thumb();
        body["tags"] = json!([{"key": "app", "value": "thumbs"}]);
        let first = call(&engine, "RegisterTaskDefinition", body.clone())
            .await
            .unwrap();
        let def = &first["taskDefinition"];
        assert_eq!(def["taskDefinitionArn"], format!("{ARN}:1"));
        assert_eq!(def["revision"], 1);
        assert_eq!(def["status"], "ACTIVE");
        assert_eq!(def["cpu"], "256");
        assert_eq!(def["memory"], "1024");
        assert_eq!(def["networkMode"], "awsvpc");
        assert_eq!(def["compatibilities"], json!(["EC2", "FARGATE"]));
        assert_eq!(def["registeredAt"], json!(1_700_000_000.25));
        assert_eq!(def["registeredBy"], "arn:aws:iam::123456789012:root");
        assert_eq!(
            def["containerDefinitions"][0]["environment"],
            body["containerDefinitions"][0]["environment"]
        );
        assert_eq!(first["tags"], json!([{"key": "app", "value": "thumbs"}]));

        let second = call(&engine, "RegisterTaskDefinition", tom_thumb())
            .await
            .unwrap();
        assert_eq!(second["taskDefinition"]["revision"], 2);
        assert!(second.get("tags").is_none(), "{second}");
        let other = call(&engine, "RegisterTaskDefinition", simple("other"))
            .await
            .unwrap();
        assert_eq!(other["taskDefinition"]["revision"], 1);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn register_rejects_bad_input_naming_the_field() {
        let (_dir, _clock, engine) = engine();
        let mut body = tom_thumb();
        body["memory"] = json!("4096");
        let err = call(&engine, "RegisterTaskDefinition", body)
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::ClientException);
        assert!(
            err.message()
                .contains("No Fargate configuration exists for given values"),
            "{}",
            err.message()
        );

        let err = call(&engine, "RegisterTaskDefinition", simple("bad family"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::ClientException);
        assert!(err.message().contains("family"), "{}", err.message());

        let mut body = simple("web");
        body["containerDefinitions"][0]["imag"] = json!("x");
        let err = call(&engine, "RegisterTaskDefinition", body)
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidParameterException);
        assert!(err.message().contains("imag"), "{}", err.message());

        // Refused registrations use up no revision.
        let out = call(&engine, "RegisterTaskDefinition", simple("web"))
            .await
            .unwrap();
        assert_eq!(out["taskDefinition"]["revision"], 1);
        let out = call(&engine, "RegisterTaskDefinition", tom_thumb())
            .await
            .unwrap();
        assert_eq!(out["taskDefinition"]["revision"], 1);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn describe_by_family_revision_and_arn() {
        let (_dir, _clock, engine) = engine();
        let mut body = tom_thumb();
        body["tags"] = json!([{"key": "app", "value": "thumbs"}]);
        call(&engine, "RegisterTaskDefinition", body).await.unwrap();
        call(&engine, "RegisterTaskDefinition", tom_thumb())
            .await
            .unwrap();

        let latest = call(
            &engine,
            "DescribeTaskDefinition",
            json!({"taskDefinition": "tom-thumb-task"}),
        )
        .await
        .unwrap();
        assert_eq!(latest["taskDefinition"]["revision"], 2);
        assert!(latest.get("tags").is_none(), "{latest}");

        let first = call(
            &engine,
            "DescribeTaskDefinition",
            json!({"taskDefinition": "tom-thumb-task:1", "include": ["TAGS"]}),
        )
        .await
        .unwrap();
        assert_eq!(first["taskDefinition"]["revision"], 1);
        assert_eq!(first["tags"], json!([{"key": "app", "value": "thumbs"}]));

        let by_arn = call(
            &engine,
            "DescribeTaskDefinition",
            json!({"taskDefinition": format!("{ARN}:2")}),
        )
        .await
        .unwrap();
        assert_eq!(by_arn["taskDefinition"], latest["taskDefinition"]);

        // Family alone skips INACTIVE revisions; an explicit revision does not.
        call(
            &engine,
            "DeregisterTaskDefinition",
            json!({"taskDefinition": "tom-thumb-task:2"}),
        )
        .await
        .unwrap();
        let latest = call(
            &engine,
            "DescribeTaskDefinition",
            json!({"taskDefinition": "tom-thumb-task"}),
        )
        .await
        .unwrap();
        assert_eq!(latest["taskDefinition"]["revision"], 1);
        let inactive = call(
            &engine,
            "DescribeTaskDefinition",
            json!({"taskDefinition": "tom-thumb-task:2"}),
        )
        .await
        .unwrap();
        assert_eq!(inactive["taskDefinition"]["status"], "INACTIVE");

        for missing in ["ghost", "tom-thumb-task:3"] {
            let err = call(
                &engine,
                "DescribeTaskDefinition",
                json!({"taskDefinition": missing}),
            )
            .await
            .unwrap_err();
            assert_eq!(err.code(), ErrorCode::ClientException);
            assert!(
                err.message()
                    .starts_with("Unable to describe task definition."),
                "{}",
                err.message()
            );
            assert!(err.message().contains(missing), "{}", err.message());
        }
        let err = call(
            &engine,
            "DescribeTaskDefinition",
            json!({"taskDefinition": "arn:aws:ecs:eu-west-1:999999999999:task-definition/x:1"}),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidParameterException);
        assert!(
            err.message().contains("taskDefinition"),
            "{}",
            err.message()
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn list_filters_sorts_and_paginates() {
        let (_dir, _clock, engine) = engine();
        for family in ["b", "a", "b", "c"] {
            call(&engine, "RegisterTaskDefinition", simple(family))
                .await
                .unwrap();
        }
        call(
            &engine,
            "DeregisterTaskDefinition",
            json!({"taskDefinition": "c:1"}),
        )
        .await
        .unwrap();
        let arn =
            |f: &str, r: u32| format!("arn:aws:ecs:eu-west-1:123456789012:task-definition/{f}:{r}");

        let all = call(&engine, "ListTaskDefinitions", json!({}))
            .await
            .unwrap();
        assert_eq!(
            all["taskDefinitionArns"],
            json!([arn("a", 1), arn("b", 1), arn("b", 2)])
        );
        let desc = call(
            &engine,
            "ListTaskDefinitions",
            json!({"familyPrefix": "b", "sort": "DESC"}),
        )
        .await
        .unwrap();
        assert_eq!(
            desc["taskDefinitionArns"],
            json!([arn("b", 2), arn("b", 1)])
        );
        let inactive = call(
            &engine,
            "ListTaskDefinitions",
            json!({"status": "INACTIVE"}),
        )
        .await
        .unwrap();
        assert_eq!(inactive["taskDefinitionArns"], json!([arn("c", 1)]));

        let page = call(&engine, "ListTaskDefinitions", json!({"maxResults": 2}))
            .await
            .unwrap();
        assert_eq!(
            page["taskDefinitionArns"],
            json!([arn("a", 1), arn("b", 1)])
        );
        let token = page["nextToken"].as_str().unwrap().to_owned();
        let rest = call(
            &engine,
            "ListTaskDefinitions",
            json!({"maxResults": 2, "nextToken": token}),
        )
        .await
        .unwrap();
        assert_eq!(rest["taskDefinitionArns"], json!([arn("b", 2)]));
        assert!(rest.get("nextToken").is_none(), "{rest}");

        for body in [
            json!({"maxResults": 0}),
            json!({"nextToken": "garbage"}),
            json!({"sort": "SIDEWAYS"}),
        ] {
            let err = call(&engine, "ListTaskDefinitions", body)
                .await
                .unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidParameterException);
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn families_filter_by_prefix_and_status() {
        let (_dir, _clock, engine) = engine();
        for family in ["web-api", "web-ui", "worker"] {
            call(&engine, "RegisterTaskDefinition", simple(family))
                .await
                .unwrap();
        }
        call(
            &engine,
            "DeregisterTaskDefinition",
            json!({"taskDefinition": "web-ui:1"}),
        )
        .await
        .unwrap();
        let cases = [
            (json!({}), json!(["web-api", "web-ui", "worker"])),
            (json!({"familyPrefix": "web"}), json!(["web-api", "web-ui"])),
            (json!({"status": "ACTIVE"}), json!(["web-api", "worker"])),
            (json!({"status": "INACTIVE"}), json!(["web-ui"])),
            (
                json!({"status": "ALL", "familyPrefix": "wo"}),
                json!(["worker"]),
            ),
        ];
        for (body, families) in cases {
            let out = call(&engine, "ListTaskDefinitionFamilies", body.clone())
                .await
                .unwrap();
            assert_eq!(out["families"], families, "{body}");
        }
        let page = call(
            &engine,
            "ListTaskDefinitionFamilies",
            json!({"maxResults": 1}),
        )
        .await
        .unwrap();
        assert_eq!(page["families"], json!(["web-api"]));
        let token = page["nextToken"].as_str().unwrap().to_owned();
        let next = call(
            &engine,
            "ListTaskDefinitionFamilies",
            json!({"maxResults": 1, "nextToken": token}),
        )
        .await
        .unwrap();
        assert_eq!(next["families"], json!(["web-ui"]));
        let err = call(
            &engine,
            "ListTaskDefinitionFamilies",
            json!({"status": "DELETED"}),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidParameterException);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn deregister_marks_inactive_at_the_clock() {
        let (_dir, clock, engine) = engine();
        call(&engine, "RegisterTaskDefinition", tom_thumb())
            .await
            .unwrap();
        *clock.0.lock().unwrap() = UNIX_EPOCH + Duration::from_millis(1_700_000_060_500);
        let out = call(
            &engine,
            "DeregisterTaskDefinition",
            json!({"taskDefinition": format!("{ARN}:1")}),
        )
        .await
        .unwrap();
        let def = &out["taskDefinition"];
        assert_eq!(def["status"], "INACTIVE");
        assert_eq!(def["deregisteredAt"], json!(1_700_000_060.5));
        assert_eq!(def["registeredAt"], json!(1_700_000_000.25));

        // Again: unchanged, still the first deregistration time.
        *clock.0.lock().unwrap() = UNIX_EPOCH + Duration::from_millis(1_700_000_999_000);
        let again = call(
            &engine,
            "DeregisterTaskDefinition",
            json!({"taskDefinition": "tom-thumb-task:1"}),
        )
        .await
        .unwrap();
        assert_eq!(again["taskDefinition"], out["taskDefinition"]);

        let err = call(
            &engine,
            "DeregisterTaskDefinition",
            json!({"taskDefinition": "tom-thumb-task:9"}),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), ErrorCode::ClientException);
        assert!(
            err.message()
                .starts_with("The specified task definition does not exist."),
            "{}",
            err.message()
        );
        let err = call(
            &engine,
            "DeregisterTaskDefinition",
            json!({"taskDefinition": "tom-thumb-task"}),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), ErrorCode::ClientException);
        assert!(
            err.message().contains("taskDefinition"),
            "{}",
            err.message()
        );

        // A new registration still gets a fresh revision.
        let next = call(&engine, "RegisterTaskDefinition", tom_thumb())
            .await
            .unwrap();
        assert_eq!(next["taskDefinition"]["revision"], 2);
    }
}
