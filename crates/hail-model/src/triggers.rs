//! Triggers: the task invoker of the Container-on-Demand pattern.
//!
//! A trigger turns an object event of a bucket (an S3 event record) into a
//! RunTask of a task definition, with container overrides whose values are
//! templates over the event: `{{key | basename}}`, `{{url}}`, … An
//! invocation is one event on its way to a task: queued, running (its task
//! launched), then succeeded, or failed and retried with backoff, or dead
//! after `maxAttempts` — kept in a dead-letter list that can be re-driven.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ecs::Timestamp;

/// Longest trigger name.
pub const MAX_TRIGGER_NAME_LEN: usize = 64;
/// Launches one trigger runs at once unless told otherwise.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 10;
/// Attempts before an invocation goes to the dead-letter list (Lambda's
/// asynchronous invocation makes three too).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Life of the presigned URL `{{url}}` when the trigger sets none.
pub const DEFAULT_URL_EXPIRES_SECONDS: u32 = 3600;

/// A trigger as created and described.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    pub trigger_name: String,
    pub trigger_arn: String,
    /// The cluster the tasks run in (a name).
    pub cluster: String,
    /// The task definition as given: family, `family:revision` or ARN.
    pub task_definition: String,
    pub bucket: String,
    /// S3 event names (`s3:ObjectCreated:*`, …).
    pub events: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    #[serde(default)]
    pub overrides: TriggerOverrides,
    /// Passed to RunTask unchanged (`awsvpc` settings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<serde_json::Value>,
    pub max_concurrency: u32,
    pub max_attempts: u32,
    pub url_expires_seconds: u32,
    pub created_at: Timestamp,
}

/// The RunTask overrides of every invocation; values are templates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerOverrides {
    #[serde(default)]
    pub container_overrides: Vec<ContainerOverrideTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role_arn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerOverrideTemplate {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub environment: Vec<NameValue>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

/// CreateTrigger's input.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateTriggerInput {
    pub trigger_name: String,
    #[serde(default)]
    pub cluster: Option<String>,
    pub task_definition: String,
    pub bucket: String,
    #[serde(default)]
    pub events: Option<Vec<String>>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub overrides: TriggerOverrides,
    #[serde(default)]
    pub network_configuration: Option<serde_json::Value>,
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    #[serde(default)]
    pub max_attempts: Option<u32>,
    #[serde(default)]
    pub url_expires_seconds: Option<u32>,
}

/// Where an invocation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InvocationStatus {
    /// Waiting for a launch slot (or for its retry time).
    Queued,
    /// Its task was started and has not stopped.
    Running,
    /// Its task exited 0.
    Succeeded,
    /// Out of attempts: in the dead-letter list.
    Dead,
}

impl InvocationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Dead => "DEAD",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "QUEUED" => Self::Queued,
            "RUNNING" => Self::Running,
            "SUCCEEDED" => Self::Succeeded,
            "DEAD" => Self::Dead,
            _ => return None,
        })
    }
}

/// One event on its way to a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invocation {
    /// The event's id: one invocation per event, however often it is delivered.
    pub invocation_id: String,
    pub trigger_name: String,
    pub status: InvocationStatus,
    /// Launches made so far (since the last re-drive).
    pub attempts: u32,
    /// How often the invocation was re-driven from the dead-letter list;
    /// part of its launches' client tokens, so a re-driven attempt starts
    /// a new task rather than finding the old one.
    #[serde(default)]
    pub redrives: u32,
    /// When the next launch may be made (QUEUED only).
    pub next_attempt_at: Timestamp,
    /// The task of the latest launch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub bucket: String,
    pub key: String,
    pub event_name: String,
    /// The S3 event record (`{"Records": [...]}`).
    pub record: serde_json::Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The wait before attempt `attempts + 1`: 2 s, 4 s, 8 s… capped at 5 minutes.
pub fn retry_backoff_millis(attempts: u32) -> i64 {
    let secs = 1_i64 << attempts.clamp(1, 8);
    secs.min(300) * 1000
}

/// Checks a trigger name: 1–64 of `[A-Za-z0-9_-]`.
pub fn validate_trigger_name(name: &str) -> Result<(), String> {
    let ok = (1..=MAX_TRIGGER_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "triggerName {name:?} must be 1 to {MAX_TRIGGER_NAME_LEN} letters, digits, '-' or '_'"
        ))
    }
}

/// The ARN of trigger `name`; buckets' notification configurations name
/// their destination with it.
pub fn trigger_arn(region: &str, account: &str, name: &str) -> String {
    format!("arn:aws:hail:{region}:{account}:trigger/{name}")
}

/// The trigger name of a trigger ARN.
pub fn trigger_name_of(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:aws:hail:")?;
    let mut parts = rest.splitn(3, ':');
    let (_region, _account, resource) = (parts.next()?, parts.next()?, parts.next()?);
    let name = resource.strip_prefix("trigger/")?;
    validate_trigger_name(name).ok().map(|()| name)
}

/// The values templates may use.
pub const TEMPLATE_VARIABLES: &[&str] = &[
    "bucket",
    "key",
    "size",
    "etag",
    "time",
    "timestamp",
    "eventName",
    "eventId",
    "random",
    "url",
    "event",
];
/// The filters templates may apply, left to right.
pub const TEMPLATE_FILTERS: &[&str] = &[
    "basename",
    "dirname",
    "stem",
    "ext",
    "lower",
    "upper",
    "urlencode",
];

/// A template that failed to parse, or named what does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template {template:?}: {message}")]
pub struct TemplateError {
    pub template: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Value {
        variable: &'a str,
        filters: Vec<&'a str>,
    },
}

fn parse_template(template: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let fail = |message: String| TemplateError {
        template: template.to_owned(),
        message,
    };
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            pieces.push(Piece::Text(&rest[..open]));
        }
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| fail("a '{{' is never closed by '}}'".into()))?;
        let mut parts = after[..close].split('|').map(str::trim);
        let variable = parts.next().unwrap_or_default();
        if !TEMPLATE_VARIABLES.contains(&variable) {
            return Err(fail(format!(
                "unknown variable {variable:?}; known: {}",
                TEMPLATE_VARIABLES.join(", ")
            )));
        }
        let filters: Vec<&str> = parts.collect();
        if let Some(bad) = filters.iter().find(|f| !TEMPLATE_FILTERS.contains(f)) {
            return Err(fail(format!(
                "unknown filter {bad:?}; known: {}",
                TEMPLATE_FILTERS.join(", ")
            )));
        }
        pieces.push(Piece::Value { variable, filters });
        rest = &after[close + 2..];
    }
    if rest.contains("}}") {
        return Err(fail("a '}}' has no '{{'".into()));
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

/// Checks that `template` parses and names only known variables and filters.
pub fn check_template(template: &str) -> Result<(), TemplateError> {
    parse_template(template).map(|_| ())
}

/// Renders `template` with `values` (by variable name); a variable without
/// a value renders empty.
pub fn render_template(
    template: &str,
    values: &BTreeMap<&str, String>,
) -> Result<String, TemplateError> {
    let mut out = String::new();
    for piece in parse_template(template)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Value { variable, filters } => {
                let mut v = values.get(variable).cloned().unwrap_or_default();
                for f in filters {
                    v = apply_filter(f, &v);
                }
                out.push_str(&v);
            }
        }
    }
    Ok(out)
}

fn apply_filter(filter: &str, v: &str) -> String {
    let basename = |s: &str| s.rsplit('/').next().unwrap_or(s).to_owned();
    match filter {
        "basename" => basename(v),
        "dirname" => v
            .rsplit_once('/')
            .map_or(String::new(), |(d, _)| d.to_owned()),
        "stem" => {
            let b = basename(v);
            match b.rsplit_once('.') {
                Some((stem, _)) if !stem.is_empty() => stem.to_owned(),
                _ => b,
            }
        }
        "ext" => {
            let b = basename(v);
            match b.rsplit_once('.') {
                Some((stem, ext)) if !stem.is_empty() => ext.to_owned(),
                _ => String::new(),
            }
        }
        "lower" => v.to_lowercase(),
        "upper" => v.to_uppercase(),
        "urlencode" => url_encode(v, false),
        _ => v.to_owned(),
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (and `/`
/// when `keep_slash`).
pub fn url_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes an S3 event record's object key: form encoding, `+` for space.
pub fn decode_event_key(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = encoded.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// `2026-11-28T23:15:02.123Z` as `20261128-231502`, the stamp thumbnail
/// names carry; `None` for anything not an ISO-8601 UTC time.
pub fn compact_timestamp(iso: &str) -> Option<String> {
    let (date, time) = iso.split_once('T')?;
    let date: String = date.chars().filter(|c| *c != '-').collect();
    let time: String = time.chars().take(8).filter(|c| *c != ':').collect();
    let ok = date.len() == 8
        && time.len() == 6
        && date.bytes().chain(time.bytes()).all(|b| b.is_ascii_digit());
    ok.then(|| format!("{date}-{time}"))
}

/// A stable six-digit number from an event id, so that a retried invocation
/// renders `{{random}}` exactly as its first attempt did.
pub fn stable_random(event_id: &str) -> String {
    // FNV-1a: stable across builds and platforms, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in event_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:06}", h % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("bucket", "media".to_owned()),
            ("key", "video/my clip.final.mp4".to_owned()),
            ("size", "1234".to_owned()),
            ("timestamp", "20261128-231502".to_owned()),
            ("random", "042137".to_owned()),
        ])
    }

    #[test]
    fn templates_render_with_filters() {
        let r = |t: &str| render_template(t, &values()).unwrap();
        assert_eq!(r("{{bucket}}/{{key}}"), "media/video/my clip.final.mp4");
        assert_eq!(r("{{ key | basename }}"), "my clip.final.mp4");
        assert_eq!(r("{{key|basename|stem}}"), "my clip.final");
        assert_eq!(r("{{key|ext}}"), "mp4");
        assert_eq!(r("{{key|dirname}}"), "video");
        assert_eq!(r("{{key|basename|urlencode}}"), "my%20clip.final.mp4");
        assert_eq!(
            r("thumbnail_{{key|basename|stem}}_{{timestamp}}_{{random}}.png"),
            "thumbnail_my clip.final_20261128-231502_042137.png"
        );
        assert_eq!(r("no templates"), "no templates");
        assert_eq!(r("{{etag}}"), "");
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in ["{{nope}}", "{{key|shout}}", "{{key", "key}}", "{{}}"] {
            assert!(check_template(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn event_keys_decode_like_s3_encodes_them() {
        assert_eq!(
            decode_event_key("video/my+clip%C3%A9.mp4").as_deref(),
            Some("video/my clipé.mp4")
        );
        assert_eq!(decode_event_key("bad%zz"), None);
        assert_eq!(decode_event_key("cut%4"), None);
    }

    #[test]
    fn timestamps_compact() {
        assert_eq!(
            compact_timestamp("2026-11-28T23:15:02.123Z").as_deref(),
            Some("20261128-231502")
        );
        assert_eq!(compact_timestamp("yesterday"), None);
    }

    #[test]
    fn names_arns_and_backoff() {
        validate_trigger_name("thumbs_1-a").unwrap();
        assert!(validate_trigger_name("a b").is_err());
        assert!(validate_trigger_name("").is_err());
        let arn = trigger_arn("us-east-1", "000000000000", "thumbs");
        assert_eq!(arn, "arn:aws:hail:us-east-1:000000000000:trigger/thumbs");
        assert_eq!(trigger_name_of(&arn), Some("thumbs"));
        assert_eq!(
            trigger_name_of("arn:aws:lambda:us-east-1:0:function:x"),
            None
        );
        assert_eq!(retry_backoff_millis(1), 2000);
        assert_eq!(retry_backoff_millis(2), 4000);
        assert_eq!(retry_backoff_millis(40), 256_000);
        assert_eq!(stable_random("e1"), stable_random("e1"));
        assert_eq!(stable_random("e1").len(), 6);
    }
}
