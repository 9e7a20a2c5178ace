//! Scheduling: SCHED_DEADLINE is refused (its runtime is admitted per
//! root domain, and ferry does not carry it), and so is a real-time
//! policy this host would not give back at restore (no CAP_SYS_NICE nor
//! RLIMIT_RTPRIO for it, or no real-time runtime in the cgroup): tried on
//! a short-lived thread of migrate-agent before anything is frozen.

use super::error::InspectError;
use crate::kernel::abi::SchedAttr;
use crate::kernel::sched::try_sched_in_thread;
use crate::proc;

/// SCHED_DEADLINE, which /proc/PID/stat reports as policy 6.
const SCHED_DEADLINE: u32 = 6;

/// Refuses a thread of `pid` under SCHED_DEADLINE, or under a real-time
/// policy and priority a thread of migrate-agent cannot take here.
pub fn check_sched(pid: i32) -> Result<(), InspectError> {
    let mut allowed: Vec<(u32, u32)> = Vec::new();
    for tid in proc::task_ids(pid)? {
        let s = proc::read_thread_sched(pid, tid)?;
        let fail = |why: String| Err(InspectError::Scheduling { pid, tid, why });
        if s.policy == SCHED_DEADLINE {
            return fail("runs under SCHED_DEADLINE, which ferry cannot carry".into());
        }
        let realtime = matches!(s.policy as i32, libc::SCHED_FIFO | libc::SCHED_RR);
        if !realtime || allowed.contains(&(s.policy, s.rt_priority)) {
            continue;
        }
        let name = if s.policy as i32 == libc::SCHED_FIFO {
            "SCHED_FIFO"
        } else {
            "SCHED_RR"
        };
        match try_sched_in_thread(SchedAttr::new(s.policy, false, s.rt_priority, 0)) {
            Ok(()) => allowed.push((s.policy, s.rt_priority)),
            Err(errno) => {
                return fail(format!(
                    "runs under {name} priority {}, which this host would not give back at restore ({errno}: it needs CAP_SYS_NICE or RLIMIT_RTPRIO, and real-time runtime in the cgroup)",
                    s.rt_priority
                ))
            }
        }
    }
    Ok(())
}
