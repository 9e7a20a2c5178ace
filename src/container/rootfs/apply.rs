//! The destination's side: every received path checked, every change
//! applied below the rootfs without following a symlink.

use super::error::RootfsError;
use super::manifest::{walk, Change, Entry, Kind, Meta, MAX_CHUNK, MAX_NAME, MAX_PATH};
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

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
