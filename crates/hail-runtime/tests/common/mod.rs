//! Shared helpers of the runtime's integration tests.
#![allow(dead_code)]

use std::path::Path;

/// Whether this process may run containers (root, runc present). Under
/// `CI=true` a missing prerequisite is a test failure, never a silent skip.
pub fn containers_available() -> bool {
    let problem = if !nix::unistd::Uid::effective().is_root() {
        Some("tests that run containers need root".to_owned())
    } else if which("runc").is_none() {
        Some("runc is not installed (scripts/install-deps.sh installs it)".to_owned())
    } else {
        None
    };
    match problem {
        None => true,
        Some(p) if std::env::var("CI").as_deref() == Ok("true") => panic!("{p}"),
        Some(p) => {
            eprintln!("skipping: {p}");
            false
        }
    }
}

pub fn which(bin: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(bin))
            .find(|p| p.is_file())
    })
}

/// Writes a root-filesystem tarball (like `docker export`) holding a static
/// busybox with its applet links, /etc/passwd and /etc/group, to `dest`.
pub fn write_busybox_rootfs_tar(dest: &Path) {
    let busybox = which("busybox").expect("busybox-static is installed");
    let file = std::fs::File::create(dest).unwrap();
    let mut tar = tar::Builder::new(file);
    let mut dir = |path: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        tar.append_data(&mut h, path, std::io::empty()).unwrap();
    };
    for d in [
        "bin", "etc", "tmp", "proc", "sys", "dev", "root", "home", "home/app", "var", "usr",
    ] {
        dir(d);
    }
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    let bytes = std::fs::read(busybox).unwrap();
    h.set_size(bytes.len() as u64);
    tar.append_data(&mut h, "bin/busybox", &bytes[..]).unwrap();
    for applet in [
        "sh", "cat", "echo", "env", "id", "ls", "sleep", "pwd", "wc", "nc", "date", "dd", "head",
        "ip", "hostname", "touch", "mkdir", "yes", "true", "false", "kill", "wget", "httpd", "seq",
        "grep", "sed", "tail",
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        tar.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    let files: [(&str, &str); 2] = [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
        ("etc/group", "root:x:0:\napp:x:1000:\nnogroup:x:65534:\n"),
    ];
    for (path, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(content.len() as u64);
        tar.append_data(&mut h, path, content.as_bytes()).unwrap();
    }
    tar.into_inner().unwrap();
}
