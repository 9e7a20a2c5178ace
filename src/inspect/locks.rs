//! File locks: which ones ferry can take again on restore, and the
//! refusals for the rest (leases and delegations, mandatory locks, locks
//! on a file that is not reopened by its path).

use super::error::InspectError;
use super::fd_class::{ClassifiedFd, FdClass};
use crate::proc::locks::{read_fd_locks, FdLockKind};

/// Refuses the first lock listed for fd `c` of process `pid` that ferry
/// cannot carry, naming the process, fd, path and lock kind.
pub fn check_fd_locks(pid: i32, c: &ClassifiedFd) -> Result<(), InspectError> {
    let refuse = |kind: String| InspectError::UnsupportedFd {
        pid,
        fd: c.fd,
        kind,
        target: c.target.clone(),
    };
    for lock in read_fd_locks(pid, c.fd)? {
        let name = match &lock.kind {
            FdLockKind::Posix => "POSIX lock",
            FdLockKind::Ofd => "OFD lock",
            FdLockKind::Flock => "flock() lock",
            FdLockKind::Other(other) => {
                return Err(refuse(format!(
                    "file holding a {other} (leases and delegations are not carried)"
                )))
            }
        };
        if lock.mandatory {
            return Err(refuse(format!(
                "file holding a mandatory {name} (mandatory locks are not carried)"
            )));
        }
        if !matches!(c.class, FdClass::Path(_)) {
            return Err(refuse(format!(
                "file holding a {name}, which is not reopened by its path (locks are carried only on files reopened by path)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::PathFileType;
    use nix::fcntl::{fcntl, FcntlArg};
    use std::os::fd::AsRawFd;

    /// A file of our own in the temp dir, opened read-only, classified as
    /// a file reopened by path.
    fn own_file(name: &str) -> (std::fs::File, ClassifiedFd) {
        let path = std::env::temp_dir().join(format!("ferry-{name}-{}", std::process::id()));
        std::fs::write(&path, b"x").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        std::fs::remove_file(&path).ok();
        let c = ClassifiedFd {
            fd: file.as_raw_fd(),
            target: path.display().to_string(),
            class: FdClass::Path(PathFileType::Regular),
        };
        (file, c)
    }

    #[test]
    fn a_lock_is_carried_on_a_path_file_only() {
        let pid = std::process::id() as i32;
        let (locked, c) = own_file("ofd");
        let lock = libc::flock {
            l_type: libc::F_RDLCK as i16,
            l_whence: libc::SEEK_SET as i16,
            l_start: 0,
            l_len: 1,
            l_pid: 0,
        };
        fcntl(&locked, FcntlArg::F_OFD_SETLK(&lock)).unwrap();
        check_fd_locks(pid, &c).unwrap();
        // The same lock on a file that is not reopened by path.
        let fifo = ClassifiedFd {
            fd: c.fd,
            target: c.target.clone(),
            class: FdClass::Fifo { inode: 1 },
        };
        match check_fd_locks(pid, &fifo) {
            Err(InspectError::UnsupportedFd {
                pid: p, fd, kind, ..
            }) => {
                assert_eq!((p, fd), (pid, c.fd));
                assert!(kind.contains("OFD lock"), "{kind}");
                assert!(kind.contains("not reopened by its path"), "{kind}");
            }
            other => panic!("{other:?}"),
        }
    }
}
