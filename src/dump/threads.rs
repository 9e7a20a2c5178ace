//! Threads: each thread's registers and extended state (taken when it was
//! frozen), its name, rseq registration, robust futex list, clear-child-tid
//! address, alternate signal stack, secure bits and parent-death signal
//! (asked from inside the thread), with its pending signals, privileges
//! and scheduling (`sched.rs`).

use super::creds;
use super::error::CheckpointError;
use super::freeze::Frozen;
use super::inject::{answer, Injector};
use super::sched::dump_sched;
use super::seccomp::ThreadSeccomp;
use super::signals;
use crate::image::{AltStack, ProcessImage, RseqRegistration, ThreadImage};
use crate::kernel;
use crate::kernel::abi::StackT;
use crate::proc;
use crate::ptrace::PtraceError;

/// Per-thread kernel state that only the thread itself can report.
pub(super) struct ThreadQueries {
    clear_child_tid: u64,
    altstack: AltStack,
    robust: (u64, u64),
    securebits: u32,
    pdeath_signal: i32,
}

impl Injector {
    /// Asks every frozen thread for the state only it can report, and puts
    /// its registers back afterwards.
    pub(super) fn query_threads(
        &mut self,
        frozen: &mut Frozen,
    ) -> Result<Vec<ThreadQueries>, CheckpointError> {
        let s = self.scratch(&mut frozen.threads[0].tracee)?;
        let mut out = Vec::with_capacity(frozen.threads.len());
        for ft in frozen.threads.iter_mut() {
            let t = &mut ft.tracee;
            self.call(t, "prctl(PR_GET_TID_ADDRESS)", |r| {
                r.prctl(libc::PR_GET_TID_ADDRESS, &[s.addr])
            })?;
            let clear_child_tid: u64 = answer(&s)?;
            self.call(t, "sigaltstack(NULL, &old)", |r| r.sigaltstack(0, s.addr))?;
            let ss: StackT = answer(&s)?;
            let altstack = AltStack {
                sp: ss.sp,
                // SS_ONSTACK describes the moment, not a setting.
                flags: ss.flags & !libc::SS_ONSTACK,
                size: ss.size,
            };
            let robust = kernel::get_robust_list(t.tid).map_err(|errno| PtraceError::Request {
                op: "get_robust_list",
                tid: t.tid.as_raw(),
                errno,
            })?;
            let securebits = self.call(t, "prctl(PR_GET_SECUREBITS)", |r| {
                r.prctl(libc::PR_GET_SECUREBITS, &[])
            })? as u32;
            // Per thread, and written to an int at the address given.
            self.call(t, "prctl(PR_GET_PDEATHSIG)", |r| {
                r.prctl(libc::PR_GET_PDEATHSIG, &[s.addr])
            })?;
            let pdeath_signal: i32 = answer(&s)?;
            // At rest again (parked, or at its own registers) until the
            // next query or the thaw.
            t.rest(&ft.regs)?;
            out.push(ThreadQueries {
                clear_child_tid,
                altstack,
                robust,
                securebits,
                pdeath_signal,
            });
        }
        Ok(out)
    }
}

/// The image of every frozen thread of `frozen`, leader first, with the
/// answers `per_thread` of [`Injector::query_threads`] and their seccomp
/// state beyond the shared filters.
pub(super) fn dump_threads(
    frozen: &Frozen,
    per_thread: Vec<ThreadQueries>,
    seccomp: Vec<ThreadSeccomp>,
) -> Result<Vec<ThreadImage>, CheckpointError> {
    let pid = frozen.pid;
    let mut threads = Vec::with_capacity(frozen.threads.len());
    for ((ft, q), sc) in frozen.threads.iter().zip(per_thread).zip(seccomp) {
        let tid = ft.tracee.tid;
        let pending = signals::thread_pending(&ft.tracee)?;
        let status = proc::read_thread_status(pid, tid.as_raw())?;
        threads.push(ThreadImage {
            tid: tid.as_raw(),
            comm: proc::read_thread_comm(pid, tid.as_raw())?,
            regs: ft.regs,
            xstate: ft.tracee.xstate()?,
            sigmask: ft.sigmask,
            rseq: kernel::ptrace_get_rseq(tid)
                .map_err(|errno| PtraceError::Request {
                    op: "PTRACE_GET_RSEQ_CONFIGURATION",
                    tid: tid.as_raw(),
                    errno,
                })?
                .map(|(ptr, len, sig)| RseqRegistration { ptr, len, sig }),
            robust_list_head: q.robust.0,
            robust_list_len: q.robust.1,
            clear_child_tid: q.clear_child_tid,
            altstack: q.altstack,
            pending,
            privileges: creds::thread_privileges(&status, q.securebits),
            pdeath_signal: q.pdeath_signal,
            sched: dump_sched(pid, tid.as_raw())?,
            seccomp_filters: sc.filters,
            seccomp_strict: sc.strict,
        });
    }
    Ok(threads)
}

/// The size of the extended register state of `p`'s threads (that of its
/// first thread: every thread of a host has the same).
pub(super) fn process_xstate_size(p: &ProcessImage) -> u32 {
    p.threads.first().map_or(0, |t| t.xstate.len() as u32)
}
