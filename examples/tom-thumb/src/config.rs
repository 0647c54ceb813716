//! The task's environment contract, parsed once into typed values.

use std::fmt;

use crate::position::{Position, PositionError};

pub const INPUT_VIDEO_FILE_URL: &str = "INPUT_VIDEO_FILE_URL";
pub const POSITION_TIME_DURATION: &str = "POSITION_TIME_DURATION";
pub const OUTPUT_S3_PATH: &str = "OUTPUT_S3_PATH";
pub const OUTPUT_THUMBS_FILE_NAME: &str = "OUTPUT_THUMBS_FILE_NAME";
pub const AWS_REGION: &str = "AWS_REGION";

/// Everything the task needs to know, from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub input: InputUrl,
    pub position: Position,
    pub output: OutputObject,
    /// `AWS_REGION`; when absent the SDK's own chain (`AWS_DEFAULT_REGION`,
    /// profile) is asked, and the task fails only if that finds none either.
    pub region: Option<String>,
}

/// A variable of the contract that is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

impl Config {
    /// Reads the contract from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the contract through `lookup` (the environment, or a map in tests).
    /// An empty value counts as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &'static str| {
            lookup(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or(ConfigError::Missing(name))
        };
        let input = InputUrl::parse(&get(INPUT_VIDEO_FILE_URL)?).map_err(|reason| {
            ConfigError::Invalid {
                name: INPUT_VIDEO_FILE_URL,
                reason,
            }
        })?;
        let position = get(POSITION_TIME_DURATION)?
            .parse()
            .map_err(|e: PositionError| ConfigError::Invalid {
                name: POSITION_TIME_DURATION,
                reason: e.to_string(),
            })?;
        let output = OutputObject::new(&get(OUTPUT_S3_PATH)?, &get(OUTPUT_THUMBS_FILE_NAME)?)?;
        let region = lookup(AWS_REGION).filter(|v| !v.trim().is_empty());
        Ok(Self {
            input,
            position,
            output,
            region,
        })
    }
}

/// The video's address: an `http` or `https` URL (in Hail and on AWS a
/// presigned S3 GET URL). Its query string can hold credentials (a presigned
/// URL's signature and session token), so it is shown only without it.
#[derive(Clone, PartialEq, Eq)]
pub struct InputUrl {
    url: String,
}

impl InputUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| {
                format!(
                    "{} is not an http(s) URL",
                    redact(url).chars().take(80).collect::<String>()
                )
            })?;
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if host.is_empty() {
            return Err(format!("{} has no host", redact(url)));
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "{} contains spaces or control characters",
                redact(url)
            ));
        }
        Ok(Self {
            url: url.to_owned(),
        })
    }

    /// The URL as given, for FFmpeg only.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The URL without its query string, fit for a log line.
    pub fn redacted(&self) -> &str {
        redact(&self.url)
    }

    /// `text` with every occurrence of the full URL replaced by its redacted
    /// form: FFmpeg names its input in its messages.
    pub fn scrub(&self, text: &str) -> String {
        text.replace(&self.url, self.redacted())
    }
}

impl fmt::Debug for InputUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("InputUrl").field(&self.redacted()).finish()
    }
}

impl fmt::Display for InputUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.redacted())
    }
}

fn redact(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// Where the thumbnail goes: `OUTPUT_S3_PATH` (`bucket/prefix`) joined with
/// `OUTPUT_THUMBS_FILE_NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputObject {
    pub bucket: String,
    pub key: String,
}

impl OutputObject {
    /// `s3_path` is `bucket`, `bucket/prefix` or `bucket/prefix/` (an
    /// `s3://` scheme is tolerated); the key is `prefix/file_name`, or just
    /// `file_name` when the prefix is empty.
    pub fn new(s3_path: &str, file_name: &str) -> Result<Self, ConfigError> {
        let invalid = |name, reason: String| ConfigError::Invalid { name, reason };
        let path = s3_path.trim();
        let path = path.strip_prefix("s3://").unwrap_or(path);
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        check_bucket(bucket).map_err(|r| invalid(OUTPUT_S3_PATH, r))?;
        let prefix = prefix.trim_end_matches('/');
        if prefix
            .split('/')
            .any(|seg| seg.is_empty() && !prefix.is_empty())
        {
            return Err(invalid(
                OUTPUT_S3_PATH,
                format!("prefix {prefix:?} has an empty segment"),
            ));
        }
        let name = file_name.trim();
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(invalid(
                OUTPUT_THUMBS_FILE_NAME,
                format!("{name:?} must be a file name, without '/'"),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(invalid(
                OUTPUT_THUMBS_FILE_NAME,
                format!("{name:?} contains control characters"),
            ));
        }
        let key = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        };
        if key.len() > 1024 {
            return Err(invalid(
                OUTPUT_THUMBS_FILE_NAME,
                format!("the object key is {} bytes, S3 allows 1024", key.len()),
            ));
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            key,
        })
    }

    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

impl fmt::Display for OutputObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// S3's bucket naming rules: 3 to 63 lowercase letters, digits, dots and
/// hyphens, beginning and ending with a letter or digit.
fn check_bucket(bucket: &str) -> Result<(), String> {
    let ok_len = (3..=63).contains(&bucket.len());
    let ok_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ok_ends = bucket
        .bytes()
        .next()
        .zip(bucket.bytes().last())
        .is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
    if ok_len && ok_chars && ok_ends {
        Ok(())
    } else {
        Err(format!(
            "bucket {bucket:?} is not a valid S3 bucket name \
             (3-63 lowercase letters, digits, '.' or '-')"
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const URL: &str =
        "http://169.254.170.2/media/video/clip.mp4?X-Amz-Signature=abc&X-Amz-Security-Token=secret";

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn full() -> Vec<(&'static str, &'static str)> {
        vec![
            (INPUT_VIDEO_FILE_URL, URL),
            (POSITION_TIME_DURATION, "00:00:02"),
            (OUTPUT_S3_PATH, "media/thumbnail"),
            (
                OUTPUT_THUMBS_FILE_NAME,
                "thumbnail_clip_20240101-120000_42.png",
            ),
            (AWS_REGION, "us-east-1"),
        ]
    }

    #[test]
    fn reads_the_whole_contract() {
        let config = Config::from_lookup(env(&full())).unwrap();
        assert_eq!(config.input.as_str(), URL);
        assert_eq!(config.position, Position::from_micros(2_000_000));
        assert_eq!(config.output.bucket, "media");
        assert_eq!(
            config.output.key,
            "thumbnail/thumbnail_clip_20240101-120000_42.png"
        );
        assert_eq!(config.region.as_deref(), Some("us-east-1"));
    }

    #[test]
    fn names_the_first_missing_or_empty_variable() {
        for missing in [
            INPUT_VIDEO_FILE_URL,
            POSITION_TIME_DURATION,
            OUTPUT_S3_PATH,
            OUTPUT_THUMBS_FILE_NAME,
        ] {
            let mut vars = full();
            vars.retain(|(k, _)| *k != missing);
            assert_eq!(
                Config::from_lookup(env(&vars)),
                Err(ConfigError::Missing(missing))
            );
            vars.push((missing, "  "));
            assert_eq!(
                Config::from_lookup(env(&vars)),
                Err(ConfigError::Missing(missing))
            );
        }
    }

    #[test]
    fn region_is_optional_here() {
        let mut vars = full();
        vars.retain(|(k, _)| *k != AWS_REGION);
        assert_eq!(Config::from_lookup(env(&vars)).unwrap().region, None);
    }

    #[test]
    fn a_bad_position_names_its_variable() {
        let mut vars = full();
        vars.push((POSITION_TIME_DURATION, "soon"));
        vars.swap_remove(1);
        let err = Config::from_lookup(env(&vars)).unwrap_err().to_string();
        assert!(
            err.starts_with("POSITION_TIME_DURATION: \"soon\" is not a position"),
            "{err}"
        );
    }

    #[test]
    fn input_must_be_http_and_is_shown_without_its_query() {
        assert!(InputUrl::parse("https://bucket.s3.amazonaws.com/v.mp4").is_ok());
        for bad in [
            "file:///etc/passwd",
            "/work/v.mp4",
            "ftp://x/v.mp4",
            "http://",
            "http:///x",
            "http://h/a b",
        ] {
            assert!(InputUrl::parse(bad).is_err(), "{bad}");
        }
        let url = InputUrl::parse(URL).unwrap();
        assert_eq!(url.redacted(), "http://169.254.170.2/media/video/clip.mp4");
        assert_eq!(url.to_string(), url.redacted());
        assert!(!format!("{url:?}").contains("secret"));
        assert_eq!(
            url.scrub(&format!("{URL}: Server returned 404 Not Found")),
            "http://169.254.170.2/media/video/clip.mp4: Server returned 404 Not Found"
        );
        let err = InputUrl::parse("s3://media/v.mp4?token=secret").unwrap_err();
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn output_keys_join_prefix_and_name() {
        let key = |path: &str, name: &str| OutputObject::new(path, name).map(|o| o.uri());
        let name = "thumbnail_v_20240101-120000_1.png";
        assert_eq!(
            key("media/thumbnail", name).unwrap(),
            format!("s3://media/thumbnail/{name}")
        );
        assert_eq!(
            key("media/thumbnail/", name).unwrap(),
            format!("s3://media/thumbnail/{name}")
        );
        assert_eq!(key("media", name).unwrap(), format!("s3://media/{name}"));
        assert_eq!(key("media/", name).unwrap(), format!("s3://media/{name}"));
        assert_eq!(
            key("s3://media/a/b", name).unwrap(),
            format!("s3://media/a/b/{name}")
        );
        assert_eq!(
            key("my.bucket-1/x", "t.png").unwrap(),
            "s3://my.bucket-1/x/t.png"
        );
    }

    #[test]
    fn output_refuses_bad_buckets_and_names() {
        for bad in [
            "",
            "/prefix",
            "Media/x",
            "ab",
            "-media",
            "media-",
            "me_dia/x",
            "media//x",
            "media/a//b",
        ] {
            let err = OutputObject::new(bad, "t.png").unwrap_err();
            assert!(
                err.to_string().starts_with("OUTPUT_S3_PATH: "),
                "{bad}: {err}"
            );
        }
        for bad in ["a/b.png", "..", ".", "t\n.png"] {
            let err = OutputObject::new("media/thumbnail", bad).unwrap_err();
            assert!(
                err.to_string().starts_with("OUTPUT_THUMBS_FILE_NAME: "),
                "{bad:?}: {err}"
            );
        }
        let long = "x".repeat(1100);
        assert!(OutputObject::new("media/p", &long).is_err());
    }
}
