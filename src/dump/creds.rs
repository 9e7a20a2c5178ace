//! Credentials and capabilities: the process's user and group IDs, and
//! each thread's capability sets, secure bits and no_new_privs.

use crate::image::{Credentials, ThreadPrivileges};
use crate::proc;

/// The user and group IDs of a process, from its /proc status.
pub(super) fn credentials(status: proc::Status) -> Credentials {
    Credentials {
        uids: status.uids,
        gids: status.gids,
        groups: status.groups,
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
