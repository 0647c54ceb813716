//! The event outbox. An event is appended in the same transaction as the
//! change it announces, so it exists exactly when the change does; it stays
//! until a consumer acknowledges it, so delivery is at least once, surviving
//! restarts. Consumers deduplicate by `id` (or `uuid`).

use hail_model::ecs::Timestamp;
use rusqlite::{params, Connection, Transaction};

use crate::error::{parse_doc, to_doc, Result, SqlContext};

/// One pending event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Strictly increasing across the whole outbox, never reused.
    pub id: i64,
    /// Globally unique, for consumers outside this database.
    pub uuid: String,
    pub topic: String,
    /// What the event is about, such as a task ARN.
    pub key: String,
    pub payload: serde_json::Value,
    pub created_at: Timestamp,
}

/// Appends an event to `topic` and returns its id; it becomes visible when
/// `tx` commits, and vanishes if `tx` rolls back.
pub fn append(
    tx: &Transaction,
    topic: &str,
    key: &str,
    payload: &serde_json::Value,
) -> Result<i64> {
    let uuid = uuid::Uuid::new_v4().to_string();
    tx.query_row(
        "INSERT INTO outbox (uuid, topic, key, payload, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
        params![
            uuid,
            topic,
            key,
            to_doc("outbox payload", payload)?,
            crate::now_millis()
        ],
        |r| r.get(0),
    )
    .ctx("append outbox event")
}

/// Up to `limit` unacknowledged events of `topic`, oldest first.
pub fn pending(conn: &Connection, topic: &str, limit: u32) -> Result<Vec<Event>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, uuid, topic, key, payload, created_at FROM outbox
             WHERE topic = ?1 ORDER BY id LIMIT ?2",
        )
        .ctx("read outbox")?;
    let rows = stmt
        .query_map(params![topic, limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })
        .ctx("read outbox")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("read outbox")?;
    rows.into_iter()
        .map(|(id, uuid, topic, key, payload, created)| {
            Ok(Event {
                payload: parse_doc(&format!("outbox event {id}"), &payload)?,
                id,
                uuid,
                topic,
                key,
                created_at: Timestamp::from_millis(created),
            })
        })
        .collect()
}

/// Acknowledges (removes) event `id`; acknowledging twice is harmless, so a
/// consumer that crashed after acting but before acking can simply ack again.
pub fn ack(tx: &Transaction, id: i64) -> Result<bool> {
    let n = tx
        .execute("DELETE FROM outbox WHERE id = ?1", [id])
        .ctx("ack outbox event")?;
    Ok(n == 1)
}
