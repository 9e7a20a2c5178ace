//! Signals: every disposition (rt_sigaction, asked from inside the
//! process) and the signals pending for each thread and for the process.

use super::error::CheckpointError;
use super::inject::{answer, Injector};
use crate::image::{PendingSignal, SigAction};
use crate::kernel;
use crate::kernel::abi::{KernelSigaction, Siginfo};
use crate::ptrace::{PtraceError, Tracee};

impl Injector {
    /// Reads every signal disposition but those of SIGKILL and SIGSTOP.
    pub(super) fn query_sigactions(
        &mut self,
        leader: &mut Tracee,
    ) -> Result<Vec<SigAction>, CheckpointError> {
        let s = self.scratch(leader)?;
        let mut actions = Vec::new();
        for signo in 1..=64 {
            if signo == libc::SIGKILL || signo == libc::SIGSTOP {
                continue;
            }
            self.call(leader, &format!("rt_sigaction({signo}, NULL, &old)"), |r| {
                r.rt_sigaction(signo, 0, s.addr)
            })?;
            let act: KernelSigaction = answer(&s)?;
            actions.push(SigAction {
                signo,
                handler: act.handler,
                flags: act.flags,
                restorer: act.restorer,
                mask: act.mask,
            });
        }
        Ok(actions)
    }
}

/// The signals pending for thread `tracee` alone: those queued to it, and
/// those ferry caught while it was being stopped.
pub(super) fn thread_pending(tracee: &Tracee) -> Result<Vec<PendingSignal>, CheckpointError> {
    let tid = tracee.tid;
    let mut pending: Vec<PendingSignal> = kernel::ptrace_peek_siginfo(tid, false)
        .map_err(|errno| PtraceError::Request {
            op: "PTRACE_PEEKSIGINFO",
            tid: tid.as_raw(),
            errno,
        })?
        .into_iter()
        .map(pending_signal)
        .collect();
    pending.extend(tracee.caught_signals.iter().map(|c| PendingSignal {
        signo: c.signo,
        siginfo: c.siginfo.to_vec(),
    }));
    Ok(pending)
}

/// The signals pending for the whole process `pid` (shared), read through
/// its frozen `leader`.
pub(super) fn shared_pending(
    leader: &Tracee,
    pid: i32,
) -> Result<Vec<PendingSignal>, CheckpointError> {
    Ok(kernel::ptrace_peek_siginfo(leader.tid, true)
        .map_err(|errno| PtraceError::Request {
            op: "PTRACE_PEEKSIGINFO(shared)",
            tid: pid,
            errno,
        })?
        .into_iter()
        .map(pending_signal)
        .collect())
}

/// A pending signal from the siginfo PTRACE_PEEKSIGINFO read.
fn pending_signal(raw: [u8; kernel::SIGINFO_SIZE]) -> PendingSignal {
    PendingSignal {
        signo: Siginfo::from_saved(&raw).signo,
        siginfo: raw.to_vec(),
    }
}
