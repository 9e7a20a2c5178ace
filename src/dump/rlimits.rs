//! Resource limits: every RLIMIT_* of the process, from /proc/PID/limits
//! (prlimit64 on a process of another user needs CAP_SYS_RESOURCE, which
//! the file does not).

use super::error::CheckpointError;
use crate::image::Rlimit;
use crate::proc;

/// Reads every resource limit of process `pid`.
pub(super) fn dump_rlimits(pid: i32) -> Result<Vec<Rlimit>, CheckpointError> {
    Ok(proc::limits::read_limits(pid)?
        .into_iter()
        .zip(0u32..)
        .map(|((soft, hard), resource)| Rlimit {
            resource,
            soft,
            hard,
        })
        .collect())
}
