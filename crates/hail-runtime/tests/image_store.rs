//! The image store against real archives made by real tools: an OCI layout
//! built with `umoci`, converted by `skopeo` into a `docker save` archive and
//! an OCI archive, plus root-filesystem tarballs.

mod common;

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use hail_runtime::digest::Digest;
use hail_runtime::image::{Image, ImageError, ImageStore};
use hail_runtime::progress::{NoProgress, Progress};

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/install-deps.sh installs it)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A three-layer image built with umoci in an OCI layout at `dir/oci`, tag
/// `1.0`: a busybox root filesystem; a layer whiting out `/etc/group`; a layer
/// making `/etc` opaque with only `hostname` in it. Returns the layout path.
fn build_oci_layout(dir: &Path) -> PathBuf {
    let layout = dir.join("oci");
    let image = format!("{}:1.0", layout.display());
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));

    let rootfs_tar = dir.join("busybox-rootfs.tar");
    common::write_busybox_rootfs_tar(&rootfs_tar);
    let rootfs = dir.join("rootfs");
    fs::create_dir(&rootfs).unwrap();
    tar::Archive::new(fs::File::open(&rootfs_tar).unwrap())
        .unpack(&rootfs)
        .unwrap();
    run(Command::new("umoci")
        .args(["insert", "--image", &image])
        .arg(&rootfs)
        .arg("/"));
    run(Command::new("umoci").args(["insert", "--image", &image, "--whiteout", "/etc/group"]));
    let etc = dir.join("etc-opaque");
    fs::create_dir(&etc).unwrap();
    fs::write(etc.join("hostname"), "hail\n").unwrap();
    run(Command::new("umoci")
        .args(["insert", "--image", &image, "--opaque"])
        .arg(&etc)
        .arg("/etc"));
    layout
}

fn skopeo_copy(layout: &Path, dest: &str) {
    run(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:1.0", layout.display()))
        .arg(dest));
}

/// Rewrites a `docker save` archive member by member with `f` deciding each
/// member's new path and content (`None` drops it).
fn rewrite_tar(
    src: &Path,
    dest: &Path,
    mut f: impl FnMut(&str, Vec<u8>) -> Option<(String, Vec<u8>)>,
) {
    let mut out = tar::Builder::new(fs::File::create(dest).unwrap());
    let mut archive = tar::Archive::new(fs::File::open(src).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        if let Some((path, data)) = f(&path, data) {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            out.append_data(&mut h, path, &data[..]).unwrap();
        }
    }
    out.into_inner().unwrap();
}

fn docker_manifest(archive: &Path) -> serde_json::Value {
    let mut a = tar::Archive::new(fs::File::open(archive).unwrap());
    for entry in a.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap() == Path::new("manifest.json") {
            let mut s = String::new();
            entry.read_to_string(&mut s).unwrap();
            return serde_json::from_str(&s).unwrap();
        }
    }
    panic!("no manifest.json in {}", archive.display());
}

fn gzip_file(src: &Path, dest: &Path) {
    let mut e =
        flate2::write::GzEncoder::new(fs::File::create(dest).unwrap(), flate2::Compression::fast());
    e.write_all(&fs::read(src).unwrap()).unwrap();
    e.finish().unwrap();
}

fn diff_ids(image: &Image) -> Vec<Digest> {
    image.layers.iter().map(|l| l.diff_id.clone()).collect()
}

#[test]
fn same_image_has_one_identity_across_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = build_oci_layout(tmp.path());
    let docker = tmp.path().join("docker.tar");
    let oci_archive = tmp.path().join("oci.tar");
    skopeo_copy(
        &layout,
        &format!("docker-archive:{}:hail/busybox:1.0", docker.display()),
    );
    skopeo_copy(
        &layout,
        &format!("oci-archive:{}:1.0", oci_archive.display()),
    );

    // The legacy `docker save` layout: `<id>/layer.tar` files, `<hex>.json` config.
    let manifest = docker_manifest(&docker);
    let layers: Vec<String> = manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_owned())
        .collect();
    let legacy = tmp.path().join("legacy.tar");
    rewrite_tar(&docker, &legacy, |path, data| {
        if path == "manifest.json" {
            let mut m = manifest.clone();
            let ids: Vec<String> = (0..layers.len())
                .map(|i| format!("{:064x}/layer.tar", i + 1))
                .collect();
            m[0]["Layers"] = serde_json::json!(ids);
            return Some((path.to_owned(), serde_json::to_vec(&m).unwrap()));
        }
        match layers.iter().position(|l| l == path) {
            Some(i) => Some((format!("{:064x}/layer.tar", i + 1), data)),
            None => Some((path.to_owned(), data)),
        }
    });
    // The newer layout (Docker 25+): everything under `blobs/sha256/`.
    let blobs = tmp.path().join("blobs-layout.tar");
    rewrite_tar(&docker, &blobs, |path, data| {
        if path == "manifest.json" {
            let mut m = manifest.clone();
            let cfg = m[0]["Config"]
                .as_str()
                .unwrap()
                .trim_end_matches(".json")
                .to_owned();
            m[0]["Config"] = serde_json::json!(format!("blobs/sha256/{cfg}"));
            let ls: Vec<String> = layers
                .iter()
                .map(|l| format!("blobs/sha256/{}", l.trim_end_matches(".tar")))
                .collect();
            m[0]["Layers"] = serde_json::json!(ls);
            return Some((path.to_owned(), serde_json::to_vec(&m).unwrap()));
        }
        if let Some(hex) = path.strip_suffix(".json").or(path.strip_suffix(".tar")) {
            if hex.len() == 64 {
                return Some((format!("blobs/sha256/{hex}"), data));
            }
        }
        Some((path.to_owned(), data))
    });
    let docker_gz = tmp.path().join("docker.tar.gz");
    gzip_file(&docker, &docker_gz);

    let store = ImageStore::open(&tmp.path().join("data")).unwrap();
    let sources: [(&str, &Path); 6] = [
        ("layout:1.0", &layout),
        ("ociarchive:1.0", &oci_archive),
        ("docker:1.0", &docker),
        ("legacy:1.0", &legacy),
        ("blobs:1.0", &blobs),
        ("dockergz:1.0", &docker_gz),
    ];
    let images: Vec<Image> = sources
        .iter()
        .map(|(name, path)| {
            store
                .import(name, path, &NoProgress)
                .unwrap_or_else(|e| panic!("import {}: {e}", path.display()))
        })
        .collect();

    let layout_index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let layout_manifest: Digest = layout_index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let config_hex = manifest[0]["Config"]
        .as_str()
        .unwrap()
        .trim_end_matches(".json");
    let config: Digest = format!("sha256:{config_hex}").parse().unwrap();
    assert_eq!(images[0].manifest_digest, layout_manifest);
    assert_eq!(images[1].manifest_digest, layout_manifest);
    for (image, (name, _)) in images.iter().zip(&sources) {
        assert_eq!(image.config_digest, config, "{name}");
        assert_eq!(diff_ids(image), diff_ids(&images[0]), "{name}");
        assert_eq!(image.layers.len(), 3, "{name}");
        assert!(image.config.entrypoint.is_none());
    }
    // Docker archives carry uncompressed layers: their blob is their diff id.
    for l in &images[2].layers {
        assert_eq!(l.digest, l.diff_id);
        assert_eq!(l.media_type, "application/vnd.oci.image.layer.v1.tar");
    }
    // umoci compresses: blobs differ from diff ids and from the docker ones.
    assert_ne!(images[0].layers[0].digest, images[0].layers[0].diff_id);
    assert_eq!(images[0].name, "docker.io/library/layout:1.0");

    let listed: Vec<String> = store.list().unwrap().into_iter().map(|i| i.name).collect();
    assert_eq!(listed.len(), 6);
    let by_id = store.get(config.short()).unwrap().unwrap();
    assert_eq!(by_id.config_digest, config);
    assert_eq!(
        store
            .get(&config.to_string())
            .unwrap()
            .unwrap()
            .config_digest,
        config
    );
    assert!(store.get("nothing:here").unwrap().is_none());

    // Unpacked and mounted, the layers show what the image means: /etc
    // replaced wholesale by the opaque layer, busybox still there.
    if common::containers_available() {
        let lowers = store.rootfs_layers(&images[2], &NoProgress).unwrap();
        assert_eq!(lowers.len(), 3);
        let top = &lowers[0];
        assert_eq!(
            fs::read_to_string(top.join("etc/hostname")).unwrap(),
            "hail\n"
        );
        assert_eq!(
            xattr::get(top.join("etc"), "trusted.overlay.opaque").unwrap(),
            Some(b"y".to_vec())
        );
        let wh = fs::symlink_metadata(lowers[1].join("etc/group")).unwrap();
        assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
        // The same diff ids from another source share the snapshots.
        assert_eq!(
            store.rootfs_layers(&images[0], &NoProgress).unwrap(),
            lowers
        );

        let merged = tmp.path().join("merged");
        let upper = tmp.path().join("upper");
        let work = tmp.path().join("work");
        for d in [&merged, &upper, &work] {
            fs::create_dir(d).unwrap();
        }
        let lower: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            upper.display(),
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
        let etc: Vec<String> = fs::read_dir(merged.join("etc"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let busybox = merged.join("bin/busybox").is_file();
        nix::mount::umount(&merged).unwrap();
        assert_eq!(etc, vec!["hostname"]);
        assert!(busybox);
    }
}

#[test]
fn rootfs_tarball_becomes_a_one_layer_image() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("rootfs.tar");
    common::write_busybox_rootfs_tar(&plain);
    let gz = tmp.path().join("rootfs.tgz");
    gzip_file(&plain, &gz);
    let zst = tmp.path().join("rootfs.tar.zst");
    fs::write(
        &zst,
        zstd::encode_all(&fs::read(&plain).unwrap()[..], 3).unwrap(),
    )
    .unwrap();

    let store = ImageStore::open(&tmp.path().join("data")).unwrap();
    let a = store.import("busybox", &plain, &NoProgress).unwrap();
    let b = store.import("busybox-gz", &gz, &NoProgress).unwrap();
    let c = store.import("busybox-zst", &zst, &NoProgress).unwrap();
    let tar_digest = Digest::of(&fs::read(&plain).unwrap());
    for image in [&a, &b, &c] {
        assert_eq!(diff_ids(image), vec![tar_digest.clone()]);
        assert!(image.config.entrypoint.is_none() && image.config.cmd.is_none());
        assert!(image.config.env[0].starts_with("PATH=/usr/local/sbin:"));
    }
    assert_eq!(
        a.config_digest, b.config_digest,
        "same tarball, same image id"
    );
    assert_eq!(b.config_digest, c.config_digest);
    assert_eq!(
        b.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(b.layers[0].digest, Digest::of(&fs::read(&gz).unwrap()));
    assert_eq!(
        c.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );

    for name in [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox:latest",
    ] {
        let got = store.get(name).unwrap().unwrap();
        assert_eq!(got.name, "docker.io/library/busybox:latest");
    }
    let lowers = store.rootfs_layers(&b, &NoProgress).unwrap();
    assert!(lowers[0].join("bin/busybox").is_file());
    assert_eq!(
        fs::read_link(lowers[0].join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
}

#[test]
fn tampered_docker_archive_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = build_oci_layout(tmp.path());
    let docker = tmp.path().join("docker.tar");
    skopeo_copy(
        &layout,
        &format!("docker-archive:{}:hail/busybox:1.0", docker.display()),
    );
    let manifest = docker_manifest(&docker);
    let config_member = manifest[0]["Config"].as_str().unwrap().to_owned();
    let first_layer = manifest[0]["Layers"][0].as_str().unwrap().to_owned();
    let store = ImageStore::open(&tmp.path().join("data")).unwrap();

    // A config whose content is not the digest its name declares.
    let bad_config = tmp.path().join("bad-config.tar");
    rewrite_tar(&docker, &bad_config, |path, mut data| {
        if path == config_member {
            let s = String::from_utf8(data).unwrap().replace("amd64", "arm64");
            data = s.into_bytes();
        }
        Some((path.to_owned(), data))
    });
    let err = store.import("bad", &bad_config, &NoProgress).unwrap_err();
    assert!(
        matches!(&err, ImageError::DigestMismatch { what, .. } if what.contains(&config_member)),
        "{err}"
    );

    // A layer that is a valid tar, but not the one the config lists.
    let bad_layer = tmp.path().join("bad-layer.tar");
    rewrite_tar(&docker, &bad_layer, |path, data| {
        if path == first_layer {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o755);
            h.set_size(4);
            b.append_data(&mut h, "bin/busybox", &b"evil"[..]).unwrap();
            return Some((path.to_owned(), b.into_inner().unwrap()));
        }
        Some((path.to_owned(), data))
    });
    let err = store.import("bad", &bad_layer, &NoProgress).unwrap_err();
    assert!(
        matches!(&err, ImageError::DigestMismatch { what, .. } if what.contains(&first_layer)),
        "{err}"
    );
    assert!(store.list().unwrap().is_empty());

    // An OCI layout blob that does not match its descriptor.
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let m: Digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mfest: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(m.hex())).unwrap())
            .unwrap();
    let layer_hex = mfest["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    let blob = layout.join("blobs/sha256").join(&layer_hex);
    let mut bytes = fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&blob, bytes).unwrap();
    let err = store.import("bad", &layout, &NoProgress).unwrap_err();
    assert!(matches!(&err, ImageError::DigestMismatch { .. }), "{err}");
}

#[test]
fn unknown_formats_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("data")).unwrap();
    let text = tmp.path().join("image.tar");
    fs::write(
        &text,
        "this is not an image, whatever its name says\n".repeat(40),
    )
    .unwrap();
    let gz = tmp.path().join("text.tar.gz");
    gzip_file(&text, &gz);
    let empty = tmp.path().join("empty");
    fs::write(&empty, b"").unwrap();
    let dir = tmp.path().join("somedir");
    fs::create_dir(&dir).unwrap();
    for path in [&text, &gz, &empty, &dir] {
        let err = store.import("x", path, &NoProgress).unwrap_err();
        assert!(
            matches!(&err, ImageError::UnsupportedFormat { path: p, .. } if p == path),
            "{}: {err}",
            path.display()
        );
    }
    let err = store
        .import("x", &tmp.path().join("absent"), &NoProgress)
        .unwrap_err();
    assert!(matches!(err, ImageError::Io { .. }), "{err}");
    assert!(store.list().unwrap().is_empty());
    // The scratch copy of the decompressed input is gone.
    assert_eq!(
        fs::read_dir(tmp.path().join("data/tmp")).unwrap().count(),
        0
    );
}

/// A rootfs tarball holding one distinguishing file besides busybox's.
fn rootfs_with(dir: &Path, name: &str) -> PathBuf {
    let base = dir.join("busybox.tar");
    if !base.exists() {
        common::write_busybox_rootfs_tar(&base);
    }
    let out = dir.join(format!("{name}.tar"));
    let mut b = tar::Builder::new(fs::File::create(&out).unwrap());
    let mut a = tar::Archive::new(fs::File::open(&base).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let mut h = e.header().clone();
        let p = e.path().unwrap().into_owned();
        if h.entry_type() == tar::EntryType::Symlink {
            let target = e.link_name().unwrap().unwrap().into_owned();
            b.append_link(&mut h, &p, &target).unwrap();
        } else {
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            b.append_data(&mut h, &p, &data[..]).unwrap();
        }
    }
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_size(name.len() as u64);
    b.append_data(&mut h, "etc/which", name.as_bytes()).unwrap();
    b.into_inner().unwrap();
    out
}

fn image_blobs(i: &Image) -> HashSet<Digest> {
    let mut s: HashSet<Digest> = i.layers.iter().map(|l| l.digest.clone()).collect();
    s.insert(i.manifest_digest.clone());
    s.insert(i.config_digest.clone());
    s
}

#[test]
fn remove_refuses_in_use_and_gc_removes_exactly_the_unreferenced() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("data")).unwrap();
    let a = store
        .import("a", &rootfs_with(tmp.path(), "a"), &NoProgress)
        .unwrap();
    let b = store
        .import("b", &rootfs_with(tmp.path(), "b"), &NoProgress)
        .unwrap();
    store.rootfs_layers(&a, &NoProgress).unwrap();
    store.rootfs_layers(&b, &NoProgress).unwrap();
    let nothing = HashSet::new();
    assert_eq!(store.gc(&nothing).unwrap(), Default::default());
    // Debris of a crashed blob write.
    fs::write(
        tmp.path().join("data/content/sha256/.tmp-1-1-ingest"),
        b"partial",
    )
    .unwrap();

    let in_use: HashSet<Digest> = [a.config_digest.clone()].into();
    let err = store.remove("a", &in_use).unwrap_err();
    assert!(
        matches!(&err, ImageError::InUse { name } if name == "a"),
        "{err}"
    );
    assert!(store.get("a").unwrap().is_some());
    let err = store.remove("zzz", &nothing).unwrap_err();
    assert!(matches!(err, ImageError::NotFound { .. }), "{err}");

    // Untagged while a task still runs it: gc keeps what the task needs.
    store.remove(a.config_digest.short(), &nothing).unwrap();
    assert!(store.get("a").unwrap().is_none());
    let report = store.gc(&in_use).unwrap();
    let removed: HashSet<Digest> = report.blobs_removed.iter().cloned().collect();
    let expected: HashSet<Digest> = [a.manifest_digest.clone(), a.layers[0].digest.clone()].into();
    assert_eq!(removed, expected);
    assert!(report.snapshots_removed.is_empty());
    assert_eq!(report.leftovers_removed, 1);
    assert!(store.snapshots().is_complete(&a.layers[0].diff_id));

    let report = store.gc(&nothing).unwrap();
    assert_eq!(report.blobs_removed, vec![a.config_digest.clone()]);
    assert_eq!(report.snapshots_removed, vec![a.layers[0].diff_id.clone()]);
    assert!(!store.snapshots().rootfs(&a.layers[0].diff_id).exists());

    let left: HashSet<Digest> = store.content().list().unwrap().into_iter().collect();
    assert_eq!(left, image_blobs(&b));
    assert_eq!(
        store.snapshots().list().unwrap(),
        vec![b.layers[0].diff_id.clone()]
    );
    assert_eq!(store.gc(&nothing).unwrap(), Default::default());
    // What survived still works.
    let lowers = store.rootfs_layers(&b, &NoProgress).unwrap();
    assert_eq!(
        fs::read_to_string(lowers[0].join("etc/which")).unwrap(),
        "b"
    );
}

/// Counts the layers actually unpacked (not found already unpacked).
#[derive(Default)]
struct CountUnpacks(AtomicUsize);

impl Progress for CountUnpacks {
    fn begin(&self, what: &str, _total: Option<u64>) {
        if what.starts_with("unpacking") {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn advance(&self, _bytes: u64) {}
    fn end(&self) {}
}

#[test]
fn concurrent_rootfs_layers_unpack_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let image = {
        let store = ImageStore::open(&data).unwrap();
        store
            .import("busybox", &rootfs_with(tmp.path(), "c"), &NoProgress)
            .unwrap()
    };
    // Two store handles stand for two processes: they share nothing but the
    // files and their flocks.
    let stores = [
        Arc::new(ImageStore::open(&data).unwrap()),
        Arc::new(ImageStore::open(&data).unwrap()),
    ];
    let counter = Arc::new(CountUnpacks::default());
    let barrier = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let store = stores[i % 2].clone();
            let (counter, barrier, image) = (counter.clone(), barrier.clone(), image.clone());
            std::thread::spawn(move || {
                barrier.wait();
                store.rootfs_layers(&image, counter.as_ref()).unwrap()
            })
        })
        .collect();
    let results: Vec<Vec<PathBuf>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(
        counter.0.load(Ordering::SeqCst),
        1,
        "one unpack for four callers"
    );
    assert!(results.iter().all(|r| r == &results[0]));
    assert_eq!(
        fs::read_to_string(results[0][0].join("etc/which")).unwrap(),
        "c"
    );
    let names: Vec<String> = fs::read_dir(data.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert_eq!(names, vec![image.layers[0].diff_id.hex().to_owned()]);
}

#[test]
fn concurrent_imports_all_land_in_a_versioned_index() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let tarball = rootfs_with(tmp.path(), "d");
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (data, tarball) = (data.clone(), tarball.clone());
            std::thread::spawn(move || {
                let store = ImageStore::open(&data).unwrap();
                store
                    .import(&format!("img{i}"), &tarball, &NoProgress)
                    .unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let store = ImageStore::open(&data).unwrap();
    let names: Vec<String> = store.list().unwrap().into_iter().map(|i| i.name).collect();
    assert_eq!(
        names,
        (0..4)
            .map(|i| format!("docker.io/library/img{i}:latest"))
            .collect::<Vec<_>>()
    );
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(data.join("images.json")).unwrap()).unwrap();
    assert_eq!(index["version"], 1);
    assert_eq!(index["images"].as_array().unwrap().len(), 4);

    fs::write(data.join("images.json"), br#"{"version":2,"images":[]}"#).unwrap();
    let err = store.list().unwrap_err();
    assert!(matches!(err, ImageError::InvalidIndex { .. }), "{err}");
}

/// What the registry puller hands over: a Docker schema 2 manifest list and
/// manifest whose blobs it already stored.
#[test]
fn add_from_manifest_takes_docker_schema2_and_resolves_lists_to_linux_amd64() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("rootfs.tar");
    common::write_busybox_rootfs_tar(&plain);
    let gz = tmp.path().join("rootfs.tgz");
    gzip_file(&plain, &gz);
    let store = ImageStore::open(&tmp.path().join("data")).unwrap();
    let base = store.import("base", &gz, &NoProgress).unwrap();
    let config_size = store.content().size(&base.config_digest).unwrap();

    let manifest = |layer: &Digest| {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": base.config_digest.to_string(),
                "size": config_size,
            },
            "layers": [{
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "digest": layer.to_string(),
                "size": 1,
            }],
        })
    };
    let put = |v: &serde_json::Value| {
        store
            .content()
            .put_bytes(&serde_json::to_vec(v).unwrap(), None)
            .unwrap()
    };
    let amd64 = put(&manifest(&base.layers[0].digest));
    let list = |platforms: &[(&str, &Digest)]| {
        let manifests: Vec<serde_json::Value> = platforms
            .iter()
            .map(|(arch, d)| {
                serde_json::json!({
                    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "digest": d.to_string(),
                    "size": 500,
                    "platform": {"architecture": arch, "os": "linux"},
                })
            })
            .collect();
        put(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
            "manifests": manifests,
        }))
    };
    // The arm64 manifest was never pulled: only the chosen platform's blobs exist.
    let absent = Digest::of(b"arm64 manifest");
    let both = list(&[("arm64", &absent), ("amd64", &amd64)]);

    let image = store
        .add_from_manifest("localhost:5000/app:1", &both)
        .unwrap();
    assert_eq!(image.name, "localhost:5000/app:1");
    assert_eq!(image.manifest_digest, amd64);
    assert_eq!(image.config_digest, base.config_digest);
    assert_eq!(diff_ids(&image), diff_ids(&base));
    assert_eq!(image.layers[0].size, fs::metadata(&gz).unwrap().len());
    assert_eq!(image.config.env, base.config.env);
    let lowers = store.rootfs_layers(&image, &NoProgress).unwrap();
    assert!(lowers[0].join("bin/busybox").is_file());
    assert_eq!(store.get("localhost:5000/app:1").unwrap().unwrap(), image);

    let arm_only = list(&[("arm64", &absent)]);
    let err = store.add_from_manifest("x", &arm_only).unwrap_err();
    assert!(matches!(err, ImageError::InvalidManifest { .. }), "{err}");
    let missing_layer = put(&manifest(&absent));
    let err = store.add_from_manifest("x", &missing_layer).unwrap_err();
    assert!(
        matches!(&err, ImageError::Content(hail_runtime::content::ContentError::NotFound(d)) if *d == absent),
        "{err}"
    );
    let mut artifact = manifest(&base.layers[0].digest);
    artifact["config"]["mediaType"] = "application/vnd.cncf.helm.config.v1+json".into();
    let err = store.add_from_manifest("x", &put(&artifact)).unwrap_err();
    assert!(matches!(err, ImageError::InvalidManifest { .. }), "{err}");
    assert!(store.get("x").unwrap().is_none());
}

#[test]
fn oci_layout_with_several_images_is_picked_by_tag() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = build_oci_layout(tmp.path());
    run(Command::new("umoci")
        .args(["new", "--image"])
        .arg(format!("{}:2.0", layout.display())));
    let store = ImageStore::open(&tmp.path().join("data")).unwrap();
    let one = store.import("app:1.0", &layout, &NoProgress).unwrap();
    let two = store.import("app:2.0", &layout, &NoProgress).unwrap();
    assert_eq!(one.layers.len(), 3);
    assert!(two.layers.is_empty());
    assert_ne!(one.config_digest, two.config_digest);
    // Neither tag matches and neither manifest declares a platform.
    let err = store.import("app:3.0", &layout, &NoProgress).unwrap_err();
    assert!(
        matches!(&err, ImageError::InvalidManifest { reason, .. } if reason.contains("1.0") && reason.contains("2.0")),
        "{err}"
    );
}
