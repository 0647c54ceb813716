//! Named network namespaces, compatible with `ip netns`: a namespace is kept
//! alive by a bind mount of its nsfs inode on `/run/netns/<name>`.
//!
//! Entering a namespace changes the calling *thread*, so every operation that
//! needs to be inside one runs on a dedicated thread that exits afterwards;
//! no pooled thread (tokio's workers or blocking pool) ever changes namespace.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use super::NetworkError;

/// Where `ip netns` keeps its bind mounts; Hail uses the same place so the
/// usual tools (`ip netns exec`, `ip -n`) work on task namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// The bind-mount path of the namespace called `name`.
pub fn path_of(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

fn netns_err(name: &str, op: &'static str, source: nix::Error) -> NetworkError {
    NetworkError::Netns {
        name: name.to_owned(),
        op,
        source: io::Error::from(source),
    }
}

static RUN_NETNS_SETUP: Mutex<()> = Mutex::new(());

/// Makes `/run/netns` a shared mount point, as `ip netns add` does, so that a
/// namespace unmounted here is also unmounted in mount namespaces copied
/// from this one (otherwise such a copy would keep the namespace alive).
pub fn prepare_dir() -> Result<(), NetworkError> {
    let _serial = RUN_NETNS_SETUP.lock().unwrap_or_else(|p| p.into_inner());
    let dir = Path::new(NETNS_DIR);
    fs::create_dir_all(dir).map_err(|source| NetworkError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let shared = || {
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        // Not yet a mount point: bind it onto itself first, then retry.
        Err(nix::Error::EINVAL) => {
            mount(
                Some(dir),
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| netns_err(NETNS_DIR, "bind-mount onto itself", e))?;
            shared().map_err(|e| netns_err(NETNS_DIR, "make shared", e))
        }
        Err(e) => Err(netns_err(NETNS_DIR, "make shared", e)),
    }
}

/// Creates the namespace `name` and runs `inside` in it, on a dedicated
/// thread. `before` runs on that same thread while it is still in the
/// caller's namespace (to open sockets that must stay there). If `inside`
/// fails the namespace is removed again.
pub async fn create<P, T>(
    name: &str,
    before: impl FnOnce() -> Result<P, NetworkError> + Send + 'static,
    inside: impl FnOnce(P) -> Result<T, NetworkError> + Send + 'static,
) -> Result<T, NetworkError>
where
    T: Send + 'static,
{
    let name = name.to_owned();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread_name = name.clone();
    std::thread::Builder::new()
        .name("hail-netns".to_owned())
        .spawn(move || {
            let _ = tx.send(create_on_this_thread(&thread_name, before, inside));
        })
        .map_err(|source| NetworkError::Io {
            path: path_of(&name),
            source,
        })?;
    rx.await.map_err(|_| NetworkError::Worker {
        op: format!("create netns {name}"),
    })?
}

fn create_on_this_thread<P, T>(
    name: &str,
    before: impl FnOnce() -> Result<P, NetworkError>,
    inside: impl FnOnce(P) -> Result<T, NetworkError>,
) -> Result<T, NetworkError> {
    let prepared = before()?;
    let path = path_of(name);
    // The mount target must exist; O_EXCL makes a name clash an error instead
    // of silently stacking a second namespace on someone else's.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|source| NetworkError::Io {
            path: path.clone(),
            source,
        })?;
    let result = (|| {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| netns_err(name, "unshare", e))?;
        let own = format!("/proc/self/task/{}/ns/net", nix::unistd::gettid());
        mount(
            Some(own.as_str()),
            &path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| netns_err(name, "bind-mount", e))?;
        inside(prepared)
    })();
    if result.is_err() {
        let _ = remove(name);
    }
    result
}

/// Runs `f` on a dedicated thread that has entered the namespace at `path`
/// (sockets it opens belong to that namespace for their whole life).
pub async fn run_in<T, F>(path: &Path, f: F) -> Result<T, NetworkError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let path = path.to_owned();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread_path = path.clone();
    std::thread::Builder::new()
        .name("hail-netns".to_owned())
        .spawn(move || {
            let _ = tx.send(enter(&thread_path).map(|()| f()));
        })
        .map_err(|source| NetworkError::Io {
            path: path.clone(),
            source,
        })?;
    rx.await.map_err(|_| NetworkError::Worker {
        op: format!("run in netns {}", path.display()),
    })?
}

/// Moves the calling thread into the namespace at `path`. Only for threads
/// that are dedicated to that namespace (see the module comment).
pub fn enter(path: &Path) -> Result<(), NetworkError> {
    let file = File::open(path).map_err(|source| NetworkError::Io {
        path: path.to_owned(),
        source,
    })?;
    setns(file.as_fd(), CloneFlags::CLONE_NEWNET)
        .map_err(|e| netns_err(&path.display().to_string(), "setns", e))
}

/// Removes the namespace `name`: unmounts and deletes its bind mount. The
/// kernel frees the namespace (and the veth ends inside it) once no process
/// is left in it. Absent namespaces are not an error.
pub fn remove(name: &str) -> Result<(), NetworkError> {
    let path = path_of(name);
    match umount2(&path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (a crash between create and mount).
        Ok(()) | Err(nix::Error::ENOENT) | Err(nix::Error::EINVAL) => {}
        Err(e) => return Err(netns_err(name, "unmount", e)),
    }
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetworkError::Io { path, source }),
    }
}

/// Names of the namespaces in [`NETNS_DIR`] that start with `prefix`.
pub fn list(prefix: &str) -> Result<Vec<String>, NetworkError> {
    let dir = Path::new(NETNS_DIR);
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(NetworkError::Io {
                path: dir.to_owned(),
                source,
            })
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| NetworkError::Io {
            path: dir.to_owned(),
            source,
        })?;
        if let Some(name) = entry.file_name().to_str() {
            if name.starts_with(prefix) {
                names.push(name.to_owned());
            }
        }
    }
    Ok(names)
}
