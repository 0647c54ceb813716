//! The task's entry point: read the environment, take the frame, write it.
//! Prints one line on stdout on success, one line on stderr on failure, and
//! exits with the failure's class (see `tom_thumb::exit`).

use std::process::ExitCode;
use std::time::Instant;

use tom_thumb::{upload, Config, Ffmpeg, ThumbError};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{}", err.log_line());
            ExitCode::from(err.exit_code())
        }
    }
}

async fn run() -> Result<String, ThumbError> {
    let config = Config::from_env()?;
    let sdk = upload::load_sdk_config(config.region.clone()).await?;
    let ffmpeg = Ffmpeg::default();
    let (thumbnail, credentials) = tokio::join!(
        ffmpeg.thumbnail(&config.input, config.position),
        upload::resolve_credentials(&sdk, &config.output),
    );
    let thumbnail = thumbnail?;
    let client = upload::s3_client(&sdk, Some(credentials?));
    let frame = thumbnail.frame;
    let (bytes, width, height) = (frame.png.len(), frame.width, frame.height);
    let started = Instant::now();
    upload::put_png(&client, &config.output, frame.png).await?;
    let upload_time = started.elapsed();
    Ok(format!(
        "tom-thumb: wrote {} ({bytes} bytes, {width}x{height}, frame at {}) extract {} ms, upload {} ms",
        config.output,
        config.position,
        thumbnail.extract_time.as_millis(),
        upload_time.as_millis(),
    ))
}
