//! The S3 operations, on [`ObjectStore`].

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use hail_model::s3::{
    validate_bucket_name, validate_key, KeyError, NotificationConfiguration, NotificationRule,
    ObjectMeta, RuleKind,
};
use hail_store::objects::{self, BucketDeletion, ObjectRow, PartRow, Segment, UploadRow};
use hail_store::StoreError;
use md5::{Digest, Md5};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};

use crate::disk::Written;
use crate::error::ObjectsError;
use crate::{now_millis, Actor, ObjectStore, MAX_PARTS, MAX_PUT_SIZE, MIN_PART_SIZE};

/// Most keys one listing returns, as S3.
const MAX_LIST_KEYS: i32 = 1000;
/// Rows read from the store per step of a listing.
const LIST_BATCH: u32 = 1000;

fn actor<T>(req: &S3Request<T>) -> Actor {
    Actor {
        principal: req
            .credentials
            .as_ref()
            .map_or_else(|| "anonymous".to_owned(), |c| c.access_key.clone()),
        ..Actor::default()
    }
}

fn check_bucket(bucket: &str) -> Result<(), ObjectsError> {
    validate_bucket_name(bucket).map_err(ObjectsError::InvalidBucketName)
}

fn check_key(key: &str) -> Result<(), ObjectsError> {
    validate_key(key).map_err(|e| match e {
        KeyError::TooLong => ObjectsError::KeyTooLong,
        KeyError::Empty => ObjectsError::InvalidArgument("the object key is empty".into()),
        KeyError::Nul => {
            ObjectsError::InvalidArgument("object keys may not contain the NUL character".into())
        }
    })
}

fn timestamp(millis: i64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(millis.max(0) as u64))
}

/// HTTP dates have whole seconds: conditions compare at that precision.
fn timestamp_secs(millis: i64) -> Timestamp {
    timestamp(millis.div_euclid(1000) * 1000)
}

fn http_date(t: &Timestamp) -> Option<String> {
    let mut buf = Vec::new();
    t.format(TimestampFormat::HttpDate, &mut buf).ok()?;
    String::from_utf8(buf).ok()
}

fn parse_http_date(s: &str) -> Option<Timestamp> {
    Timestamp::parse(TimestampFormat::HttpDate, s).ok()
}

fn etag(value: &str) -> ETag {
    ETag::Strong(value.to_owned())
}

#[allow(clippy::too_many_arguments)]
fn meta_of(
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<Timestamp>,
    metadata: Option<Metadata>,
) -> Result<ObjectMeta, ObjectsError> {
    let meta = ObjectMeta {
        content_type,
        content_encoding,
        content_disposition,
        content_language,
        cache_control,
        expires: expires.as_ref().and_then(http_date),
        user: metadata
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
    };
    meta.validate().map_err(ObjectsError::MetadataTooLarge)?;
    Ok(meta)
}

/// Checks a Content-MD5 header against what was written.
fn check_md5(content_md5: Option<&str>, written: &Written) -> Result<(), ObjectsError> {
    let Some(given) = content_md5 else {
        return Ok(());
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(given.trim())
        .map_err(|_| ObjectsError::InvalidDigest)?;
    if decoded.len() != 16 {
        return Err(ObjectsError::InvalidDigest);
    }
    if decoded != written.md5 {
        return Err(ObjectsError::BadDigest);
    }
    Ok(())
}

fn etag_matches(cond: &ETagCondition, value: &str) -> bool {
    match cond {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == value,
    }
}

/// RFC 9110 §13.2.2's order of evaluation, as S3 applies it.
fn check_conditions(
    row: &ObjectRow,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> Result<(), ObjectsError> {
    let modified = timestamp_secs(row.last_modified);
    if let Some(cond) = if_match {
        if !etag_matches(cond, &row.etag) {
            return Err(ObjectsError::PreconditionFailed);
        }
    } else if let Some(since) = if_unmodified_since {
        if modified > *since {
            return Err(ObjectsError::PreconditionFailed);
        }
    }
    if let Some(cond) = if_none_match {
        if etag_matches(cond, &row.etag) {
            return Err(ObjectsError::NotModified);
        }
    } else if let Some(since) = if_modified_since {
        if modified <= *since {
            return Err(ObjectsError::NotModified);
        }
    }
    Ok(())
}

/// The byte range a request asks for, checked against the object's size.
fn byte_range(range: Option<&Range>, size: u64) -> Result<Option<(u64, u64)>, ObjectsError> {
    let Some(range) = range else {
        return Ok(None);
    };
    let r = range.check(size).map_err(|_| ObjectsError::InvalidRange)?;
    if r.start >= r.end {
        return Err(ObjectsError::InvalidRange);
    }
    Ok(Some((r.start, r.end)))
}

fn url_encode_key(key: &str) -> String {
    hail_model::triggers::url_encode(key, true)
}

impl ObjectStore {
    async fn object(&self, bucket: &str, key: &str) -> Result<ObjectRow, ObjectsError> {
        let (b, k) = (bucket.to_owned(), key.to_owned());
        let found = self
            .store()
            .read(move |conn| {
                Ok::<_, StoreError>(match objects::get_object(conn, &b, &k)? {
                    Some(row) => Ok(row),
                    None if objects::bucket_exists(conn, &b)? => Err(ObjectsError::NoSuchKey),
                    None => Err(ObjectsError::NoSuchBucket),
                })
            })
            .await??;
        Ok(found)
    }

    /// Reads an object's row and opens its files. An overwrite may remove
    /// the files between the two; the row is read again then, and names
    /// the new object's files.
    async fn open_object(
        &self,
        bucket: &str,
        key: &str,
        check: impl Fn(&ObjectRow) -> Result<Option<(u64, u64)>, ObjectsError>,
    ) -> Result<(ObjectRow, Option<(u64, u64)>, StreamingBlob), ObjectsError> {
        let mut attempts = 0;
        loop {
            let row = self.object(bucket, key).await?;
            let range = check(&row)?;
            let (start, end) = range.unwrap_or((0, row.size));
            match self.disk().read(&row.segments, start, end).await {
                Ok(stream) => return Ok((row, range, StreamingBlob::wrap(stream))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 3 => {
                    attempts += 1;
                }
                Err(e) => return Err(ObjectsError::io(e)),
            }
        }
    }

    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<String>,
        max: usize,
    ) -> Result<ListPage, ObjectsError> {
        self.require_bucket(bucket).await?;
        let mut page = ListPage::default();
        let delimiter = delimiter.filter(|d| !d.is_empty());
        // A resumed listing skips the rest of a common prefix it ended on.
        let mut skip: Option<String> = after
            .clone()
            .filter(|a| delimiter.is_some_and(|d| a.len() > prefix.len() && a.ends_with(d)));
        let mut cursor = after;
        let mut count = 0usize;
        loop {
            let (b, p, c) = (bucket.to_owned(), prefix.to_owned(), cursor.clone());
            let batch = self
                .store()
                .read(move |conn| objects::list_objects(conn, &b, &p, c.as_deref(), LIST_BATCH))
                .await?;
            let full = batch.len() == LIST_BATCH as usize;
            for row in batch {
                cursor = Some(row.key.clone());
                if skip.as_deref().is_some_and(|s| row.key.starts_with(s)) {
                    continue;
                }
                let common = delimiter.and_then(|d| {
                    let rest = &row.key[prefix.len()..];
                    rest.find(d)
                        .map(|i| format!("{prefix}{}", &rest[..i + d.len()]))
                });
                if count == max {
                    page.truncated = true;
                    return Ok(page);
                }
                count += 1;
                match common {
                    Some(cp) => {
                        page.last = Some(cp.clone());
                        skip = Some(cp.clone());
                        page.prefixes.push(cp);
                    }
                    None => {
                        page.last = Some(row.key.clone());
                        page.contents.push(row);
                    }
                }
            }
            if !full {
                return Ok(page);
            }
        }
    }

    async fn write_body(
        &self,
        body: Option<StreamingBlob>,
        content_length: Option<i64>,
        content_md5: Option<&str>,
    ) -> Result<Written, ObjectsError> {
        let expected = content_length.map(|l| l.max(0) as u64);
        let written = match body {
            Some(body) => self.disk().write(body, expected, MAX_PUT_SIZE).await?,
            None => {
                let empty = futures_util::stream::empty::<Result<bytes::Bytes, std::io::Error>>();
                self.disk().write(empty, expected, MAX_PUT_SIZE).await?
            }
        };
        if let Err(e) = check_md5(content_md5, &written) {
            self.disk().remove(vec![written.id.clone()]).await;
            return Err(e);
        }
        Ok(written)
    }
}

#[derive(Debug, Default)]
struct ListPage {
    contents: Vec<ObjectRow>,
    prefixes: Vec<String>,
    /// The last key or common prefix listed: where the next page starts.
    last: Option<String>,
    truncated: bool,
}

impl ListPage {
    /// The page's objects as S3 lists them, keys URL-encoded if asked.
    fn listed_objects(&self, encode: bool) -> Vec<Object> {
        self.contents
            .iter()
            .map(|r| listed_object(r, encode))
            .collect()
    }

    /// The page's common prefixes, URL-encoded if asked.
    fn common_prefixes(&self, encode: bool) -> Vec<CommonPrefix> {
        self.prefixes
            .iter()
            .map(|p| CommonPrefix {
                prefix: Some(if encode { url_encode_key(p) } else { p.clone() }),
            })
            .collect()
    }
}

fn encode_token(after: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(after.as_bytes())
}

fn decode_token(token: &str) -> Result<String, ObjectsError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            ObjectsError::InvalidArgument("The continuation token provided is incorrect".into())
        })
}

fn max_keys(given: Option<i32>) -> Result<usize, ObjectsError> {
    match given {
        None => Ok(MAX_LIST_KEYS as usize),
        Some(n) if n < 0 => Err(ObjectsError::InvalidArgument(
            "max-keys must be a non-negative integer".into(),
        )),
        Some(n) => Ok(n.min(MAX_LIST_KEYS) as usize),
    }
}

fn listed_object(row: &ObjectRow, encode: bool) -> Object {
    Object {
        key: Some(if encode {
            url_encode_key(&row.key)
        } else {
            row.key.clone()
        }),
        e_tag: Some(etag(&row.etag)),
        last_modified: Some(timestamp(row.last_modified)),
        size: Some(row.size as i64),
        storage_class: Some(ObjectStorageClass::from_static(
            ObjectStorageClass::STANDARD,
        )),
        ..Default::default()
    }
}

fn wants_url_encoding(e: Option<&EncodingType>) -> bool {
    e.is_some_and(|e| e.as_str() == EncodingType::URL)
}

fn rule_of(
    kind: RuleKind,
    id: Option<String>,
    arn: String,
    events: Vec<Event>,
    filter: Option<NotificationConfigurationFilter>,
) -> Result<NotificationRule, ObjectsError> {
    let mut prefix = None;
    let mut suffix = None;
    for rule in filter
        .and_then(|f| f.key)
        .and_then(|k| k.filter_rules)
        .unwrap_or_default()
    {
        let name = rule.name.map(|n| n.as_str().to_ascii_lowercase());
        let value = rule.value.unwrap_or_default();
        let slot = match name.as_deref() {
            Some("prefix") => &mut prefix,
            Some("suffix") => &mut suffix,
            _ => {
                return Err(ObjectsError::InvalidArgument(
                    "filter rule names must be prefix or suffix".into(),
                ))
            }
        };
        if slot.replace(value).is_some() {
            return Err(ObjectsError::InvalidArgument(
                "Cannot specify more than one prefix or suffix rule in a filter.".into(),
            ));
        }
    }
    Ok(NotificationRule {
        id: id
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        kind,
        destination_arn: arn,
        events: events.into_iter().map(String::from).collect(),
        prefix,
        suffix,
    })
}

fn filter_of(rule: &NotificationRule) -> Option<NotificationConfigurationFilter> {
    let mut rules = Vec::new();
    for (name, value) in [
        (FilterRuleName::PREFIX, &rule.prefix),
        (FilterRuleName::SUFFIX, &rule.suffix),
    ] {
        if let Some(v) = value {
            rules.push(FilterRule {
                name: Some(FilterRuleName::from_static(name)),
                value: Some(v.clone()),
            });
        }
    }
    if rules.is_empty() {
        return None;
    }
    Some(NotificationConfigurationFilter {
        key: Some(S3KeyFilter {
            filter_rules: Some(rules),
        }),
    })
}

#[async_trait::async_trait]
impl S3 for ObjectStore {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let bucket = req.input.bucket;
        check_bucket(&bucket)?;
        let name = bucket.clone();
        let created = self
            .store()
            .write(move |tx| objects::create_bucket(tx, &name, now_millis()))
            .await
            .map_err(ObjectsError::from)?;
        if !created {
            return Err(ObjectsError::BucketAlreadyOwnedByYou.into());
        }
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{bucket}")),
        }))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let name = req.input.bucket;
        let outcome = self
            .store()
            .write(move |tx| objects::delete_bucket(tx, &name))
            .await
            .map_err(ObjectsError::from)?;
        match outcome {
            BucketDeletion::Deleted => Ok(S3Response::new(DeleteBucketOutput {})),
            BucketDeletion::NotFound => Err(ObjectsError::NoSuchBucket.into()),
            BucketDeletion::NotEmpty => Err(ObjectsError::BucketNotEmpty.into()),
        }
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.require_bucket(&req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(self.inner.region.clone()),
            ..Default::default()
        }))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.require_bucket(&req.input.bucket).await?;
        // us-east-1 is written as no constraint, as S3 does.
        let constraint = (self.inner.region != "us-east-1")
            .then(|| BucketLocationConstraint::from(self.inner.region.clone()));
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint: constraint,
        }))
    }

    async fn list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let buckets = self
            .store()
            .read(objects::list_buckets)
            .await
            .map_err(ObjectsError::from)?;
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(
                buckets
                    .into_iter()
                    .map(|(name, created)| Bucket {
                        name: Some(name),
                        creation_date: Some(timestamp(created)),
                        bucket_region: Some(self.inner.region.clone()),
                    })
                    .collect(),
            ),
            owner: Some(Owner {
                display_name: Some("hail".to_owned()),
                id: Some("hail".to_owned()),
            }),
            ..Default::default()
        }))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let actor = actor(&req);
        let input = req.input;
        check_key(&input.key)?;
        let meta = meta_of(
            input.content_type,
            input.content_encoding,
            input.content_disposition,
            input.content_language,
            input.cache_control,
            input.expires,
            input.metadata,
        )?;
        self.require_bucket(&input.bucket).await?;
        if input
            .if_none_match
            .as_ref()
            .is_some_and(ETagCondition::is_any)
            && self.object(&input.bucket, &input.key).await.is_ok()
        {
            return Err(ObjectsError::PreconditionFailed.into());
        }
        let written = self
            .write_body(
                input.body,
                input.content_length,
                input.content_md5.as_deref(),
            )
            .await?;
        let etag_value = hex::encode(written.md5);
        let row = ObjectRow {
            bucket: input.bucket,
            key: input.key,
            size: written.size,
            etag: etag_value.clone(),
            last_modified: now_millis(),
            segments: vec![Segment {
                id: written.id.clone(),
                size: written.size,
            }],
            meta,
        };
        if let Err(e) = self.commit(row, "s3:ObjectCreated:Put", &actor, None).await {
            self.disk().remove(vec![written.id]).await;
            return Err(e.into());
        }
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(etag(&etag_value)),
            size: Some(written.size as i64),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        if input.part_number.is_some() {
            return Err(ObjectsError::NotImplemented("GetObject by partNumber".into()).into());
        }
        let (row, range, body) = self
            .open_object(&input.bucket, &input.key, |row| {
                check_conditions(
                    row,
                    input.if_match.as_ref(),
                    input.if_none_match.as_ref(),
                    input.if_modified_since.as_ref(),
                    input.if_unmodified_since.as_ref(),
                )?;
                byte_range(input.range.as_ref(), row.size)
            })
            .await?;
        let (length, content_range) = match range {
            Some((start, end)) => (
                end - start,
                Some(format!("bytes {start}-{}/{}", end - 1, row.size)),
            ),
            None => (row.size, None),
        };
        let meta = row.meta;
        let output = GetObjectOutput {
            body: Some(body),
            accept_ranges: Some("bytes".to_owned()),
            content_length: Some(length as i64),
            content_range: content_range.clone(),
            content_type: input.response_content_type.or(meta.content_type),
            content_encoding: input.response_content_encoding.or(meta.content_encoding),
            content_disposition: input
                .response_content_disposition
                .or(meta.content_disposition),
            content_language: input.response_content_language.or(meta.content_language),
            cache_control: input.response_cache_control.or(meta.cache_control),
            expires: input
                .response_expires
                .or_else(|| meta.expires.as_deref().and_then(parse_http_date)),
            e_tag: Some(etag(&row.etag)),
            last_modified: Some(timestamp(row.last_modified)),
            metadata: (!meta.user.is_empty()).then(|| meta.user.into_iter().collect()),
            parts_count: row.etag.split_once('-').and_then(|(_, n)| n.parse().ok()),
            ..Default::default()
        };
        let mut response = S3Response::new(output);
        if content_range.is_some() {
            response.status = Some(http::StatusCode::PARTIAL_CONTENT);
        }
        Ok(response)
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let row = self.object(&input.bucket, &input.key).await?;
        check_conditions(
            &row,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let range = byte_range(input.range.as_ref(), row.size)?;
        let length = range.map_or(row.size, |(s, e)| e - s);
        let meta = row.meta;
        Ok(S3Response::new(HeadObjectOutput {
            accept_ranges: Some("bytes".to_owned()),
            content_length: Some(length as i64),
            content_range: range.map(|(s, e)| format!("bytes {s}-{}/{}", e - 1, row.size)),
            content_type: meta.content_type,
            content_encoding: meta.content_encoding,
            content_disposition: meta.content_disposition,
            content_language: meta.content_language,
            cache_control: meta.cache_control,
            expires: meta.expires.as_deref().and_then(parse_http_date),
            e_tag: Some(etag(&row.etag)),
            last_modified: Some(timestamp(row.last_modified)),
            metadata: (!meta.user.is_empty()).then(|| meta.user.into_iter().collect()),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let actor = actor(&req);
        let input = req.input;
        if let Some(cond) = &input.if_match {
            match self.object(&input.bucket, &input.key).await {
                Ok(row) if etag_matches(cond, &row.etag) => {}
                Ok(_) => return Err(ObjectsError::PreconditionFailed.into()),
                Err(ObjectsError::NoSuchKey) => return Err(ObjectsError::NoSuchKey.into()),
                Err(e) => return Err(e.into()),
            }
        }
        // Deleting a key that does not exist succeeds, as in S3.
        self.remove_object(&input.bucket, &input.key, &actor)
            .await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let actor = actor(&req);
        let input = req.input;
        self.require_bucket(&input.bucket).await?;
        if input.delete.objects.len() > 1000 {
            return Err(ObjectsError::MalformedXml(
                "a DeleteObjects request may name at most 1000 keys".into(),
            )
            .into());
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for obj in input.delete.objects {
            let key = obj.key;
            let result = match check_key(&key) {
                Ok(()) => self.remove_object(&input.bucket, &key, &actor).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(_) => {
                    if !quiet {
                        deleted.push(DeletedObject {
                            key: Some(key),
                            ..Default::default()
                        });
                    }
                }
                Err(e) => {
                    let s3 = s3s::S3Error::from(e);
                    errors.push(Error {
                        code: Some(s3.code().as_str().to_owned()),
                        key: Some(key),
                        message: s3.message().map(str::to_owned),
                        version_id: None,
                    });
                }
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let actor = actor(&req);
        let input = req.input;
        check_key(&input.key)?;
        let (src_bucket, src_key) = match &input.copy_source {
            CopySource::Bucket { bucket, key, .. } => (bucket.to_string(), key.to_string()),
            _ => {
                return Err(ObjectsError::NotImplemented(
                    "copy sources other than bucket/key".into(),
                )
                .into())
            }
        };
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        if !replace && src_bucket == input.bucket && src_key == input.key {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
        self.require_bucket(&input.bucket).await?;
        let (source, _, body) = self
            .open_object(&src_bucket, &src_key, |row| {
                check_conditions(
                    row,
                    input.copy_source_if_match.as_ref(),
                    input.copy_source_if_none_match.as_ref(),
                    input.copy_source_if_modified_since.as_ref(),
                    input.copy_source_if_unmodified_since.as_ref(),
                )
                .map_err(|e| match e {
                    // A copy's unmet conditions are all 412, as in S3.
                    ObjectsError::NotModified => ObjectsError::PreconditionFailed,
                    other => other,
                })?;
                Ok(None)
            })
            .await?;
        let meta = if replace {
            meta_of(
                input.content_type,
                input.content_encoding,
                input.content_disposition,
                input.content_language,
                input.cache_control,
                input.expires,
                input.metadata,
            )?
        } else {
            source.meta.clone()
        };
        let written = self
            .disk()
            .write(body, Some(source.size), MAX_PUT_SIZE)
            .await?;
        let etag_value = hex::encode(written.md5);
        let modified = now_millis();
        let row = ObjectRow {
            bucket: input.bucket,
            key: input.key,
            size: written.size,
            etag: etag_value.clone(),
            last_modified: modified,
            segments: vec![Segment {
                id: written.id.clone(),
                size: written.size,
            }],
            meta,
        };
        if let Err(e) = self
            .commit(row, "s3:ObjectCreated:Copy", &actor, None)
            .await
        {
            self.disk().remove(vec![written.id]).await;
            return Err(e.into());
        }
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&etag_value)),
                last_modified: Some(timestamp(modified)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let max = max_keys(input.max_keys)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let after = match &input.continuation_token {
            Some(t) => Some(decode_token(t)?),
            None => input.start_after.clone().filter(|s| !s.is_empty()),
        };
        let page = self
            .list_page(
                &input.bucket,
                &prefix,
                input.delimiter.as_deref(),
                after,
                max,
            )
            .await?;
        let encode = wants_url_encoding(input.encoding_type.as_ref());
        let enc = |s: String| if encode { url_encode_key(&s) } else { s };
        let key_count = (page.contents.len() + page.prefixes.len()) as i32;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(enc(prefix)),
            delimiter: input.delimiter.map(enc),
            max_keys: Some(max as i32),
            key_count: Some(key_count),
            is_truncated: Some(page.truncated),
            continuation_token: input.continuation_token,
            next_continuation_token: page
                .truncated
                .then(|| page.last.as_deref().map(encode_token))
                .flatten(),
            start_after: input.start_after.map(enc),
            encoding_type: input.encoding_type,
            contents: Some(page.listed_objects(encode)),
            common_prefixes: Some(page.common_prefixes(encode)),
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let max = max_keys(input.max_keys)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let after = input.marker.clone().filter(|m| !m.is_empty());
        let page = self
            .list_page(
                &input.bucket,
                &prefix,
                input.delimiter.as_deref(),
                after,
                max,
            )
            .await?;
        let encode = wants_url_encoding(input.encoding_type.as_ref());
        let enc = |s: String| if encode { url_encode_key(&s) } else { s };
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(enc(prefix)),
            marker: input.marker.map(enc),
            delimiter: input.delimiter.map(enc),
            max_keys: Some(max as i32),
            is_truncated: Some(page.truncated),
            next_marker: page
                .truncated
                .then_some(page.last.clone())
                .flatten()
                .map(enc),
            encoding_type: input.encoding_type,
            contents: Some(page.listed_objects(encode)),
            common_prefixes: Some(page.common_prefixes(encode)),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        let meta = meta_of(
            input.content_type,
            input.content_encoding,
            input.content_disposition,
            input.content_language,
            input.cache_control,
            input.expires,
            input.metadata,
        )?;
        let upload = UploadRow {
            upload_id: crate::disk::new_id(),
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            initiated: now_millis(),
            meta,
        };
        let stored = upload.clone();
        self.store()
            .write(move |tx| {
                if !objects::bucket_exists(tx, &stored.bucket)? {
                    return Ok(Err(ObjectsError::NoSuchBucket));
                }
                objects::insert_upload(tx, &stored)?;
                Ok::<_, StoreError>(Ok(()))
            })
            .await
            .map_err(ObjectsError::from)??;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload.upload_id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        let number = u32::try_from(input.part_number)
            .ok()
            .filter(|n| (1..=MAX_PARTS).contains(n))
            .ok_or_else(|| {
                ObjectsError::InvalidArgument(format!(
                    "Part number must be an integer between 1 and {MAX_PARTS}, inclusive"
                ))
            })?;
        let upload_id = input.upload_id.clone();
        let found = self
            .store()
            .read(move |conn| objects::get_upload(conn, &upload_id))
            .await
            .map_err(ObjectsError::from)?;
        match found {
            Some(u) if u.bucket == input.bucket && u.key == input.key => {}
            _ => return Err(ObjectsError::NoSuchUpload.into()),
        }
        let written = self
            .write_body(
                input.body,
                input.content_length,
                input.content_md5.as_deref(),
            )
            .await?;
        let etag_value = hex::encode(written.md5);
        let part = PartRow {
            part_number: number,
            data_id: written.id.clone(),
            size: written.size,
            etag: etag_value.clone(),
            last_modified: now_millis(),
        };
        let upload_id = input.upload_id;
        let outcome = self
            .store()
            .write(move |tx| {
                if objects::get_upload(tx, &upload_id)?.is_none() {
                    return Ok(Err(ObjectsError::NoSuchUpload));
                }
                Ok::<_, StoreError>(Ok(objects::put_part(tx, &upload_id, &part)?))
            })
            .await
            .map_err(ObjectsError::from)?;
        match outcome {
            Ok(replaced) => {
                self.disk().remove(replaced.into_iter().collect()).await;
            }
            Err(e) => {
                self.disk().remove(vec![written.id]).await;
                return Err(e.into());
            }
        }
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(etag(&etag_value)),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let actor = actor(&req);
        let input = req.input;
        let wanted: Vec<(u32, Option<String>)> = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                (
                    p.part_number
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or(0),
                    p.e_tag.map(|e| e.value().trim_matches('"').to_owned()),
                )
            })
            .collect();
        if wanted.is_empty() {
            return Err(ObjectsError::MalformedXml(
                "a CompleteMultipartUpload request must name at least one part".into(),
            )
            .into());
        }
        if wanted.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(ObjectsError::InvalidPartOrder.into());
        }
        let (bucket, key, upload_id) = (input.bucket.clone(), input.key.clone(), input.upload_id);
        let region = self.inner.region.clone();
        let result = self
            .store()
            .write(move |tx| {
                let Some(upload) = objects::get_upload(tx, &upload_id)? else {
                    return Ok(Err(ObjectsError::NoSuchUpload));
                };
                if upload.bucket != bucket || upload.key != key {
                    return Ok(Err(ObjectsError::NoSuchUpload));
                }
                let parts = objects::list_parts(tx, &upload_id, 0, MAX_PARTS)?;
                let mut chosen: Vec<&PartRow> = Vec::with_capacity(wanted.len());
                for (number, tag) in &wanted {
                    let Some(part) = parts.iter().find(|p| p.part_number == *number) else {
                        return Ok(Err(ObjectsError::InvalidPart(*number)));
                    };
                    if tag.as_deref().is_some_and(|t| t != part.etag) {
                        return Ok(Err(ObjectsError::InvalidPart(*number)));
                    }
                    chosen.push(part);
                }
                let last = chosen.len() - 1;
                if let Some((_, small)) = chosen
                    .iter()
                    .enumerate()
                    .find(|(i, p)| *i < last && p.size < MIN_PART_SIZE)
                {
                    return Ok(Err(ObjectsError::EntityTooSmall {
                        part: small.part_number,
                        size: small.size,
                    }));
                }
                let mut md5 = Md5::new();
                for part in &chosen {
                    match hex::decode(&part.etag) {
                        Ok(bytes) => md5.update(&bytes),
                        Err(_) => return Ok(Err(ObjectsError::InvalidPart(part.part_number))),
                    }
                }
                let etag_value = format!("{}-{}", hex::encode(md5.finalize()), chosen.len());
                let segments: Vec<Segment> = chosen
                    .iter()
                    .map(|p| Segment {
                        id: p.data_id.clone(),
                        size: p.size,
                    })
                    .collect();
                let unused: Vec<String> = parts
                    .iter()
                    .filter(|p| !segments.iter().any(|s| s.id == p.data_id))
                    .map(|p| p.data_id.clone())
                    .collect();
                let row = ObjectRow {
                    bucket: bucket.clone(),
                    key: key.clone(),
                    size: segments.iter().map(|s| s.size).sum(),
                    etag: etag_value.clone(),
                    last_modified: now_millis(),
                    segments,
                    meta: upload.meta,
                };
                objects::delete_upload(tx, &upload_id)?;
                let old = objects::put_object(tx, &row)?;
                crate::notify(
                    tx,
                    &region,
                    &row.bucket,
                    &row.key,
                    "s3:ObjectCreated:CompleteMultipartUpload",
                    Some((row.size, &row.etag)),
                    row.last_modified,
                    &actor,
                )?;
                let mut stale = unused;
                if let Some(old) = old {
                    stale.extend(
                        old.data_ids()
                            .filter(|id| !row.data_ids().any(|n| n == *id))
                            .map(str::to_owned),
                    );
                }
                Ok::<_, StoreError>(Ok((etag_value, stale)))
            })
            .await
            .map_err(ObjectsError::from)?;
        let (etag_value, stale) = result?;
        self.disk().remove(stale).await;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            e_tag: Some(etag(&etag_value)),
            location: Some(format!("/{}/{}", input.bucket, url_encode_key(&input.key))),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        let (bucket, key, upload_id) = (input.bucket, input.key, input.upload_id);
        let parts = self
            .store()
            .write(move |tx| {
                match objects::get_upload(tx, &upload_id)? {
                    Some(u) if u.bucket == bucket && u.key == key => {}
                    _ => return Ok(Err(ObjectsError::NoSuchUpload)),
                }
                Ok::<_, StoreError>(Ok(objects::delete_upload(tx, &upload_id)?))
            })
            .await
            .map_err(ObjectsError::from)??;
        self.disk().remove(parts).await;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let max = input.max_parts.unwrap_or(1000).clamp(0, 1000) as u32;
        let after = input
            .part_number_marker
            .and_then(|m| u32::try_from(m).ok())
            .unwrap_or(0);
        let upload_id = input.upload_id.clone();
        let (upload, mut parts) = self
            .store()
            .read(move |conn| {
                Ok::<_, StoreError>((
                    objects::get_upload(conn, &upload_id)?,
                    objects::list_parts(conn, &upload_id, after, max + 1)?,
                ))
            })
            .await
            .map_err(ObjectsError::from)?;
        match upload {
            Some(u) if u.bucket == input.bucket && u.key == input.key => {}
            _ => return Err(ObjectsError::NoSuchUpload.into()),
        }
        let truncated = parts.len() > max as usize;
        parts.truncate(max as usize);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: Some(max as i32),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: parts.last().map(|p| p.part_number as i32),
            is_truncated: Some(truncated),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            parts: Some(
                parts
                    .iter()
                    .map(|p| Part {
                        part_number: Some(p.part_number as i32),
                        e_tag: Some(etag(&p.etag)),
                        size: Some(p.size as i64),
                        last_modified: Some(timestamp(p.last_modified)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        self.require_bucket(&input.bucket).await?;
        let max = input.max_uploads.unwrap_or(1000).clamp(0, 1000) as u32;
        let (bucket, prefix) = (
            input.bucket.clone(),
            input.prefix.clone().unwrap_or_default(),
        );
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let upload_marker = input.upload_id_marker.clone().unwrap_or_default();
        let mut uploads = self
            .store()
            .read(move |conn| {
                objects::list_uploads(conn, &bucket, &prefix, &key_marker, &upload_marker, max + 1)
            })
            .await
            .map_err(ObjectsError::from)?;
        let truncated = uploads.len() > max as usize;
        uploads.truncate(max as usize);
        let last = uploads.last().cloned();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            max_uploads: Some(max as i32),
            is_truncated: Some(truncated),
            next_key_marker: last.as_ref().map(|u| u.key.clone()),
            next_upload_id_marker: last.map(|u| u.upload_id),
            uploads: Some(
                uploads
                    .into_iter()
                    .map(|u| MultipartUpload {
                        key: Some(u.key),
                        upload_id: Some(u.upload_id),
                        initiated: Some(timestamp(u.initiated)),
                        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn get_bucket_notification_configuration(
        &self,
        req: S3Request<GetBucketNotificationConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketNotificationConfigurationOutput>> {
        let config = self.notification_configuration(&req.input.bucket).await?;
        let mut out = GetBucketNotificationConfigurationOutput::default();
        let events = |r: &NotificationRule| -> Vec<Event> {
            r.events.iter().cloned().map(Event::from).collect()
        };
        for rule in &config.rules {
            match rule.kind {
                RuleKind::Queue => {
                    out.queue_configurations
                        .get_or_insert_with(Vec::new)
                        .push(QueueConfiguration {
                            events: events(rule),
                            filter: filter_of(rule),
                            id: Some(rule.id.clone()),
                            queue_arn: rule.destination_arn.clone(),
                        })
                }
                RuleKind::Topic => {
                    out.topic_configurations
                        .get_or_insert_with(Vec::new)
                        .push(TopicConfiguration {
                            events: events(rule),
                            filter: filter_of(rule),
                            id: Some(rule.id.clone()),
                            topic_arn: rule.destination_arn.clone(),
                        })
                }
                RuleKind::LambdaFunction => out
                    .lambda_function_configurations
                    .get_or_insert_with(Vec::new)
                    .push(LambdaFunctionConfiguration {
                        events: events(rule),
                        filter: filter_of(rule),
                        id: Some(rule.id.clone()),
                        lambda_function_arn: rule.destination_arn.clone(),
                    }),
            }
        }
        Ok(S3Response::new(out))
    }

    async fn put_bucket_notification_configuration(
        &self,
        req: S3Request<PutBucketNotificationConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketNotificationConfigurationOutput>> {
        let input = req.input;
        let c = input.notification_configuration;
        if c.event_bridge_configuration.is_some() {
            return Err(ObjectsError::InvalidArgument(
                "Unable to validate the following destination configurations: EventBridge is not available; name a trigger".into(),
            )
            .into());
        }
        let mut rules = Vec::new();
        for q in c.queue_configurations.unwrap_or_default() {
            rules.push(rule_of(
                RuleKind::Queue,
                q.id,
                q.queue_arn,
                q.events,
                q.filter,
            )?);
        }
        for t in c.topic_configurations.unwrap_or_default() {
            rules.push(rule_of(
                RuleKind::Topic,
                t.id,
                t.topic_arn,
                t.events,
                t.filter,
            )?);
        }
        for l in c.lambda_function_configurations.unwrap_or_default() {
            rules.push(rule_of(
                RuleKind::LambdaFunction,
                l.id,
                l.lambda_function_arn,
                l.events,
                l.filter,
            )?);
        }
        self.set_notification_configuration(&input.bucket, NotificationConfiguration { rules })
            .await?;
        Ok(S3Response::new(
            PutBucketNotificationConfigurationOutput::default(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(etag: &str, modified_ms: i64) -> ObjectRow {
        ObjectRow {
            bucket: "b".into(),
            key: "k".into(),
            size: 10,
            etag: etag.into(),
            last_modified: modified_ms,
            segments: vec![],
            meta: ObjectMeta::default(),
        }
    }

    #[test]
    fn conditions_follow_rfc_9110_order() {
        let r = row("abc", 10_500);
        let tag = |v: &str| ETagCondition::ETag(ETag::Strong(v.into()));
        let at = |s: i64| timestamp(s * 1000);
        assert!(check_conditions(&r, Some(&tag("abc")), None, None, None).is_ok());
        assert!(matches!(
            check_conditions(&r, Some(&tag("x")), None, None, None),
            Err(ObjectsError::PreconditionFailed)
        ));
        assert!(matches!(
            check_conditions(&r, None, Some(&tag("abc")), None, None),
            Err(ObjectsError::NotModified)
        ));
        assert!(matches!(
            check_conditions(&r, None, Some(&ETagCondition::Any), None, None),
            Err(ObjectsError::NotModified)
        ));
        // Modified at 10.5 s: not modified since 10 s at HTTP precision.
        assert!(matches!(
            check_conditions(&r, None, None, Some(&at(10)), None),
            Err(ObjectsError::NotModified)
        ));
        assert!(check_conditions(&r, None, None, Some(&at(9)), None).is_ok());
        assert!(matches!(
            check_conditions(&r, None, None, None, Some(&at(9))),
            Err(ObjectsError::PreconditionFailed)
        ));
        // If-Match wins over If-Unmodified-Since; If-None-Match over If-Modified-Since.
        assert!(check_conditions(&r, Some(&tag("abc")), None, None, Some(&at(9))).is_ok());
        assert!(check_conditions(&r, None, Some(&tag("x")), Some(&at(10)), None).is_ok());
    }

    #[test]
    fn ranges_are_checked_against_the_size() {
        let int = |first, last| Range::Int { first, last };
        assert_eq!(
            byte_range(Some(&int(0, Some(4))), 10).unwrap(),
            Some((0, 5))
        );
        assert_eq!(byte_range(Some(&int(5, None)), 10).unwrap(), Some((5, 10)));
        assert_eq!(
            byte_range(Some(&Range::Suffix { length: 3 }), 10).unwrap(),
            Some((7, 10))
        );
        assert!(byte_range(Some(&int(10, None)), 10).is_err());
        assert!(byte_range(Some(&int(0, None)), 0).is_err());
        assert_eq!(byte_range(None, 10).unwrap(), None);
    }

    #[test]
    fn content_md5_is_checked() {
        let w = Written {
            id: "x".into(),
            size: 0,
            md5: [
                0xd4, 0x1d, 0x8c, 0xd9, 0x8f, 0x00, 0xb2, 0x04, 0xe9, 0x80, 0x09, 0x98, 0xec, 0xf8,
                0x42, 0x7e,
            ],
        };
        check_md5(Some("1B2M2Y8AsgTpgAmY7PhCfg=="), &w).unwrap();
        assert!(matches!(
            check_md5(Some("AAAAAAAAAAAAAAAAAAAAAA=="), &w),
            Err(ObjectsError::BadDigest)
        ));
        assert!(matches!(
            check_md5(Some("nope"), &w),
            Err(ObjectsError::InvalidDigest)
        ));
        check_md5(None, &w).unwrap();
    }

    #[test]
    fn tokens_round_trip() {
        let t = encode_token("video/é x");
        assert_eq!(decode_token(&t).unwrap(), "video/é x");
        assert!(decode_token("***").is_err());
    }
}
