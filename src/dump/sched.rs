//! Scheduling: each thread's policy, SCHED_RESET_ON_FORK, real-time
//! priority and nice value (per thread in Linux), read from
//! /proc/PID/task/TID/stat and sched_getscheduler, which need no right over
//! the thread. SCHED_DEADLINE, and real-time policies this host cannot
//! give back, are refused before the freeze (`inspect/sched.rs`).

use super::error::CheckpointError;
use crate::image::ThreadSched;
use crate::kernel::sched::sched_reset_on_fork;
use crate::proc;
use nix::unistd::Pid;

/// Reads the scheduling of thread `tid` of process `pid`.
pub(super) fn dump_sched(pid: i32, tid: i32) -> Result<ThreadSched, CheckpointError> {
    let stat = proc::read_thread_sched(pid, tid)?;
    let reset_on_fork =
        sched_reset_on_fork(Pid::from_raw(tid)).map_err(|errno| CheckpointError::Io {
            what: format!("read the scheduling policy of thread {tid} of process {pid}"),
            source: errno.into(),
        })?;
    Ok(ThreadSched {
        policy: stat.policy,
        reset_on_fork,
        rt_priority: stat.rt_priority,
        nice: stat.nice,
    })
}
