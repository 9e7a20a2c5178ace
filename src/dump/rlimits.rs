//! Resource limits: every RLIMIT_* of the process (prlimit64).

use super::error::CheckpointError;
use crate::image::Rlimit;
use crate::kernel;
use nix::unistd::Pid;

/// Resource limits RLIMIT_CPU (0) to RLIMIT_RTTIME (15): every one Linux has.
const RLIMIT_COUNT: u32 = 16;

/// Reads every resource limit of process `pid`.
pub(super) fn dump_rlimits(pid: i32) -> Result<Vec<Rlimit>, CheckpointError> {
    let mut rlimits = Vec::new();
    for resource in 0..RLIMIT_COUNT {
        let (soft, hard) =
            kernel::prlimit_get(Pid::from_raw(pid), resource).map_err(|e| CheckpointError::Io {
                what: format!("read resource limit {resource} of process {pid}"),
                source: e.into(),
            })?;
        rlimits.push(Rlimit {
            resource,
            soft,
            hard,
        });
    }
    Ok(rlimits)
}
