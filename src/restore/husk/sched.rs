//! Scheduling: each thread's policy, SCHED_RESET_ON_FORK, real-time
//! priority and nice value, set by the thread itself (injected
//! setpriority and sched_setattr).

use super::process::{Husk, STRUCT_OFF};
use crate::image::ThreadSched;
use crate::kernel::abi::{IntoBytes, SchedAttr};
use crate::restore::error::RestoreError;

impl<'a> Husk<'a> {
    /// Gives every thread its scheduling back. Done after the resource
    /// limits and before the credentials: a husk that is not privileged
    /// (a container's, in a user namespace of its own) may then take
    /// exactly what its RLIMIT_NICE and RLIMIT_RTPRIO let the process
    /// take, as the process itself could; a privileged one anything.
    pub(super) fn restore_sched(&mut self) -> Result<(), RestoreError> {
        let image = self.image;
        for (idx, t) in image.threads.iter().enumerate() {
            let s = t.sched;
            // First, while the thread is still under the husk's policy
            // (sched_setattr sets the nice value only of SCHED_OTHER and
            // SCHED_BATCH; the kernel keeps it under the others too).
            self.sys(
                idx,
                |r| r.set_own_nice(s.nice),
                || format!("setpriority of thread {} to nice {}", t.tid, s.nice),
            )?;
            let attr = SchedAttr::new(s.policy, s.reset_on_fork, s.rt_priority, s.nice);
            let addr = self.put(STRUCT_OFF, attr.as_bytes())?;
            self.sys(
                idx,
                |r| r.sched_setattr(addr),
                || format!("sched_setattr of thread {} to {}", t.tid, describe(&s)),
            )?;
        }
        Ok(())
    }
}

/// The policy as errors name it, with what a real-time one needs.
fn describe(s: &ThreadSched) -> String {
    let name = match s.policy as i32 {
        libc::SCHED_OTHER => "SCHED_OTHER",
        libc::SCHED_FIFO => "SCHED_FIFO",
        libc::SCHED_RR => "SCHED_RR",
        libc::SCHED_BATCH => "SCHED_BATCH",
        libc::SCHED_IDLE => "SCHED_IDLE",
        _ => "an unknown policy",
    };
    let reset = if s.reset_on_fork {
        " | SCHED_RESET_ON_FORK"
    } else {
        ""
    };
    if matches!(s.policy as i32, libc::SCHED_FIFO | libc::SCHED_RR) {
        format!(
            "{name}{reset} priority {} (needs CAP_SYS_NICE or RLIMIT_RTPRIO, and real-time runtime in the cgroup)",
            s.rt_priority
        )
    } else {
        format!("{name}{reset} nice {}", s.nice)
    }
}
