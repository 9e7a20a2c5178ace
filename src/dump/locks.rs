//! File locks of a stopped process, read from the "lock:" lines of its
//! fdinfo files: its POSIX locks (shown on the description it took each
//! through), and the OFD and flock() locks of its descriptions, recorded
//! once per description for the whole tree.

use super::error::CheckpointError;
use super::files::TreeFiles;
use crate::image::{FdImage, FileLock, FileLockKind};
use crate::proc::locks::{read_fd_locks, FdLockKind};

/// The locks of process `pid`, whose fds are `fds` (described in `tree`
/// already), each to be taken again through one of those fds. Inspection
/// has refused the kinds that cannot be carried.
pub fn describe(
    pid: i32,
    fds: &[FdImage],
    tree: &mut TreeFiles,
) -> Result<Vec<FileLock>, CheckpointError> {
    let mut out = Vec::new();
    // Descriptions of this process read already: a dup'ed fd lists the
    // same locks again.
    let mut read: Vec<u32> = Vec::new();
    for f in fds {
        if read.contains(&f.file) {
            continue;
        }
        read.push(f.file);
        let description_first = !tree.locked.contains(&f.file);
        for lock in read_fd_locks(pid, f.fd)? {
            let kind = match lock.kind {
                FdLockKind::Posix => FileLockKind::Posix,
                // Another process of the tree shares the description and
                // recorded its locks.
                FdLockKind::Ofd | FdLockKind::Flock if !description_first => continue,
                FdLockKind::Ofd => FileLockKind::Ofd,
                FdLockKind::Flock => FileLockKind::Flock,
                FdLockKind::Other(_) => continue,
            };
            out.push(FileLock {
                fd: f.fd,
                kind,
                write: lock.write,
                start: lock.start,
                len: lock.end.map_or(0, |end| end - lock.start + 1),
            });
        }
        tree.locked.push(f.file);
    }
    Ok(out)
}
