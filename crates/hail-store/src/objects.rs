//! The object store's metadata: buckets, objects, multipart uploads and
//! their parts. Bytes are not here; rows name the data files that hold them.

use std::collections::HashSet;

use hail_model::s3::{NotificationConfiguration, ObjectMeta};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};

use crate::error::{parse_doc, to_doc, Result, SqlContext};

/// One data file of an object, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub id: String,
    pub size: u64,
}

/// An object's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRow {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    /// The ETag without quotes (`md5hex` or `md5hex-N`).
    pub etag: String,
    /// Milliseconds since the epoch.
    pub last_modified: i64,
    pub segments: Vec<Segment>,
    pub meta: ObjectMeta,
}

impl ObjectRow {
    /// The data files it names.
    pub fn data_ids(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().map(|s| s.id.as_str())
    }
}

const OBJECT_COLUMNS: &str = "bucket, key, size, etag, last_modified, segments, meta";

fn object_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(ObjectRow, String, String)> {
    Ok((
        ObjectRow {
            bucket: r.get(0)?,
            key: r.get(1)?,
            size: r.get::<_, i64>(2)?.max(0) as u64,
            etag: r.get(3)?,
            last_modified: r.get(4)?,
            segments: Vec::new(),
            meta: ObjectMeta::default(),
        },
        r.get(5)?,
        r.get(6)?,
    ))
}

fn finish(raw: (ObjectRow, String, String)) -> Result<ObjectRow> {
    let (mut row, segments, meta) = raw;
    let what = format!("object {}/{}", row.bucket, row.key);
    row.segments = parse_doc(&what, &segments)?;
    row.meta = parse_doc(&what, &meta)?;
    Ok(row)
}

/// Creates a bucket; false when it exists already.
pub fn create_bucket(tx: &Transaction, name: &str, now: i64) -> Result<bool> {
    let n = tx
        .execute(
            "INSERT INTO buckets (name, created_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![name, now],
        )
        .ctx("create bucket")?;
    Ok(n > 0)
}

/// What DeleteBucket found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketDeletion {
    Deleted,
    NotFound,
    /// It still holds objects or multipart uploads.
    NotEmpty,
}

pub fn delete_bucket(tx: &Transaction, name: &str) -> Result<BucketDeletion> {
    if !bucket_exists(tx, name)? {
        return Ok(BucketDeletion::NotFound);
    }
    let busy: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM objects WHERE bucket = ?1)
                 OR EXISTS (SELECT 1 FROM uploads WHERE bucket = ?1)",
            [name],
            |r| r.get(0),
        )
        .ctx("check bucket contents")?;
    if busy {
        return Ok(BucketDeletion::NotEmpty);
    }
    tx.execute("DELETE FROM buckets WHERE name = ?1", [name])
        .ctx("delete bucket")?;
    Ok(BucketDeletion::Deleted)
}

pub fn bucket_exists(conn: &Connection, name: &str) -> Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM buckets WHERE name = ?1)",
        [name],
        |r| r.get(0),
    )
    .ctx("look up bucket")
}

/// Every bucket with its creation time, by name.
pub fn list_buckets(conn: &Connection) -> Result<Vec<(String, i64)>> {
    let mut stmt = conn
        .prepare_cached("SELECT name, created_at FROM buckets ORDER BY name")
        .ctx("list buckets")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .ctx("list buckets")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("list buckets")?;
    Ok(rows)
}

/// The bucket's notification configuration: `None` when the bucket does
/// not exist, an empty configuration when it has none.
pub fn notification(conn: &Connection, bucket: &str) -> Result<Option<NotificationConfiguration>> {
    let doc: Option<Option<String>> = conn
        .query_row(
            "SELECT notification FROM buckets WHERE name = ?1",
            [bucket],
            |r| r.get(0),
        )
        .optional()
        .ctx("read notification configuration")?;
    match doc {
        None => Ok(None),
        Some(None) => Ok(Some(NotificationConfiguration::default())),
        Some(Some(doc)) => parse_doc(&format!("bucket {bucket} notification"), &doc).map(Some),
    }
}

/// Replaces the bucket's notification configuration; false when the bucket
/// does not exist.
pub fn set_notification(
    tx: &Transaction,
    bucket: &str,
    config: &NotificationConfiguration,
) -> Result<bool> {
    let doc = if config.rules.is_empty() {
        None
    } else {
        Some(to_doc("notification configuration", config)?)
    };
    let n = tx
        .execute(
            "UPDATE buckets SET notification = ?2 WHERE name = ?1",
            params![bucket, doc],
        )
        .ctx("set notification configuration")?;
    Ok(n > 0)
}

pub fn get_object(conn: &Connection, bucket: &str, key: &str) -> Result<Option<ObjectRow>> {
    let raw = conn
        .query_row(
            &format!("SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = ?1 AND key = ?2"),
            params![bucket, key],
            object_row,
        )
        .optional()
        .ctx("get object")?;
    raw.map(finish).transpose()
}

/// Stores `row`, replacing the object of that key; returns the replaced row.
pub fn put_object(tx: &Transaction, row: &ObjectRow) -> Result<Option<ObjectRow>> {
    let old = get_object(tx, &row.bucket, &row.key)?;
    tx.execute(
        &format!(
            "INSERT INTO objects ({OBJECT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (bucket, key) DO UPDATE SET size = excluded.size,
                 etag = excluded.etag, last_modified = excluded.last_modified,
                 segments = excluded.segments, meta = excluded.meta"
        ),
        params![
            row.bucket,
            row.key,
            row.size as i64,
            row.etag,
            row.last_modified,
            to_doc("segments", &row.segments)?,
            to_doc("object metadata", &row.meta)?,
        ],
    )
    .ctx("put object")?;
    Ok(old)
}

/// Deletes an object; returns its row when there was one.
pub fn delete_object(tx: &Transaction, bucket: &str, key: &str) -> Result<Option<ObjectRow>> {
    let old = get_object(tx, bucket, key)?;
    if old.is_some() {
        tx.execute(
            "DELETE FROM objects WHERE bucket = ?1 AND key = ?2",
            params![bucket, key],
        )
        .ctx("delete object")?;
    }
    Ok(old)
}

/// Up to `limit` objects of `bucket` whose keys start with `prefix` and
/// sort after `after`, in key order (UTF-8 byte order, as S3 lists).
pub fn list_objects(
    conn: &Connection,
    bucket: &str,
    prefix: &str,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<ObjectRow>> {
    // Keys compare as BLOBs (bytes); the prefix bounds the range from below,
    // and the scan stops at the first key past it.
    let from = match after {
        Some(a) if a >= prefix => a,
        _ => prefix,
    };
    let strict = after.is_some_and(|a| a >= prefix);
    let sql = format!(
        "SELECT {OBJECT_COLUMNS} FROM objects
         WHERE bucket = ?1 AND CAST(key AS BLOB) {} CAST(?2 AS BLOB)
         ORDER BY CAST(key AS BLOB) LIMIT ?3",
        if strict { ">" } else { ">=" }
    );
    let mut stmt = conn.prepare_cached(&sql).ctx("list objects")?;
    let mut rows = stmt
        .query(params![bucket, from, limit])
        .ctx("list objects")?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().ctx("list objects")? {
        let row = finish(object_row(r).ctx("list objects")?)?;
        if !row.key.starts_with(prefix) {
            break;
        }
        out.push(row);
    }
    Ok(out)
}

/// The next value of the event sequencer.
pub fn next_sequence(tx: &Transaction) -> Result<i64> {
    tx.query_row(
        "UPDATE object_sequence SET value = value + 1 WHERE id = 1 RETURNING value",
        [],
        |r| r.get(0),
    )
    .ctx("advance the object sequence")
}

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRow {
    pub upload_id: String,
    pub bucket: String,
    pub key: String,
    pub initiated: i64,
    pub meta: ObjectMeta,
}

/// One uploaded part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRow {
    pub part_number: u32,
    pub data_id: String,
    pub size: u64,
    pub etag: String,
    pub last_modified: i64,
}

pub fn insert_upload(tx: &Transaction, u: &UploadRow) -> Result<()> {
    tx.execute(
        "INSERT INTO uploads (upload_id, bucket, key, initiated, meta) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            u.upload_id,
            u.bucket,
            u.key,
            u.initiated,
            to_doc("upload metadata", &u.meta)?
        ],
    )
    .ctx("create upload")?;
    Ok(())
}

pub fn get_upload(conn: &Connection, upload_id: &str) -> Result<Option<UploadRow>> {
    let raw: Option<(String, String, String, i64, String)> = conn
        .query_row(
            "SELECT upload_id, bucket, key, initiated, meta FROM uploads WHERE upload_id = ?1",
            [upload_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()
        .ctx("get upload")?;
    raw.map(|(upload_id, bucket, key, initiated, meta)| {
        Ok(UploadRow {
            meta: parse_doc(&format!("upload {upload_id}"), &meta)?,
            upload_id,
            bucket,
            key,
            initiated,
        })
    })
    .transpose()
}

/// Removes an upload and its parts; returns the parts' data ids.
pub fn delete_upload(tx: &Transaction, upload_id: &str) -> Result<Vec<String>> {
    let mut stmt = tx
        .prepare_cached("DELETE FROM upload_parts WHERE upload_id = ?1 RETURNING data_id")
        .ctx("delete parts")?;
    let ids = stmt
        .query_map([upload_id], |r| r.get(0))
        .ctx("delete parts")?
        .collect::<Result<Vec<String>, _>>()
        .ctx("delete parts")?;
    tx.execute("DELETE FROM uploads WHERE upload_id = ?1", [upload_id])
        .ctx("delete upload")?;
    Ok(ids)
}

/// Stores a part, replacing an earlier upload of the same number; returns
/// the replaced part's data id.
pub fn put_part(tx: &Transaction, upload_id: &str, part: &PartRow) -> Result<Option<String>> {
    let old: Option<String> = tx
        .query_row(
            "SELECT data_id FROM upload_parts WHERE upload_id = ?1 AND part_number = ?2",
            params![upload_id, part.part_number],
            |r| r.get(0),
        )
        .optional()
        .ctx("read part")?;
    tx.execute(
        "INSERT INTO upload_parts (upload_id, part_number, data_id, size, etag, last_modified)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (upload_id, part_number) DO UPDATE SET data_id = excluded.data_id,
             size = excluded.size, etag = excluded.etag, last_modified = excluded.last_modified",
        params![
            upload_id,
            part.part_number,
            part.data_id,
            part.size as i64,
            part.etag,
            part.last_modified
        ],
    )
    .ctx("put part")?;
    Ok(old)
}

/// Parts of an upload numbered above `after`, ascending, at most `limit`.
pub fn list_parts(
    conn: &Connection,
    upload_id: &str,
    after: u32,
    limit: u32,
) -> Result<Vec<PartRow>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT part_number, data_id, size, etag, last_modified FROM upload_parts
             WHERE upload_id = ?1 AND part_number > ?2 ORDER BY part_number LIMIT ?3",
        )
        .ctx("list parts")?;
    let rows = stmt
        .query_map(params![upload_id, after, limit], |r| {
            Ok(PartRow {
                part_number: r.get(0)?,
                data_id: r.get(1)?,
                size: r.get::<_, i64>(2)?.max(0) as u64,
                etag: r.get(3)?,
                last_modified: r.get(4)?,
            })
        })
        .ctx("list parts")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("list parts")?;
    Ok(rows)
}

/// Uploads of `bucket` with keys starting with `prefix`, after the marker
/// (`key`, `upload id`), in (key, upload id) order, at most `limit`.
pub fn list_uploads(
    conn: &Connection,
    bucket: &str,
    prefix: &str,
    key_marker: &str,
    upload_id_marker: &str,
    limit: u32,
) -> Result<Vec<UploadRow>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT upload_id, bucket, key, initiated, meta FROM uploads
             WHERE bucket = ?1 AND (key > ?2 OR (key = ?2 AND upload_id > ?3))
             ORDER BY key, upload_id",
        )
        .ctx("list uploads")?;
    let raw = stmt
        .query_map(params![bucket, key_marker, upload_id_marker], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
            ))
        })
        .ctx("list uploads")?;
    let mut out = Vec::new();
    for row in raw {
        let (upload_id, bucket, key, initiated, meta) = row.ctx("list uploads")?;
        if !key.starts_with(prefix) {
            continue;
        }
        out.push(UploadRow {
            meta: parse_doc(&format!("upload {upload_id}"), &meta)?,
            upload_id,
            bucket,
            key,
            initiated,
        });
        if out.len() >= limit as usize {
            break;
        }
    }
    Ok(out)
}

/// Every data id a row names: objects' segments and uploads' parts.
pub fn referenced_data_ids(conn: &Connection) -> Result<HashSet<String>> {
    let mut ids = HashSet::new();
    let mut stmt = conn
        .prepare("SELECT segments FROM objects")
        .ctx("read segments")?;
    let docs = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .ctx("read segments")?;
    for doc in docs {
        let segments: Vec<Segment> = parse_doc("segments", &doc.ctx("read segments")?)?;
        ids.extend(segments.into_iter().map(|s| s.id));
    }
    let mut stmt = conn
        .prepare("SELECT data_id FROM upload_parts")
        .ctx("read parts")?;
    let parts = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .ctx("read parts")?;
    for id in parts {
        ids.insert(id.ctx("read parts")?);
    }
    Ok(ids)
}

/// Uploads initiated before `before` (millis): abandoned, to be aborted.
pub fn uploads_before(conn: &Connection, before: i64) -> Result<Vec<String>> {
    let mut stmt = conn
        .prepare_cached("SELECT upload_id FROM uploads WHERE initiated < ?1")
        .ctx("list old uploads")?;
    let ids = stmt
        .query_map([before], |r| r.get(0))
        .ctx("list old uploads")?
        .collect::<Result<Vec<String>, _>>()
        .ctx("list old uploads")?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("s.db")).unwrap();
        crate::migrate::migrate(&mut conn, 0).unwrap();
        (dir, conn)
    }

    fn object(key: &str, data: &str) -> ObjectRow {
        ObjectRow {
            bucket: "b".into(),
            key: key.into(),
            size: 3,
            etag: "e".into(),
            last_modified: 1,
            segments: vec![Segment {
                id: data.into(),
                size: 3,
            }],
            meta: ObjectMeta::default(),
        }
    }

    #[test]
    fn objects_list_in_byte_order_within_a_prefix() {
        let (_d, mut conn) = open();
        let tx = conn.transaction().unwrap();
        assert!(create_bucket(&tx, "b", 0).unwrap());
        assert!(!create_bucket(&tx, "b", 0).unwrap());
        for (k, d) in [
            ("a/1", "d1"),
            ("a/2", "d2"),
            ("a0", "d3"),
            ("b", "d4"),
            ("aé", "d5"),
        ] {
            assert!(put_object(&tx, &object(k, d)).unwrap().is_none());
        }
        let old = put_object(&tx, &object("a/2", "d6")).unwrap().unwrap();
        assert_eq!(old.segments[0].id, "d2");
        tx.commit().unwrap();
        let keys = |prefix: &str, after: Option<&str>, limit| -> Vec<String> {
            list_objects(&conn, "b", prefix, after, limit)
                .unwrap()
                .into_iter()
                .map(|o| o.key)
                .collect()
        };
        assert_eq!(keys("a", None, 10), ["a/1", "a/2", "a0", "aé"]);
        assert_eq!(keys("a/", None, 10), ["a/1", "a/2"]);
        assert_eq!(keys("a", Some("a/2"), 10), ["a0", "aé"]);
        assert_eq!(keys("", Some("a0"), 2), ["aé", "b"]);
        assert_eq!(keys("a", Some("0"), 1), ["a/1"]);
        let ids = referenced_data_ids(&conn).unwrap();
        assert!(ids.contains("d6") && !ids.contains("d2"));

        let tx = conn.transaction().unwrap();
        assert_eq!(delete_bucket(&tx, "b").unwrap(), BucketDeletion::NotEmpty);
        for k in ["a/1", "a/2", "a0", "b", "aé"] {
            assert!(delete_object(&tx, "b", k).unwrap().is_some());
        }
        assert!(delete_object(&tx, "b", "b").unwrap().is_none());
        assert_eq!(delete_bucket(&tx, "b").unwrap(), BucketDeletion::Deleted);
        assert_eq!(delete_bucket(&tx, "b").unwrap(), BucketDeletion::NotFound);
        assert_eq!(next_sequence(&tx).unwrap(), 1);
        assert_eq!(next_sequence(&tx).unwrap(), 2);
    }

    #[test]
    fn uploads_keep_their_latest_parts() {
        let (_d, mut conn) = open();
        let tx = conn.transaction().unwrap();
        create_bucket(&tx, "b", 0).unwrap();
        let upload = UploadRow {
            upload_id: "u1".into(),
            bucket: "b".into(),
            key: "k".into(),
            initiated: 5,
            meta: ObjectMeta::default(),
        };
        insert_upload(&tx, &upload).unwrap();
        let part = |n, id: &str| PartRow {
            part_number: n,
            data_id: id.into(),
            size: 1,
            etag: "e".into(),
            last_modified: 0,
        };
        assert_eq!(put_part(&tx, "u1", &part(1, "p1")).unwrap(), None);
        assert_eq!(
            put_part(&tx, "u1", &part(1, "p1b")).unwrap().as_deref(),
            Some("p1")
        );
        put_part(&tx, "u1", &part(2, "p2")).unwrap();
        assert_eq!(delete_bucket(&tx, "b").unwrap(), BucketDeletion::NotEmpty);
        tx.commit().unwrap();
        assert_eq!(get_upload(&conn, "u1").unwrap(), Some(upload));
        let parts = list_parts(&conn, "u1", 0, 10).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(list_parts(&conn, "u1", 1, 10).unwrap()[0].part_number, 2);
        assert_eq!(list_uploads(&conn, "b", "", "", "", 10).unwrap().len(), 1);
        assert_eq!(uploads_before(&conn, 6).unwrap(), ["u1"]);
        let tx = conn.transaction().unwrap();
        let mut ids = delete_upload(&tx, "u1").unwrap();
        ids.sort();
        assert_eq!(ids, ["p1b", "p2"]);
    }
}
