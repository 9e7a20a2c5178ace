//! pidfds: which ones ferry carries. A pidfd of a process of the tree
//! comes back pointing at the restored process (same PID); one of a
//! process that has exited and been reaped comes back as a pidfd of a dead
//! process. A pidfd of a thread (PIDFD_THREAD) comes back on the restored
//! thread when the thread belongs to the process holding the pidfd; one of
//! a thread of another process, of a zombie or of a process outside the
//! tree is refused.

use super::error::InspectError;
use super::fd_class::{ClassifiedFd, FdClass};
use crate::proc;

/// The class of pidfd `fd` of `pid`: the process (or thread) it refers to,
/// checked against the tree by [`check_pidfd_targets`].
pub fn classify(pid: i32, fd: i32) -> Result<FdClass, InspectError> {
    let info = proc::pidfd::read_pidfd(pid, fd)?;
    Ok(FdClass::Pidfd { pid: info.pid })
}

/// Refuses a pidfd whose process is alive and neither a process of the
/// tree (`tree`: every process with its classified fds) nor a thread of
/// the process holding it: a thread of another process (restored after
/// this one's fds), a zombie of the tree (not recreated before the fds
/// are) or a process outside it.
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
                Ok(st) if st.tgid == *pid => continue,
                Ok(st) if st.tgid != target && tree.iter().any(|(p, _)| *p == st.tgid) => {
                    format!(
                        "pidfd of thread {target} of process {}, another process of the tree",
                        st.tgid
                    )
                }
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
