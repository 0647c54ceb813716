//! Target groups and listeners of Hail's load balancer.

use hail_model::elb::{Listener, TargetGroup};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::error::{parse_doc, to_doc, Result, SqlContext, StoreError};

/// Creates a target group; a taken name is a conflict.
pub fn insert_target_group(tx: &Transaction, tg: &TargetGroup) -> Result<()> {
    let n = tx
        .execute(
            "INSERT INTO target_groups (target_group_name, target_group_arn, doc)
             VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            params![
                tg.target_group_name,
                tg.target_group_arn,
                to_doc("target group", tg)?
            ],
        )
        .ctx("insert target group")?;
    if n == 0 {
        return Err(StoreError::Conflict {
            what: format!("target group {}", tg.target_group_name),
        });
    }
    Ok(())
}

/// A target group by name or ARN.
pub fn get_target_group(conn: &Connection, name_or_arn: &str) -> Result<Option<TargetGroup>> {
    let doc: Option<String> = conn
        .query_row(
            "SELECT doc FROM target_groups WHERE target_group_name = ?1 OR target_group_arn = ?1",
            [name_or_arn],
            |r| r.get(0),
        )
        .optional()
        .ctx("get target group")?;
    doc.map(|d| parse_doc("target group", &d)).transpose()
}

pub fn list_target_groups(conn: &Connection) -> Result<Vec<TargetGroup>> {
    let mut stmt = conn
        .prepare_cached("SELECT doc FROM target_groups ORDER BY target_group_name")
        .ctx("list target groups")?;
    let docs = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .ctx("list target groups")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("list target groups")?;
    docs.iter().map(|d| parse_doc("target group", d)).collect()
}

/// Replaces a target group's settings (its name and ARN stay).
pub fn update_target_group(tx: &Transaction, tg: &TargetGroup) -> Result<bool> {
    let n = tx
        .execute(
            "UPDATE target_groups SET doc = ?2 WHERE target_group_arn = ?1",
            params![tg.target_group_arn, to_doc("target group", tg)?],
        )
        .ctx("update target group")?;
    Ok(n > 0)
}

pub fn delete_target_group(tx: &Transaction, arn: &str) -> Result<bool> {
    let n = tx
        .execute(
            "DELETE FROM target_groups WHERE target_group_arn = ?1",
            [arn],
        )
        .ctx("delete target group")?;
    Ok(n > 0)
}

/// Creates a listener; a taken port is a conflict.
pub fn insert_listener(tx: &Transaction, listener: &Listener) -> Result<()> {
    let n = tx
        .execute(
            "INSERT INTO listeners (listener_arn, port, doc) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
            params![
                listener.listener_arn,
                listener.port,
                to_doc("listener", listener)?
            ],
        )
        .ctx("insert listener")?;
    if n == 0 {
        return Err(StoreError::Conflict {
            what: format!("a listener on port {}", listener.port),
        });
    }
    Ok(())
}

pub fn list_listeners(conn: &Connection) -> Result<Vec<Listener>> {
    let mut stmt = conn
        .prepare_cached("SELECT doc FROM listeners ORDER BY port")
        .ctx("list listeners")?;
    let docs = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .ctx("list listeners")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("list listeners")?;
    docs.iter().map(|d| parse_doc("listener", d)).collect()
}

/// Replaces a listener's settings (its ARN and port stay).
pub fn update_listener(tx: &Transaction, listener: &Listener) -> Result<bool> {
    let n = tx
        .execute(
            "UPDATE listeners SET doc = ?2 WHERE listener_arn = ?1 AND port = ?3",
            params![
                listener.listener_arn,
                to_doc("listener", listener)?,
                listener.port
            ],
        )
        .ctx("update listener")?;
    Ok(n > 0)
}

pub fn delete_listener(tx: &Transaction, arn: &str) -> Result<bool> {
    let n = tx
        .execute("DELETE FROM listeners WHERE listener_arn = ?1", [arn])
        .ctx("delete listener")?;
    Ok(n > 0)
}
