//! `hail bench thumbnail`: Container-on-Demand end to end. A real `hail
//! server`, the tom-thumb image, a role, the workshop's task definition and
//! a trigger on `video/`; each series uploads a video and measures from the
//! upload's acknowledgement to the thumbnail's object being listed — side by
//! side with the workshop's own command (`ffmpeg -i FILE -ss P -vframes 1`,
//! output seeking) and with input seeking, on the same file in the same run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use clap::Args;
use hail_api::Service;
use http::Method;
use serde_json::json;

use crate::bench_api::start_server;
use crate::client::Client;

#[derive(Args)]
pub struct ThumbnailArgs {
    /// The tom-thumb image: an OCI archive or layout, or a `docker save`
    /// archive (`examples/tom-thumb/build-image.sh --output FILE` makes one).
    #[arg(long)]
    image: PathBuf,
    /// The video to upload; a 5-minute 720p H.264 test video is made with
    /// ffmpeg when absent.
    #[arg(long)]
    video: Option<PathBuf>,
    /// Where in the video the frame is taken (seconds).
    #[arg(long, default_value_t = 240)]
    position: u32,
    /// Uploads measured (after one warm-up).
    #[arg(long, default_value_t = 10)]
    uploads: usize,
    /// Runs of each ffmpeg command.
    #[arg(long, default_value_t = 3)]
    ffmpeg_runs: usize,
    /// Scratch directory (data dir, generated video).
    #[arg(long, default_value = "/var/tmp/hail-bench-thumbnail")]
    work_dir: PathBuf,
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn make_video(path: &Path) -> anyhow::Result<()> {
    eprintln!(
        "making a 5-minute 720p H.264 test video at {}…",
        path.display()
    );
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=duration=300:size=1280x720:rate=30")
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "60"])
        .arg(path)
        .status()
        .context("run ffmpeg (Debian package ffmpeg)")?;
    if !status.success() {
        bail!("ffmpeg could not make the test video");
    }
    Ok(())
}

/// Seconds an ffmpeg command line takes, `runs` times.
fn time_ffmpeg(args: &[String], runs: usize) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let status = Command::new("ffmpeg").args(args).status()?;
        if !status.success() {
            bail!("ffmpeg {args:?} failed");
        }
        out.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(out)
}

async fn call(
    client: &Client,
    service: Service,
    op: &str,
    body: serde_json::Value,
) -> anyhow::Result<()> {
    client
        .call(service, op, body)
        .await
        .with_context(|| op.to_string())?;
    Ok(())
}

pub async fn run(args: ThumbnailArgs) -> anyhow::Result<()> {
    if args.uploads == 0 {
        bail!("--uploads must be at least 1");
    }
    std::fs::create_dir_all(&args.work_dir)?;
    let video = match &args.video {
        Some(v) => v.clone(),
        None => {
            let v = args.work_dir.join("long-720p.mp4");
            if !v.exists() {
                make_video(&v)?;
            }
            v
        }
    };
    let data_dir = args.work_dir.join("data");
    let _ = std::fs::remove_dir_all(&data_dir);
    std::fs::create_dir_all(&data_dir)?;
    eprintln!("importing {}…", args.image.display());
    hail_runtime::image::store::ImageStore::open(&data_dir)?.import(
        "tom-thumb:latest",
        &args.image,
        &hail_runtime::progress::NoProgress,
    )?;
    let (server, endpoint) = start_server(
        &data_dir,
        &["--bridge", "hailbench3", "--subnet", "10.216.12.0/22"],
        &[
            "--netns-prefix",
            "hailbencht-",
            "--cgroup-root",
            "hail-bench-thumbs",
        ],
    )
    .await?;
    let client = Arc::new(Client::for_data_dir(&data_dir, &endpoint)?);
    call(
        &client,
        Service::Ecs,
        "CreateCluster",
        json!({"clusterName": "default"}),
    )
    .await?;
    let (status, body) = client.s3(Method::PUT, "/media", Bytes::new()).await?;
    if !status.is_success() {
        bail!("create bucket: {status} {}", String::from_utf8_lossy(&body));
    }
    call(
        &client,
        Service::Hail,
        "CreateRole",
        json!({"roleName": "thumbnailer", "policy": {"Statement": [
            {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::media/thumbnail/*"}
        ]}}),
    )
    .await?;
    let position = format!(
        "{:02}:{:02}:{:02}",
        args.position / 3600,
        args.position / 60 % 60,
        args.position % 60
    );
    call(
        &client,
        Service::Ecs,
        "RegisterTaskDefinition",
        json!({
            "family": "tom-thumb-task",
            "taskRoleArn": "arn:aws:iam::000000000000:role/thumbnailer",
            "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE"],
            "cpu": "256",
            "memory": "1024",
            "containerDefinitions": [{
                "name": "tom-thumb-container",
                "image": "tom-thumb:latest",
                "essential": true,
                "environment": [
                    {"name": "AWS_REGION", "value": "us-east-1"},
                    {"name": "POSITION_TIME_DURATION", "value": position},
                    {"name": "OUTPUT_S3_PATH", "value": "media/thumbnail"},
                    {"name": "INPUT_VIDEO_FILE_URL", "value": "set by the trigger"},
                    {"name": "OUTPUT_THUMBS_FILE_NAME", "value": "set by the trigger"}
                ]
            }]
        }),
    )
    .await?;
    call(
        &client,
        Service::Hail,
        "CreateTrigger",
        json!({
            "triggerName": "thumbs",
            "bucket": "media",
            "prefix": "video/",
            "taskDefinition": "tom-thumb-task",
            "overrides": {"containerOverrides": [{
                "name": "tom-thumb-container",
                "environment": [
                    {"name": "INPUT_VIDEO_FILE_URL", "value": "{{url}}"},
                    {"name": "OUTPUT_THUMBS_FILE_NAME",
                     "value": "thumbnail_{{key | basename | stem}}_{{timestamp}}_{{random}}.png"}
                ]
            }]}
        }),
    )
    .await?;

    let bytes = Bytes::from(std::fs::read(&video).with_context(|| video.display().to_string())?);
    eprintln!(
        "video: {} ({:.0} MB); warming up (layer unpack)…",
        video.display(),
        bytes.len() as f64 / 1e6
    );
    let mut latencies = Vec::new();
    for i in 0..=args.uploads {
        let name = format!("bench-{i}");
        let (status, body) = client
            .s3(
                Method::PUT,
                &format!("/media/video/{name}.mp4"),
                bytes.clone(),
            )
            .await?;
        if !status.is_success() {
            bail!("upload: {status} {}", String::from_utf8_lossy(&body));
        }
        let acked = Instant::now();
        let prefix = format!("thumbnail/thumbnail_{name}_");
        let deadline = acked + Duration::from_secs(120);
        loop {
            let (status, listing) = client
                .s3(
                    Method::GET,
                    &format!("/media?list-type=2&prefix={}", prefix.replace('/', "%2F")),
                    Bytes::new(),
                )
                .await?;
            if status.is_success() && String::from_utf8_lossy(&listing).contains("<Key>") {
                break;
            }
            if Instant::now() > deadline {
                bail!("no thumbnail for {name} after 120 s (see `hail trigger show thumbs`)");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let ms = acked.elapsed().as_secs_f64() * 1e3;
        if i == 0 {
            eprintln!("warm-up: {ms:.0} ms");
        } else {
            eprintln!("upload {i}: {ms:.0} ms");
            latencies.push(ms);
        }
        // Keep the disk from filling: the video is not needed any more.
        let _ = client
            .s3(
                Method::DELETE,
                &format!("/media/video/{name}.mp4"),
                Bytes::new(),
            )
            .await;
    }
    drop(server);

    let file = video.display().to_string();
    let out = args.work_dir.join("out.png").display().to_string();
    let pos = args.position.to_string();
    let workshop: Vec<String> = [
        "-v", "error", "-i", &file, "-ss", &pos, "-vframes", "1", "-vcodec", "png", "-an", "-y",
        &out,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let input_seek: Vec<String> = [
        "-v", "error", "-ss", &pos, "-i", &file, "-vframes", "1", "-vcodec", "png", "-an", "-y",
        &out,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    eprintln!("ffmpeg, output seeking (the workshop's command)…");
    let output_seeking = time_ffmpeg(&workshop, args.ffmpeg_runs)?;
    eprintln!("ffmpeg, input seeking…");
    let input_seeking = time_ffmpeg(&input_seek, args.ffmpeg_runs)?;

    println!("| series | runs | p50 ms | p95 ms |");
    println!("|---|---:|---:|---:|");
    for (name, v) in [
        ("hail: upload acknowledged → thumbnail stored (trigger, task, ffmpeg over HTTP, S3 PUT)", &latencies),
        ("ffmpeg -i FILE -ss P -vframes 1 (output seeking, local file)", &output_seeking),
        ("ffmpeg -ss P -i FILE -vframes 1 (input seeking, local file)", &input_seeking),
    ] {
        println!(
            "| {name} | {} | {:.0} | {:.0} |",
            v.len(),
            percentile(v, 50.0),
            percentile(v, 95.0)
        );
    }
    println!(
        "hail end to end p50 / workshop command p50 = {:.3}",
        percentile(&latencies, 50.0) / percentile(&output_seeking, 50.0)
    );
    Ok(())
}
