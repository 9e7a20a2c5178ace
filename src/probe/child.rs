//! Children forked by probes, killed and reaped whatever happens, and
//! the seized, ptrace-stopped child several probes start from.

use super::finding::{errno_outcome, failed, NotWorking};
use crate::kernel::child::{fork_child, ChildTask};
use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// How long a probe waits for a child to stop or exit before killing it.
const CHILD_TIMEOUT: Duration = Duration::from_secs(1);
/// `status >> 16` of waitpid for a PTRACE_INTERRUPT (or group) stop of a
/// seized tracee; libc only has it for uclibc.
const PTRACE_EVENT_STOP: i32 = 128;

/// A child forked by a probe. Dropping it kills and reaps it unless it was
/// already reaped, so no probe leaves a process behind.
pub(super) struct ProbeChild {
    /// The child's PID.
    pub(super) pid: Pid,
    /// Whether waitpid already collected its exit.
    reaped: bool,
}

impl ProbeChild {
    /// Forks a child that runs `task` (see `kernel::child::fork_child`).
    pub(super) fn fork(task: ChildTask) -> Result<ProbeChild, NotWorking> {
        fork_child(task)
            .map(ProbeChild::adopt)
            .map_err(|err| failed(format!("fork of a probe child failed with {err}")))
    }

    /// Takes charge of a child created otherwise (clone3), to reap it.
    pub(super) fn adopt(pid: Pid) -> ProbeChild {
        ProbeChild { pid, reaped: false }
    }

    /// Waits for the next state change of the child, at most CHILD_TIMEOUT.
    pub(super) fn wait(&mut self) -> Result<WaitStatus, NotWorking> {
        let deadline = Instant::now() + CHILD_TIMEOUT;
        loop {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {
                    if Instant::now() >= deadline {
                        return Err(failed(format!(
                            "child {} neither stopped nor exited within {} ms",
                            self.pid,
                            CHILD_TIMEOUT.as_millis()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(status) => {
                    if matches!(status, WaitStatus::Exited(..) | WaitStatus::Signaled(..)) {
                        self.reaped = true;
                    }
                    return Ok(status);
                }
                Err(Errno::EINTR) => {}
                Err(err) => {
                    return Err(failed(format!(
                        "waitpid for child {} failed with {err}",
                        self.pid
                    )))
                }
            }
        }
    }

    /// Waits for the child to exit and returns its exit code.
    pub(super) fn exit_code(&mut self) -> Result<i32, NotWorking> {
        match self.wait()? {
            WaitStatus::Exited(_, code) => Ok(code),
            other => Err(failed(format!(
                "child {} ended with {other:?} instead of exiting",
                self.pid
            ))),
        }
    }
}

impl Drop for ProbeChild {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        // SIGKILL ends the child whether it runs, sleeps or is ptrace-stopped.
        let _ = kill(self.pid, Signal::SIGKILL);
        loop {
            match waitpid(self.pid, None) {
                Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => return,
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => return,
            }
        }
    }
}

/// Forks an idle child, seizes it and brings it into a ptrace stop
/// (PTRACE_INTERRUPT). Dropping the child kills it.
pub(super) fn stopped_child() -> Result<ProbeChild, NotWorking> {
    let mut child = ProbeChild::fork(ChildTask::IdleUntilKilled)?;
    let pid = child.pid;
    ptrace::seize(pid, ptrace::Options::empty())
        .map_err(|e| errno_outcome(&format!("PTRACE_SEIZE of child {pid}"), e, &[Errno::EIO]))?;
    ptrace::interrupt(pid).map_err(|e| {
        errno_outcome(
            &format!("PTRACE_INTERRUPT of child {pid}"),
            e,
            &[Errno::EIO],
        )
    })?;
    match child.wait()? {
        WaitStatus::PtraceEvent(_, Signal::SIGTRAP, PTRACE_EVENT_STOP) => Ok(child),
        other => Err(failed(format!(
            "child {pid} reported {other:?} after PTRACE_INTERRUPT instead of a ptrace stop"
        ))),
    }
}
