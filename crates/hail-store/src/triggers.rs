//! Triggers and their invocations: the durable queue between an object event
//! and the task it starts.

use hail_model::triggers::{Invocation, InvocationStatus, Trigger};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::error::{parse_doc, to_doc, Result, SqlContext, StoreError};

/// Creates `trigger`; an existing name is a conflict.
pub fn insert(tx: &Transaction, trigger: &Trigger) -> Result<()> {
    let doc = to_doc("trigger", trigger)?;
    let n = tx
        .execute(
            "INSERT INTO triggers (trigger_name, doc) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![trigger.trigger_name, doc],
        )
        .ctx("insert trigger")?;
    if n == 0 {
        return Err(StoreError::Conflict {
            what: format!("trigger {}", trigger.trigger_name),
        });
    }
    Ok(())
}

pub fn get(conn: &Connection, name: &str) -> Result<Option<Trigger>> {
    let doc: Option<String> = conn
        .query_row(
            "SELECT doc FROM triggers WHERE trigger_name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()
        .ctx("get trigger")?;
    doc.map(|d| parse_doc(&format!("trigger {name}"), &d))
        .transpose()
}

/// Every trigger, by name.
pub fn list(conn: &Connection) -> Result<Vec<Trigger>> {
    let mut stmt = conn
        .prepare_cached("SELECT trigger_name, doc FROM triggers ORDER BY trigger_name")
        .ctx("list triggers")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .ctx("list triggers")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("list triggers")?;
    rows.iter()
        .map(|(name, doc)| parse_doc(&format!("trigger {name}"), doc))
        .collect()
}

/// Deletes a trigger and its invocations; false when there was none.
pub fn delete(tx: &Transaction, name: &str) -> Result<bool> {
    let n = tx
        .execute("DELETE FROM triggers WHERE trigger_name = ?1", [name])
        .ctx("delete trigger")?;
    tx.execute(
        "DELETE FROM trigger_invocations WHERE trigger_name = ?1",
        [name],
    )
    .ctx("delete trigger invocations")?;
    Ok(n > 0)
}

/// Records a new invocation; false (and nothing changed) when one with
/// this id exists: the event was delivered before.
pub fn insert_invocation(tx: &Transaction, inv: &Invocation) -> Result<bool> {
    let doc = to_doc("invocation", inv)?;
    let n = tx
        .execute(
            "INSERT INTO trigger_invocations
                 (invocation_id, trigger_name, status, next_attempt_at, updated_at, doc)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
            params![
                inv.invocation_id,
                inv.trigger_name,
                inv.status.as_str(),
                inv.next_attempt_at.as_millis(),
                inv.updated_at.as_millis(),
                doc
            ],
        )
        .ctx("insert invocation")?;
    Ok(n > 0)
}

/// Stores the new state of an existing invocation.
pub fn update_invocation(tx: &Transaction, inv: &Invocation) -> Result<()> {
    let doc = to_doc("invocation", inv)?;
    tx.execute(
        "UPDATE trigger_invocations
         SET status = ?2, next_attempt_at = ?3, updated_at = ?4, doc = ?5
         WHERE invocation_id = ?1",
        params![
            inv.invocation_id,
            inv.status.as_str(),
            inv.next_attempt_at.as_millis(),
            inv.updated_at.as_millis(),
            doc
        ],
    )
    .ctx("update invocation")?;
    Ok(())
}

pub fn get_invocation(conn: &Connection, id: &str) -> Result<Option<Invocation>> {
    let doc: Option<String> = conn
        .query_row(
            "SELECT doc FROM trigger_invocations WHERE invocation_id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()
        .ctx("get invocation")?;
    doc.map(|d| parse_doc(&format!("invocation {id}"), &d))
        .transpose()
}

fn invocations(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Invocation>> {
    let mut stmt = conn.prepare_cached(sql).ctx("list invocations")?;
    let docs = stmt
        .query_map(args, |r| r.get::<_, String>(0))
        .ctx("list invocations")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("list invocations")?;
    docs.iter().map(|d| parse_doc("invocation", d)).collect()
}

/// A trigger's invocations in `status`, oldest first (by next attempt), at
/// most `limit`.
pub fn list_invocations(
    conn: &Connection,
    trigger: &str,
    status: InvocationStatus,
    limit: u32,
) -> Result<Vec<Invocation>> {
    invocations(
        conn,
        "SELECT doc FROM trigger_invocations WHERE trigger_name = ?1 AND status = ?2
         ORDER BY next_attempt_at, invocation_id LIMIT ?3",
        params![trigger, status.as_str(), limit],
    )
}

/// A trigger's most recently changed invocations, newest first.
pub fn recent_invocations(conn: &Connection, trigger: &str, limit: u32) -> Result<Vec<Invocation>> {
    invocations(
        conn,
        "SELECT doc FROM trigger_invocations WHERE trigger_name = ?1
         ORDER BY updated_at DESC, invocation_id LIMIT ?2",
        params![trigger, limit],
    )
}

/// Queued invocations of `trigger` due at `now` (millis), oldest first.
pub fn due_invocations(
    conn: &Connection,
    trigger: &str,
    now: i64,
    limit: u32,
) -> Result<Vec<Invocation>> {
    invocations(
        conn,
        "SELECT doc FROM trigger_invocations
         WHERE trigger_name = ?1 AND status = 'QUEUED' AND next_attempt_at <= ?2
         ORDER BY next_attempt_at, invocation_id LIMIT ?3",
        params![trigger, now, limit],
    )
}

/// How many invocations of each status `trigger` has.
pub fn count_by_status(conn: &Connection, trigger: &str) -> Result<Vec<(String, u64)>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT status, COUNT(*) FROM trigger_invocations WHERE trigger_name = ?1
             GROUP BY status ORDER BY status",
        )
        .ctx("count invocations")?;
    let rows = stmt
        .query_map([trigger], |r| Ok((r.get(0)?, r.get(1)?)))
        .ctx("count invocations")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("count invocations")?;
    Ok(rows)
}

/// Forgets succeeded invocations last changed before `before` (millis).
pub fn purge_succeeded(tx: &Transaction, before: i64) -> Result<usize> {
    tx.execute(
        "DELETE FROM trigger_invocations WHERE status = 'SUCCEEDED' AND updated_at < ?1",
        [before],
    )
    .ctx("purge invocations")
}

#[cfg(test)]
mod tests {
    use hail_model::ecs::Timestamp;
    use hail_model::triggers::TriggerOverrides;

    use super::*;

    fn open() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("s.db")).unwrap();
        crate::migrate::migrate(&mut conn, 0).unwrap();
        (dir, conn)
    }

    fn invocation(id: &str, status: InvocationStatus, next: i64) -> Invocation {
        Invocation {
            invocation_id: id.into(),
            trigger_name: "thumbs".into(),
            status,
            attempts: 0,
            redrives: 0,
            next_attempt_at: Timestamp::from_millis(next),
            task_arn: None,
            last_error: None,
            bucket: "media".into(),
            key: "video/a.mp4".into(),
            event_name: "ObjectCreated:Put".into(),
            record: serde_json::json!({"Records": []}),
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(next),
        }
    }

    #[test]
    fn triggers_and_their_queue() {
        let (_d, mut conn) = open();
        let trigger = Trigger {
            trigger_name: "thumbs".into(),
            trigger_arn: "arn:aws:hail:us-east-1:0:trigger/thumbs".into(),
            cluster: "default".into(),
            task_definition: "tom-thumb-task".into(),
            bucket: "media".into(),
            events: vec!["s3:ObjectCreated:*".into()],
            prefix: Some("video/".into()),
            suffix: None,
            overrides: TriggerOverrides::default(),
            network_configuration: None,
            max_concurrency: 2,
            max_attempts: 3,
            url_expires_seconds: 3600,
            created_at: Timestamp::from_millis(1),
        };
        let tx = conn.transaction().unwrap();
        insert(&tx, &trigger).unwrap();
        assert!(insert(&tx, &trigger).is_err());
        assert!(insert_invocation(&tx, &invocation("e1", InvocationStatus::Queued, 10)).unwrap());
        assert!(!insert_invocation(&tx, &invocation("e1", InvocationStatus::Queued, 10)).unwrap());
        assert!(insert_invocation(&tx, &invocation("e2", InvocationStatus::Queued, 5)).unwrap());
        assert!(insert_invocation(&tx, &invocation("e3", InvocationStatus::Queued, 50)).unwrap());
        tx.commit().unwrap();
        assert_eq!(list(&conn).unwrap(), vec![trigger]);
        let due: Vec<String> = due_invocations(&conn, "thumbs", 20, 10)
            .unwrap()
            .into_iter()
            .map(|i| i.invocation_id)
            .collect();
        assert_eq!(due, ["e2", "e1"]);

        let mut e2 = get_invocation(&conn, "e2").unwrap().unwrap();
        e2.status = InvocationStatus::Succeeded;
        e2.updated_at = Timestamp::from_millis(7);
        let tx = conn.transaction().unwrap();
        update_invocation(&tx, &e2).unwrap();
        tx.commit().unwrap();
        assert_eq!(
            count_by_status(&conn, "thumbs").unwrap(),
            vec![("QUEUED".into(), 2), ("SUCCEEDED".into(), 1)]
        );
        let tx = conn.transaction().unwrap();
        assert_eq!(purge_succeeded(&tx, 8).unwrap(), 1);
        assert!(delete(&tx, "thumbs").unwrap());
        tx.commit().unwrap();
        assert!(recent_invocations(&conn, "thumbs", 10).unwrap().is_empty());
    }
}
