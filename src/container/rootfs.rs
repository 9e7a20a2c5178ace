//! `--sync-rootfs`: carries the files a container wrote in its bundle's
//! root filesystem to the destination's copy of the bundle. The source
//! walks its rootfs and compares it with the destination's manifest (what
//! it has: type, size, mtime, mode, owner, symlink target), sends what
//! differs while the container runs, and, once it is frozen, sends again
//! only what changed since that first walk (by size, mtime and ctime).
//!
//! The destination trusts nothing it receives: every path is relative,
//! made of plain components (no `..`, `.`, empty or NUL), bounded in
//! length, and resolved below its rootfs without following any symlink
//! (openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS for the parent, then
//! *at calls that do not follow the last component); file data arrives in
//! bounded chunks, in order.
//!
//! Carried: directories, regular files (contents, mode, owner, mtime) and
//! symlinks; entries the destination has and the source does not are
//! removed. Not carried: hard links (each name becomes a file of its own),
//! device nodes, FIFOs and sockets (skipped), extended attributes, and
//! anything on another filesystem mounted inside the rootfs.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;

/// The longest path (relative to the rootfs) or symlink target accepted.
pub const MAX_PATH: usize = 4096;
/// The longest path component accepted.
pub const MAX_NAME: usize = 255;
/// File data per [`Change::File`] at most.
pub const MAX_CHUNK: usize = 1 << 20;
/// Changes per batch at most, and file data per batch (about).
pub const MAX_BATCH_CHANGES: usize = 4096;
/// File data bytes per batch before it is closed.
pub const MAX_BATCH_BYTES: usize = 4 << 20;
/// Manifest entries per message at most.
pub const MAX_MANIFEST_CHUNK: usize = 8192;
/// Entries a manifest may have in all.
pub const MAX_ENTRIES: usize = 4_000_000;

/// Why walking, reading or applying a rootfs failed.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// The bundle's config.json could not be read or has no root.path.
    #[error("cannot find the rootfs of bundle {bundle}: {why}")]
    Config {
        /// The bundle.
        bundle: String,
        /// Why.
        why: String,
    },
    /// A file of the rootfs could not be read or written.
    #[error("rootfs {root}: {path}: {why}")]
    Io {
        /// The rootfs.
        root: String,
        /// The path below it.
        path: String,
        /// The system's reason.
        why: String,
    },
    /// The peer sent something ferry refuses to apply.
    #[error("refused a rootfs change for {path:?}: {why}")]
    Refused {
        /// The path as received (lossy).
        path: String,
        /// Why.
        why: &'static str,
    },
}

/// The type of a rootfs entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
}

/// Permission bits, owner and modification time of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Permission bits (with setuid, setgid, sticky): mode & 0o7777.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time: seconds and nanoseconds.
    pub mtime: (i64, u32),
}

/// One entry of a rootfs, as a manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Path relative to the rootfs, without a leading slash.
    pub path: Vec<u8>,
    /// Its type.
    pub kind: Kind,
    /// Size in bytes (files).
    pub size: u64,
    /// Permissions, owner, mtime.
    pub meta: Meta,
    /// Inode change time (seconds, nanoseconds): a change the mtime does
    /// not show (chmod, a write that reset the mtime) still changes it.
    pub ctime: (i64, u32),
    /// The symlink's target (empty for other types).
    pub target: Vec<u8>,
}

/// One change the destination applies to its rootfs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Remove the entry (a directory with everything in it).
    Remove {
        /// The path.
        path: Vec<u8>,
    },
    /// Make the entry a directory with this metadata.
    Dir {
        /// The path.
        path: Vec<u8>,
        /// Its metadata.
        meta: Meta,
    },
    /// Make the entry a symlink.
    Symlink {
        /// The path.
        path: Vec<u8>,
        /// Where it points (never followed by ferry).
        target: Vec<u8>,
        /// Its owner and mtime.
        meta: Meta,
    },
    /// A chunk of a regular file's contents: offset 0 starts the file anew
    /// (replacing what was there), later chunks follow in order, the last
    /// one sets its metadata.
    File {
        /// The path.
        path: Vec<u8>,
        /// Its metadata (applied with the last chunk).
        meta: Meta,
        /// Where the chunk goes.
        offset: u64,
        /// The bytes (MAX_CHUNK at most).
        data: Vec<u8>,
        /// The file is complete after this chunk.
        last: bool,
    },
    /// Only the metadata of an existing entry of this type changes.
    Meta {
        /// The path.
        path: Vec<u8>,
        /// The type the entry must have.
        kind: Kind,
        /// The new metadata.
        meta: Meta,
    },
}

/// How many changes and bytes a pass carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassStats {
    /// Entries created, replaced, updated or removed.
    pub changes: u64,
    /// File bytes sent.
    pub bytes: u64,
}

/// The rootfs directory of the bundle: its config.json's root.path,
/// relative to the bundle unless absolute.
pub fn rootfs_of(bundle: &Path) -> Result<PathBuf, RootfsError> {
    let err = |why: String| RootfsError::Config {
        bundle: bundle.display().to_string(),
        why,
    };
    let text = std::fs::read(bundle.join("config.json")).map_err(|e| err(e.to_string()))?;
    let config: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| err(format!("config.json: {e}")))?;
    let path = config
        .pointer("/root/path")
        .and_then(|p| p.as_str())
        .ok_or_else(|| err("config.json has no root.path".into()))?;
    Ok(bundle.join(path))
}

fn meta_of(m: &std::fs::Metadata) -> Meta {
    Meta {
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime: (m.mtime(), m.mtime_nsec() as u32),
    }
}

/// Lists every directory, regular file and symlink below `root`, parents
/// before their contents, in name order; does not follow symlinks nor
/// enter other filesystems. Entries that vanish during the walk are
/// skipped (the container runs).
pub fn walk(root: &Path) -> Result<Vec<Entry>, RootfsError> {
    let io = |path: &Path, e: std::io::Error| RootfsError::Io {
        root: root.display().to_string(),
        path: path.display().to_string(),
        why: e.to_string(),
    };
    let dev = std::fs::symlink_metadata(root)
        .map_err(|e| io(root, e))?
        .dev();
    let mut entries = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut names: Vec<_> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()
                .map_err(|e| io(&dir, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&dir, e)),
        };
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let rel_path = rel.join(&name);
            let full = root.join(&rel_path);
            let m = match std::fs::symlink_metadata(&full) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&full, e)),
            };
            let ft = m.file_type();
            let (kind, target) = if ft.is_dir() {
                (Kind::Dir, Vec::new())
            } else if ft.is_file() {
                (Kind::File, Vec::new())
            } else if ft.is_symlink() {
                match std::fs::read_link(&full) {
                    Ok(t) => (Kind::Symlink, t.as_os_str().as_bytes().to_vec()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io(&full, e)),
                }
            } else {
                tracing::debug!(path = %full.display(), "rootfs sync skips a special file");
                continue;
            };
            if kind == Kind::Dir && m.dev() != dev {
                continue;
            }
            entries.push(Entry {
                path: rel_path.as_os_str().as_bytes().to_vec(),
                kind,
                size: if kind == Kind::File { m.len() } else { 0 },
                meta: meta_of(&m),
                ctime: (m.ctime(), m.ctime_nsec() as u32),
                target,
            });
            if kind == Kind::Dir {
                subdirs.push(rel_path);
            }
        }
        // Depth first: parents always come before their contents.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(entries)
}

/// What to send to bring the destination from `have` to `now`: removals
/// first (parents before their contents), then every entry of `now` that
/// `have` lacks or holds differently, parents first. With `trust_ctime`
/// (`have` is an earlier walk of the same tree) a changed ctime also
/// counts; against another host's manifest only size and mtime tell a
/// file's contents apart, and mode and owner alone give a metadata change.
pub fn plan(now: &[Entry], have: &[Entry], trust_ctime: bool) -> Vec<Change> {
    let now_paths: HashMap<&[u8], &Entry> = now.iter().map(|e| (e.path.as_slice(), e)).collect();
    let have_paths: HashMap<&[u8], &Entry> = have.iter().map(|e| (e.path.as_slice(), e)).collect();
    let mut changes: Vec<Change> = have
        .iter()
        .filter(|e| !now_paths.contains_key(e.path.as_slice()))
        .map(|e| Change::Remove {
            path: e.path.clone(),
        })
        .collect();
    for e in now {
        let old = have_paths.get(e.path.as_slice());
        let same_kind = old.filter(|o| o.kind == e.kind);
        let full = match same_kind {
            None => true,
            Some(o) => match e.kind {
                Kind::Dir => false,
                Kind::File => {
                    o.size != e.size
                        || o.meta.mtime != e.meta.mtime
                        || (trust_ctime && o.ctime != e.ctime)
                }
                Kind::Symlink => o.target != e.target,
            },
        };
        let meta_differs = same_kind.is_some_and(|o| {
            o.meta.uid != e.meta.uid
                || o.meta.gid != e.meta.gid
                || (e.kind != Kind::Symlink && o.meta.mode != e.meta.mode)
        });
        let path = e.path.clone();
        changes.push(match (e.kind, full, meta_differs) {
            (_, false, false) => continue,
            // The data is read when the batch is made.
            (Kind::File, true, _) => Change::File {
                path,
                meta: e.meta,
                offset: 0,
                data: Vec::new(),
                last: false,
            },
            (Kind::File, false, true) => Change::Meta {
                path,
                kind: Kind::File,
                meta: e.meta,
            },
            (Kind::Dir, ..) => Change::Dir { path, meta: e.meta },
            (Kind::Symlink, ..) => Change::Symlink {
                path,
                target: e.target.clone(),
                meta: e.meta,
            },
        });
    }
    changes
}

/// Turns a plan into bounded batches, reading each file's contents from
/// `root` in chunks of at most [`MAX_CHUNK`] as it goes, and hands every
/// batch to `send`. A file that vanished since the walk is sent as a
/// removal (the frozen pass settles it). Returns what was sent.
pub fn send_plan(
    root: &Path,
    plan: Vec<Change>,
    send: &mut dyn FnMut(Vec<Change>) -> Result<(), String>,
) -> Result<PassStats, String> {
    let mut stats = PassStats::default();
    let mut batch = Vec::new();
    let mut batch_bytes = 0usize;
    let mut flush = |batch: &mut Vec<Change>, bytes: &mut usize, force: bool| {
        if !batch.is_empty()
            && (force || batch.len() >= MAX_BATCH_CHANGES || *bytes >= MAX_BATCH_BYTES)
        {
            *bytes = 0;
            send(std::mem::take(batch))
        } else {
            Ok(())
        }
    };
    for change in plan {
        stats.changes += 1;
        let Change::File { path, meta, .. } = change else {
            batch.push(change);
            flush(&mut batch, &mut batch_bytes, false)?;
            continue;
        };
        let full = root.join(OsStr::from_bytes(&path));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&full);
        let mut file = match file {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(path = %full.display(), %e, "a file to sync is gone");
                batch.push(Change::Remove { path });
                flush(&mut batch, &mut batch_bytes, false)?;
                continue;
            }
        };
        let mut offset = 0u64;
        loop {
            let mut data = Vec::with_capacity(MAX_CHUNK);
            (&mut file)
                .take(MAX_CHUNK as u64)
                .read_to_end(&mut data)
                .map_err(|e| format!("reading {}: {e}", full.display()))?;
            let last = data.len() < MAX_CHUNK;
            let len = data.len();
            stats.bytes += len as u64;
            batch_bytes += len;
            batch.push(Change::File {
                path: path.clone(),
                meta,
                offset,
                data,
                last,
            });
            flush(&mut batch, &mut batch_bytes, false)?;
            offset += len as u64;
            if last {
                break;
            }
        }
    }
    flush(&mut batch, &mut batch_bytes, true)?;
    Ok(stats)
}

/// Splits a path received from a peer into its parent and last component,
/// refusing anything that could leave the rootfs.
pub fn check_path(path: &[u8]) -> Result<(&[u8], &[u8]), RootfsError> {
    let refuse = |why| RootfsError::Refused {
        path: String::from_utf8_lossy(&path[..path.len().min(MAX_PATH)]).into_owned(),
        why,
    };
    if path.is_empty() {
        return Err(refuse("the path is empty"));
    }
    if path.len() > MAX_PATH {
        return Err(refuse("the path is longer than 4096 bytes"));
    }
    if path.contains(&0) {
        return Err(refuse("the path contains a NUL byte"));
    }
    if path[0] == b'/' {
        return Err(refuse("the path is absolute"));
    }
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" => return Err(refuse("the path has an empty component")),
            b"." | b".." => return Err(refuse("the path has a . or .. component")),
            c if c.len() > MAX_NAME => return Err(refuse("a path component is too long")),
            _ => {}
        }
    }
    Ok(match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[][..], path),
    })
}

/// The destination's rootfs, open for changes that cannot leave it.
#[derive(Debug)]
pub struct Target {
    path: PathBuf,
    root: OwnedFd,
    /// The file being written: its path, the next offset, its fd.
    writing: Option<(Vec<u8>, u64, std::fs::File)>,
}

impl Target {
    /// Opens the rootfs directory `path` (created if missing).
    pub fn open(path: &Path) -> Result<Self, RootfsError> {
        let io = |e: std::io::Error| RootfsError::Io {
            root: path.display().to_string(),
            path: ".".into(),
            why: e.to_string(),
        };
        std::fs::create_dir_all(path).map_err(io)?;
        let root = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io(e.into()))?;
        Ok(Target {
            path: path.to_path_buf(),
            root,
            writing: None,
        })
    }

    /// The rootfs directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What this rootfs holds.
    pub fn manifest(&self) -> Result<Vec<Entry>, RootfsError> {
        walk(&self.path)
    }

    fn io(&self, path: &[u8], e: impl std::fmt::Display) -> RootfsError {
        RootfsError::Io {
            root: self.path.display().to_string(),
            path: String::from_utf8_lossy(path).into_owned(),
            why: e.to_string(),
        }
    }

    /// The directory `parent` (below the rootfs, no symlink followed).
    fn open_parent(&self, parent: &[u8]) -> Result<OwnedFd, RootfsError> {
        self.open_parent_raw(parent).map_err(|e| self.io(parent, e))
    }

    fn open_parent_raw(&self, parent: &[u8]) -> nix::Result<OwnedFd> {
        let how = nix::fcntl::OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(
                nix::fcntl::ResolveFlag::RESOLVE_BENEATH
                    | nix::fcntl::ResolveFlag::RESOLVE_NO_SYMLINKS
                    | nix::fcntl::ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
        let rel: &OsStr = if parent.is_empty() {
            OsStr::new(".")
        } else {
            OsStr::from_bytes(parent)
        };
        nix::fcntl::openat2(self.root.as_fd(), rel, how)
    }

    /// Applies one change.
    pub fn apply(&mut self, change: Change) -> Result<(), RootfsError> {
        match change {
            Change::Remove { path } => {
                let (parent, name) = check_path(&path)?;
                match self.open_parent_raw(parent) {
                    Ok(dir) => self.remove(&dir, name, &path),
                    // Its parent went first, or is no directory now.
                    Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => Ok(()),
                    Err(e) => Err(self.io(parent, e)),
                }
            }
            Change::Dir { path, meta } => {
                let (parent, name) = check_path(&path)?;
                let dir = self.open_parent(parent)?;
                match self.kind_at(&dir, name, &path)? {
                    Some(Kind::Dir) => {}
                    other => {
                        if other.is_some() {
                            self.remove(&dir, name, &path)?;
                        }
                        nix::sys::stat::mkdirat(
                            dir.as_fd(),
                            OsStr::from_bytes(name),
                            Mode::S_IRWXU,
                        )
                        .map_err(|e| self.io(&path, e))?;
                    }
                }
                self.set_meta(&dir, name, &path, Kind::Dir, meta)
            }
            Change::Symlink { path, target, meta } => {
                let (parent, name) = check_path(&path)?;
                if target.is_empty() || target.len() > MAX_PATH || target.contains(&0) {
                    return Err(RootfsError::Refused {
                        path: String::from_utf8_lossy(&path).into_owned(),
                        why: "the symlink target is empty, too long or has a NUL byte",
                    });
                }
                let dir = self.open_parent(parent)?;
                if self.kind_at(&dir, name, &path)?.is_some() {
                    self.remove(&dir, name, &path)?;
                }
                nix::unistd::symlinkat(
                    OsStr::from_bytes(&target),
                    dir.as_fd(),
                    OsStr::from_bytes(name),
                )
                .map_err(|e| self.io(&path, e))?;
                self.set_meta(&dir, name, &path, Kind::Symlink, meta)
            }
            Change::File {
                path,
                meta,
                offset,
                data,
                last,
            } => self.write_chunk(path, meta, offset, &data, last),
            Change::Meta { path, kind, meta } => {
                let (parent, name) = check_path(&path)?;
                let dir = self.open_parent(parent)?;
                if self.kind_at(&dir, name, &path)? != Some(kind) {
                    return Err(self.io(&path, format!("is not a {kind:?} here")));
                }
                self.set_meta(&dir, name, &path, kind, meta)
            }
        }
    }

    fn write_chunk(
        &mut self,
        path: Vec<u8>,
        meta: Meta,
        offset: u64,
        data: &[u8],
        last: bool,
    ) -> Result<(), RootfsError> {
        use std::os::unix::fs::FileExt;
        let (parent, name) = check_path(&path)?;
        if data.len() > MAX_CHUNK {
            return Err(RootfsError::Refused {
                path: String::from_utf8_lossy(&path).into_owned(),
                why: "a file chunk is larger than 1 MiB",
            });
        }
        let file = match self.writing.take() {
            Some((p, next, f)) if offset != 0 && p == path && next == offset => f,
            _ if offset != 0 => {
                return Err(RootfsError::Refused {
                    path: String::from_utf8_lossy(&path).into_owned(),
                    why: "a file chunk does not follow the previous one",
                })
            }
            _ => {
                let dir = self.open_parent(parent)?;
                // A fresh inode: a hard link elsewhere keeps the old data.
                self.remove(&dir, name, &path)?;
                let fd = nix::fcntl::openat(
                    dir.as_fd(),
                    OsStr::from_bytes(name),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::S_IRUSR | Mode::S_IWUSR,
                )
                .map_err(|e| self.io(&path, e))?;
                std::fs::File::from(fd)
            }
        };
        file.write_all_at(data, offset)
            .map_err(|e| self.io(&path, e))?;
        if !last {
            self.writing = Some((path, offset + data.len() as u64, file));
            return Ok(());
        }
        nix::unistd::fchown(
            file.as_fd(),
            Some(nix::unistd::Uid::from_raw(meta.uid)),
            Some(nix::unistd::Gid::from_raw(meta.gid)),
        )
        .map_err(|e| self.io(&path, e))?;
        nix::sys::stat::fchmod(file.as_fd(), Mode::from_bits_truncate(meta.mode))
            .map_err(|e| self.io(&path, e))?;
        let mtime = nix::sys::time::TimeSpec::new(meta.mtime.0, i64::from(meta.mtime.1));
        nix::sys::stat::futimens(file.as_fd(), &nix::sys::time::TimeSpec::UTIME_OMIT, &mtime)
            .map_err(|e| self.io(&path, e))
    }

    /// The type of `name` in `dir`, None when absent.
    fn kind_at(
        &self,
        dir: &OwnedFd,
        name: &[u8],
        path: &[u8],
    ) -> Result<Option<Kind>, RootfsError> {
        match nix::sys::stat::fstatat(
            dir.as_fd(),
            OsStr::from_bytes(name),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => Ok(Some(match st.st_mode & libc::S_IFMT {
                libc::S_IFDIR => Kind::Dir,
                libc::S_IFLNK => Kind::Symlink,
                _ => Kind::File,
            })),
            Err(nix::errno::Errno::ENOENT) => Ok(None),
            Err(e) => Err(self.io(path, e)),
        }
    }

    /// Removes `name` from `dir`, a directory with its contents.
    fn remove(&self, dir: &OwnedFd, name: &[u8], path: &[u8]) -> Result<(), RootfsError> {
        use std::os::fd::AsRawFd;
        match self.kind_at(dir, name, path)? {
            None => Ok(()),
            Some(Kind::Dir) => {
                // Through the parent's fd: std's remove_dir_all follows no
                // symlink below it.
                let p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()))
                    .join(OsStr::from_bytes(name));
                std::fs::remove_dir_all(p).map_err(|e| self.io(path, e))
            }
            Some(_) => nix::unistd::unlinkat(
                dir.as_fd(),
                OsStr::from_bytes(name),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            )
            .map_err(|e| self.io(path, e)),
        }
    }

    fn set_meta(
        &self,
        dir: &OwnedFd,
        name: &[u8],
        path: &[u8],
        kind: Kind,
        meta: Meta,
    ) -> Result<(), RootfsError> {
        let n = OsStr::from_bytes(name);
        nix::unistd::fchownat(
            dir.as_fd(),
            n,
            Some(nix::unistd::Uid::from_raw(meta.uid)),
            Some(nix::unistd::Gid::from_raw(meta.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.io(path, e))?;
        let mtime = nix::sys::time::TimeSpec::new(meta.mtime.0, i64::from(meta.mtime.1));
        if kind != Kind::Symlink {
            let flags = if kind == Kind::Dir {
                OFlag::O_RDONLY | OFlag::O_DIRECTORY
            } else {
                OFlag::O_RDONLY
            };
            let fd = nix::fcntl::openat(
                dir.as_fd(),
                n,
                flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| self.io(path, e))?;
            nix::sys::stat::fchmod(fd.as_fd(), Mode::from_bits_truncate(meta.mode))
                .map_err(|e| self.io(path, e))?;
            if kind == Kind::Dir {
                // Its entries are still to come; its mtime is not compared.
                return Ok(());
            }
        }
        nix::sys::stat::utimensat(
            dir.as_fd(),
            n,
            &nix::sys::time::TimeSpec::UTIME_OMIT,
            &mtime,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| self.io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn sync(src: &Path, dst: &Path, have: &[Entry], trust_ctime: bool) -> Vec<Entry> {
        let now = walk(src).unwrap();
        let mut target = Target::open(dst).unwrap();
        let plan = plan(&now, have, trust_ctime);
        send_plan(src, plan, &mut |batch| {
            batch
                .into_iter()
                .try_for_each(|c| target.apply(c))
                .map_err(|e| e.to_string())
        })
        .unwrap();
        now
    }

    /// What must match after a sync: everything but ctimes and directory
    /// mtimes.
    fn comparable(root: &Path) -> Vec<Entry> {
        walk(root)
            .unwrap()
            .into_iter()
            .map(|mut e| {
                e.ctime = (0, 0);
                if e.kind == Kind::Dir {
                    e.meta.mtime = (0, 0);
                }
                e
            })
            .collect()
    }

    #[test]
    fn a_rootfs_is_copied_then_only_its_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        fs::create_dir_all(src.join("etc/sub")).unwrap();
        fs::write(src.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
        fs::write(src.join("big"), vec![7u8; MAX_CHUNK * 2 + 5]).unwrap();
        fs::write(src.join("gone"), "x").unwrap();
        symlink("/bin/busybox", src.join("sh")).unwrap();
        fs::create_dir_all(dst.join("old/deep")).unwrap();
        fs::write(dst.join("old/deep/f"), "stale").unwrap();
        fs::write(dst.join("etc"), "a file where a directory must be").unwrap();

        let manifest = Target::open(&dst).unwrap().manifest().unwrap();
        let first = sync(&src, &dst, &manifest, false);
        assert_eq!(comparable(&src), comparable(&dst));

        // The container goes on: a new file, a changed one, a removal, a
        // file turned into a directory, a new symlink target.
        fs::write(src.join("etc/new"), "new").unwrap();
        fs::write(src.join("etc/hosts"), "10.0.0.1 other\n").unwrap();
        fs::remove_file(src.join("big")).unwrap();
        fs::remove_file(src.join("gone")).unwrap();
        fs::create_dir(src.join("gone")).unwrap();
        fs::remove_file(src.join("sh")).unwrap();
        symlink("busybox", src.join("sh")).unwrap();
        let now = walk(&src).unwrap();
        let changes = plan(&now, &first, true);
        assert_eq!(changes.len(), 5, "{changes:?}");
        sync(&src, &dst, &first, true);
        assert_eq!(comparable(&src), comparable(&dst));
        assert_eq!(
            fs::read(dst.join("etc/hosts")).unwrap(),
            b"10.0.0.1 other\n"
        );
        // Nothing changed: nothing to send.
        let again = walk(&src).unwrap();
        assert!(plan(&again, &now, true).is_empty());
    }

    #[test]
    fn hostile_paths_are_refused() {
        for bad in [
            &b""[..],
            b"/etc/passwd",
            b"../escape",
            b"a/../../escape",
            b"a//b",
            b"a/./b",
            b"a\0b",
            b"a/",
        ] {
            assert!(check_path(bad).is_err(), "{:?} was accepted", bad);
        }
        assert!(check_path(&vec![b'a'; MAX_PATH + 1]).is_err());
        assert!(check_path(&vec![b'a'; MAX_NAME + 1]).is_err());
        assert_eq!(check_path(b"a/b/c").unwrap(), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(check_path(b"c").unwrap(), (&b""[..], &b"c"[..]));
    }

    #[test]
    fn changes_never_leave_the_rootfs_through_a_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, outside) = (tmp.path().join("root"), tmp.path().join("outside"));
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(outside.join("d")).unwrap();
        fs::write(outside.join("keep"), "mine").unwrap();
        let mut target = Target::open(&root).unwrap();
        let meta = Meta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: (0, 0),
        };
        // The peer first plants a symlink pointing out, then writes,
        // removes and creates through it.
        target
            .apply(Change::Symlink {
                path: b"esc".to_vec(),
                target: outside.as_os_str().as_bytes().to_vec(),
                meta,
            })
            .unwrap();
        let file = |path: &[u8]| Change::File {
            path: path.to_vec(),
            meta,
            offset: 0,
            data: b"pwned".to_vec(),
            last: true,
        };
        assert!(target.apply(file(b"esc/keep")).is_err());
        assert!(target.apply(file(b"esc/new")).is_err());
        assert!(target
            .apply(Change::Remove {
                path: b"esc/keep".to_vec()
            })
            .is_err());
        assert!(target
            .apply(Change::Dir {
                path: b"esc/d/sub".to_vec(),
                meta
            })
            .is_err());
        assert!(target
            .apply(Change::Meta {
                path: b"esc/keep".to_vec(),
                kind: Kind::File,
                meta: Meta {
                    mode: 0o777,
                    ..meta
                }
            })
            .is_err());
        // Writing the symlink itself replaces the link, not its target.
        target.apply(file(b"esc")).unwrap();
        assert_eq!(fs::read(root.join("esc")).unwrap(), b"pwned");
        // Removing a directory symlink removes the link only.
        target
            .apply(Change::Symlink {
                path: b"l".to_vec(),
                target: outside.as_os_str().as_bytes().to_vec(),
                meta,
            })
            .unwrap();
        target
            .apply(Change::Remove {
                path: b"l".to_vec(),
            })
            .unwrap();
        assert_eq!(fs::read(outside.join("keep")).unwrap(), b"mine");
        assert!(outside.join("d").is_dir());
        assert!(!outside.join("new").exists());
        assert_eq!(
            fs::metadata(outside.join("keep")).unwrap().mode() & 0o777,
            0o644
        );
        // A chunk that does not follow the previous one is refused.
        let chunk = |offset| Change::File {
            path: b"f".to_vec(),
            meta,
            offset,
            data: vec![1; 10],
            last: false,
        };
        target.apply(chunk(0)).unwrap();
        assert!(target.apply(chunk(1 << 40)).is_err());
        let huge = Change::File {
            path: b"f".to_vec(),
            meta,
            offset: 0,
            data: vec![0; MAX_CHUNK + 1],
            last: true,
        };
        assert!(target.apply(huge).is_err());
    }
}
