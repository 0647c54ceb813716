//! Storage behind the CloudWatch Logs subset: log groups, their streams and
//! the streams' events. Times here are epoch milliseconds, as CloudWatch Logs
//! carries them on the wire.
//!
//! Events are ordered by (timestamp, seq), `seq` being the order of
//! ingestion, so events with equal timestamps keep a stable order and a read
//! token — the position between two events — resumes exactly.

use std::collections::BTreeMap;

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row, Transaction};

use crate::error::{parse_doc, to_doc, Result, SqlContext, StoreError};
use crate::page::{self, Page};

const GROUP_PAGE: &str = "log-groups";
const STREAM_PAGE: &str = "log-streams";
const FILTER_PAGE: &str = "log-events";

/// CloudWatch counts 26 bytes of overhead per event toward stored bytes.
const EVENT_OVERHEAD_BYTES: i64 = 26;
/// Most events GetLogEvents and FilterLogEvents return at once.
pub const MAX_EVENTS_PER_READ: u32 = 10_000;

/// A log group as DescribeLogGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogGroup {
    pub name: String,
    pub created_at: i64,
    pub retention_in_days: Option<u32>,
    pub tags: BTreeMap<String, String>,
    /// Sum of the stored bytes of its streams.
    pub stored_bytes: i64,
}

/// A log stream as DescribeLogStreams reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStream {
    pub group: String,
    pub name: String,
    pub created_at: i64,
    pub first_event_timestamp: Option<i64>,
    pub last_event_timestamp: Option<i64>,
    pub last_ingestion_time: Option<i64>,
    pub stored_bytes: i64,
}

/// An event as PutLogEvents sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputEvent {
    pub timestamp: i64,
    pub message: String,
}

/// An event as GetLogEvents returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputEvent {
    pub timestamp: i64,
    pub message: String,
    pub ingestion_time: i64,
}

/// An event as FilterLogEvents returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilteredEvent {
    pub stream_name: String,
    pub timestamp: i64,
    pub message: String,
    pub ingestion_time: i64,
    pub event_id: String,
}

fn group_not_found(name: &str) -> StoreError {
    StoreError::NotFound {
        what: format!("log group {name}"),
    }
}

fn stream_not_found(group: &str, name: &str) -> StoreError {
    StoreError::NotFound {
        what: format!("log stream {group}/{name}"),
    }
}

fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

/// Creates a log group; an existing group of that name is a conflict.
pub fn create_group(
    tx: &Transaction,
    name: &str,
    created_at: i64,
    retention_in_days: Option<u32>,
    tags: &BTreeMap<String, String>,
) -> Result<LogGroup> {
    let result = tx.execute(
        "INSERT INTO log_groups (name, created_at, retention_in_days, tags) VALUES (?1, ?2, ?3, ?4)",
        params![name, created_at, retention_in_days, to_doc("log group tags", tags)?],
    );
    match result {
        Ok(_) => Ok(LogGroup {
            name: name.to_owned(),
            created_at,
            retention_in_days,
            tags: tags.clone(),
            stored_bytes: 0,
        }),
        Err(e) if is_constraint(&e) => Err(StoreError::Conflict {
            what: format!("log group {name} already exists"),
        }),
        Err(e) => Err(e).ctx("create log group"),
    }
}

const GROUP_COLUMNS: &str = "g.name, g.created_at, g.retention_in_days, g.tags,
     (SELECT COALESCE(SUM(s.stored_bytes), 0) FROM log_streams s WHERE s.group_name = g.name)";

type GroupRow = (String, i64, Option<u32>, String, i64);

fn group_row(r: &Row) -> rusqlite::Result<GroupRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn group_of(row: GroupRow) -> Result<LogGroup> {
    let (name, created_at, retention_in_days, tags, stored_bytes) = row;
    Ok(LogGroup {
        tags: parse_doc(&format!("log group {name} tags"), &tags)?,
        name,
        created_at,
        retention_in_days,
        stored_bytes,
    })
}

/// The group named `name`.
pub fn get_group(conn: &Connection, name: &str) -> Result<Option<LogGroup>> {
    conn.query_row(
        &format!("SELECT {GROUP_COLUMNS} FROM log_groups g WHERE g.name = ?1"),
        [name],
        group_row,
    )
    .optional()
    .ctx("get log group")?
    .map(group_of)
    .transpose()
}

/// Deletes the group with all its streams and events.
pub fn delete_group(tx: &Transaction, name: &str) -> Result<()> {
    let n = tx
        .execute("DELETE FROM log_groups WHERE name = ?1", [name])
        .ctx("delete log group")?;
    if n == 0 {
        return Err(group_not_found(name));
    }
    Ok(())
}

/// Sets (or with `None` clears) the group's retention.
pub fn set_retention(tx: &Transaction, name: &str, days: Option<u32>) -> Result<()> {
    let n = tx
        .execute(
            "UPDATE log_groups SET retention_in_days = ?2 WHERE name = ?1",
            params![name, days],
        )
        .ctx("set log group retention")?;
    if n == 0 {
        return Err(group_not_found(name));
    }
    Ok(())
}

/// Adds `add` to the group's tags (replacing values of existing keys) and
/// removes the keys in `remove`; returns the tags as they now stand.
pub fn retag_group(
    tx: &Transaction,
    name: &str,
    add: &BTreeMap<String, String>,
    remove: &[String],
) -> Result<BTreeMap<String, String>> {
    let mut group = get_group(tx, name)?.ok_or_else(|| group_not_found(name))?;
    group
        .tags
        .extend(add.iter().map(|(k, v)| (k.clone(), v.clone())));
    for key in remove {
        group.tags.remove(key);
    }
    tx.execute(
        "UPDATE log_groups SET tags = ?2 WHERE name = ?1",
        params![name, to_doc("log group tags", &group.tags)?],
    )
    .ctx("tag log group")?;
    Ok(group.tags)
}

/// Groups whose names start with `prefix`, in name order, `limit` (1–50,
/// default 50) at a time.
pub fn describe_groups(
    conn: &Connection,
    prefix: Option<&str>,
    limit: Option<u32>,
    next_token: Option<&str>,
) -> Result<Page<LogGroup>> {
    let limit = page::max_results(limit, 50, 50)?;
    let after: String = match next_token {
        Some(t) => page::decode(GROUP_PAGE, t)?,
        None => String::new(),
    };
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {GROUP_COLUMNS} FROM log_groups g
             WHERE substr(g.name, 1, length(?1)) = ?1 AND g.name > ?2
             ORDER BY g.name LIMIT ?3"
        ))
        .ctx("describe log groups")?;
    let rows = stmt
        .query_map(params![prefix.unwrap_or(""), after, limit + 1], group_row)
        .ctx("describe log groups")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("describe log groups")?;
    page::paginate(rows, limit, GROUP_PAGE, |r| r.0.clone(), group_of)
}

/// Creates a stream in an existing group; an existing stream is a conflict.
pub fn create_stream(tx: &Transaction, group: &str, name: &str, created_at: i64) -> Result<()> {
    if get_group(tx, group)?.is_none() {
        return Err(group_not_found(group));
    }
    match tx.execute(
        "INSERT INTO log_streams (group_name, name, created_at) VALUES (?1, ?2, ?3)",
        params![group, name, created_at],
    ) {
        Ok(_) => Ok(()),
        Err(e) if is_constraint(&e) => Err(StoreError::Conflict {
            what: format!("log stream {group}/{name} already exists"),
        }),
        Err(e) => Err(e).ctx("create log stream"),
    }
}

const STREAM_COLUMNS: &str = "group_name, name, created_at, first_event_timestamp,
     last_event_timestamp, last_ingestion_time, stored_bytes";

fn stream_row(r: &Row) -> rusqlite::Result<LogStream> {
    Ok(LogStream {
        group: r.get(0)?,
        name: r.get(1)?,
        created_at: r.get(2)?,
        first_event_timestamp: r.get(3)?,
        last_event_timestamp: r.get(4)?,
        last_ingestion_time: r.get(5)?,
        stored_bytes: r.get(6)?,
    })
}

/// The stream `name` of `group`.
pub fn get_stream(conn: &Connection, group: &str, name: &str) -> Result<Option<LogStream>> {
    conn.query_row(
        &format!("SELECT {STREAM_COLUMNS} FROM log_streams WHERE group_name = ?1 AND name = ?2"),
        params![group, name],
        stream_row,
    )
    .optional()
    .ctx("get log stream")
}

/// Deletes a stream and its events.
pub fn delete_stream(tx: &Transaction, group: &str, name: &str) -> Result<()> {
    let n = tx
        .execute(
            "DELETE FROM log_streams WHERE group_name = ?1 AND name = ?2",
            params![group, name],
        )
        .ctx("delete log stream")?;
    if n == 0 {
        return Err(stream_not_found(group, name));
    }
    Ok(())
}

/// How DescribeLogStreams orders streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamOrder {
    #[default]
    LogStreamName,
    /// Streams without events sort before all others.
    LastEventTime,
}

/// What DescribeLogStreams asks for.
#[derive(Debug, Clone, Default)]
pub struct DescribeStreams {
    pub prefix: Option<String>,
    pub order_by: StreamOrder,
    pub descending: bool,
    /// 1–50, default 50.
    pub limit: Option<u32>,
    pub next_token: Option<String>,
}

/// Streams of `group` as `query` asks.
pub fn describe_streams(
    conn: &Connection,
    group: &str,
    query: &DescribeStreams,
) -> Result<Page<LogStream>> {
    let limit = page::max_results(query.limit, 50, 50)?;
    if get_group(conn, group)?.is_none() {
        return Err(group_not_found(group));
    }
    // The sort key is (k, name); for name order k is constant.
    let key_expr = match query.order_by {
        StreamOrder::LogStreamName => "0",
        StreamOrder::LastEventTime => "COALESCE(last_event_timestamp, -9223372036854775808)",
    };
    let (cmp, dir) = if query.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    let mut sql = format!(
        "SELECT {STREAM_COLUMNS}, {key_expr} FROM log_streams
         WHERE group_name = ? AND substr(name, 1, length(?)) = ?"
    );
    let prefix = query.prefix.clone().unwrap_or_default();
    let mut args = vec![
        Value::Text(group.to_owned()),
        Value::Text(prefix.clone()),
        Value::Text(prefix),
    ];
    if let Some(token) = &query.next_token {
        let (k, name): (i64, String) = page::decode(STREAM_PAGE, token)?;
        sql.push_str(&format!(" AND ({key_expr}, name) {cmp} (?, ?)"));
        args.push(Value::Integer(k));
        args.push(Value::Text(name));
    }
    match query.order_by {
        StreamOrder::LogStreamName => sql.push_str(&format!(" ORDER BY name {dir} LIMIT ?")),
        StreamOrder::LastEventTime => {
            sql.push_str(&format!(" ORDER BY {key_expr} {dir}, name {dir} LIMIT ?"))
        }
    }
    args.push(Value::Integer(i64::from(limit) + 1));
    let mut stmt = conn.prepare(&sql).ctx("describe log streams")?;
    let rows = stmt
        .query_map(params_from_iter(args), |r| {
            Ok((stream_row(r)?, r.get::<_, i64>(7)?))
        })
        .ctx("describe log streams")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("describe log streams")?;
    page::paginate(
        rows,
        limit,
        STREAM_PAGE,
        |(s, k)| (*k, s.name.clone()),
        |(s, _)| Ok(s),
    )
}

/// Appends a batch of events to an existing stream, in timestamp order
/// (events with equal timestamps keep the batch's order), and updates the
/// stream's first/last event times, ingestion time and stored bytes.
pub fn put_events(
    tx: &Transaction,
    group: &str,
    stream: &str,
    events: &[InputEvent],
    ingestion_time: i64,
) -> Result<()> {
    if get_stream(tx, group, stream)?.is_none() {
        return Err(stream_not_found(group, stream));
    }
    let mut sorted: Vec<&InputEvent> = events.iter().collect();
    sorted.sort_by_key(|e| e.timestamp);
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO log_events (group_name, stream_name, timestamp, ingestion_time, message)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .ctx("put log events")?;
    let mut bytes: i64 = 0;
    for e in &sorted {
        insert
            .execute(params![
                group,
                stream,
                e.timestamp,
                ingestion_time,
                e.message
            ])
            .ctx("put log events")?;
        bytes += i64::try_from(e.message.len()).unwrap_or(i64::MAX) + EVENT_OVERHEAD_BYTES;
    }
    let (Some(first), Some(last)) = (sorted.first(), sorted.last()) else {
        return Ok(());
    };
    tx.execute(
        "UPDATE log_streams SET
             first_event_timestamp = MIN(COALESCE(first_event_timestamp, ?3), ?3),
             last_event_timestamp = MAX(COALESCE(last_event_timestamp, ?4), ?4),
             last_ingestion_time = ?5,
             stored_bytes = stored_bytes + ?6
         WHERE group_name = ?1 AND name = ?2",
        params![
            group,
            stream,
            first.timestamp,
            last.timestamp,
            ingestion_time,
            bytes
        ],
    )
    .ctx("update log stream")?;
    Ok(())
}

/// What GetLogEvents asks for.
#[derive(Debug, Clone, Default)]
pub struct GetEvents {
    /// Inclusive, epoch ms.
    pub start_time: Option<i64>,
    /// Exclusive, epoch ms.
    pub end_time: Option<i64>,
    /// 1–10000, default 10000.
    pub limit: Option<u32>,
    /// Without a token: read from the oldest event forward rather than
    /// backward from the newest.
    pub start_from_head: bool,
    /// A token from an earlier page; its direction wins over `start_from_head`.
    pub next_token: Option<String>,
}

/// A page of GetLogEvents: events oldest first, and tokens to read on in
/// either direction. At the end of the stream the forward token comes back
/// unchanged, which is how clients know to stop (or wait and poll).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsPage {
    pub events: Vec<OutputEvent>,
    pub next_forward_token: String,
    pub next_backward_token: String,
}

/// A position between events: just after (forward) or before (backward) the
/// event at (timestamp, seq).
type Position = (i64, i64);

fn position_token(direction: char, (ts, seq): Position) -> String {
    format!("{direction}/{ts}/{seq}")
}

fn parse_position_token(token: &str) -> Result<(bool, Position)> {
    let invalid = || StoreError::InvalidToken {
        token: token.to_owned(),
    };
    let mut parts = token.splitn(3, '/');
    let forward = match parts.next() {
        Some("f") => true,
        Some("b") => false,
        _ => return Err(invalid()),
    };
    let ts = parts
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(invalid)?;
    let seq = parts
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(invalid)?;
    Ok((forward, (ts, seq)))
}

/// Events of one stream, as GetLogEvents reads them.
pub fn get_events(
    conn: &Connection,
    group: &str,
    stream: &str,
    query: &GetEvents,
) -> Result<EventsPage> {
    let limit = page::max_results(query.limit, MAX_EVENTS_PER_READ, MAX_EVENTS_PER_READ)?;
    if get_stream(conn, group, stream)?.is_none() {
        return Err(stream_not_found(group, stream));
    }
    let (forward, pos) = match &query.next_token {
        Some(t) => parse_position_token(t)?,
        None if query.start_from_head => (true, (i64::MIN, i64::MIN)),
        None => (false, (i64::MAX, i64::MAX)),
    };
    let (cmp, dir) = if forward { (">", "ASC") } else { ("<", "DESC") };
    let sql = format!(
        "SELECT timestamp, seq, message, ingestion_time FROM log_events
         WHERE group_name = ?1 AND stream_name = ?2
           AND timestamp >= ?3 AND timestamp < ?4
           AND (timestamp, seq) {cmp} (?5, ?6)
         ORDER BY timestamp {dir}, seq {dir} LIMIT ?7"
    );
    let mut stmt = conn.prepare_cached(&sql).ctx("get log events")?;
    let mut rows = stmt
        .query_map(
            params![
                group,
                stream,
                query.start_time.unwrap_or(i64::MIN),
                query.end_time.unwrap_or(i64::MAX),
                pos.0,
                pos.1,
                limit
            ],
            |r| {
                Ok((
                    (r.get::<_, i64>(0)?, r.get::<_, i64>(1)?),
                    OutputEvent {
                        timestamp: r.get(0)?,
                        message: r.get(2)?,
                        ingestion_time: r.get(3)?,
                    },
                ))
            },
        )
        .ctx("get log events")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("get log events")?;
    if !forward {
        rows.reverse();
    }
    let first = rows.first().map_or(pos, |r| r.0);
    // A first read backward from the end that finds nothing must still
    // hand out a forward token that sees events written later: the start.
    let from_end = query.next_token.is_none() && !query.start_from_head;
    let empty_end = if from_end { (i64::MIN, i64::MIN) } else { pos };
    let last = rows.last().map_or(empty_end, |r| r.0);
    Ok(EventsPage {
        events: rows.into_iter().map(|(_, e)| e).collect(),
        next_forward_token: position_token('f', last),
        next_backward_token: position_token('b', first),
    })
}

/// What FilterLogEvents asks for.
#[derive(Debug, Clone, Default)]
pub struct FilterEvents {
    /// Only these streams; `None` searches all streams of the group.
    pub stream_names: Option<Vec<String>>,
    pub stream_prefix: Option<String>,
    /// Inclusive, epoch ms.
    pub start_time: Option<i64>,
    /// Exclusive, epoch ms.
    pub end_time: Option<i64>,
    /// Plain, case-sensitive substring the message must contain.
    pub pattern: Option<String>,
    /// 1–10000, default 10000.
    pub limit: Option<u32>,
    pub next_token: Option<String>,
}

/// Events across the group's streams matching `query`, oldest first.
pub fn filter_events(
    conn: &Connection,
    group: &str,
    query: &FilterEvents,
) -> Result<Page<FilteredEvent>> {
    let limit = page::max_results(query.limit, MAX_EVENTS_PER_READ, MAX_EVENTS_PER_READ)?;
    if get_group(conn, group)?.is_none() {
        return Err(group_not_found(group));
    }
    let mut sql = String::from(
        "SELECT stream_name, timestamp, message, ingestion_time, seq FROM log_events
         WHERE group_name = ? AND timestamp >= ? AND timestamp < ?",
    );
    let mut args = vec![
        Value::Text(group.to_owned()),
        Value::Integer(query.start_time.unwrap_or(i64::MIN)),
        Value::Integer(query.end_time.unwrap_or(i64::MAX)),
    ];
    if let Some(names) = &query.stream_names {
        let marks = vec!["?"; names.len()].join(", ");
        sql.push_str(&format!(" AND stream_name IN ({marks})"));
        args.extend(names.iter().cloned().map(Value::Text));
    }
    if let Some(prefix) = &query.stream_prefix {
        sql.push_str(" AND substr(stream_name, 1, length(?)) = ?");
        args.push(Value::Text(prefix.clone()));
        args.push(Value::Text(prefix.clone()));
    }
    if let Some(pattern) = query.pattern.as_deref().filter(|p| !p.is_empty()) {
        sql.push_str(" AND instr(message, ?) > 0");
        args.push(Value::Text(pattern.to_owned()));
    }
    if let Some(token) = &query.next_token {
        let (ts, seq): Position = page::decode(FILTER_PAGE, token)?;
        sql.push_str(" AND (timestamp, seq) > (?, ?)");
        args.push(Value::Integer(ts));
        args.push(Value::Integer(seq));
    }
    sql.push_str(" ORDER BY timestamp, seq LIMIT ?");
    args.push(Value::Integer(i64::from(limit) + 1));
    let mut stmt = conn.prepare(&sql).ctx("filter log events")?;
    let rows = stmt
        .query_map(params_from_iter(args), |r| {
            Ok(FilteredEvent {
                stream_name: r.get(0)?,
                timestamp: r.get(1)?,
                message: r.get(2)?,
                ingestion_time: r.get(3)?,
                event_id: r.get::<_, i64>(4)?.to_string(),
            })
        })
        .ctx("filter log events")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("filter log events")?;
    page::paginate(
        rows,
        limit,
        FILTER_PAGE,
        // event_id is the seq this query just read as an integer.
        |e| (e.timestamp, e.event_id.parse::<i64>().unwrap_or(i64::MAX)),
        Ok,
    )
}

/// Deletes events of `group` older than `cutoff` (retention), returning how
/// many went. Stream statistics keep their historical first/last times, as
/// CloudWatch's do.
pub fn delete_events_before(tx: &Transaction, group: &str, cutoff: i64) -> Result<usize> {
    tx.execute(
        "DELETE FROM log_events WHERE group_name = ?1 AND timestamp < ?2",
        params![group, cutoff],
    )
    .ctx("expire log events")
}

/// How far a container's log file has been shipped: the file's inode (None
/// before the file was first seen) and the offset after the last shipped line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShipCursor {
    pub inode: Option<u64>,
    pub offset: u64,
}

/// The shipping cursor of a task's container; the start of the file when none.
pub fn get_cursor(conn: &Connection, task_id: &str, container: &str) -> Result<ShipCursor> {
    let row: Option<(Option<i64>, i64)> = conn
        .query_row(
            "SELECT inode, offset FROM log_cursors WHERE task_id = ?1 AND container = ?2",
            params![task_id, container],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .ctx("get log cursor")?;
    Ok(row
        .map(|(inode, offset)| ShipCursor {
            inode: inode.and_then(|i| u64::try_from(i).ok()),
            offset: u64::try_from(offset).unwrap_or(0),
        })
        .unwrap_or_default())
}

/// Records a container's shipping cursor.
pub fn set_cursor(
    tx: &Transaction,
    task_id: &str,
    container: &str,
    cursor: ShipCursor,
) -> Result<()> {
    tx.execute(
        "INSERT INTO log_cursors (task_id, container, inode, offset) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (task_id, container) DO UPDATE SET inode = excluded.inode, offset = excluded.offset",
        params![
            task_id,
            container,
            cursor.inode.and_then(|i| i64::try_from(i).ok()),
            i64::try_from(cursor.offset).unwrap_or(i64::MAX)
        ],
    )
    .ctx("set log cursor")?;
    Ok(())
}

/// Forgets the cursors of a task.
pub fn delete_cursors(tx: &Transaction, task_id: &str) -> Result<()> {
    tx.execute("DELETE FROM log_cursors WHERE task_id = ?1", [task_id])
        .ctx("delete log cursors")?;
    Ok(())
}
