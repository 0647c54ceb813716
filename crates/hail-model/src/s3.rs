//! The object store's resources: bucket and key rules, what an object
//! carries beside its bytes, and bucket notification configurations.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Longest key S3 accepts, in bytes of UTF-8.
pub const MAX_KEY_LEN: usize = 1024;
/// Most bytes of user metadata (`x-amz-meta-*` names and values) per object.
pub const MAX_USER_METADATA_BYTES: usize = 2048;

/// Checks a bucket name with S3's rules for general purpose buckets: 3–63
/// characters of lowercase letters, digits, `.` and `-`, beginning and
/// ending with a letter or digit, no `..`, not an IPv4 address, none of the
/// reserved prefixes and suffixes.
pub fn validate_bucket_name(name: &str) -> Result<(), String> {
    let fail = |why: &str| Err(format!("bucket name {name:?} {why}"));
    if !(3..=63).contains(&name.len()) {
        return fail("must be 3 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return fail("may hold only lowercase letters, digits, '.' and '-'");
    }
    let edge_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !edge_ok(name.bytes().next()) || !edge_ok(name.bytes().last()) {
        return fail("must begin and end with a letter or digit");
    }
    if name.contains("..") {
        return fail("must not contain two adjacent periods");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return fail("must not be formatted as an IP address");
    }
    for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(prefix) {
            return fail(&format!("must not begin with {prefix:?}"));
        }
    }
    for suffix in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] {
        if name.ends_with(suffix) {
            return fail(&format!("must not end with {suffix:?}"));
        }
    }
    Ok(())
}

/// Why a key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    Empty,
    TooLong,
    /// A NUL character: S3 keys are arbitrary UTF-8, but NUL breaks every
    /// tool that lists them, and S3 itself refuses it in XML.
    Nul,
}

/// Checks an object key: 1 to 1024 bytes, no NUL. Keys never name files,
/// so `..`, `/` at the start and the like are ordinary characters.
pub fn validate_key(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        Err(KeyError::Empty)
    } else if key.len() > MAX_KEY_LEN {
        Err(KeyError::TooLong)
    } else if key.contains('\0') {
        Err(KeyError::Nul)
    } else {
        Ok(())
    }
}

/// What an object carries beside its bytes, as it came with the upload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// The `Expires` header, as an RFC 7231 date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// `x-amz-meta-*`, names lowercased.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user: BTreeMap<String, String>,
}

impl ObjectMeta {
    /// Checks the user metadata's size as S3 counts it (names and values).
    pub fn validate(&self) -> Result<(), String> {
        let bytes: usize = self.user.iter().map(|(k, v)| k.len() + v.len()).sum();
        if bytes > MAX_USER_METADATA_BYTES {
            return Err(format!(
                "Your metadata headers exceed the maximum allowed metadata size: {bytes} bytes, at most {MAX_USER_METADATA_BYTES}"
            ));
        }
        Ok(())
    }
}

/// The S3 event names a notification rule may name.
pub const EVENT_NAMES: &[&str] = &[
    "s3:ObjectCreated:*",
    "s3:ObjectCreated:Put",
    "s3:ObjectCreated:Post",
    "s3:ObjectCreated:Copy",
    "s3:ObjectCreated:CompleteMultipartUpload",
    "s3:ObjectRemoved:*",
    "s3:ObjectRemoved:Delete",
    "s3:ObjectRemoved:DeleteMarkerCreated",
];

/// Which kind of S3 notification configuration a rule came as; kept so
/// that GetBucketNotificationConfiguration answers in the shape it was put.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RuleKind {
    Queue,
    Topic,
    LambdaFunction,
}

/// One rule of a bucket's notification configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationRule {
    pub id: String,
    pub kind: RuleKind,
    pub destination_arn: String,
    pub events: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
}

impl NotificationRule {
    /// Whether an event named `event_name` (`s3:ObjectCreated:Put`) for
    /// `key` is for this rule.
    pub fn matches(&self, event_name: &str, key: &str) -> bool {
        let event_ok = self.events.iter().any(|e| match e.strip_suffix('*') {
            Some(family) => event_name.starts_with(family),
            None => e == event_name,
        });
        event_ok
            && self.prefix.as_deref().is_none_or(|p| key.starts_with(p))
            && self.suffix.as_deref().is_none_or(|s| key.ends_with(s))
    }
}

/// A bucket's notification configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationConfiguration {
    pub rules: Vec<NotificationRule>,
}

impl NotificationConfiguration {
    /// Checks the configuration as S3 does: known event names, unique ids,
    /// and (for Hail) destinations that are triggers.
    pub fn validate(&self) -> Result<(), String> {
        let mut ids = std::collections::BTreeSet::new();
        for rule in &self.rules {
            if !ids.insert(rule.id.as_str()) {
                return Err(format!("Configuration ids must be unique: {}", rule.id));
            }
            if rule.events.is_empty() {
                return Err(format!("configuration {}: at least one event", rule.id));
            }
            if let Some(bad) = rule
                .events
                .iter()
                .find(|e| !EVENT_NAMES.contains(&e.as_str()))
            {
                return Err(format!(
                    "The event is not supported for notifications: {bad}"
                ));
            }
            if crate::triggers::trigger_name_of(&rule.destination_arn).is_none() {
                return Err(format!(
                    "Unable to validate the following destination configurations: {} is not a trigger ARN (arn:aws:hail:<region>:<account>:trigger/<name>)",
                    rule.destination_arn
                ));
            }
        }
        Ok(())
    }

    /// The rules an event is for.
    pub fn matching<'a>(
        &'a self,
        event_name: &'a str,
        key: &'a str,
    ) -> impl Iterator<Item = &'a NotificationRule> + 'a {
        self.rules
            .iter()
            .filter(move |r| r.matches(event_name, key))
    }
}

/// An object key as S3 writes it in event records: URL form encoding, with
/// `+` for a space.
pub fn event_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b' ' => out.push('+'),
            b if b.is_ascii_alphanumeric() || b"-_.*".contains(&b) => out.push(b as char),
            b'/' => out.push('/'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3s_rules() {
        for ok in ["media", "my.bucket-1", "abc", &"a".repeat(63)] {
            validate_bucket_name(ok).unwrap();
        }
        for bad in [
            "ab",
            "Media",
            "a_b",
            "-ab",
            "ab-",
            "a..b",
            "192.168.1.1",
            "xn--abc",
            "abc-s3alias",
            &"a".repeat(64),
        ] {
            assert!(validate_bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_are_any_utf8_but_bounded() {
        validate_key("../../etc/passwd").unwrap();
        validate_key("/abs/olute").unwrap();
        validate_key(&"é".repeat(512)).unwrap();
        assert_eq!(validate_key(""), Err(KeyError::Empty));
        assert_eq!(validate_key(&"é".repeat(513)), Err(KeyError::TooLong));
        assert_eq!(validate_key("a\0b"), Err(KeyError::Nul));
    }

    #[test]
    fn rules_match_events_with_wildcards_and_filters() {
        let rule = NotificationRule {
            id: "r".into(),
            kind: RuleKind::Queue,
            destination_arn: "arn:aws:hail:us-east-1:000000000000:trigger/t".into(),
            events: vec!["s3:ObjectCreated:*".into()],
            prefix: Some("video/".into()),
            suffix: Some(".mp4".into()),
        };
        assert!(rule.matches("s3:ObjectCreated:Put", "video/a.mp4"));
        assert!(rule.matches("s3:ObjectCreated:CompleteMultipartUpload", "video/a.mp4"));
        assert!(!rule.matches("s3:ObjectRemoved:Delete", "video/a.mp4"));
        assert!(!rule.matches("s3:ObjectCreated:Put", "thumbnail/a.mp4"));
        assert!(!rule.matches("s3:ObjectCreated:Put", "video/a.png"));
        let config = NotificationConfiguration {
            rules: vec![rule.clone()],
        };
        config.validate().unwrap();
        let mut bad = config.clone();
        bad.rules[0].destination_arn = "arn:aws:sqs:us-east-1:0:q".into();
        assert!(bad
            .validate()
            .unwrap_err()
            .starts_with("Unable to validate the following destination configurations"));
        let mut dup = config.clone();
        dup.rules.push(rule);
        assert!(dup.validate().is_err());
    }

    #[test]
    fn event_keys_are_form_encoded() {
        assert_eq!(
            event_key("video/my clip(1)é.mp4"),
            "video/my+clip%281%29%C3%A9.mp4"
        );
        assert_eq!(
            crate::triggers::decode_event_key(&event_key("a b/c+d%é")).as_deref(),
            Some("a b/c+d%é")
        );
    }

    #[test]
    fn user_metadata_is_bounded() {
        let mut meta = ObjectMeta::default();
        meta.user.insert("k".into(), "v".repeat(2047));
        meta.validate().unwrap();
        meta.user.insert("k2".into(), "v".into());
        assert!(meta.validate().is_err());
    }
}
