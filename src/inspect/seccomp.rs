//! Seccomp: whether a process's threads are confined (strict mode or
//! filters), which decides whether ferry's injected calls must suspend it.

use super::error::InspectError;
use crate::proc;

/// Whether any thread of `pid` is confined by seccomp, in strict mode or
/// by filters: ferry's tracer then suspends it (PTRACE_O_SUSPEND_SECCOMP)
/// so that its injected calls pass. Each thread's state is carried (see
/// `dump::seccomp`).
pub fn check_seccomp(pid: i32) -> Result<bool, InspectError> {
    for tid in proc::task_ids(pid)? {
        let st = proc::read_thread_status(pid, tid)?;
        if st.seccomp != 0 || st.seccomp_filters != 0 {
            return Ok(true);
        }
    }
    Ok(false)
}
