//! Every way the task can fail, each class with its own exit code.

use crate::config::ConfigError;
use crate::position::{format_seconds, Position};

/// Why no thumbnail was written. The process exits with [`ThumbError::exit_code`]
/// and prints the message as one line; no object is left behind in any case,
/// since the only write is one PutObject at the very end.
#[derive(Debug, thiserror::Error)]
pub enum ThumbError {
    /// A variable of the environment contract is missing or malformed.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),

    /// The server answered the video's URL with a 4xx status: the object is
    /// gone, or the presigned URL expired or never allowed it.
    #[error("input video {url} is not available: {reason}")]
    InputUnavailable { url: String, reason: String },

    /// The video's server could not be reached or failed (connection refused,
    /// timeout, 5xx): worth retrying later, unlike the classes above.
    #[error("input video {url} could not be read: {reason}")]
    InputUnreachable { url: String, reason: String },

    /// The URL answered, but with something that holds no video stream.
    #[error("input is not a video: {url}: {reason}")]
    NotAVideo { url: String, reason: String },

    /// The position lies at or after the end of the video.
    #[error("position {position} is past the end of the video{}", end_of(*.duration))]
    PastEnd {
        position: Position,
        duration: Option<f64>,
    },

    /// S3 refused the write (AccessDenied and other 403s: the task role
    /// lacks `s3:PutObject` on the key, or its credentials are bad).
    #[error("no permission to write {uri}: {reason}")]
    OutputDenied { uri: String, reason: String },

    /// Any other failure of the upload: no such bucket, no credentials, S3
    /// unreachable.
    #[error("could not write {uri}: {reason}")]
    UploadFailed { uri: String, reason: String },

    /// FFmpeg is missing, crashed, timed out or produced something that is
    /// not a PNG: a fault of the image or the host, not of the input.
    #[error("{tool}: {reason}")]
    Tool { tool: &'static str, reason: String },
}

fn end_of(duration: Option<f64>) -> String {
    match duration {
        Some(d) => format!(" ({} s)", format_seconds(d)),
        None => String::new(),
    }
}

/// The exit codes, one per class; documented in the README.
pub mod exit {
    pub const TOOL: u8 = 1;
    pub const CONFIG: u8 = 2;
    pub const INPUT_UNAVAILABLE: u8 = 3;
    pub const INPUT_UNREACHABLE: u8 = 4;
    pub const NOT_A_VIDEO: u8 = 5;
    pub const PAST_END: u8 = 6;
    pub const OUTPUT_DENIED: u8 = 7;
    pub const UPLOAD_FAILED: u8 = 8;
}

impl ThumbError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Tool { .. } => exit::TOOL,
            Self::Config(_) => exit::CONFIG,
            Self::InputUnavailable { .. } => exit::INPUT_UNAVAILABLE,
            Self::InputUnreachable { .. } => exit::INPUT_UNREACHABLE,
            Self::NotAVideo { .. } => exit::NOT_A_VIDEO,
            Self::PastEnd { .. } => exit::PAST_END,
            Self::OutputDenied { .. } => exit::OUTPUT_DENIED,
            Self::UploadFailed { .. } => exit::UPLOAD_FAILED,
        }
    }

    /// The message as the single line the task prints: newlines in what
    /// FFmpeg or the SDK said are folded into `; `.
    pub fn log_line(&self) -> String {
        format!("tom-thumb: error: {}", one_line(&self.to_string()))
    }
}

/// `text` on one line: lines trimmed, empty ones dropped, joined with `; `.
pub fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<ThumbError> {
        let s = || "x".to_owned();
        vec![
            ThumbError::Tool {
                tool: "ffmpeg",
                reason: s(),
            },
            ThumbError::Config(ConfigError::Missing("AWS_REGION")),
            ThumbError::InputUnavailable {
                url: s(),
                reason: s(),
            },
            ThumbError::InputUnreachable {
                url: s(),
                reason: s(),
            },
            ThumbError::NotAVideo {
                url: s(),
                reason: s(),
            },
            ThumbError::PastEnd {
                position: Position::from_micros(0),
                duration: None,
            },
            ThumbError::OutputDenied {
                uri: s(),
                reason: s(),
            },
            ThumbError::UploadFailed {
                uri: s(),
                reason: s(),
            },
        ]
    }

    #[test]
    fn every_class_has_its_own_nonzero_exit_code() {
        let mut codes: Vec<u8> = all().iter().map(ThumbError::exit_code).collect();
        assert!(codes.iter().all(|&c| c != 0));
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all().len());
    }

    #[test]
    fn past_the_end_says_how_long_the_video_is() {
        let err = ThumbError::PastEnd {
            position: "00:10:00".parse().unwrap(),
            duration: Some(9.64),
        };
        assert_eq!(
            err.log_line(),
            "tom-thumb: error: position 00:10:00 is past the end of the video (9.64 s)"
        );
        let err = ThumbError::PastEnd {
            position: "12".parse().unwrap(),
            duration: None,
        };
        assert_eq!(
            err.to_string(),
            "position 00:00:12 is past the end of the video"
        );
    }

    #[test]
    fn log_lines_are_one_line() {
        let err = ThumbError::NotAVideo {
            url: "http://h/v.txt".into(),
            reason: "first\n\n  second  \nthird\n".into(),
        };
        assert_eq!(
            err.log_line(),
            "tom-thumb: error: input is not a video: http://h/v.txt: first; second; third"
        );
    }
}
