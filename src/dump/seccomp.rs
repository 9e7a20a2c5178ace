//! Seccomp: the filters of every frozen thread (PTRACE_SECCOMP_GET_FILTER),
//! which ferry restores as one stack shared by every thread.

use super::error::CheckpointError;
use super::freeze::Frozen;
use crate::image::{BpfInstruction, SeccompFilter};
use crate::inspect::InspectError;
use crate::kernel;
use crate::ptrace::PtraceError;
use nix::unistd::Pid;

/// Reads the seccomp filters of every frozen thread, oldest first, and
/// refuses threads whose filters differ.
pub(super) fn dump_seccomp(
    pid: i32,
    frozen: &Frozen,
    count: u32,
) -> Result<Vec<SeccompFilter>, CheckpointError> {
    if count > 0 && !frozen.seccomp_suspended {
        return Err(InspectError::Seccomp {
            pid,
            tid: pid,
            why: "installed a seccomp filter while it was being checkpointed".into(),
        }
        .into());
    }
    let mut first: Option<Vec<SeccompFilter>> = None;
    for ft in &frozen.threads {
        let tid = ft.tracee.tid;
        let filters = read_filters(tid, count)?;
        match &first {
            None => first = Some(filters),
            Some(f) if *f != filters => {
                return Err(InspectError::Seccomp {
                    pid,
                    tid: tid.as_raw(),
                    why: format!("has other seccomp filters than thread {pid}"),
                }
                .into())
            }
            Some(_) => {}
        }
    }
    Ok(first.unwrap_or_default())
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
