//! `hail image …`: the image store from the command line. Parsing and printing
//! only; the work is `hail_runtime::image::ImageStore`'s.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use hail_runtime::digest::Digest;
use hail_runtime::image::registry::{Insecure, PullOptions, RegistryAuth};
use hail_runtime::image::{Image, ImageStore};
use hail_runtime::progress::Progress;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Import an image from a `docker save` archive, an OCI archive or layout
    /// directory, or a root-filesystem tarball (gzip/zstd or not).
    Import {
        /// Name to record it under, e.g. `myapp:1.0`.
        name: String,
        /// The archive, tarball or OCI layout directory.
        file: PathBuf,
    },
    /// Pull an image from an OCI/Docker registry (plain HTTP for loopback registries).
    Pull {
        /// Reference, e.g. `127.0.0.1:5000/busybox:latest`.
        reference: String,
        /// Registry user name (basic auth, or the credentials behind a token server).
        #[arg(long, env = "HAIL_REGISTRY_USERNAME")]
        username: Option<String>,
        /// Registry password.
        #[arg(long, env = "HAIL_REGISTRY_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Registry host[:port] to reach over plain HTTP (repeatable; loopback always is).
        #[arg(long)]
        insecure_registry: Vec<String>,
    },
    /// List images.
    Ls,
    /// Forget an image by name or id; its data goes at the next `gc`.
    Rm {
        /// Name (`busybox`, `docker.io/library/busybox:latest`) or image id.
        name: String,
    },
    /// Remove blobs and unpacked layers no image refers to.
    Gc,
}

pub async fn run(cmd: ImageCommand, data_dir: &Path) -> anyhow::Result<()> {
    if let ImageCommand::Pull {
        reference,
        username,
        password,
        insecure_registry,
    } = cmd
    {
        return pull(data_dir, &reference, username, password, insecure_registry).await;
    }
    let data_dir = data_dir.to_owned();
    let in_use = hail_runtime::runtime::images_in_use(&data_dir)?;
    // The store does blocking file I/O and unpacking; keep it off the runtime.
    tokio::task::spawn_blocking(move || run_blocking(cmd, &data_dir, &in_use))
        .await
        .context("image command panicked")?
}

async fn pull(
    data_dir: &Path,
    reference: &str,
    username: Option<String>,
    password: Option<String>,
    insecure_registry: Vec<String>,
) -> anyhow::Result<()> {
    let store = ImageStore::open(data_dir)
        .with_context(|| format!("opening the image store in {}", data_dir.display()))?;
    let auth = match (username, password) {
        (Some(username), Some(password)) => RegistryAuth::Basic { username, password },
        (None, None) => RegistryAuth::Anonymous,
        _ => anyhow::bail!("--username and --password go together"),
    };
    let insecure = if insecure_registry.is_empty() {
        Insecure::Loopback
    } else {
        Insecure::Registries(insecure_registry)
    };
    let bars = Bars::default();
    let image = match store
        .pull(reference, &PullOptions { auth, insecure }, &bars)
        .await
    {
        // Unpacked now, as `docker pull` does (this process has nothing else to serve).
        Ok(image) => store.rootfs_layers(&image, &bars).map(|_| image),
        Err(e) => Err(e),
    };
    bars.clear();
    let image = image?;
    println!("{} {}", image.name, image.config_digest);
    Ok(())
}

/// Runs `cmd` with `in_use` as the config digests of images that running
/// tasks use (refused by `rm`, kept by `gc`).
pub fn run_blocking(
    cmd: ImageCommand,
    data_dir: &Path,
    in_use: &HashSet<Digest>,
) -> anyhow::Result<()> {
    let store = ImageStore::open(data_dir)
        .with_context(|| format!("opening the image store in {}", data_dir.display()))?;
    match cmd {
        ImageCommand::Import { name, file } => {
            let bars = Bars::default();
            // Layers are unpacked now, as `docker load` does, so that the
            // first task of the image starts as fast as the next ones.
            let image = store
                .import(&name, &file, &bars)
                .and_then(|image| store.rootfs_layers(&image, &bars).map(|_| image));
            bars.clear();
            let image = image?;
            println!("{} {}", image.name, image.config_digest);
        }
        ImageCommand::Pull { .. } => anyhow::bail!("pull runs asynchronously"),
        ImageCommand::Ls => print!("{}", table(&store.list()?)),
        ImageCommand::Rm { name } => {
            store.remove(&name, in_use)?;
            println!("removed {name}");
        }
        ImageCommand::Gc => {
            let r = store.gc(in_use)?;
            println!(
                "removed {} blobs ({}), {} unpacked layers, {} leftovers",
                r.blobs_removed.len(),
                human_size(r.bytes_freed),
                r.snapshots_removed.len(),
                r.leftovers_removed
            );
        }
    }
    Ok(())
}

/// The `hail image ls` table.
fn table(images: &[Image]) -> String {
    let rows: Vec<[String; 4]> = images
        .iter()
        .map(|i| {
            [
                i.name.clone(),
                i.config_digest.short().to_owned(),
                human_size(i.size),
                i.stored_at.clone(),
            ]
        })
        .collect();
    let header = ["NAME", "IMAGE ID", "SIZE", "STORED"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// Sizes as image tools print them: decimal units, three significant digits.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes}B");
    }
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    let number = format!("{value:.digits$}");
    let number = if number.contains('.') {
        number.trim_end_matches('0').trim_end_matches('.')
    } else {
        &number
    };
    format!("{number}{}", UNITS[unit])
}

/// One indicatif bar per step (blob copied, layer unpacked).
#[derive(Default)]
struct Bars {
    current: Mutex<Option<ProgressBar>>,
}

impl Bars {
    fn clear(&self) {
        if let Some(bar) = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Bars {
    fn begin(&self, what: &str, total: Option<u64>) {
        let bar = match total {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template(
                    "{msg:40!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner(),
        };
        bar.set_message(what.to_owned());
        let old = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(bar);
        if let Some(old) = old {
            old.finish_and_clear();
        }
    }

    fn advance(&self, bytes: u64) {
        if let Some(bar) = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            bar.inc(bytes);
        }
    }

    fn end(&self) {
        if let Some(bar) = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            bar.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_000), "1kB");
        assert_eq!(human_size(4_860_000), "4.86MB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(human_size(77_800_000_000), "77.8GB");
    }
}
