//! `config-init`: copies the application's configuration from S3 into the
//! shared volume, then exits. Prints one line on stdout on success, one on
//! stderr on failure, and exits with the failure's class
//! (`sidecar_assembly::config_init::exit`).

use std::process::ExitCode;

use sidecar_assembly::config_init::{self, Config};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    if std::env::args()
        .nth(1)
        .is_some_and(|a| a == "--help" || a == "-h")
    {
        println!(
            "config-init: copies s3://$CONFIG_BUCKET/$CONFIG_KEY to $CONFIG_PATH atomically, then exits.\n\
             Environment: CONFIG_BUCKET, CONFIG_KEY, CONFIG_PATH, CONFIG_MAX_BYTES (default 16 MiB),\n\
             AWS_REGION, and the AWS SDK's own (AWS_ENDPOINT_URL, AWS_CONTAINER_CREDENTIALS_*).\n\
             Exit codes: 0 written, 1 S3 error, 2 configuration, 3 no such object, 4 access denied,\n\
             5 S3 unreachable, 6 cannot write the file, 7 object too large."
        );
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", e.log_line());
            return ExitCode::from(e.exit_code());
        }
    };
    match config_init::run(&config).await {
        Ok(copied) => {
            let etag = copied
                .etag
                .map(|e| format!(", etag {e}"))
                .unwrap_or_default();
            println!(
                "config-init: wrote {} to {} ({} bytes{etag})",
                config.uri(),
                config.path.display(),
                copied.bytes
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}", e.log_line());
            ExitCode::from(e.exit_code())
        }
    }
}
