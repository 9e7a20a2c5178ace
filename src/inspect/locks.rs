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
