//! Tags of any resource, keyed by the resource's ARN; a key appears at most
//! once per resource, and setting it again replaces its value.

use hail_model::ecs::Tag;
use rusqlite::{params, Connection, Transaction};

use crate::error::{Result, SqlContext};

/// Adds `tags` to the resource, replacing the values of keys it already has.
pub fn set(tx: &Transaction, resource_arn: &str, tags: &[Tag]) -> Result<()> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO tags (resource_arn, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (resource_arn, key) DO UPDATE SET value = excluded.value",
        )
        .ctx("set tag")?;
    for tag in tags {
        stmt.execute(params![
            resource_arn,
            tag.key.as_deref().unwrap_or(""),
            tag.value.as_deref().unwrap_or("")
        ])
        .ctx("set tag")?;
    }
    Ok(())
}

/// Removes the tags with these keys; keys the resource lacks are ignored, as
/// in ECS's UntagResource.
pub fn remove(tx: &Transaction, resource_arn: &str, keys: &[String]) -> Result<()> {
    let mut stmt = tx
        .prepare_cached("DELETE FROM tags WHERE resource_arn = ?1 AND key = ?2")
        .ctx("remove tag")?;
    for key in keys {
        stmt.execute(params![resource_arn, key]).ctx("remove tag")?;
    }
    Ok(())
}

/// Removes every tag of the resource (when the resource itself goes).
pub fn remove_all(tx: &Transaction, resource_arn: &str) -> Result<()> {
    tx.execute("DELETE FROM tags WHERE resource_arn = ?1", [resource_arn])
        .ctx("remove tags")?;
    Ok(())
}

/// The resource's tags, ordered by key.
pub fn list(conn: &Connection, resource_arn: &str) -> Result<Vec<Tag>> {
    let mut stmt = conn
        .prepare_cached("SELECT key, value FROM tags WHERE resource_arn = ?1 ORDER BY key")
        .ctx("list tags")?;
    let tags = stmt
        .query_map([resource_arn], |r| {
            Ok(Tag::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .ctx("list tags")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("list tags")?;
    Ok(tags)
}
