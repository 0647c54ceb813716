//! The frame extraction against real videos served over HTTP on loopback:
//! the frame equals what FFmpeg takes from the local file, a late frame is
//! read with range requests instead of a whole download, and bad inputs end
//! in their own error classes.

mod common;

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use common::{decode_png, ffmpeg_available, run, video, FileServer};
use tom_thumb::{exit, Ffmpeg, InputUrl, Position, ThumbError};

/// The frame FFmpeg takes from the local file, seeking on the input.
fn local_frame(path: &Path, position: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("frame.png");
    run(
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-ss",
            position,
            "-i",
            path.to_str().unwrap(),
            "-frames:v",
            "1",
            "-f",
            "image2",
            "-c:v",
            "png",
            out.to_str().unwrap(),
        ],
    );
    std::fs::read(out).unwrap()
}

async fn serve(files: &[(&str, &Path)]) -> FileServer {
    let files: HashMap<String, Bytes> = files
        .iter()
        .map(|(name, path)| (name.to_string(), Bytes::from(std::fs::read(path).unwrap())))
        .collect();
    FileServer::start(files).await
}

async fn thumbnail(
    server: &FileServer,
    path: &str,
    position: &str,
) -> Result<tom_thumb::Thumbnail, ThumbError> {
    // A presigned URL's query must reach the server and stay out of errors.
    let url = InputUrl::parse(&server.url(&format!("{path}?X-Amz-Signature=s3cr3t"))).unwrap();
    let position: Position = position.parse().unwrap();
    Ffmpeg::default().thumbnail(&url, position).await
}

#[tokio::test]
async fn frames_over_http_equal_frames_of_the_local_file() {
    if !ffmpeg_available() {
        return;
    }
    let (Some(chaplin), Some(cockatoo)) = (
        video("Zulko_moviepy_chaplin.mp4"),
        video("imageio_imageio-binaries_cockatoo_yuv420.mp4"),
    ) else {
        return;
    };
    let server = serve(&[("/chaplin.mp4", &chaplin), ("/cockatoo.mp4", &cockatoo)]).await;
    let cases = [
        ("/chaplin.mp4", &chaplin, "00:00:00", 640, 360),
        ("/chaplin.mp4", &chaplin, "00:00:02.5", 640, 360),
        ("/chaplin.mp4", &chaplin, "9.5", 640, 360),
        ("/cockatoo.mp4", &cockatoo, "00:00:07", 1280, 720),
        ("/cockatoo.mp4", &cockatoo, "13.9", 1280, 720),
    ];
    for (path, file, position, width, height) in cases {
        let thumb = thumbnail(&server, path, position)
            .await
            .unwrap_or_else(|e| panic!("{path} at {position}: {e}"));
        let ours = decode_png(&thumb.frame.png);
        let theirs = decode_png(&local_frame(file, position));
        assert_eq!(
            (thumb.frame.width, thumb.frame.height),
            (ours.width, ours.height)
        );
        assert_eq!(
            (ours.width, ours.height),
            (width, height),
            "{path} at {position}"
        );
        assert!(
            ours == theirs,
            "{path} at {position}: pixels differ from the local frame"
        );
    }
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.contains("?X-Amz-Signature=s3cr3t ")),
        "every request carries the presigned query: {:?}",
        server.requests()
    );
}

#[tokio::test]
async fn a_late_frame_is_read_with_ranges_not_a_whole_download() {
    if !ffmpeg_available() {
        return;
    }
    // Two minutes of a busy test pattern with a keyframe every 2 s: large
    // enough that reading it whole would stand out.
    let dir = tempfile::tempdir().unwrap();
    let long = dir.path().join("long.mp4");
    run(
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=duration=120:size=640x360:rate=25",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "50",
            "-pix_fmt",
            "yuv420p",
            long.to_str().unwrap(),
        ],
    );
    let size = std::fs::metadata(&long).unwrap().len();
    let server = serve(&[("/long.mp4", &long)]).await;
    let thumb = thumbnail(&server, "/long.mp4", "00:01:50.5").await.unwrap();
    let sent = server.bytes_sent();
    eprintln!(
        "long.mp4: {size} bytes, {sent} sent for the frame at 110.5 s in {} requests: {:?}",
        server.requests().len(),
        server.requests()
    );
    assert!(
        sent < size / 4,
        "{sent} of {size} bytes were sent: the video was downloaded, not seeked in"
    );
    assert!(
        server.requests().iter().any(|r| r.contains("bytes=")),
        "no range request was made"
    );
    assert!(decode_png(&thumb.frame.png) == decode_png(&local_frame(&long, "00:01:50.5")));
    let url = InputUrl::parse(&server.url("/long.mp4")).unwrap();
    let probe = Ffmpeg::default().probe(&url).await.unwrap();
    assert_eq!(probe.duration, Some(120.0));
}

#[tokio::test]
async fn bad_inputs_end_in_their_own_classes() {
    if !ffmpeg_available() {
        return;
    }
    let Some(chaplin) = video("Zulko_moviepy_chaplin.mp4") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "this is not a video\n".repeat(100)).unwrap();
    let audio = dir.path().join("tone.m4a");
    run(
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=duration=2",
            "-c:a",
            "aac",
            audio.to_str().unwrap(),
        ],
    );
    let server = serve(&[
        ("/chaplin.mp4", &chaplin),
        ("/video/notes.mp4", &text),
        ("/tone.m4a", &audio),
    ])
    .await;
    let base = format!("http://{}", server.addr);

    let err = thumbnail(&server, "/chaplin.mp4", "00:10:00")
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), exit::PAST_END);
    assert_eq!(
        err.to_string(),
        "position 00:10:00 is past the end of the video (9.64 s)"
    );
    let err = thumbnail(&server, "/chaplin.mp4", "9.64")
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), exit::PAST_END, "{err}");

    let err = thumbnail(&server, "/video/notes.mp4", "1")
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), exit::NOT_A_VIDEO, "{err}");
    assert_eq!(
        err.to_string(),
        format!("input is not a video: {base}/video/notes.mp4: Invalid data found when processing input")
    );

    let err = thumbnail(&server, "/tone.m4a", "1").await.unwrap_err();
    assert_eq!(err.exit_code(), exit::NOT_A_VIDEO, "{err}");
    assert_eq!(
        err.to_string(),
        format!("input is not a video: {base}/tone.m4a: it has no video stream")
    );

    let err = thumbnail(&server, "/video/gone.mp4", "1")
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), exit::INPUT_UNAVAILABLE, "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "input video {base}/video/gone.mp4 is not available: Server returned 404 Not Found"
        )
    );

    let err = thumbnail(&server, "/forbidden/chaplin.mp4", "1")
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), exit::INPUT_UNAVAILABLE, "{err}");
    assert!(
        err.to_string()
            .ends_with("Server returned 403 Forbidden (access denied)"),
        "{err}"
    );
    assert!(!err.to_string().contains("s3cr3t"), "{err}");

    // Nothing listens on the port of a server that was dropped.
    let addr = server.addr;
    drop(server);
    tokio::task::yield_now().await;
    let url = InputUrl::parse(&format!("http://{addr}/chaplin.mp4")).unwrap();
    let err = Ffmpeg::default()
        .thumbnail(&url, Position::from_micros(0))
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), exit::INPUT_UNREACHABLE, "{err}");
}
