//! Taking one frame of a video over HTTP with FFmpeg.
//!
//! The video is never downloaded whole: `ffmpeg -ss POS -i URL` reads the
//! container's headers and (input seeking) jumps to the keyframe
//! before the position with HTTP range requests and decodes from there, so
//! the bytes read grow with the distance between keyframes, not with the
//! position. The workshop's `ffmpeg -i URL -ss POS` (output seeking) decoded
//! everything before the position instead.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::config::InputUrl;
use crate::error::ThumbError;
use crate::position::Position;

/// Protocols FFmpeg may open: only the network ones a URL of the contract
/// can name, so neither the URL nor a playlist it points at can make FFmpeg
/// read local files.
const PROTOCOLS: &str = "http,https,tls,tcp,httpproxy";

/// How FFmpeg is run.
#[derive(Debug, Clone)]
pub struct Ffmpeg {
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
    /// The longest a single read or connect may stall (FFmpeg's `-rw_timeout`).
    pub io_timeout: Duration,
    /// The longest one run of `ffprobe` or `ffmpeg` may take.
    pub run_timeout: Duration,
    /// The largest PNG accepted (an 8K RGB frame is about 100 MiB raw).
    pub max_png_bytes: usize,
}

impl Default for Ffmpeg {
    fn default() -> Self {
        Self {
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            io_timeout: Duration::from_secs(30),
            run_timeout: Duration::from_secs(300),
            max_png_bytes: 128 << 20,
        }
    }
}

/// What `ffprobe` learnt about the input.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// The container's duration in seconds, when it declares one.
    pub duration: Option<f64>,
    /// Video streams that are not a still (cover art is a "video" stream
    /// with the attached_pic disposition).
    pub video_streams: usize,
}

/// One frame, encoded as PNG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub png: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// A frame and what it took to get it.
#[derive(Debug, Clone)]
pub struct Thumbnail {
    pub frame: Frame,
    pub extract_time: Duration,
}

impl Ffmpeg {
    /// Takes the frame at `position`, refusing what is not a video or is too
    /// short. One FFmpeg run on the way that succeeds: a separate probe
    /// first would start FFmpeg's libraries and read the container's index
    /// twice (a third of a thumbnail's time). `ffprobe` runs only when the
    /// extraction failed in a way whose message needs its facts (no video
    /// stream, or no frame at the position and how long the video is).
    pub async fn thumbnail(
        &self,
        input: &InputUrl,
        position: Position,
    ) -> Result<Thumbnail, ThumbError> {
        let started = Instant::now();
        match self.extract(input, position, None).await {
            Ok(frame) => Ok(Thumbnail {
                frame,
                extract_time: started.elapsed(),
            }),
            Err(failed @ (ThumbError::NotAVideo { .. } | ThumbError::PastEnd { .. })) => {
                // A probe that fails too says why in its own words (e.g. the
                // object went away in between); one that succeeds words the
                // original failure.
                let probe = self.probe(input).await?;
                if probe.video_streams == 0 {
                    return Err(ThumbError::NotAVideo {
                        url: input.redacted().to_owned(),
                        reason: "it has no video stream".into(),
                    });
                }
                Err(match failed {
                    ThumbError::PastEnd { .. } => ThumbError::PastEnd {
                        position,
                        duration: probe.duration,
                    },
                    other => other,
                })
            }
            Err(other) => Err(other),
        }
    }

    /// Reads the input's duration and streams with `ffprobe`.
    pub async fn probe(&self, input: &InputUrl) -> Result<Probe, ThumbError> {
        let io_timeout = self.io_timeout.as_micros().to_string();
        let args = [
            "-v",
            "error",
            "-rw_timeout",
            &io_timeout,
            "-protocol_whitelist",
            PROTOCOLS,
            "-show_entries",
            "format=duration:stream=codec_type:stream_disposition=attached_pic",
            "-of",
            "json",
            "-i",
            input.as_str(),
        ];
        let out = self.run("ffprobe", &self.ffprobe, &args, 1 << 20).await?;
        if !out.status.success() {
            return Err(classify_failure(input, "ffprobe", out.status, &out.stderr));
        }
        parse_probe(&out.stdout).map_err(|reason| ThumbError::Tool {
            tool: "ffprobe",
            reason,
        })
    }

    /// Takes the frame at `position` as PNG, seeking on the input. `duration`
    /// (from the probe) only words the error when there is no frame there.
    pub async fn extract(
        &self,
        input: &InputUrl,
        position: Position,
        duration: Option<f64>,
    ) -> Result<Frame, ThumbError> {
        let io_timeout = self.io_timeout.as_micros().to_string();
        let seek = position.ffmpeg_arg();
        let args = [
            "-nostdin",
            "-v",
            "error",
            "-rw_timeout",
            &io_timeout,
            "-protocol_whitelist",
            PROTOCOLS,
            "-ss",
            &seek,
            "-i",
            input.as_str(),
            // `V`, not `v`: the first video stream that is not a still
            // (cover art of an audio file is a "video" stream too).
            "-map",
            "0:V:0",
            "-frames:v",
            "1",
            "-f",
            "image2pipe",
            "-c:v",
            "png",
            "pipe:1",
        ];
        let out = self
            .run("ffmpeg", &self.ffmpeg, &args, self.max_png_bytes)
            .await?;
        if !out.status.success() {
            return Err(classify_failure(input, "ffmpeg", out.status, &out.stderr));
        }
        if out.stdout.is_empty() {
            // FFmpeg succeeds with no frame when the seek lands past the last one.
            return Err(ThumbError::PastEnd { position, duration });
        }
        let (width, height) = png_size(&out.stdout).ok_or_else(|| ThumbError::Tool {
            tool: "ffmpeg",
            reason: format!("wrote {} bytes that are not a PNG", out.stdout.len()),
        })?;
        Ok(Frame {
            png: out.stdout,
            width,
            height,
        })
    }

    /// Runs a tool with its stdout captured up to `max_stdout` bytes and the
    /// tail of its stderr kept for the error message.
    async fn run(
        &self,
        tool: &'static str,
        program: &PathBuf,
        args: &[&str],
        max_stdout: usize,
    ) -> Result<ToolOutput, ThumbError> {
        let fail = |reason: String| ThumbError::Tool { tool, reason };
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => fail(format!(
                    "{} not found (is FFmpeg installed?)",
                    program.display()
                )),
                _ => fail(format!("cannot start {}: {e}", program.display())),
            })?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(fail("its output pipes were not created".into()));
        };
        let work = async {
            let (stdout, stderr) = tokio::join!(
                read_bounded(stdout, max_stdout),
                read_tail(stderr, STDERR_TAIL)
            );
            let stdout = stdout.map_err(|e| fail(format!("reading its output: {e}")))?;
            let Some(stdout) = stdout else {
                return Err(fail(format!("its output exceeds {max_stdout} bytes")));
            };
            let stderr = stderr.map_err(|e| fail(format!("reading its errors: {e}")))?;
            let status = child
                .wait()
                .await
                .map_err(|e| fail(format!("waiting for it: {e}")))?;
            Ok(ToolOutput {
                status,
                stdout,
                stderr,
            })
        };
        // On a timeout or an error the future, and with it the child
        // (kill_on_drop), is dropped: no FFmpeg outlives its run.
        match tokio::time::timeout(self.run_timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(fail(format!(
                "did not finish within {} s",
                self.run_timeout.as_secs()
            ))),
        }
    }
}

const STDERR_TAIL: usize = 8 << 10;

struct ToolOutput {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

/// Reads all of `reader` if it holds at most `limit` bytes; `None` if more.
async fn read_bounded(
    reader: impl AsyncRead + Unpin,
    limit: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    reader.take(limit as u64 + 1).read_to_end(&mut buf).await?;
    Ok((buf.len() <= limit).then_some(buf))
}

/// Reads all of `reader`, keeping only its last `keep` bytes (the last lines
/// are the ones that say what went wrong).
async fn read_tail(mut reader: impl AsyncRead + Unpin, keep: usize) -> std::io::Result<String> {
    let mut tail = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&chunk[..n]);
        if tail.len() > 2 * keep {
            tail.drain(..tail.len() - keep);
        }
    }
    if tail.len() > keep {
        tail.drain(..tail.len() - keep);
    }
    Ok(String::from_utf8_lossy(&tail).into_owned())
}

#[derive(Deserialize)]
struct ProbeDoc {
    #[serde(default)]
    streams: Vec<ProbeStream>,
    #[serde(default)]
    format: Option<ProbeFormat>,
}

#[derive(Deserialize)]
struct ProbeStream {
    #[serde(default)]
    codec_type: Option<String>,
    #[serde(default)]
    disposition: Option<ProbeDisposition>,
}

#[derive(Deserialize)]
struct ProbeDisposition {
    #[serde(default)]
    attached_pic: u8,
}

#[derive(Deserialize)]
struct ProbeFormat {
    #[serde(default)]
    duration: Option<String>,
}

/// Reads `ffprobe -of json` output.
pub fn parse_probe(json: &[u8]) -> Result<Probe, String> {
    let doc: ProbeDoc =
        serde_json::from_slice(json).map_err(|e| format!("unreadable output: {e}"))?;
    let video_streams = doc
        .streams
        .iter()
        .filter(|s| s.codec_type.as_deref() == Some("video"))
        .filter(|s| s.disposition.as_ref().is_none_or(|d| d.attached_pic == 0))
        .count();
    let duration = doc
        .format
        .and_then(|f| f.duration)
        .and_then(|d| d.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d > 0.0);
    Ok(Probe {
        duration,
        video_streams,
    })
}

/// The width and height in a PNG's IHDR chunk, if `png` starts like a PNG.
pub fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if png.len() < 24 || !png.starts_with(SIGNATURE) || &png[12..16] != b"IHDR" {
        return None;
    }
    let width = u32::from_be_bytes(png[16..20].try_into().ok()?);
    let height = u32::from_be_bytes(png[20..24].try_into().ok()?);
    Some((width, height))
}

/// Turns a failed run of `ffprobe`/`ffmpeg` into the class of its cause, from
/// what FFmpeg printed: an HTTP 4xx means the object is gone or forbidden, a
/// network failure or 5xx that the server could not be read, anything else
/// that the bytes are not a video FFmpeg can read.
pub fn classify_failure(
    input: &InputUrl,
    tool: &'static str,
    status: ExitStatus,
    stderr: &str,
) -> ThumbError {
    let stderr = input.scrub(stderr);
    let url = input.redacted().to_owned();
    if status.code().is_none() {
        return ThumbError::Tool {
            tool,
            reason: format!("{status}: {}", last_line(&stderr, &url)),
        };
    }
    let lower = stderr.to_ascii_lowercase();
    let reason = last_line(&stderr, &url);
    const UNREACHABLE: [&str; 9] = [
        "server returned 5",
        "connection refused",
        "timed out",
        "network is unreachable",
        "no route to host",
        "failed to resolve",
        "connection reset",
        "stream ends prematurely",
        "broken pipe",
    ];
    if lower.contains("server returned 4") || lower.contains("http error 4") {
        ThumbError::InputUnavailable { url, reason }
    } else if UNREACHABLE.iter().any(|p| lower.contains(p)) {
        ThumbError::InputUnreachable { url, reason }
    } else if reason.is_empty() {
        ThumbError::Tool {
            tool,
            reason: format!("{status} without a message"),
        }
    } else {
        ThumbError::NotAVideo { url, reason }
    }
}

/// FFmpeg's last message, without the `URL: ` it starts with (the error
/// names the URL already) or a `[demuxer @ 0x…] ` tag.
fn last_line(stderr: &str, url: &str) -> String {
    let line = stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or_default();
    let line = line
        .strip_prefix(url)
        .and_then(|l| l.strip_prefix(": "))
        .unwrap_or(line);
    let line = match line.strip_prefix('[').and_then(|l| l.split_once("] ")) {
        Some((_, rest)) => rest,
        None => line,
    };
    line.to_owned()
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;
    use crate::error::exit;

    const URL: &str = "http://127.0.0.1:8080/media/video/clip.mp4?X-Amz-Signature=s3cr3t";

    fn classify(code: i32, stderr: &str) -> ThumbError {
        let input = InputUrl::parse(URL).unwrap();
        classify_failure(&input, "ffprobe", ExitStatus::from_raw(code << 8), stderr)
    }

    #[test]
    fn http_client_errors_mean_the_input_is_not_available() {
        for msg in [
            "Server returned 404 Not Found",
            "Server returned 403 Forbidden (access denied)",
            "Server returned 4XX Client Error, but not one of 40{0,1,3,4}",
        ] {
            let err = classify(1, &format!("{URL}: {msg}\n"));
            assert_eq!(err.exit_code(), exit::INPUT_UNAVAILABLE, "{msg}");
            assert_eq!(
                err.to_string(),
                format!("input video http://127.0.0.1:8080/media/video/clip.mp4 is not available: {msg}")
            );
        }
    }

    #[test]
    fn network_failures_mean_the_input_could_not_be_read() {
        for stderr in [
            "[tcp @ 0x55d87216ca40] Connection to tcp://127.0.0.1:18778 failed: Connection refused\nhttp://127.0.0.1:18778/x.mp4: Connection refused\n",
            "http://h/x: Server returned 5XX Server Error reply\n",
            "[http @ 0x1] Stream ends prematurely at 48, should be 761445\nhttp://h/x: Input/output error\n",
            "http://h/x: Connection timed out\n",
        ] {
            assert_eq!(classify(1, stderr).exit_code(), exit::INPUT_UNREACHABLE, "{stderr}");
        }
    }

    #[test]
    fn anything_else_is_not_a_video() {
        let err = classify(
            1,
            &format!("{URL}: Invalid data found when processing input\n"),
        );
        assert_eq!(err.exit_code(), exit::NOT_A_VIDEO);
        assert_eq!(
            err.to_string(),
            "input is not a video: http://127.0.0.1:8080/media/video/clip.mp4: \
             Invalid data found when processing input"
        );
        let err = classify(1, "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x1] moov atom not found\n");
        assert_eq!(
            err.to_string(),
            "input is not a video: http://127.0.0.1:8080/media/video/clip.mp4: moov atom not found"
        );
    }

    #[test]
    fn the_signature_never_reaches_the_message() {
        let err = classify(
            1,
            &format!("{URL}: Server returned 403 Forbidden (access denied)\n"),
        );
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }

    #[test]
    fn a_killed_or_silent_tool_is_a_tool_failure() {
        let input = InputUrl::parse(URL).unwrap();
        let killed = classify_failure(&input, "ffmpeg", ExitStatus::from_raw(9), "");
        assert_eq!(killed.exit_code(), exit::TOOL);
        assert_eq!(classify(1, "").exit_code(), exit::TOOL);
    }

    #[test]
    fn probe_output_gives_duration_and_real_video_streams() {
        let json = br#"{"programs":[],"streams":[
            {"codec_type":"video","disposition":{"attached_pic":0}},
            {"codec_type":"audio","disposition":{"attached_pic":0}}],
            "format":{"duration":"9.640000"}}"#;
        assert_eq!(
            parse_probe(json).unwrap(),
            Probe {
                duration: Some(9.64),
                video_streams: 1
            }
        );
        let cover_art = br#"{"streams":[{"codec_type":"audio"},
            {"codec_type":"video","disposition":{"attached_pic":1}}],"format":{"duration":"200.1"}}"#;
        assert_eq!(parse_probe(cover_art).unwrap().video_streams, 0);
        let no_duration = br#"{"streams":[{"codec_type":"video"}],"format":{"duration":"N/A"}}"#;
        assert_eq!(
            parse_probe(no_duration).unwrap(),
            Probe {
                duration: None,
                video_streams: 1
            }
        );
        assert_eq!(parse_probe(b"{}").unwrap().video_streams, 0);
        assert!(parse_probe(b"not json").is_err());
    }

    #[test]
    fn png_size_reads_the_header() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&640u32.to_be_bytes());
        png.extend_from_slice(&360u32.to_be_bytes());
        assert_eq!(png_size(&png), Some((640, 360)));
        assert_eq!(png_size(&png[..20]), None);
        assert_eq!(png_size(b"GIF89a........................"), None);
    }

    #[tokio::test]
    async fn reads_are_bounded() {
        let data = vec![7u8; 10_000];
        assert_eq!(
            read_bounded(&data[..], 10_000)
                .await
                .unwrap()
                .map(|v| v.len()),
            Some(10_000)
        );
        assert_eq!(read_bounded(&data[..], 9_999).await.unwrap(), None);
        let text = "line\n".repeat(10_000);
        let tail = read_tail(text.as_bytes(), 100).await.unwrap();
        assert_eq!(tail.len(), 100);
        assert!(tail.ends_with("line\n"));
    }

    #[tokio::test]
    async fn a_missing_ffmpeg_is_named() {
        let ff = Ffmpeg {
            ffprobe: "/nonexistent/ffprobe".into(),
            ..Ffmpeg::default()
        };
        let input = InputUrl::parse(URL).unwrap();
        let err = ff.probe(&input).await.unwrap_err();
        assert_eq!(err.exit_code(), exit::TOOL);
        assert_eq!(
            err.to_string(),
            "ffprobe: /nonexistent/ffprobe not found (is FFmpeg installed?)"
        );
    }
}
