//! Tasks, keyed by task id, with optimistic concurrency: every update names
//! the version it read, and loses with [`StoreError::Conflict`] if another
//! writer got there first. Controllers then re-read and reconcile again.

use std::collections::BTreeMap;

use hail_model::arn::{EcsArn, EcsResource};
use hail_model::ecs::task::LaunchType;
use hail_model::ecs::{Task, TaskStatus, Timestamp};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row, Transaction};

use crate::error::{parse_doc, to_doc, Result, SqlContext, StoreError};
use crate::page::{self, Page};

const PAGE_KIND: &str = "tasks";

/// A task as stored, with the version an update must present.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTask {
    pub task: Task,
    pub version: u64,
}

/// A task's id and ARN, as lists return them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskKey {
    pub id: String,
    pub arn: String,
}

/// The columns derived from a task document.
struct Indexed {
    id: String,
    family: String,
    service_name: Option<String>,
    created_at: i64,
}

fn indexed(task: &Task) -> Result<Indexed> {
    let bad = |what: &str, reason: String| StoreError::InvalidArgument {
        what: format!("task {what}"),
        reason,
    };
    let id = match EcsArn::parse(&task.task_arn) {
        Ok(EcsArn {
            resource: EcsResource::Task { id, .. },
            ..
        }) => id,
        Ok(_) => return Err(bad(&task.task_arn, "is not a task ARN".into())),
        Err(e) => return Err(bad(&task.task_arn, e.to_string())),
    };
    let family = match EcsArn::parse(&task.task_definition_arn) {
        Ok(EcsArn {
            resource: EcsResource::TaskDefinition { family, .. },
            ..
        }) => family,
        Ok(_) => {
            return Err(bad(
                &id,
                format!("{} is not a task definition ARN", task.task_definition_arn),
            ))
        }
        Err(e) => return Err(bad(&id, e.to_string())),
    };
    Ok(Indexed {
        service_name: task
            .group
            .as_deref()
            .and_then(|g| g.strip_prefix("service:"))
            .map(str::to_owned),
        created_at: task
            .created_at
            .map_or_else(crate::now_millis, Timestamp::as_millis),
        id,
        family,
    })
}

/// The id of the task `task` describes (the last segment of its ARN).
pub fn task_id(task: &Task) -> Result<String> {
    indexed(task).map(|i| i.id)
}

/// Stores a new task at version `task.version`; a task with the same id is a
/// conflict.
pub fn insert(tx: &Transaction, task: &Task) -> Result<StoredTask> {
    let ix = indexed(task)?;
    let result = tx.execute(
        "INSERT INTO tasks (id, arn, cluster_arn, family, desired_status, last_status,
                            started_by, service_name, launch_type, created_at, stopped_at,
                            version, doc)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            ix.id,
            task.task_arn,
            task.cluster_arn,
            ix.family,
            task.desired_status.as_str(),
            task.last_status.as_str(),
            task.started_by,
            ix.service_name,
            task.launch_type.map(LaunchType::as_str),
            ix.created_at,
            task.stopped_at.map(Timestamp::as_millis),
            task.version,
            to_doc("task", task)?
        ],
    );
    match result {
        Ok(_) => Ok(StoredTask {
            task: task.clone(),
            version: task.version,
        }),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(StoreError::Conflict {
                what: format!("task {} already exists", ix.id),
            })
        }
        Err(e) => Err(e).ctx("insert task"),
    }
}

fn stored(what: &str, row: (String, u64)) -> Result<StoredTask> {
    Ok(StoredTask {
        task: parse_doc(what, &row.0)?,
        version: row.1,
    })
}

/// The task with id `id`.
pub fn get(conn: &Connection, id: &str) -> Result<Option<StoredTask>> {
    let row = conn
        .query_row("SELECT doc, version FROM tasks WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .ctx("get task")?;
    row.map(|r| stored(&format!("task {id}"), r)).transpose()
}

/// Replaces task `id` if it is still at `expected_version`, storing `task`
/// at the next version (its `version` field is set to match, so the version
/// clients see and the concurrency token are one number).
pub fn update(
    tx: &Transaction,
    id: &str,
    expected_version: u64,
    task: &Task,
) -> Result<StoredTask> {
    let ix = indexed(task)?;
    if ix.id != id {
        return Err(StoreError::InvalidArgument {
            what: format!("task {id}"),
            reason: format!("document describes task {}", ix.id),
        });
    }
    let version = expected_version + 1;
    let mut task = task.clone();
    task.version = version;
    let n = tx
        .execute(
            "UPDATE tasks SET desired_status = ?3, last_status = ?4, started_by = ?5,
                              service_name = ?6, launch_type = ?7, stopped_at = ?8,
                              version = ?9, doc = ?10
             WHERE id = ?1 AND version = ?2",
            params![
                id,
                expected_version,
                task.desired_status.as_str(),
                task.last_status.as_str(),
                task.started_by,
                ix.service_name,
                task.launch_type.map(LaunchType::as_str),
                task.stopped_at.map(Timestamp::as_millis),
                version,
                to_doc("task", &task)?
            ],
        )
        .ctx("update task")?;
    if n == 1 {
        return Ok(StoredTask { task, version });
    }
    let current: Option<u64> = tx
        .query_row("SELECT version FROM tasks WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()
        .ctx("read task version")?;
    Err(match current {
        None => StoreError::NotFound {
            what: format!("task {id}"),
        },
        Some(found) => StoreError::Conflict {
            what: format!("task {id} is at version {found}, not {expected_version}"),
        },
    })
}

/// What `ListTasks` filters on; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub cluster_arn: Option<String>,
    pub family: Option<String>,
    pub desired_status: Option<TaskStatus>,
    pub started_by: Option<String>,
    pub service_name: Option<String>,
    pub launch_type: Option<LaunchType>,
}

/// Tasks matching `filter`, newest first, `max_results` (1–100, default 100)
/// at a time.
pub fn list(
    conn: &Connection,
    filter: &ListFilter,
    max_results: Option<u32>,
    next_token: Option<&str>,
) -> Result<Page<TaskKey>> {
    let limit = page::max_results(max_results, 100, 100)?;
    let mut sql = String::from("SELECT id, arn, created_at, seq FROM tasks WHERE 1 = 1");
    let mut args: Vec<Value> = Vec::new();
    let mut eq = |column: &str, value: Option<String>| {
        if let Some(v) = value {
            sql.push_str(&format!(" AND {column} = ?"));
            args.push(Value::Text(v));
        }
    };
    eq("cluster_arn", filter.cluster_arn.clone());
    eq("family", filter.family.clone());
    eq(
        "desired_status",
        filter.desired_status.map(|s| s.as_str().to_owned()),
    );
    eq("started_by", filter.started_by.clone());
    eq("service_name", filter.service_name.clone());
    eq(
        "launch_type",
        filter.launch_type.map(|l| l.as_str().to_owned()),
    );
    if let Some(token) = next_token {
        let (created_at, seq): (i64, i64) = page::decode(PAGE_KIND, token)?;
        sql.push_str(" AND (created_at, seq) < (?, ?)");
        args.push(Value::Integer(created_at));
        args.push(Value::Integer(seq));
    }
    sql.push_str(" ORDER BY created_at DESC, seq DESC LIMIT ?");
    args.push(Value::Integer(i64::from(limit) + 1));
    let mut stmt = conn.prepare(&sql).ctx("list tasks")?;
    let rows = stmt
        .query_map(params_from_iter(args), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .ctx("list tasks")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("list tasks")?;
    page::paginate(
        rows,
        limit,
        PAGE_KIND,
        |(_, _, created, seq)| (*created, *seq),
        |(id, arn, _, _)| Ok(TaskKey { id, arn }),
    )
}

/// How many tasks of the cluster are in each `lastStatus` (statuses with no
/// tasks are absent), for DescribeClusters' running and pending counts.
pub fn count_by_last_status(
    conn: &Connection,
    cluster_arn: &str,
) -> Result<BTreeMap<TaskStatus, u64>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT last_status, COUNT(*) FROM tasks WHERE cluster_arn = ?1 GROUP BY last_status",
        )
        .ctx("count tasks")?;
    let rows = stmt
        .query_map([cluster_arn], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?))
        })
        .ctx("count tasks")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("count tasks")?;
    rows.into_iter()
        .map(|(status, n)| {
            let s: TaskStatus = serde_json::from_value(serde_json::Value::String(status.clone()))
                .map_err(|e| StoreError::Corrupt {
                what: format!("task status {status:?}"),
                reason: e.to_string(),
            })?;
            Ok((s, n))
        })
        .collect()
}

/// Deletes STOPPED tasks that stopped before `cutoff`, with their tags, and
/// returns their ids (so their on-disk directories can go too).
pub fn delete_stopped_before(tx: &Transaction, cutoff: Timestamp) -> Result<Vec<String>> {
    let mut stmt = tx
        .prepare_cached(
            "DELETE FROM tasks WHERE last_status = 'STOPPED' AND stopped_at < ?1
             RETURNING id, arn",
        )
        .ctx("delete stopped tasks")?;
    let gone = stmt
        .query_map([cutoff.as_millis()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .ctx("delete stopped tasks")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("delete stopped tasks")?;
    let mut ids = Vec::with_capacity(gone.len());
    for (id, arn) in gone {
        crate::tags::remove_all(tx, &arn)?;
        ids.push(id);
    }
    ids.sort();
    Ok(ids)
}

/// The memory (MiB) of every task that has not stopped, from the task-level
/// `memory` each task was started with: what the host has promised.
pub fn reserved_memory_mib(conn: &Connection) -> Result<u64> {
    let total: Option<i64> = conn
        .query_row(
            "SELECT SUM(CAST(json_extract(doc, '$.memory') AS INTEGER)) FROM tasks
             WHERE last_status != 'STOPPED'",
            [],
            |r| r.get(0),
        )
        .ctx("sum reserved memory")?;
    Ok(u64::try_from(total.unwrap_or(0)).unwrap_or(0))
}

/// The tasks of service `service_name` in the cluster whose lastStatus is
/// not STOPPED, oldest first: what the service controller reconciles.
pub fn list_unfinished_of_service(
    conn: &Connection,
    cluster_arn: &str,
    service_name: &str,
) -> Result<Vec<StoredTask>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, doc, version FROM tasks
             WHERE cluster_arn = ?1 AND service_name = ?2 AND last_status != 'STOPPED'
             ORDER BY created_at, seq",
        )
        .ctx("list service tasks")?;
    let rows = stmt
        .query_map(params![cluster_arn, service_name], |r: &Row| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, u64>(2)?,
            ))
        })
        .ctx("list service tasks")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("list service tasks")?;
    rows.into_iter()
        .map(|(id, doc, v)| stored(&format!("task {id}"), (doc, v)))
        .collect()
}

/// Every task whose lastStatus is not STOPPED, oldest first: what the engine
/// must re-adopt or reconcile after a restart.
pub fn list_unfinished(conn: &Connection) -> Result<Vec<StoredTask>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, doc, version FROM tasks WHERE last_status != 'STOPPED'
             ORDER BY created_at, seq",
        )
        .ctx("list unfinished tasks")?;
    let rows = stmt
        .query_map([], |r: &Row| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, u64>(2)?,
            ))
        })
        .ctx("list unfinished tasks")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("list unfinished tasks")?;
    rows.into_iter()
        .map(|(id, doc, v)| stored(&format!("task {id}"), (doc, v)))
        .collect()
}
