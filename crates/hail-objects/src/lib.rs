//! Hail's S3-compatible object store on local disk.
//!
//! [`ObjectStore`] implements [`s3s::S3`]: `s3s` parses the REST API and
//! checks signatures; this crate keeps buckets and objects. Metadata (which
//! objects exist, their size, ETag, content type, user metadata, and the
//! data files holding their bytes) lives in the state database
//! ([`hail_store::objects`]); bytes live in immutable data files
//! ([`disk`]).
//!
//! Invariants:
//! - **A 200 means durable.** An object's bytes are written to a temp file,
//!   fsynced, renamed into `data/` and the directory fsynced before the row
//!   naming them is committed (SQLite in WAL mode, synchronous commits).
//! - **Atomic replacement.** A write commits a new row naming new files;
//!   readers open the files the row they read names, so a reader sees the
//!   old object or the new one, never a mix. Concurrent writers of one key:
//!   the last commit wins whole.
//! - **Nothing outside the store.** Keys are never paths; files are named by
//!   random ids.
//! - **No garbage forever.** Files are removed after the commit that stops
//!   naming them; a crash in between, a write abandoned mid-body, or a
//!   multipart upload never completed leaves files that
//!   [`ObjectStore::collect_garbage`] removes (files no row names, older than
//!   a grace period that protects writes in flight; uploads older than a
//!   week are aborted).
//! - **Events with their change.** Bucket notifications are appended to the
//!   outbox ([`NOTIFICATION_TOPIC`]) in the same transaction as the object
//!   change they announce: an acknowledged write always has its events, a
//!   failed one never does.
//!
//! Multipart uploads complete without copying: the object's row names the
//! parts' files, in order, as its segments. A multi-GB video is not read
//! again to be assembled, and completing is one transaction.

pub mod disk;
pub mod error;
pub mod events;
mod s3;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hail_model::s3::{NotificationConfiguration, NotificationRule};
use hail_store::objects::{self, ObjectRow};
use hail_store::{outbox, Store, StoreError};
use serde_json::json;

pub use disk::Disk;
pub use error::ObjectsError;

/// The outbox topic bucket notifications are written to. Each event's
/// payload: `{"destination": <rule's ARN>, "eventId": <uuid>, "record":
/// {"Records": [<S3 event record>]}}`.
pub const NOTIFICATION_TOPIC: &str = "s3-notifications";
/// Largest single PUT (and part), as S3: 5 GiB.
pub const MAX_PUT_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// Smallest part but the last of a multipart upload, as S3: 5 MiB.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Most parts of one upload, as S3.
pub const MAX_PARTS: u32 = 10_000;
/// Files younger than this are never collected: they may belong to a write
/// whose row is not committed yet.
pub const DEFAULT_GC_GRACE: Duration = Duration::from_secs(3600);
/// Uploads neither completed nor aborted after this long are aborted.
pub const ABANDONED_UPLOAD_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Who made a change, for the event records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub principal: String,
    pub source_ip: String,
    pub request_id: String,
}

impl Default for Actor {
    fn default() -> Self {
        Actor {
            principal: "hail".to_owned(),
            source_ip: "127.0.0.1".to_owned(),
            request_id: uuid::Uuid::new_v4().simple().to_string(),
        }
    }
}

/// What a garbage collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub data_files: usize,
    pub temp_files: usize,
    pub uploads_aborted: usize,
}

#[derive(Clone)]
pub struct ObjectStore {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    disk: Disk,
    region: String,
    gc_grace: Duration,
}

impl std::fmt::Debug for ObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStore")
            .field("disk", &self.inner.disk)
            .field("region", &self.inner.region)
            .finish_non_exhaustive()
    }
}

pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl ObjectStore {
    /// The store keeping bytes under `dir` and metadata in `store`.
    pub fn open(
        dir: PathBuf,
        store: Store,
        region: impl Into<String>,
    ) -> Result<ObjectStore, ObjectsError> {
        let disk = Disk::open(&dir).map_err(ObjectsError::io)?;
        Ok(ObjectStore {
            inner: Arc::new(Inner {
                store,
                disk,
                region: region.into(),
                gc_grace: DEFAULT_GC_GRACE,
            }),
        })
    }

    /// This store collecting files older than `grace` (tests use zero).
    pub fn with_gc_grace(self, grace: Duration) -> ObjectStore {
        let inner = Inner {
            store: self.inner.store.clone(),
            disk: self.inner.disk.clone(),
            region: self.inner.region.clone(),
            gc_grace: grace,
        };
        ObjectStore {
            inner: Arc::new(inner),
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn disk(&self) -> &Disk {
        &self.inner.disk
    }

    pub(crate) async fn require_bucket(&self, bucket: &str) -> Result<(), ObjectsError> {
        let name = bucket.to_owned();
        let exists = self
            .inner
            .store
            .read(move |conn| objects::bucket_exists(conn, &name))
            .await?;
        if exists {
            Ok(())
        } else {
            Err(ObjectsError::NoSuchBucket)
        }
    }

    /// Commits `row` (replacing the object of its key) with the bucket's
    /// notifications of `event_name`, then removes the replaced files.
    pub(crate) async fn commit(
        &self,
        row: ObjectRow,
        event_name: &'static str,
        actor: &Actor,
        also_remove_upload: Option<String>,
    ) -> Result<(), ObjectsError> {
        let region = self.inner.region.clone();
        let actor = actor.clone();
        let new_ids: Vec<String> = row.data_ids().map(str::to_owned).collect();
        let replaced = self
            .inner
            .store
            .write(move |tx| {
                if !objects::bucket_exists(tx, &row.bucket)? {
                    return Ok(Err(ObjectsError::NoSuchBucket));
                }
                if let Some(upload) = &also_remove_upload {
                    if objects::get_upload(tx, upload)?.is_none() {
                        return Ok(Err(ObjectsError::NoSuchUpload));
                    }
                    // The parts now belong to the object: forget the upload
                    // without freeing its files.
                    objects::delete_upload(tx, upload)?;
                }
                let old = objects::put_object(tx, &row)?;
                notify(
                    tx,
                    &region,
                    &row.bucket,
                    &row.key,
                    event_name,
                    Some((row.size, &row.etag)),
                    row.last_modified,
                    &actor,
                )?;
                Ok::<_, StoreError>(Ok(old))
            })
            .await??;
        if let Some(old) = replaced {
            let stale: Vec<String> = old
                .data_ids()
                .filter(|id| !new_ids.iter().any(|n| n == id))
                .map(str::to_owned)
                .collect();
            self.inner.disk.remove(stale).await;
        }
        Ok(())
    }

    /// Deletes an object with its notifications; false when there was none.
    pub(crate) async fn remove_object(
        &self,
        bucket: &str,
        key: &str,
        actor: &Actor,
    ) -> Result<bool, ObjectsError> {
        let region = self.inner.region.clone();
        let (bucket, key, actor) = (bucket.to_owned(), key.to_owned(), actor.clone());
        let removed = self
            .inner
            .store
            .write(move |tx| {
                if !objects::bucket_exists(tx, &bucket)? {
                    return Ok(Err(ObjectsError::NoSuchBucket));
                }
                let Some(old) = objects::delete_object(tx, &bucket, &key)? else {
                    return Ok(Ok(None));
                };
                notify(
                    tx,
                    &region,
                    &bucket,
                    &key,
                    "s3:ObjectRemoved:Delete",
                    None,
                    now_millis(),
                    &actor,
                )?;
                Ok::<_, StoreError>(Ok(Some(old)))
            })
            .await??;
        match removed {
            Some(old) => {
                self.inner
                    .disk
                    .remove(old.data_ids().map(str::to_owned).collect())
                    .await;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The bucket's notification configuration.
    pub async fn notification_configuration(
        &self,
        bucket: &str,
    ) -> Result<NotificationConfiguration, ObjectsError> {
        let name = bucket.to_owned();
        self.inner
            .store
            .read(move |conn| objects::notification(conn, &name))
            .await?
            .ok_or(ObjectsError::NoSuchBucket)
    }

    /// Replaces the bucket's notification configuration.
    pub async fn set_notification_configuration(
        &self,
        bucket: &str,
        config: NotificationConfiguration,
    ) -> Result<(), ObjectsError> {
        config.validate().map_err(ObjectsError::InvalidArgument)?;
        let name = bucket.to_owned();
        let found = self
            .inner
            .store
            .write(move |tx| objects::set_notification(tx, &name, &config))
            .await?;
        if found {
            Ok(())
        } else {
            Err(ObjectsError::NoSuchBucket)
        }
    }

    /// Adds `rule` to the bucket's configuration, replacing a rule of the
    /// same id, in one transaction.
    pub async fn put_notification_rule(
        &self,
        bucket: &str,
        rule: NotificationRule,
    ) -> Result<(), ObjectsError> {
        self.edit_rules(bucket, move |config| {
            config.rules.retain(|r| r.id != rule.id);
            config.rules.push(rule);
        })
        .await
    }

    /// Removes rule `id` from the bucket's configuration, if it is there.
    pub async fn remove_notification_rule(
        &self,
        bucket: &str,
        id: &str,
    ) -> Result<(), ObjectsError> {
        let id = id.to_owned();
        self.edit_rules(bucket, move |config| config.rules.retain(|r| r.id != id))
            .await
    }

    async fn edit_rules(
        &self,
        bucket: &str,
        edit: impl FnOnce(&mut NotificationConfiguration) + Send + 'static,
    ) -> Result<(), ObjectsError> {
        let name = bucket.to_owned();
        self.inner
            .store
            .write(move |tx| {
                let Some(mut config) = objects::notification(tx, &name)? else {
                    return Ok(Err(ObjectsError::NoSuchBucket));
                };
                edit(&mut config);
                if let Err(e) = config.validate() {
                    return Ok(Err(ObjectsError::InvalidArgument(e)));
                }
                objects::set_notification(tx, &name, &config)?;
                Ok::<_, StoreError>(Ok(()))
            })
            .await?
    }

    /// Removes what no row names: data files and temp files older than the
    /// grace period, and multipart uploads abandoned for a week.
    pub async fn collect_garbage(&self) -> Result<GcReport, ObjectsError> {
        let mut report = GcReport::default();
        let cutoff = now_millis() - ABANDONED_UPLOAD_AGE.as_millis() as i64;
        let abandoned = self
            .inner
            .store
            .read(move |conn| objects::uploads_before(conn, cutoff))
            .await?;
        for upload in abandoned {
            let id = upload.clone();
            let parts = self
                .inner
                .store
                .write(move |tx| objects::delete_upload(tx, &id))
                .await?;
            self.inner.disk.remove(parts).await;
            report.uploads_aborted += 1;
        }
        // Listing files before reading the rows: a file written after the
        // listing is not considered, one listed is checked against rows
        // committed after it was (old enough to be) written.
        let disk = self.inner.disk.clone();
        let grace = self.inner.gc_grace;
        let (ids, temps) = tokio::task::spawn_blocking(move || disk.old_files(grace))
            .await
            .map_err(|e| ObjectsError::Internal(format!("gc task: {e}")))?
            .map_err(ObjectsError::io)?;
        let referenced = self.inner.store.read(objects::referenced_data_ids).await?;
        let orphans: Vec<String> = ids
            .into_iter()
            .filter(|id| !referenced.contains(id))
            .collect();
        report.data_files = orphans.len();
        self.inner.disk.remove(orphans).await;
        for temp in &temps {
            let _ = std::fs::remove_file(temp);
        }
        report.temp_files = temps.len();
        Ok(report)
    }
}

/// Appends the bucket's notifications of one change to the outbox.
#[allow(clippy::too_many_arguments)]
fn notify(
    tx: &hail_store::Transaction,
    region: &str,
    bucket: &str,
    key: &str,
    event_name: &str,
    object: Option<(u64, &str)>,
    time_millis: i64,
    actor: &Actor,
) -> Result<(), StoreError> {
    let Some(config) = objects::notification(tx, bucket)? else {
        return Ok(());
    };
    let rules: Vec<&NotificationRule> = config.matching(event_name, key).collect();
    if rules.is_empty() {
        return Ok(());
    }
    let sequence = objects::next_sequence(tx)?;
    let facts = events::EventFacts {
        event_name,
        region,
        bucket,
        key,
        object,
        sequence,
        time_millis,
        principal: &actor.principal,
        source_ip: &actor.source_ip,
        request_id: &actor.request_id,
    };
    for rule in rules {
        let payload = json!({
            "destination": rule.destination_arn,
            "eventId": uuid::Uuid::new_v4().to_string(),
            "record": events::event_record(&facts, &rule.id),
        });
        outbox::append(tx, NOTIFICATION_TOPIC, &format!("{bucket}/{key}"), &payload)?;
    }
    Ok(())
}
