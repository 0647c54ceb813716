//! Layer unpacking against real tar streams: metadata, links, whiteouts, and
//! hostile layers that try to escape the target.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hail_runtime::digest::Digest;
use hail_runtime::image::snapshot::Snapshots;
use hail_runtime::image::unpack::{unpack_layer, UnpackPolicy};
use hail_runtime::image::ImageError;
use hail_runtime::progress::NoProgress;

/// Builds tar streams with exact, unvalidated paths (the `tar` crate's
/// high-level API refuses `..`, which is precisely what hostile layers use).
struct LayerBuilder {
    builder: tar::Builder<Vec<u8>>,
}

impl LayerBuilder {
    fn new() -> Self {
        Self {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn raw(
        &mut self,
        path: &str,
        kind: tar::EntryType,
        link: Option<&str>,
        mode: u32,
        data: &[u8],
        tweak: impl FnOnce(&mut tar::Header),
    ) -> &mut Self {
        let mut h = tar::Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(l) = link {
                gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        tweak(&mut h);
        h.set_cksum();
        self.builder.append(&h, data).unwrap();
        self
    }

    fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.raw(path, tar::EntryType::Directory, None, mode, b"", |_| {})
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.raw(path, tar::EntryType::Regular, None, mode, data, |_| {})
    }

    fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.raw(
            path,
            tar::EntryType::Symlink,
            Some(target),
            0o777,
            b"",
            |_| {},
        )
    }

    fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.raw(path, tar::EntryType::Link, Some(target), 0o644, b"", |_| {})
    }

    fn finish(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.builder, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

/// A target nested two levels below `base`, so `../../x` would land in `base`.
fn nested_target(base: &Path) -> PathBuf {
    let t = base.join("a/b");
    fs::create_dir_all(&t).unwrap();
    t
}

fn assert_hostile(err: ImageError, want_entry: &str) {
    match err {
        ImageError::HostileEntry { entry, .. } => {
            assert_eq!(entry, want_entry, "wrong entry named")
        }
        other => panic!("expected HostileEntry for {want_entry}, got {other}"),
    }
}

fn entries_of(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn unpacks_files_dirs_links_modes_and_times() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("fs");
    fs::create_dir(&target).unwrap();
    let layer = LayerBuilder::new()
        .dir("./", 0o755)
        .dir("./etc/", 0o750)
        .file("./etc/hostname", 0o640, b"hail\n")
        .file("/usr/bin/tool", 0o4755, b"#!/bin/sh\n")
        .symlink("bin", "usr/bin")
        .symlink("etc/abs", "/etc/hostname")
        .hardlink("usr/bin/tool2", "usr/bin/tool")
        .raw(
            "home/app/data",
            tar::EntryType::Regular,
            None,
            0o600,
            b"x",
            |h| {
                h.set_uid(1000);
                h.set_gid(1001);
            },
        )
        // A later entry replaces an earlier one, as tar does.
        .file("etc/hostname", 0o644, b"replaced\n")
        .finish();
    unpack_layer(&layer[..], &target, "test", &UnpackPolicy::default()).unwrap();

    let etc = fs::symlink_metadata(target.join("etc")).unwrap();
    assert!(etc.is_dir());
    assert_eq!(etc.permissions().mode() & 0o7777, 0o750);
    assert_eq!(etc.mtime(), 1_600_000_000);
    assert_eq!(
        fs::read(target.join("etc/hostname")).unwrap(),
        b"replaced\n"
    );
    assert_eq!(
        fs::metadata(target.join("etc/hostname"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o644
    );
    let tool = fs::metadata(target.join("usr/bin/tool")).unwrap();
    assert_eq!(
        tool.permissions().mode() & 0o7777,
        0o4755,
        "setuid kept by default"
    );
    assert_eq!(tool.mtime(), 1_600_000_000);
    let tool2 = fs::metadata(target.join("usr/bin/tool2")).unwrap();
    assert_eq!(tool.ino(), tool2.ino(), "hardlink shares the inode");
    assert_eq!(
        fs::read_link(target.join("bin")).unwrap(),
        Path::new("usr/bin")
    );
    assert_eq!(
        fs::read_link(target.join("etc/abs")).unwrap(),
        Path::new("/etc/hostname")
    );
    if nix::unistd::Uid::effective().is_root() {
        let data = fs::metadata(target.join("home/app/data")).unwrap();
        assert_eq!((data.uid(), data.gid()), (1000, 1001));
    }

    let strict = UnpackPolicy {
        allow_setuid: false,
        allow_devices: false,
    };
    let target2 = tmp.path().join("fs2");
    fs::create_dir(&target2).unwrap();
    let err = unpack_layer(&layer[..], &target2, "test", &strict).unwrap_err();
    assert_hostile(err, "/usr/bin/tool");
}

#[test]
fn refuses_path_traversal() {
    let tmp = tempfile::tempdir().unwrap();
    let target = nested_target(tmp.path());
    let layer = LayerBuilder::new()
        .file("ok", 0o644, b"fine")
        .file("../../x", 0o644, b"escaped")
        .finish();
    let err = unpack_layer(&layer[..], &target, "l", &UnpackPolicy::default()).unwrap_err();
    assert_hostile(err, "../../x");
    assert!(!tmp.path().join("x").exists());
    assert_eq!(entries_of(tmp.path()), vec!["a"]);

    let layer = LayerBuilder::new()
        .file("sub/../../../y", 0o644, b"e")
        .finish();
    let err = unpack_layer(&layer[..], &target, "l", &UnpackPolicy::default()).unwrap_err();
    assert_hostile(err, "sub/../../../y");
    assert!(!tmp.path().join("y").exists());
}

#[test]
fn refuses_writing_through_a_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let target = nested_target(tmp.path());
    let layer = LayerBuilder::new()
        .symlink("link", outside.to_str().unwrap())
        .file("link/file", 0o644, b"escaped")
        .finish();
    let err = unpack_layer(&layer[..], &target, "l", &UnpackPolicy::default()).unwrap_err();
    assert_hostile(err, "link/file");
    assert!(entries_of(&outside).is_empty(), "nothing written outside");

    // Relative symlinks that climb out are no different.
    let target = tmp.path().join("t2");
    fs::create_dir(&target).unwrap();
    let layer = LayerBuilder::new()
        .symlink("up", "../outside")
        .dir("up/d", 0o755)
        .finish();
    let err = unpack_layer(&layer[..], &target, "l", &UnpackPolicy::default()).unwrap_err();
    assert_hostile(err, "up/d");
    assert!(entries_of(&outside).is_empty());
}

#[test]
fn refuses_hardlinks_outside_the_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let target = nested_target(tmp.path());
    for (link, entry) in [
        ("/etc/passwd", "passwd"),
        ("etc/passwd", "passwd2"),
        ("../../../etc/passwd", "passwd3"),
    ] {
        let layer = LayerBuilder::new().hardlink(entry, link).finish();
        let err = unpack_layer(&layer[..], &target, "l", &UnpackPolicy::default()).unwrap_err();
        assert_hostile(err, entry);
        assert!(!target.join(entry).exists());
    }

    // A file of the layer replaced by a symlink to the host cannot be used
    // as a stepping stone either.
    let target = tmp.path().join("t2");
    fs::create_dir(&target).unwrap();
    let layer = LayerBuilder::new()
        .file("etc/passwd", 0o644, b"mine")
        .symlink("etc", "/etc")
        .hardlink("stolen", "etc/passwd")
        .finish();
    let err = unpack_layer(&layer[..], &target, "l", &UnpackPolicy::default()).unwrap_err();
    assert_hostile(err, "stolen");
    assert!(!target.join("stolen").exists());
}

#[test]
fn refuses_devices_and_fifos_by_default() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("fs");
    fs::create_dir(&target).unwrap();
    let chr = LayerBuilder::new()
        .raw("dev/evil", tar::EntryType::Char, None, 0o666, b"", |h| {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        })
        .finish();
    let err = unpack_layer(&chr[..], &target, "l", &UnpackPolicy::default()).unwrap_err();
    assert_hostile(err, "dev/evil");
    assert!(!target.join("dev/evil").exists());

    let blk = LayerBuilder::new()
        .raw("dev/sda", tar::EntryType::Block, None, 0o660, b"", |h| {
            h.set_device_major(8).unwrap();
            h.set_device_minor(0).unwrap();
        })
        .finish();
    let err = unpack_layer(&blk[..], &target, "l", &UnpackPolicy::default()).unwrap_err();
    assert_hostile(err, "dev/sda");

    let fifo = LayerBuilder::new()
        .raw("run/pipe", tar::EntryType::Fifo, None, 0o644, b"", |_| {})
        .finish();
    let err = unpack_layer(&fifo[..], &target, "l", &UnpackPolicy::default()).unwrap_err();
    assert_hostile(err, "run/pipe");
    assert!(!target.join("run/pipe").exists());

    if common::containers_available() {
        let allow = UnpackPolicy {
            allow_setuid: true,
            allow_devices: true,
        };
        unpack_layer(&chr[..], &target, "l", &allow).unwrap();
        let m = fs::symlink_metadata(target.join("dev/evil")).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), nix::sys::stat::makedev(1, 3));
    }
}

#[test]
fn refuses_overlay_xattrs_from_the_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("fs");
    fs::create_dir(&target).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("SCHILY.xattr.trusted.overlay.redirect", &b"/etc"[..])])
        .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h, "d", std::io::empty()).unwrap();
    let layer = b.into_inner().unwrap();
    let err = unpack_layer(&layer[..], &target, "l", &UnpackPolicy::default()).unwrap_err();
    assert_hostile(err, "d");
}

#[test]
fn failed_snapshot_leaves_no_temp_dir_and_is_not_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let blob = tmp.path().join("blob");
    let layer = LayerBuilder::new()
        .file("fine", 0o644, b"x")
        .file("../escape", 0o644, b"x")
        .finish();
    fs::write(&blob, &layer).unwrap();
    let snaps = Snapshots::open(tmp.path().join("snapshots")).unwrap();
    let diff_id = Digest::of(&layer);
    let err = snaps
        .ensure(&diff_id, &blob, &UnpackPolicy::default(), &NoProgress)
        .unwrap_err();
    assert_hostile(err, "../escape");
    assert!(!snaps.is_complete(&diff_id));
    let left: Vec<String> = entries_of(snaps.root())
        .into_iter()
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!tmp.path().join("snapshots/escape").exists());
}

#[test]
fn snapshot_verifies_the_diff_id_of_compressed_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let layer = LayerBuilder::new().file("hello", 0o644, b"world").finish();
    let diff_id = Digest::of(&layer);
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut e, &layer).unwrap();
        e.finish().unwrap()
    };
    let zst = zstd::encode_all(&layer[..], 3).unwrap();
    let snaps = Snapshots::open(tmp.path().join("snapshots")).unwrap();
    for (i, blob_bytes) in [&layer, &gz, &zst].into_iter().enumerate() {
        let blob = tmp.path().join(format!("blob{i}"));
        fs::write(&blob, blob_bytes).unwrap();
        let (dir, fresh) = snaps
            .ensure(&diff_id, &blob, &UnpackPolicy::default(), &NoProgress)
            .unwrap();
        assert_eq!(fresh, i == 0, "unpacked once per diff id");
        assert_eq!(fs::read(dir.join("hello")).unwrap(), b"world");
    }

    // A blob whose content is not the claimed diff id is refused.
    let other = Digest::of(b"not this layer");
    let blob = tmp.path().join("blob0");
    let err = snaps
        .ensure(&other, &blob, &UnpackPolicy::default(), &NoProgress)
        .unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(!snaps.is_complete(&other));
}

/// Whiteouts and opaque directories, checked the way overlayfs reads them:
/// by mounting an overlay of the two unpacked layers.
#[test]
fn whiteouts_and_opaque_dirs_hide_lower_files_in_an_overlay() {
    if !common::containers_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let lower = LayerBuilder::new()
        .file("etc/passwd", 0o644, b"root:x:0:0::/root:/bin/sh\n")
        .file("etc/group", 0o644, b"root:x:0:\n")
        .file("d/x", 0o644, b"x")
        .file("d/y", 0o644, b"y")
        .dir("keep", 0o755)
        .finish();
    let mut b = LayerBuilder::new();
    b.file("etc/.wh.group", 0o644, b"")
        .file("d/.wh..wh..opq", 0o644, b"")
        .file("d/z", 0o644, b"z")
        .file(".wh..wh.plnk", 0o644, b"");
    // Extended attributes carried in PAX headers are kept.
    b.builder
        .append_pax_extensions([("SCHILY.xattr.user.hail", &b"yes"[..])])
        .unwrap();
    b.file("keep/marked", 0o644, b"m");
    let upper = b.finish();

    let l1 = tmp.path().join("l1");
    let l2 = tmp.path().join("l2");
    fs::create_dir(&l1).unwrap();
    fs::create_dir(&l2).unwrap();
    unpack_layer(&lower[..], &l1, "lower", &UnpackPolicy::default()).unwrap();
    unpack_layer(&upper[..], &l2, "upper", &UnpackPolicy::default()).unwrap();

    let wh = fs::symlink_metadata(l2.join("etc/group")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert_eq!(
        xattr::get(l2.join("d"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
    assert!(!l2.join(".wh..wh.plnk").exists());
    assert_eq!(
        xattr::get(l2.join("keep/marked"), "user.hail").unwrap(),
        Some(b"yes".to_vec())
    );

    let merged = tmp.path().join("merged");
    let upperdir = tmp.path().join("upper");
    let work = tmp.path().join("work");
    for d in [&merged, &upperdir, &work] {
        fs::create_dir(d).unwrap();
    }
    let opts = format!(
        "lowerdir={}:{},upperdir={},workdir={}",
        l2.display(),
        l1.display(),
        upperdir.display(),
        work.display()
    );
    nix::mount::mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    )
    .unwrap();
    let seen = (
        merged.join("etc/passwd").exists(),
        merged.join("etc/group").exists(),
        entries_of(&merged.join("d")),
    );
    nix::mount::umount(&merged).unwrap();
    assert_eq!(seen, (true, false, vec!["z".to_owned()]));
}

#[test]
fn strict_policy_still_keeps_setgid_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("fs");
    fs::create_dir(&target).unwrap();
    let layer = LayerBuilder::new()
        .dir("var/mail", 0o2775)
        .file("var/mail/.keep", 0o644, b"")
        .finish();
    let strict = UnpackPolicy {
        allow_setuid: false,
        allow_devices: false,
    };
    unpack_layer(&layer[..], &target, "l", &strict).unwrap();
    let m = fs::metadata(target.join("var/mail")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o2775);
}
