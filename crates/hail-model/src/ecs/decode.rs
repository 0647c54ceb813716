//! Decoding API request bodies into typed inputs with errors a person can act
//! on: the path of the offending field and what was wrong with it.

use serde::de::DeserializeOwned;

/// A request body that does not fit the input shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.path, .message))]
pub struct DecodeError {
    /// Where in the document the problem is, as `containerDefinitions[0].memory`;
    /// empty when the document itself is malformed.
    pub path: String,
    /// What was wrong there.
    pub message: String,
    /// The unknown field's name, when the problem is an unknown field.
    pub unknown_field: Option<String>,
}

fn render(path: &str, message: &str) -> String {
    if path.is_empty() || path == "." {
        message.to_owned()
    } else {
        format!("{path}: {message}")
    }
}

/// Decodes `json` as `T`. Inputs deny unknown fields, as the ECS API's
/// validation does; the error names the field and, for a likely typo, the
/// field that was probably meant.
pub fn decode<T: DeserializeOwned>(json: &str) -> Result<T, DecodeError> {
    let mut de = serde_json::Deserializer::from_str(json);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        from_serde(path, e.into_inner())
    })?;
    de.end().map_err(|e| from_serde(String::new(), e))?;
    Ok(value)
}

/// Decodes an already-parsed JSON value as `T`, with the same errors as [`decode`].
pub fn decode_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        from_serde(path, e.into_inner())
    })
}

fn from_serde(path: String, error: serde_json::Error) -> DecodeError {
    let raw = error.to_string();
    // serde_json appends " at line L column C"; the path already says where.
    let message = match raw.rfind(" at line ") {
        Some(i) if !path.is_empty() && path != "." => raw[..i].to_owned(),
        _ => raw,
    };
    match parse_unknown_field(&message) {
        Some((field, expected)) => {
            let hint = closest(&field, &expected)
                .map(|m| format!(" (did you mean \"{m}\"?)"))
                .unwrap_or_default();
            // The path ends in the unknown field itself; report its parent.
            let parent = path
                .strip_suffix(field.as_str())
                .map(|p| p.trim_end_matches('.').to_owned())
                .unwrap_or(path);
            DecodeError {
                path: parent,
                message: format!("unknown field \"{field}\"{hint}"),
                unknown_field: Some(field),
            }
        }
        None => DecodeError {
            path,
            message,
            unknown_field: None,
        },
    }
}

/// Splits serde's "unknown field `x`, expected one of `a`, `b`" into the field
/// and the expected names.
fn parse_unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let end = rest.find('`')?;
    let field = rest[..end].to_owned();
    let expected = rest[end + 1..]
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    Some((field, expected))
}

/// The expected name nearest to `field`, if it is near enough to be a typo.
fn closest<'a>(field: &str, expected: &'a [String]) -> Option<&'a str> {
    let lower = field.to_ascii_lowercase();
    expected
        .iter()
        .map(|e| (edit_distance(&lower, &e.to_ascii_lowercase()), e))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, e)| e.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(here).min(row[j])
            };
            prev = here;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)] // Fields exist to be decoded, not read.
    struct Inner {
        memory: Option<u32>,
        memory_reservation: Option<u32>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        items: Vec<Inner>,
    }

    #[test]
    fn unknown_field_names_path_and_suggestion() {
        let err = decode::<Outer>(r#"{"items":[{"memory":1},{"memroy":2}]}"#).unwrap_err();
        assert_eq!(err.path, "items[1]");
        assert_eq!(err.unknown_field.as_deref(), Some("memroy"));
        assert_eq!(
            err.to_string(),
            "items[1]: unknown field \"memroy\" (did you mean \"memory\"?)"
        );
    }

    #[test]
    fn unknown_field_far_from_any_has_no_suggestion() {
        let err = decode::<Outer>(r#"{"items":[],"gpuCount":1}"#).unwrap_err();
        assert_eq!(err.to_string(), "unknown field \"gpuCount\"");
    }

    #[test]
    fn wrong_type_names_path() {
        let err = decode::<Outer>(r#"{"items":[{"memory":"lots"}]}"#).unwrap_err();
        assert_eq!(err.path, "items[0].memory");
        assert!(
            err.message.starts_with("invalid type: string \"lots\""),
            "{err}"
        );
    }

    #[test]
    fn malformed_json_and_trailing_data_are_errors() {
        assert!(decode::<Outer>(r#"{"items":["#).is_err());
        assert!(decode::<Outer>(r#"{"items":[]} x"#).is_err());
    }

    #[test]
    fn decode_value_reports_like_decode() {
        let v = serde_json::json!({"items": [{"memoryReservaton": 5}]});
        let err = decode_value::<Outer>(v).unwrap_err();
        assert_eq!(
            err.to_string(),
            "items[0]: unknown field \"memoryReservaton\" (did you mean \"memoryReservation\"?)"
        );
    }
}
