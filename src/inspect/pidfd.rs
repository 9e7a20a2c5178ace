//! pidfds: which ones ferry carries. A pidfd of a process of the tree
//! comes back pointing at the restored process (same PID); one of a
//! process that has exited and been reaped comes back as a pidfd of a dead
//! process. A pidfd of a thread (PIDFD_THREAD), of a zombie or of a
//! process outside the tree is refused.

use super::error::InspectError;
use super::fd_class::{ClassifiedFd, FdClass};
use crate::proc;

/// Decides whether pidfd `fd` of `pid` (link target `target`) can be
/// carried.
pub fn classify(pid: i32, fd: i32, target: &str) -> Result<FdClass, InspectError> {
    let refuse = |kind: String| InspectError::UnsupportedFd {
        pid,
        fd,
        kind,
        target: target.to_string(),
    };
    // PIDFD_THREAD is O_EXCL among the description's flags.
    if proc::read_fdinfo(pid, fd)?.flags & libc::O_EXCL != 0 {
        return Err(refuse("pidfd of a thread (PIDFD_THREAD)".into()));
    }
    let info = proc::pidfd::read_pidfd(pid, fd)?;
    Ok(FdClass::Pidfd { pid: info.pid })
}

/// Refuses a pidfd whose process is alive and not a process of the tree
/// (`tree`: every process with its classified fds): a zombie of the tree
/// (not recreated before the fds are) or a process outside it.
pub fn check_pidfd_targets(tree: &[(i32, Vec<ClassifiedFd>)]) -> Result<(), InspectError> {
    for (pid, fds) in tree {
        for c in fds {
            let FdClass::Pidfd { pid: Some(target) } = c.class else {
                continue;
            };
            if tree.iter().any(|(p, _)| *p == target) {
                continue;
            }
            let status = proc::read_status(target);
            let why = match status {
                Ok(st) if st.state == 'Z' && tree.iter().any(|(p, _)| *p == st.ppid) => {
                    format!("pidfd of process {target}, a zombie of the checkpointed tree")
                }
                _ => format!("pidfd of process {target}, which is outside the checkpointed tree"),
            };
            return Err(InspectError::UnsupportedFd {
                pid: *pid,
                fd: c.fd,
                kind: why,
                target: c.target.clone(),
            });
        }
    }
    Ok(())
}
