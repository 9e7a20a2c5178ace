//! Signals: every disposition (rt_sigaction, asked from inside the
//! process) and the signals pending for each thread and for the process.

use super::error::CheckpointError;
use super::inject::Injector;
use crate::image::{PendingSignal, SigAction};
use crate::kernel;
use crate::ptrace::{PtraceError, Tracee};

/// The size of the kernel's struct sigaction as rt_sigaction writes it.
const SIGACTION_SIZE: usize = 32;

impl Injector {
    /// Reads every signal disposition but those of SIGKILL and SIGSTOP.
    pub(super) fn query_sigactions(
        &mut self,
        leader: &mut Tracee,
    ) -> Result<Vec<SigAction>, CheckpointError> {
        let scratch = self.scratch(leader)?;
        let mut actions = Vec::new();
        for signo in 1..=64 {
            if signo == libc::SIGKILL || signo == libc::SIGSTOP {
                continue;
            }
            self.call(
                leader,
                libc::SYS_rt_sigaction,
                [signo as u64, 0, scratch, 8, 0, 0],
                &format!("rt_sigaction({signo}, NULL, &old)"),
            )?;
            actions.push(decode_sigaction(
                signo,
                &self.read(scratch, SIGACTION_SIZE)?,
            ));
        }
        Ok(actions)
    }
}

/// The disposition of signal `signo` from the kernel's struct sigaction
/// `raw` (handler, flags, restorer, mask: four words).
fn decode_sigaction(signo: i32, raw: &[u8]) -> SigAction {
    let word = |i: usize| u64::from_ne_bytes(raw[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    SigAction {
        signo,
        handler: word(0),
        flags: word(1),
        restorer: word(2),
        mask: word(3),
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
        signo: i32::from_ne_bytes(raw[0..4].try_into().expect("4 bytes")),
        siginfo: raw.to_vec(),
    }
}
