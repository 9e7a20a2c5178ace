//! The process tree: how processes are related (parent, process group,
//! session, whether it adopts orphaned descendants) and the zombies among
//! them, which carry nothing but those IDs and their wait status.

use super::error::CheckpointError;
use super::inject::{answer, Injector};
use crate::image::ZombieImage;
use crate::proc;
use crate::ptrace::Tracee;

impl Injector {
    /// Whether the process is a child subreaper
    /// (PR_GET_CHILD_SUBREAPER, asked by its thread `leader`).
    pub(super) fn query_child_subreaper(
        &mut self,
        leader: &mut Tracee,
    ) -> Result<bool, CheckpointError> {
        let s = self.scratch(leader)?;
        self.call(leader, "prctl(PR_GET_CHILD_SUBREAPER)", |r| {
            r.prctl(libc::PR_GET_CHILD_SUBREAPER, &[s.addr])
        })?;
        let flag: i32 = answer(&s)?;
        Ok(flag != 0)
    }
}

/// The image of zombie `pid`, or nothing if it was reaped meanwhile (its
/// parent ignores SIGCHLD): such a child left nothing.
pub(super) fn zombie(pid: i32) -> Option<ZombieImage> {
    let ids = proc::read_stat_ids(pid).ok()?;
    Some(ZombieImage {
        pid,
        ppid: ids.ppid,
        pgid: ids.pgid,
        sid: ids.sid,
        wait_status: ids.exit_code,
    })
}
