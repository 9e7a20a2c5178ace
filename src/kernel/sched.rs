//! Scheduling: the policy flag /proc does not show (SCHED_RESET_ON_FORK),
//! and a probe of whether this host lets a thread take a policy.

use super::abi::SchedAttr;
use nix::errno::Errno;
use nix::unistd::Pid;

/// Whether thread `tid` has SCHED_RESET_ON_FORK (which
/// /proc/PID/task/TID/stat's policy field leaves out). Any thread may ask.
pub fn sched_reset_on_fork(tid: Pid) -> Result<bool, Errno> {
    // SAFETY: sched_getscheduler takes a TID and touches no memory.
    let r = unsafe { libc::sched_getscheduler(tid.as_raw()) };
    Errno::result(r).map(|policy| policy & libc::SCHED_RESET_ON_FORK != 0)
}

/// Whether a thread of migrate-agent may take `attr` (a real-time policy
/// needs CAP_SYS_NICE or a high enough RLIMIT_RTPRIO, and real-time
/// runtime in the cgroup when the kernel schedules groups): tried in a
/// short-lived thread of our own, which ends with it.
pub fn try_sched_in_thread(attr: SchedAttr) -> Result<(), Errno> {
    std::thread::spawn(move || {
        // SAFETY: the kernel reads one sched_attr of attr.size bytes from
        // a live local; pid 0 is the calling thread, which ends right
        // after.
        let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
        Errno::result(r).map(drop)
    })
    .join()
    .unwrap_or(Err(Errno::EINTR))
}
