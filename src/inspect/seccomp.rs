//! Seccomp: strict mode, and threads with different filter stacks, are
//! refused (ferry restores one filter stack shared by every thread).

use super::error::InspectError;
use crate::proc;

/// Refuses strict seccomp and threads with different numbers of filters
/// (ferry restores one filter stack shared by every thread); returns the
/// number of filters.
pub fn check_seccomp(pid: i32) -> Result<u32, InspectError> {
    let mut leader = None;
    for tid in proc::task_ids(pid)? {
        let st = proc::read_thread_status(pid, tid)?;
        let fail = |why: String| Err(InspectError::Seccomp { pid, tid, why });
        if st.seccomp == 1 {
            return fail("is in strict seccomp mode (SECCOMP_SET_MODE_STRICT)".into());
        }
        match leader {
            None => leader = Some((tid, st.seccomp_filters)),
            Some((ltid, n)) if n != st.seccomp_filters => {
                return fail(format!(
                    "has {} seccomp filters and thread {ltid} has {n}",
                    st.seccomp_filters
                ))
            }
            Some(_) => {}
        }
    }
    Ok(leader.map_or(0, |(_, n)| n))
}
