//! Stacks and the resources they created. A resource row is written before
//! the engine acts on it (state PENDING or DELETING) and settled after, so
//! an apply interrupted in between is finished by the next one.

use hail_model::stack::{Kind, Stack, StackResource};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::error::{parse_doc, to_doc, Result, SqlContext, StoreError};

/// Creates or replaces the stack's record.
pub fn put(tx: &Transaction, stack: &Stack) -> Result<()> {
    tx.execute(
        "INSERT INTO stacks (stack_name, doc) VALUES (?1, ?2)
         ON CONFLICT (stack_name) DO UPDATE SET doc = excluded.doc",
        params![stack.stack_name, to_doc("stack", stack)?],
    )
    .ctx("put stack")?;
    Ok(())
}

pub fn get(conn: &Connection, name: &str) -> Result<Option<Stack>> {
    let doc: Option<String> = conn
        .query_row(
            "SELECT doc FROM stacks WHERE stack_name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()
        .ctx("get stack")?;
    doc.map(|d| parse_doc(&format!("stack {name}"), &d))
        .transpose()
}

/// Every stack, by name.
pub fn list(conn: &Connection) -> Result<Vec<Stack>> {
    let mut stmt = conn
        .prepare_cached("SELECT doc FROM stacks ORDER BY stack_name")
        .ctx("list stacks")?;
    let docs = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .ctx("list stacks")?
        .collect::<std::result::Result<Vec<_>, _>>()
        .ctx("list stacks")?;
    docs.iter().map(|d| parse_doc("stack", d)).collect()
}

/// Removes a stack's record; refused while it still has resources.
pub fn delete(tx: &Transaction, name: &str) -> Result<bool> {
    if !resources(tx, name)?.is_empty() {
        return Err(StoreError::Conflict {
            what: format!("stack {name} still has resources"),
        });
    }
    let n = tx
        .execute("DELETE FROM stacks WHERE stack_name = ?1", [name])
        .ctx("delete stack")?;
    Ok(n > 0)
}

/// The stack's resources, by kind and name.
pub fn resources(conn: &Connection, stack: &str) -> Result<Vec<StackResource>> {
    let mut stmt = conn
        .prepare_cached("SELECT doc FROM stack_resources WHERE stack_name = ?1 ORDER BY kind, name")
        .ctx("list stack resources")?;
    let docs = stmt
        .query_map([stack], |r| r.get::<_, String>(0))
        .ctx("list stack resources")?
        .collect::<std::result::Result<Vec<_>, _>>()
        .ctx("list stack resources")?;
    let mut out: Vec<StackResource> = docs
        .iter()
        .map(|d| parse_doc("stack resource", d))
        .collect::<Result<_>>()?;
    out.sort_by(|a, b| a.kind.cmp(&b.kind).then(a.name.cmp(&b.name)));
    Ok(out)
}

/// The resource of this kind and name, whichever stack it belongs to.
pub fn owner(conn: &Connection, kind: Kind, name: &str) -> Result<Option<StackResource>> {
    let doc: Option<String> = conn
        .query_row(
            "SELECT doc FROM stack_resources WHERE kind = ?1 AND name = ?2",
            params![kind.as_str(), name],
            |r| r.get(0),
        )
        .optional()
        .ctx("get stack resource")?;
    doc.map(|d| parse_doc("stack resource", &d)).transpose()
}

/// Records a resource of the stack (which must exist); a resource of
/// another stack with the same kind and name is a conflict.
pub fn put_resource(tx: &Transaction, resource: &StackResource) -> Result<()> {
    if let Some(other) = owner(tx, resource.kind, &resource.name)? {
        if other.stack_name != resource.stack_name {
            return Err(StackOwned {
                kind: resource.kind,
                name: &resource.name,
                stack: &other.stack_name,
            }
            .into());
        }
    }
    tx.execute(
        "INSERT INTO stack_resources (kind, name, stack_name, doc) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (kind, name) DO UPDATE SET doc = excluded.doc",
        params![
            resource.kind.as_str(),
            resource.name,
            resource.stack_name,
            to_doc("stack resource", resource)?
        ],
    )
    .ctx("put stack resource")?;
    Ok(())
}

pub fn delete_resource(tx: &Transaction, kind: Kind, name: &str) -> Result<bool> {
    let n = tx
        .execute(
            "DELETE FROM stack_resources WHERE kind = ?1 AND name = ?2",
            params![kind.as_str(), name],
        )
        .ctx("delete stack resource")?;
    Ok(n > 0)
}

struct StackOwned<'a> {
    kind: Kind,
    name: &'a str,
    stack: &'a str,
}

impl From<StackOwned<'_>> for StoreError {
    fn from(o: StackOwned<'_>) -> StoreError {
        StoreError::Conflict {
            what: format!(
                "{} {} belongs to stack {}",
                o.kind.as_str(),
                o.name,
                o.stack
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use hail_model::ecs::Timestamp;
    use hail_model::stack::{ResourceState, StackStatus};

    use super::*;

    fn stack(name: &str) -> Stack {
        Stack {
            stack_name: name.into(),
            description: None,
            status: StackStatus::ApplyInProgress,
            manifest: serde_json::json!({"stack": name}),
            created_at: Timestamp::from_millis(1),
            updated_at: Timestamp::from_millis(1),
        }
    }

    fn resource(stack: &str, kind: Kind, name: &str) -> StackResource {
        StackResource {
            stack_name: stack.into(),
            kind,
            name: name.into(),
            arn: None,
            spec: serde_json::json!({}),
            state: ResourceState::Pending,
            updated_at: Timestamp::from_millis(1),
        }
    }

    #[test]
    fn a_resource_belongs_to_one_stack_and_a_stack_goes_only_when_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("s.db")).unwrap();
        crate::migrate::migrate(&mut conn, 0).unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        let tx = conn.transaction().unwrap();
        put(&tx, &stack("a")).unwrap();
        put(&tx, &stack("b")).unwrap();
        put_resource(&tx, &resource("a", Kind::Bucket, "media")).unwrap();
        put_resource(&tx, &resource("a", Kind::Role, "web")).unwrap();
        let err = put_resource(&tx, &resource("b", Kind::Bucket, "media")).unwrap_err();
        assert!(err.to_string().contains("belongs to stack a"), "{err}");
        let mut again = resource("a", Kind::Bucket, "media");
        again.state = ResourceState::Ready;
        put_resource(&tx, &again).unwrap();
        let listed = resources(&tx, "a").unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].state, ResourceState::Ready);
        assert!(delete(&tx, "a").is_err());
        assert!(delete_resource(&tx, Kind::Bucket, "media").unwrap());
        assert!(delete_resource(&tx, Kind::Role, "web").unwrap());
        assert!(delete(&tx, "a").unwrap());
        assert_eq!(list(&tx).unwrap().len(), 1);
    }
}
