//! What a rootfs manifest lists (the entries and the changes made of
//! them, as they travel), the bounds every rootfs message keeps, and the
//! walk that lists a tree.

use super::error::RootfsError;
use serde::{Deserialize, Serialize};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

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
