//! Resolves a container's `user` setting against the image's own
//! `/etc/passwd` and `/etc/group`, as Docker does.
//!
//! The files are read from the container's root filesystem, and symlinks are
//! resolved as if the rootfs were `/`: an image whose `/etc/passwd` points at
//! `/../../host/etc/shadow` reads a file inside the rootfs, never one outside.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// The numeric identity a container process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: those of `/etc/group` listing the user by name.
    pub additional_gids: Vec<u32>,
    /// Home directory from `/etc/passwd`, when the user is listed there.
    pub home: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user {user}: no such user in {path}")]
    UnknownUser { user: String, path: PathBuf },
    #[error("user {user}: no such group {group} in {path}")]
    UnknownGroup {
        user: String,
        group: String,
        path: PathBuf,
    },
    #[error("user {user}: malformed user specification")]
    Malformed { user: String },
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: too many levels of symbolic links inside the root filesystem")]
    SymlinkLoop { path: PathBuf },
}

#[derive(Debug, Clone)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

#[derive(Debug, Clone)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolves `user` (`""`/absent, `name`, `uid`, `name:group`, `uid:gid`,
/// `name:gid`, `uid:group`) inside `rootfs`.
///
/// Like Docker: no user means root; a numeric uid absent from `/etc/passwd`
/// runs with gid 0 (or the given group); an unknown name is an error.
pub fn resolve_user(rootfs: &Path, user: Option<&str>) -> Result<ResolvedUser, UserError> {
    let spec = user.unwrap_or("").trim();
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    if group_part.is_some_and(|g| g.is_empty() || g.contains(':')) {
        return Err(UserError::Malformed {
            user: spec.to_owned(),
        });
    }

    let passwd_path = resolve_in_root(rootfs, "/etc/passwd")?;
    let passwd = read_optional(&passwd_path)?
        .map(|s| parse_passwd(&s))
        .unwrap_or_default();

    let numeric_uid = user_part.parse::<u32>().ok();
    let entry = match numeric_uid {
        Some(uid) => passwd.iter().find(|e| e.uid == uid).cloned(),
        None => passwd.iter().find(|e| e.name == user_part).cloned(),
    };
    let (uid, mut gid, name, home) = match (numeric_uid, entry) {
        (_, Some(e)) => (e.uid, e.gid, Some(e.name), Some(e.home)),
        (Some(uid), None) => (uid, 0, None, None),
        (None, None) => {
            return Err(UserError::UnknownUser {
                user: user_part.to_owned(),
                path: PathBuf::from("/etc/passwd"),
            })
        }
    };

    // /etc/group is only needed for a group name or supplementary groups.
    let needs_groups = name.is_some() || group_part.is_some_and(|g| g.parse::<u32>().is_err());
    let groups = if needs_groups {
        let group_path = resolve_in_root(rootfs, "/etc/group")?;
        read_optional(&group_path)?
            .map(|s| parse_group(&s))
            .unwrap_or_default()
    } else {
        Vec::new()
    };

    if let Some(g) = group_part {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                groups
                    .iter()
                    .find(|e| e.name == g)
                    .ok_or_else(|| UserError::UnknownGroup {
                        user: spec.to_owned(),
                        group: g.to_owned(),
                        path: PathBuf::from("/etc/group"),
                    })?
                    .gid
            }
        };
    }

    let mut additional_gids = Vec::new();
    if let Some(name) = &name {
        for g in &groups {
            if g.gid != gid
                && g.members.iter().any(|m| m == name)
                && !additional_gids.contains(&g.gid)
            {
                additional_gids.push(g.gid);
            }
        }
    }

    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

fn read_optional(path: &Path) -> Result<Option<String>, UserError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(20) => Ok(None),
        Err(e) => Err(UserError::Read {
            path: path.to_owned(),
            source: e,
        }),
    }
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 || f[0].is_empty() {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_owned(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 3 || f[0].is_empty() {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_owned(),
                gid: f[2].parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Maps `path` (absolute inside the container) to a host path under `root`,
/// resolving every symlink on the way relative to `root` and never letting
/// `..` or an absolute link target climb above it.
pub(crate) fn resolve_in_root(root: &Path, path: &str) -> Result<PathBuf, UserError> {
    const MAX_LINKS: usize = 40;
    let mut pending: Vec<String> = components(path).into_iter().rev().collect();
    let mut resolved: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved
            .iter()
            .fold(root.to_path_buf(), |p, c| p.join(c))
            .join(&part);
        match fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(UserError::SymlinkLoop {
                        path: PathBuf::from(path),
                    });
                }
                let target = fs::read_link(&candidate).map_err(|e| UserError::Read {
                    path: candidate.clone(),
                    source: e,
                })?;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    resolved.clear();
                }
                for c in components(&target).into_iter().rev() {
                    pending.push(c);
                }
            }
            // Missing components are fine: the caller treats a missing file as absent.
            _ => resolved.push(part),
        }
    }
    Ok(resolved.iter().fold(root.to_path_buf(), |p, c| p.join(c)))
}

fn components(path: &str) -> Vec<String> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_owned()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1000:1000:app:/home/app:/bin/sh\nbroken line\nweb:x:33:33::/var/www:/bin/false\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\napp:x:1000:\nstaff:x:50:app,web\nwww-data:x:33:\naudio:x:29:app\n",
        )
        .unwrap();
        dir
    }

    fn resolve(root: &Path, u: &str) -> ResolvedUser {
        resolve_user(root, Some(u)).unwrap()
    }

    #[test]
    fn forms_of_user() {
        let r = rootfs();
        let root = r.path();
        let def = resolve_user(root, None).unwrap();
        assert_eq!(
            (def.uid, def.gid, def.home.as_deref()),
            (0, 0, Some("/root"))
        );
        assert_eq!(resolve(root, "").uid, 0);
        let app = resolve(root, "app");
        assert_eq!((app.uid, app.gid), (1000, 1000));
        assert_eq!(app.additional_gids, vec![50, 29]);
        assert_eq!(app.home.as_deref(), Some("/home/app"));
        assert_eq!(resolve(root, "1000").gid, 1000);
        let u = resolve(root, "4242");
        assert_eq!((u.uid, u.gid, u.home), (4242, 0, None));
        assert!(u.additional_gids.is_empty());
        assert_eq!(resolve(root, "4242:7").gid, 7);
        assert_eq!(resolve(root, "app:staff").gid, 50);
        assert_eq!(resolve(root, "app:staff").additional_gids, vec![29]);
        assert_eq!(resolve(root, "app:33").gid, 33);
        assert_eq!(resolve(root, "1000:www-data").gid, 33);
        assert_eq!(resolve(root, "web").gid, 33);
    }

    #[test]
    fn unknown_names_are_errors_naming_them() {
        let r = rootfs();
        let err = resolve_user(r.path(), Some("ghost")).unwrap_err();
        assert!(err.to_string().contains("ghost"), "{err}");
        let err = resolve_user(r.path(), Some("app:ghosts")).unwrap_err();
        assert!(err.to_string().contains("ghosts"), "{err}");
        assert!(resolve_user(r.path(), Some("app:")).is_err());
    }

    #[test]
    fn missing_passwd_allows_numeric_only() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(resolve(dir.path(), "12:34").gid, 34);
        assert_eq!(resolve(dir.path(), "").uid, 0);
        assert!(resolve_user(dir.path(), Some("app")).is_err());
    }

    #[test]
    fn symlinks_stay_inside_the_rootfs() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("passwd"), "evil:x:0:0::/:/bin/sh\n").unwrap();
        let r = tempfile::tempdir().unwrap();
        fs::create_dir_all(r.path().join("etc")).unwrap();
        fs::create_dir_all(r.path().join("real")).unwrap();
        fs::write(r.path().join("real/passwd"), "inside:x:7:8::/in:/bin/sh\n").unwrap();
        // An absolute link naming the host's path of the outside file.
        let escape = format!("{}/passwd", outside.path().display());
        std::os::unix::fs::symlink(&escape, r.path().join("etc/passwd")).unwrap();
        assert!(resolve_user(r.path(), Some("evil")).is_err());

        // A relative link climbing with .. is clamped at the rootfs.
        fs::remove_file(r.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("../../../../../real/passwd", r.path().join("etc/passwd"))
            .unwrap();
        assert_eq!(resolve(r.path(), "inside").uid, 7);

        // An absolute link is taken relative to the rootfs.
        fs::remove_file(r.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/real/passwd", r.path().join("etc/passwd")).unwrap();
        assert_eq!(resolve(r.path(), "inside").gid, 8);

        fs::remove_file(r.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", r.path().join("etc/passwd")).unwrap();
        assert!(matches!(
            resolve_user(r.path(), Some("inside")),
            Err(UserError::SymlinkLoop { .. })
        ));
    }
}
