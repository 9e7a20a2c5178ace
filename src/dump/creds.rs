//! Credentials and capabilities: the process's user and group IDs, and
//! each thread's capability sets, secure bits and no_new_privs.

use super::error::CheckpointError;
use super::inject::Injector;
use crate::image::{Credentials, ThreadPrivileges};
use crate::proc;
use crate::ptrace::Tracee;

impl Injector {
    /// The process's dumpable flag (PR_GET_DUMPABLE), asked of its leader.
    pub(super) fn query_dumpable(&mut self, leader: &mut Tracee) -> Result<u32, CheckpointError> {
        Ok(self.call(leader, "prctl(PR_GET_DUMPABLE)", |r| {
            r.prctl(libc::PR_GET_DUMPABLE, &[])
        })? as u32)
    }
}

/// The user and group IDs of a process, from its /proc status, and its
/// dumpable flag.
pub(super) fn credentials(status: proc::Status, dumpable: u32) -> Credentials {
    Credentials {
        uids: status.uids,
        gids: status.gids,
        groups: status.groups,
        dumpable,
    }
}

/// The privileges of a thread, from its /proc status and the secure bits
/// it reported (PR_GET_SECUREBITS).
pub(super) fn thread_privileges(status: &proc::Status, securebits: u32) -> ThreadPrivileges {
    ThreadPrivileges {
        effective: status.caps.effective,
        permitted: status.caps.permitted,
        inheritable: status.caps.inheritable,
        bounding: status.caps.bounding,
        ambient: status.caps.ambient,
        securebits,
        no_new_privs: status.no_new_privs,
    }
}
