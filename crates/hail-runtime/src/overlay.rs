//! Container root filesystems: an overlay of the image's unpacked layers
//! (shared, read-only) plus the container's own upper directory.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("overlay {target}: {count} lower layers make mount options of {len} bytes, over the kernel's limit of 4095")]
    TooManyLayers {
        target: PathBuf,
        count: usize,
        len: usize,
    },
    #[error("overlay {target}: an image needs at least one layer")]
    NoLayers { target: PathBuf },
    #[error(
        "overlay {target}: path contains a character overlayfs options cannot carry (',' or ':')"
    )]
    UnsafePath { target: PathBuf },
    #[error("overlay {target}: mount failed: {source}")]
    Mount {
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("overlay {target}: unmount failed: {source}")]
    Unmount {
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("overlay {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The directories of one container's root under its container directory.
pub struct RootDirs {
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
}

impl RootDirs {
    pub fn under(container_dir: &Path) -> Self {
        Self {
            upper: container_dir.join("upper"),
            work: container_dir.join("work"),
            merged: container_dir.join("rootfs"),
        }
    }
}

/// Mounts `lower` (top layer first) with a fresh upper and work dir at `dirs.merged`.
pub fn mount_root(lower: &[PathBuf], dirs: &RootDirs) -> Result<(), OverlayError> {
    let target = dirs.merged.clone();
    if lower.is_empty() {
        return Err(OverlayError::NoLayers { target });
    }
    for d in [&dirs.upper, &dirs.work, &dirs.merged] {
        fs::create_dir_all(d).map_err(|source| OverlayError::Io {
            path: d.clone(),
            source,
        })?;
    }
    let all_paths = lower.iter().chain([&dirs.upper, &dirs.work]);
    for p in all_paths {
        let s = p.to_string_lossy();
        if s.contains(',') || s.contains(':') {
            return Err(OverlayError::UnsafePath { target });
        }
    }
    let lowerdir = lower
        .iter()
        .map(|p| p.to_string_lossy())
        .collect::<Vec<_>>()
        .join(":");
    let options = format!(
        "lowerdir={lowerdir},upperdir={},workdir={}",
        dirs.upper.display(),
        dirs.work.display()
    );
    // `volatile`: a container's writable layer is thrown away when its task
    // ends and never mounted again, so the kernel is not asked to make it
    // durable — no sync of the whole upper filesystem when the root is
    // unmounted, and `fsync` inside the container does not wait for the disk
    // for data no crash could bring back. Volumes are bind mounts, not part of
    // the overlay, and keep their `fsync`.
    let volatile = format!("{options},volatile");
    if volatile.len() > 4095 {
        return Err(OverlayError::TooManyLayers {
            target,
            count: lower.len(),
            len: volatile.len(),
        });
    }
    let overlay = |options: &str| {
        mount(
            Some("overlay"),
            &dirs.merged,
            Some("overlay"),
            MsFlags::empty(),
            Some(options),
        )
    };
    match overlay(&volatile) {
        // Kernels before 5.10 do not know the option.
        Err(nix::Error::EINVAL) => overlay(&options),
        other => other,
    }
    .map_err(|source| OverlayError::Mount { target, source })
}

/// Unmounts a root; not mounted is not an error.
pub fn unmount_root(merged: &Path) -> Result<(), OverlayError> {
    match umount2(merged, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(source) => Err(OverlayError::Unmount {
            target: merged.to_owned(),
            source,
        }),
    }
}

/// Mount points at or under `prefix`, deepest first (the order to unmount them in).
pub fn mounts_under(prefix: &Path) -> io::Result<Vec<PathBuf>> {
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(prefix))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    Ok(out)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_paths() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
