//! Task definition revisions. Revisions are allocated per family from a
//! counter that only grows, so a revision number is never handed out twice,
//! even after the revision it named was deregistered or deleted.

use hail_model::ecs::task_definition::TaskDefinitionStatus;
use hail_model::ecs::{TaskDefinition, Timestamp};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Transaction};

use crate::error::{parse_doc, to_doc, Result, SqlContext, StoreError};
use crate::page::{self, Page};

const ARN_PAGE: &str = "task-definitions";
const FAMILY_PAGE: &str = "task-definition-families";

/// Order of `ListTaskDefinitions` results: by family, then revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    #[default]
    Asc,
    Desc,
}

/// Registers the next revision of `family`: allocates the revision number and
/// stores what `build` makes of it, atomically with the rest of `tx`.
pub fn register(
    tx: &Transaction,
    family: &str,
    build: impl FnOnce(u32) -> TaskDefinition,
) -> Result<TaskDefinition> {
    try_register(tx, family, |rev| Ok::<_, StoreError>(build(rev)))
}

/// [`register`] with a `build` that may fail (validation happens once the
/// revision, and so the ARN, is known); its error rolls back with `tx`.
pub fn try_register<E: From<StoreError>>(
    tx: &Transaction,
    family: &str,
    build: impl FnOnce(u32) -> Result<TaskDefinition, E>,
) -> Result<TaskDefinition, E> {
    let revision: u32 = tx
        .query_row(
            "INSERT INTO task_definition_families (family, last_revision) VALUES (?1, 1)
             ON CONFLICT (family) DO UPDATE SET last_revision = last_revision + 1
             RETURNING last_revision",
            [family],
            |r| r.get(0),
        )
        .ctx("allocate task definition revision")?;
    let def = build(revision)?;
    if def.family != family || def.revision != revision {
        return Err(StoreError::InvalidArgument {
            what: format!("task definition {family}:{revision}"),
            reason: format!("built as {}:{}", def.family, def.revision),
        }
        .into());
    }
    tx.execute(
        "INSERT INTO task_definitions (family, revision, arn, status, doc)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            family,
            revision,
            def.task_definition_arn,
            def.status.as_str(),
            to_doc("task definition", &def)?
        ],
    )
    .ctx("insert task definition")?;
    Ok(def)
}

/// Revision `revision` of `family`, whatever its status.
pub fn get(conn: &Connection, family: &str, revision: u32) -> Result<Option<TaskDefinition>> {
    let doc: Option<String> = conn
        .query_row(
            "SELECT doc FROM task_definitions WHERE family = ?1 AND revision = ?2",
            params![family, revision],
            |r| r.get(0),
        )
        .optional()
        .ctx("get task definition")?;
    doc.map(|d| parse_doc(&format!("task definition {family}:{revision}"), &d))
        .transpose()
}

/// The highest ACTIVE revision of `family` (what `family` alone names in
/// RunTask).
pub fn latest_active(conn: &Connection, family: &str) -> Result<Option<TaskDefinition>> {
    let row: Option<(u32, String)> = conn
        .query_row(
            "SELECT revision, doc FROM task_definitions
             WHERE family = ?1 AND status = 'ACTIVE' ORDER BY revision DESC LIMIT 1",
            [family],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .ctx("get latest task definition")?;
    row.map(|(rev, d)| parse_doc(&format!("task definition {family}:{rev}"), &d))
        .transpose()
}

/// Replaces the stored document of an existing revision.
pub fn update(tx: &Transaction, def: &TaskDefinition) -> Result<()> {
    let n = tx
        .execute(
            "UPDATE task_definitions SET status = ?3, doc = ?4 WHERE family = ?1 AND revision = ?2",
            params![
                def.family,
                def.revision,
                def.status.as_str(),
                to_doc("task definition", def)?
            ],
        )
        .ctx("update task definition")?;
    if n == 0 {
        return Err(StoreError::NotFound {
            what: format!("task definition {}", def.family_revision()),
        });
    }
    Ok(())
}

/// Sets the status of a revision: ACTIVE → INACTIVE records `at` as
/// `deregisteredAt`; INACTIVE → DELETE_IN_PROGRESS marks it for deletion.
/// Setting the status it already has returns it unchanged, as deregistering
/// twice does in ECS. Any other move is a conflict.
pub fn set_status(
    tx: &Transaction,
    family: &str,
    revision: u32,
    status: TaskDefinitionStatus,
    at: Timestamp,
) -> Result<TaskDefinition> {
    let mut def = get(tx, family, revision)?.ok_or_else(|| StoreError::NotFound {
        what: format!("task definition {family}:{revision}"),
    })?;
    if def.status == status {
        return Ok(def);
    }
    let moved = match status {
        TaskDefinitionStatus::Inactive => def.deregister(at),
        TaskDefinitionStatus::DeleteInProgress => def.begin_delete(),
        TaskDefinitionStatus::Active => Err(hail_model::ecs::TransitionError {
            what: format!("task definition {family}:{revision}"),
            from: def.status.as_str(),
            to: status.as_str(),
        }),
    };
    moved.map_err(|e| StoreError::Conflict {
        what: e.to_string(),
    })?;
    update(tx, &def)?;
    Ok(def)
}

/// What `ListTaskDefinitions` filters on.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// ECS's `familyPrefix`, which despite its name matches a whole family.
    pub family: Option<String>,
    /// Only revisions in this status; `None` lists all.
    pub status: Option<TaskDefinitionStatus>,
    pub sort: Sort,
}

/// ARNs of the revisions matching `filter`, ordered by family and revision,
/// `max_results` (1–100, default 100) at a time.
pub fn list_arns(
    conn: &Connection,
    filter: &ListFilter,
    max_results: Option<u32>,
    next_token: Option<&str>,
) -> Result<Page<String>> {
    let limit = page::max_results(max_results, 100, 100)?;
    let mut sql = String::from("SELECT family, revision, arn FROM task_definitions WHERE 1 = 1");
    let mut args: Vec<Value> = Vec::new();
    if let Some(family) = &filter.family {
        sql.push_str(" AND family = ?");
        args.push(Value::Text(family.clone()));
    }
    if let Some(status) = filter.status {
        sql.push_str(" AND status = ?");
        args.push(Value::Text(status.as_str().to_owned()));
    }
    let (cmp, order) = match filter.sort {
        Sort::Asc => (">", "ASC"),
        Sort::Desc => ("<", "DESC"),
    };
    if let Some(token) = next_token {
        let (family, revision): (String, u32) = page::decode(ARN_PAGE, token)?;
        sql.push_str(&format!(" AND (family, revision) {cmp} (?, ?)"));
        args.push(Value::Text(family));
        args.push(Value::Integer(revision.into()));
    }
    sql.push_str(&format!(
        " ORDER BY family {order}, revision {order} LIMIT ?"
    ));
    args.push(Value::Integer(i64::from(limit) + 1));
    let mut stmt = conn.prepare(&sql).ctx("list task definitions")?;
    let rows = stmt
        .query_map(params_from_iter(args), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .ctx("list task definitions")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("list task definitions")?;
    page::paginate(
        rows,
        limit,
        ARN_PAGE,
        |(f, r, _)| (f.clone(), *r),
        |(_, _, arn)| Ok(arn),
    )
}

/// Which families `ListTaskDefinitionFamilies` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FamilyStatus {
    /// Families with at least one ACTIVE revision.
    Active,
    /// Families with no ACTIVE revision.
    Inactive,
    #[default]
    All,
}

/// Family names starting with `prefix`, in name order, `max_results` (1–100,
/// default 100) at a time.
pub fn list_families(
    conn: &Connection,
    prefix: Option<&str>,
    status: FamilyStatus,
    max_results: Option<u32>,
    next_token: Option<&str>,
) -> Result<Page<String>> {
    let limit = page::max_results(max_results, 100, 100)?;
    let after: String = match next_token {
        Some(t) => page::decode(FAMILY_PAGE, t)?,
        None => String::new(),
    };
    let has_active = "EXISTS (SELECT 1 FROM task_definitions d
                       WHERE d.family = f.family AND d.status = 'ACTIVE')";
    let status_clause = match status {
        FamilyStatus::Active => format!("AND {has_active}"),
        FamilyStatus::Inactive => format!("AND NOT {has_active}"),
        FamilyStatus::All => String::new(),
    };
    // substr() rather than LIKE: family names may contain '_', which LIKE
    // would treat as a wildcard, and the match must be case-sensitive.
    let sql = format!(
        "SELECT family FROM task_definition_families f
         WHERE substr(family, 1, length(?1)) = ?1 AND family > ?2 {status_clause}
         ORDER BY family LIMIT ?3"
    );
    let mut stmt = conn.prepare(&sql).ctx("list task definition families")?;
    let rows = stmt
        .query_map(params![prefix.unwrap_or(""), after, limit + 1], |r| {
            r.get::<_, String>(0)
        })
        .ctx("list task definition families")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("list task definition families")?;
    page::paginate(rows, limit, FAMILY_PAGE, |f| f.clone(), Ok)
}
