//! Unpacking one layer tar into a directory, safely.
//!
//! A layer is untrusted input: it may try to write outside the target with
//! `..`, through a symlink it planted earlier, or by hard-linking a host file.
//! Every entry path is cleaned lexically (a leading `/` is stripped as Docker
//! does, `..` is refused), and every parent component is checked to be a real
//! directory inside the target before anything is created, so no symlink is
//! ever followed. The target directory is private to the unpacker while it
//! runs (snapshots unpack into a fresh temporary directory), so these checks
//! cannot be raced by anyone but the layer itself, which is processed in order.
//!
//! Whiteouts are turned into what overlayfs expects: `.wh.<name>` becomes a
//! 0/0 character device named `<name>`, and `.wh..wh..opq` sets
//! `trusted.overlay.opaque=y` on its directory.

use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag};
use nix::sys::time::TimeVal;

use super::ImageError;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What a layer is allowed to contain beyond ordinary files, directories and links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackPolicy {
    /// Keep setuid/setgid bits on files (images such as Debian's rely on them
    /// for `su`, `passwd`); when false a layer holding one is refused.
    /// Directories keep theirs either way: there they grant nothing.
    pub allow_setuid: bool,
    /// Create device nodes and fifos the layer holds; when false (the default)
    /// they are refused. Overlay whiteouts (0/0 character devices) are always
    /// allowed: they are how deletions are expressed.
    pub allow_devices: bool,
}

impl Default for UnpackPolicy {
    fn default() -> Self {
        Self {
            allow_setuid: true,
            allow_devices: false,
        }
    }
}

/// How a blob is compressed, told by its first bytes (never by its media type,
/// which sources get wrong often enough).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn detect(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The OCI layer media type for a tar compressed this way.
    pub fn layer_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// Wraps `reader` in the decompressor its first bytes call for.
pub fn decompress<'a, R: BufRead + 'a>(mut reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let head = reader.fill_buf()?;
    Ok(match Compression::detect(head) {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
    })
}

/// Pads a tar stream that stops right after its last file's data (umoci
/// writes such layers: no block padding, no end-of-archive blocks) with the
/// zeros a complete archive would have, so the reader sees a proper end
/// instead of an unexpected EOF. The diff id is computed below this adapter,
/// over the bytes as shipped.
struct BlockPadded<R> {
    inner: R,
    read: u64,
    padding: Option<u64>,
}

impl<R: Read> BlockPadded<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            read: 0,
            padding: None,
        }
    }
}

impl<R: Read> Read for BlockPadded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.padding.is_none() {
            let n = self.inner.read(buf)?;
            if n > 0 || buf.is_empty() {
                self.read += n as u64;
                return Ok(n);
            }
            self.padding = Some((512 - self.read % 512) % 512 + 1024);
        }
        let left = self.padding.as_mut().expect("set above");
        let n = buf.len().min(*left as usize);
        buf[..n].fill(0);
        *left -= n as u64;
        Ok(n)
    }
}

/// A numeric header field; an empty one (all NULs or spaces, as some writers
/// leave uid, gid or mtime) reads as 0.
fn numeric(value: io::Result<u64>, raw: &[u8]) -> io::Result<u64> {
    match value {
        Ok(v) => Ok(v),
        Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        Err(e) => Err(e),
    }
}

/// Metadata applied to directories once all their entries are written, so a
/// read-only mode or an mtime is not disturbed by the entries that follow.
struct DirMeta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
}

struct Unpacker<'a> {
    target: &'a Path,
    layer: &'a str,
    policy: &'a UnpackPolicy,
    /// Non-directory paths this layer has written; hardlinks may point only here.
    written: HashSet<PathBuf>,
    dirs: HashMap<PathBuf, DirMeta>,
    is_root: bool,
}

/// Unpacks the tar stream `reader` (uncompressed) into `target`, an existing
/// directory. `layer` names the layer in errors. On error the target is left
/// partly written; the caller owns it and removes it.
pub fn unpack_layer(
    reader: impl Read,
    target: &Path,
    layer: &str,
    policy: &UnpackPolicy,
) -> Result<(), ImageError> {
    let mut u = Unpacker {
        target,
        layer,
        policy,
        written: HashSet::new(),
        dirs: HashMap::new(),
        is_root: nix::unistd::Uid::effective().is_root(),
    };
    let mut archive = tar::Archive::new(BlockPadded::new(reader));
    let entries = archive.entries().map_err(|e| u.read_err(e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| u.read_err(e))?;
        u.entry(&mut entry)?;
    }
    u.finish_dirs()
}

impl Unpacker<'_> {
    fn read_err(&self, source: io::Error) -> ImageError {
        ImageError::LayerRead {
            layer: self.layer.to_owned(),
            source,
        }
    }

    fn hostile(&self, entry: &str, reason: impl Into<String>) -> ImageError {
        ImageError::HostileEntry {
            layer: self.layer.to_owned(),
            entry: entry.to_owned(),
            reason: reason.into(),
        }
    }

    fn io_at(&self, rel: &Path) -> impl FnOnce(io::Error) -> ImageError {
        ImageError::io(self.target.join(rel))
    }

    /// Lexically cleans an entry path: leading `/` and `.` components are
    /// dropped, `..` is refused. `None` is the layer's root.
    fn clean(&self, raw: &str, path: &Path) -> Result<Option<PathBuf>, ImageError> {
        let mut out = PathBuf::new();
        for c in path.components() {
            match c {
                Component::RootDir | Component::CurDir => {}
                Component::ParentDir => {
                    return Err(self.hostile(raw, "path contains a `..` component"))
                }
                Component::Normal(n) => out.push(n),
                Component::Prefix(_) => return Err(self.hostile(raw, "path has a prefix")),
            }
        }
        Ok(if out.as_os_str().is_empty() {
            None
        } else {
            Some(out)
        })
    }

    /// Makes sure every component of `rel`'s parent is a real directory inside
    /// the target, creating missing ones. Never follows a symlink.
    fn prepare_parent(&mut self, raw: &str, rel: &Path) -> Result<(), ImageError> {
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        let mut cur = PathBuf::new();
        for c in parent.components() {
            cur.push(c);
            let abs = self.target.join(&cur);
            match fs::symlink_metadata(&abs) {
                Ok(m) if m.file_type().is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.hostile(raw, format!("parent {} is a symlink", cur.display())))
                }
                Ok(_) => {
                    return Err(
                        self.hostile(raw, format!("parent {} is not a directory", cur.display()))
                    )
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&abs).map_err(ImageError::io(&abs))?;
                }
                Err(e) => return Err(ImageError::io(&abs)(e)),
            }
        }
        Ok(())
    }

    /// Like [`Self::prepare_parent`] but creates nothing: for hardlink targets.
    fn check_existing(&self, raw: &str, rel: &Path) -> Result<(), ImageError> {
        let mut cur = PathBuf::new();
        if let Some(parent) = rel.parent() {
            for c in parent.components() {
                cur.push(c);
                match fs::symlink_metadata(self.target.join(&cur)) {
                    Ok(m) if m.file_type().is_dir() => {}
                    _ => {
                        return Err(self.hostile(
                            raw,
                            format!(
                                "hardlink target parent {} is not a directory",
                                cur.display()
                            ),
                        ))
                    }
                }
            }
        }
        match fs::symlink_metadata(self.target.join(rel)) {
            Ok(m) if !m.file_type().is_dir() => Ok(()),
            _ => Err(self.hostile(
                raw,
                format!(
                    "hardlink target {} is not a file of this layer",
                    rel.display()
                ),
            )),
        }
    }

    /// Removes whatever an earlier entry of this layer put at `rel`, so a later
    /// entry replaces it (tar semantics). Directories survive when `keep_dir`.
    fn clear(&mut self, rel: &Path, keep_dir: bool) -> Result<bool, ImageError> {
        let abs = self.target.join(rel);
        match fs::symlink_metadata(&abs) {
            Ok(m) if m.file_type().is_dir() => {
                if keep_dir {
                    return Ok(true);
                }
                fs::remove_dir_all(&abs).map_err(ImageError::io(&abs))?;
                self.written.retain(|p| !p.starts_with(rel));
                self.dirs.retain(|p, _| !p.starts_with(rel));
            }
            Ok(_) => {
                fs::remove_file(&abs).map_err(ImageError::io(&abs))?;
                self.written.remove(rel);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ImageError::io(&abs)(e)),
        }
        Ok(false)
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ImageError> {
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = entry.path().map_err(|e| self.read_err(e))?.into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            return Ok(());
        }
        let Some(rel) = self.clean(&raw, &path)? else {
            // The layer's root itself (`./`): only its metadata matters.
            if kind.is_dir() {
                let meta = self.dir_meta(entry)?;
                self.dirs.insert(PathBuf::new(), meta);
            }
            return Ok(());
        };
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();

        if name == OPAQUE_WHITEOUT {
            let dir = rel.parent().unwrap_or(Path::new("")).to_owned();
            self.prepare_parent(&raw, &rel)?;
            let abs = self.target.join(&dir);
            return xattr::set(&abs, OPAQUE_XATTR, b"y").map_err(ImageError::io(&abs));
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.starts_with(WHITEOUT_PREFIX) {
                // Other `.wh..wh.` names are aufs bookkeeping (`.wh..wh.plnk`),
                // meaningless to overlayfs.
                return Ok(());
            }
            if hidden.is_empty() {
                return Err(self.hostile(&raw, "whiteout names nothing"));
            }
            let rel = rel.with_file_name(hidden);
            self.prepare_parent(&raw, &rel)?;
            self.clear(&rel, false)?;
            return self.whiteout(&rel);
        }

        self.prepare_parent(&raw, &rel)?;
        let abs = self.target.join(&rel);
        let xattrs = self.xattrs(&raw, entry)?;
        match kind {
            tar::EntryType::Directory => {
                if !self.clear(&rel, true)? {
                    fs::create_dir(&abs).map_err(self.io_at(&rel))?;
                }
                let meta = self.dir_meta(entry)?;
                self.set_xattrs(&abs, &xattrs)?;
                self.dirs.insert(rel, meta);
                return Ok(());
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.clear(&rel, false)?;
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&abs)
                    .map_err(self.io_at(&rel))?;
                io::copy(entry, &mut f).map_err(|e| self.read_err(e))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| self.read_err(e))?
                    .ok_or_else(|| self.hostile(&raw, "symlink without a target"))?
                    .into_owned();
                self.clear(&rel, false)?;
                std::os::unix::fs::symlink(&target, &abs).map_err(self.io_at(&rel))?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(|e| self.read_err(e))?
                    .ok_or_else(|| self.hostile(&raw, "hardlink without a target"))?
                    .into_owned();
                let source = self
                    .clean(&raw, &link)?
                    .ok_or_else(|| self.hostile(&raw, "hardlink to the layer root"))?;
                if !self.written.contains(&source) {
                    return Err(self.hostile(
                        &raw,
                        format!("hardlink target {} is not in this layer", link.display()),
                    ));
                }
                self.check_existing(&raw, &source)?;
                if source == rel {
                    return Ok(());
                }
                self.clear(&rel, false)?;
                let src_abs = self.target.join(&source);
                fs::hard_link(&src_abs, &abs).map_err(self.io_at(&rel))?;
                // A hardlink shares its target's inode: metadata is already set.
                self.written.insert(rel);
                return Ok(());
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                if kind == tar::EntryType::Char && major == 0 && minor == 0 {
                    self.clear(&rel, false)?;
                    self.whiteout(&rel)?;
                    self.written.insert(rel);
                    return Ok(());
                }
                if !self.policy.allow_devices {
                    let what = match kind {
                        tar::EntryType::Char => "character device",
                        tar::EntryType::Block => "block device",
                        _ => "fifo",
                    };
                    return Err(self.hostile(&raw, format!("{what} refused by policy")));
                }
                self.clear(&rel, false)?;
                let sflag = match kind {
                    tar::EntryType::Char => SFlag::S_IFCHR,
                    tar::EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let dev = nix::sys::stat::makedev(major.into(), minor.into());
                nix::sys::stat::mknod(&abs, sflag, Mode::from_bits_truncate(0o600), dev)
                    .map_err(|e| self.io_at(&rel)(e.into()))?;
            }
            other => {
                return Err(self.hostile(&raw, format!("unsupported entry type {other:?}")));
            }
        }

        let header = entry.header();
        let old = header.as_old();
        let uid = numeric(header.uid(), &old.uid).map_err(|e| self.read_err(e))?;
        let gid = numeric(header.gid(), &old.gid).map_err(|e| self.read_err(e))?;
        let mode = header.mode().map_err(|e| self.read_err(e))? & 0o7777;
        let mtime = numeric(header.mtime(), &old.mtime).map_err(|e| self.read_err(e))?;
        if self.is_root {
            // Ownership first: chown clears setuid/setgid bits set before it.
            std::os::unix::fs::lchown(&abs, Some(uid as u32), Some(gid as u32))
                .map_err(self.io_at(&rel))?;
        }
        if kind != tar::EntryType::Symlink {
            self.check_mode(&raw, mode)?;
            fs::set_permissions(&abs, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .map_err(self.io_at(&rel))?;
        }
        self.set_xattrs(&abs, &xattrs)?;
        set_mtime(&abs, mtime).map_err(self.io_at(&rel))?;
        self.written.insert(rel);
        Ok(())
    }

    fn check_mode(&self, raw: &str, mode: u32) -> Result<(), ImageError> {
        if mode & 0o6000 != 0 && !self.policy.allow_setuid {
            return Err(self.hostile(
                raw,
                format!("setuid/setgid mode {mode:o} refused by policy"),
            ));
        }
        Ok(())
    }

    fn whiteout(&mut self, rel: &Path) -> Result<(), ImageError> {
        let abs = self.target.join(rel);
        nix::sys::stat::mknod(&abs, SFlag::S_IFCHR, Mode::empty(), 0)
            .map_err(|e| ImageError::io(&abs)(e.into()))
    }

    fn dir_meta<R: Read>(&self, entry: &tar::Entry<'_, R>) -> Result<DirMeta, ImageError> {
        let h = entry.header();
        // No policy check here: setgid on a directory only makes new files
        // inherit its group, and setuid on a directory means nothing.
        let mode = h.mode().map_err(|e| self.read_err(e))? & 0o7777;
        let old = h.as_old();
        Ok(DirMeta {
            mode,
            uid: numeric(h.uid(), &old.uid).map_err(|e| self.read_err(e))?,
            gid: numeric(h.gid(), &old.gid).map_err(|e| self.read_err(e))?,
            mtime: numeric(h.mtime(), &old.mtime).map_err(|e| self.read_err(e))?,
        })
    }

    /// Extended attributes carried in PAX headers (`SCHILY.xattr.<name>`).
    fn xattrs<R: Read>(
        &self,
        raw: &str,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<Vec<(String, Vec<u8>)>, ImageError> {
        let mut out = Vec::new();
        let Some(exts) = entry.pax_extensions().map_err(|e| self.read_err(e))? else {
            return Ok(out);
        };
        for ext in exts {
            let ext = ext.map_err(|e| self.read_err(e))?;
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                // overlayfs reads trusted.overlay.* as instructions (opaque dirs,
                // redirects); only whiteout entries may produce them.
                if name.starts_with("trusted.overlay.") {
                    return Err(self.hostile(raw, format!("layer sets overlay xattr {name}")));
                }
                out.push((name.to_owned(), ext.value_bytes().to_vec()));
            }
        }
        Ok(out)
    }

    fn set_xattrs(&self, abs: &Path, xattrs: &[(String, Vec<u8>)]) -> Result<(), ImageError> {
        for (name, value) in xattrs {
            xattr::set(abs, name, value).map_err(ImageError::io(abs))?;
        }
        Ok(())
    }

    /// Applies directory metadata deepest first, once every entry is written.
    fn finish_dirs(&mut self) -> Result<(), ImageError> {
        let mut dirs: Vec<_> = self.dirs.drain().collect();
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (rel, meta) in dirs {
            let abs = self.target.join(&rel);
            match fs::symlink_metadata(&abs) {
                Ok(m) if m.file_type().is_dir() => {}
                _ => continue,
            }
            if self.is_root {
                std::os::unix::fs::lchown(&abs, Some(meta.uid as u32), Some(meta.gid as u32))
                    .map_err(ImageError::io(&abs))?;
            }
            fs::set_permissions(
                &abs,
                std::os::unix::fs::PermissionsExt::from_mode(meta.mode),
            )
            .map_err(ImageError::io(&abs))?;
            set_mtime(&abs, meta.mtime).map_err(ImageError::io(&abs))?;
        }
        Ok(())
    }
}

fn set_mtime(abs: &Path, mtime: u64) -> io::Result<()> {
    let t = TimeVal::new(mtime.min(i64::MAX as u64) as i64, 0);
    nix::sys::stat::lutimes(abs, &t, &t).map_err(io::Error::from)
}
