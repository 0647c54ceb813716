//! Resource tags, with ECS's limits.

use serde::{Deserialize, Serialize};

use super::validate::ValidationError;

/// A resource tag. ECS sends both halves but allows an empty value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tag {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl Tag {
    /// A tag with both halves set.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: Some(key.into()),
            value: Some(value.into()),
        }
    }
}

/// Most tags a resource may carry.
pub const MAX_TAGS: usize = 50;
/// Longest tag key, in characters.
pub const MAX_KEY_CHARS: usize = 128;
/// Longest tag value, in characters.
pub const MAX_VALUE_CHARS: usize = 256;

/// Characters ECS allows in tag keys and values besides letters, digits and
/// spaces (any script): `+ - = . _ : / @`.
fn is_allowed_char(c: char) -> bool {
    c.is_alphanumeric() || c.is_whitespace() || "+-=._:/@".contains(c)
}

/// Validates a tag list against ECS's rules; `field` names the list in errors.
pub fn validate_tags(tags: &[Tag], field: &str) -> Result<(), ValidationError> {
    if tags.len() > MAX_TAGS {
        return Err(ValidationError::invalid_parameter(
            field,
            format!("{} tags is more than the maximum of {MAX_TAGS}", tags.len()),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, tag) in tags.iter().enumerate() {
        let key = tag.key.as_deref().unwrap_or("");
        let value = tag.value.as_deref().unwrap_or("");
        let key_field = format!("{field}[{i}].key");
        let key_len = key.chars().count();
        if !(1..=MAX_KEY_CHARS).contains(&key_len) {
            return Err(ValidationError::invalid_parameter(
                key_field,
                format!("tag key {key:?} must be 1 to {MAX_KEY_CHARS} characters"),
            ));
        }
        if key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:")) {
            return Err(ValidationError::invalid_parameter(
                key_field,
                format!("tag key {key:?} uses the prefix \"aws:\", which is reserved for AWS use"),
            ));
        }
        if let Some(c) = key.chars().find(|c| !is_allowed_char(*c)) {
            return Err(ValidationError::invalid_parameter(
                key_field,
                format!("tag key {key:?} contains {c:?}; allowed are letters, numbers, spaces and + - = . _ : / @"),
            ));
        }
        if !seen.insert(key) {
            return Err(ValidationError::invalid_parameter(
                key_field,
                format!("tag key {key:?} appears more than once"),
            ));
        }
        let value_field = format!("{field}[{i}].value");
        if value.chars().count() > MAX_VALUE_CHARS {
            return Err(ValidationError::invalid_parameter(
                value_field,
                format!("value of tag {key:?} is longer than {MAX_VALUE_CHARS} characters"),
            ));
        }
        if let Some(c) = value.chars().find(|c| !is_allowed_char(*c)) {
            return Err(ValidationError::invalid_parameter(
                value_field,
                format!("value of tag {key:?} contains {c:?}; allowed are letters, numbers, spaces and + - = . _ : / @"),
            ));
        }
    }
    Ok(())
}

/// The value of tag `key` in `tags`, if present.
pub fn tag_value<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key.as_deref() == Some(key))
        .map(|t| t.value.as_deref().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(tags: &[Tag]) -> ValidationError {
        validate_tags(tags, "tags").unwrap_err()
    }

    #[test]
    fn accepts_ordinary_tags() {
        let tags = vec![
            Tag::new("team", "video"),
            Tag::new("hail:maxRuntimeSeconds", "600"),
            Tag::new("empty", ""),
            Tag::new("path/with spaces", "a+b=c@d.e_f:g"),
        ];
        validate_tags(&tags, "tags").unwrap();
        assert_eq!(tag_value(&tags, "team"), Some("video"));
        assert_eq!(tag_value(&tags, "missing"), None);
    }

    #[test]
    fn rejects_empty_and_long_keys() {
        assert_eq!(err(&[Tag::new("", "v")]).field, "tags[0].key");
        let e = err(&[Tag::new("k".repeat(129), "v")]);
        assert!(e.message.contains("1 to 128"), "{e}");
        validate_tags(&[Tag::new("k".repeat(128), "v")], "tags").unwrap();
    }

    #[test]
    fn rejects_long_values() {
        let e = err(&[Tag::new("k", "v".repeat(257))]);
        assert_eq!(e.field, "tags[0].value");
        validate_tags(&[Tag::new("k", "v".repeat(256))], "tags").unwrap();
    }

    #[test]
    fn rejects_reserved_prefix_in_any_case() {
        for key in ["aws:createdBy", "AWS:x", "Aws:y"] {
            let e = err(&[Tag::new(key, "v")]);
            assert!(e.message.contains("reserved"), "{e}");
        }
    }

    #[test]
    fn rejects_more_than_fifty() {
        let tags: Vec<Tag> = (0..51).map(|i| Tag::new(format!("k{i}"), "v")).collect();
        assert!(err(&tags).message.contains("maximum of 50"));
        validate_tags(&tags[..50], "tags").unwrap();
    }

    #[test]
    fn rejects_bad_characters_and_duplicates() {
        assert!(err(&[Tag::new("a*b", "v")]).message.contains("'*'"));
        assert_eq!(err(&[Tag::new("k", "v!")]).field, "tags[0].value");
        let e = err(&[Tag::new("k", "1"), Tag::new("k", "2")]);
        assert_eq!(e.field, "tags[1].key");
    }
}
