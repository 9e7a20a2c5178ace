//! The process tree: how processes are related (parent, process group,
//! session) and the zombies among them, which carry nothing but those
//! IDs and their wait status.

use crate::image::ZombieImage;
use crate::proc;

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
