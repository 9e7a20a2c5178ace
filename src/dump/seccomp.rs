//! Seccomp: the filters of every frozen thread (PTRACE_SECCOMP_GET_FILTER)
//! and strict mode. The filters all threads start with are restored as one
//! stack shared by every thread, each thread's further filters in that
//! thread.

use super::error::CheckpointError;
use super::freeze::Frozen;
use crate::image::{BpfInstruction, SeccompFilter};
use crate::inspect::InspectError;
use crate::kernel;
use crate::proc;
use crate::ptrace::PtraceError;
use nix::unistd::Pid;

/// One thread's seccomp state beyond the filters every thread shares.
pub(super) struct ThreadSeccomp {
    /// Its further filters, oldest first.
    pub filters: Vec<SeccompFilter>,
    /// Whether it is in strict mode.
    pub strict: bool,
}

/// Reads the seccomp state of every frozen thread: returns the filters all
/// threads start with (oldest first) and each thread's state beyond them,
/// in the order of `frozen.threads`.
pub(super) fn dump_seccomp(
    pid: i32,
    frozen: &Frozen,
) -> Result<(Vec<SeccompFilter>, Vec<ThreadSeccomp>), CheckpointError> {
    let mut chains = Vec::with_capacity(frozen.threads.len());
    for ft in &frozen.threads {
        let tid = ft.tracee.tid;
        let st = proc::read_thread_status(pid, tid.as_raw())?;
        let confined = st.seccomp != 0 || st.seccomp_filters != 0;
        if confined && !frozen.seccomp_suspended {
            return Err(InspectError::Seccomp {
                pid,
                tid: tid.as_raw(),
                why: "entered seccomp while it was being checkpointed".into(),
            }
            .into());
        }
        chains.push((read_filters(tid, st.seccomp_filters)?, st.seccomp == 1));
    }
    let shared = chains
        .iter()
        .fold(None::<&[SeccompFilter]>, |common, (f, _)| {
            Some(match common {
                None => f,
                Some(c) => {
                    let n = c.iter().zip(f).take_while(|(a, b)| a == b).count();
                    &c[..n]
                }
            })
        });
    let shared = shared.unwrap_or_default().to_vec();
    let threads = chains
        .into_iter()
        .map(|(filters, strict)| ThreadSeccomp {
            filters: filters[shared.len()..].to_vec(),
            strict,
        })
        .collect();
    Ok((shared, threads))
}

/// The `count` seccomp filters of stopped tracee `tid`, oldest first
/// (what the dump records, and what a restore finds already in a
/// container's husk).
pub(crate) fn read_filters(tid: Pid, count: u32) -> Result<Vec<SeccompFilter>, PtraceError> {
    let req = |op| {
        move |errno| PtraceError::Request {
            op,
            tid: tid.as_raw(),
            errno,
        }
    };
    let mut filters = Vec::with_capacity(count as usize);
    // Index 0 is the most recent filter.
    for index in (0..u64::from(count)).rev() {
        let program = kernel::ptrace_seccomp_filter(tid, index)
            .map_err(req("PTRACE_SECCOMP_GET_FILTER"))?
            .into_iter()
            .map(|i| BpfInstruction {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect();
        let flags =
            kernel::ptrace_seccomp_flags(tid, index).map_err(req("PTRACE_SECCOMP_GET_METADATA"))?;
        filters.push(SeccompFilter { flags, program });
    }
    Ok(filters)
}
