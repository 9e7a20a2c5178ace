//! The destination's side of the post-copy guard process
//! ([`crate::kernel::uffd_guard`]): what the fault server hands it (every
//! userfaultfd, a pidfd of every restored process) and its release once
//! post-copy ends while the agent lives. Should the agent die first, the
//! guard keeps every fault blocked and kills the restored processes: a
//! restored workload never runs on a page that was not delivered.

use crate::kernel::uffd_guard::{spawn_uffd_guard, GUARD_KEEP, GUARD_KILL, GUARD_RELEASE};
use nix::errno::Errno;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;

/// How long a release waits for the guard to exit.
const RELEASE_WAIT_MS: u16 = 1000;

/// The agent's end of one post-copy guard. Dropping it releases the
/// guard: only this agent's death (its end closed with no release) makes
/// the guard kill.
pub struct FaultGuard {
    /// None once released.
    sock: Mutex<Option<OwnedFd>>,
}

impl FaultGuard {
    /// Starts a guard process.
    pub fn start() -> Result<Self, Errno> {
        Ok(FaultGuard {
            sock: Mutex::new(Some(spawn_uffd_guard()?)),
        })
    }

    /// Hands the guard a duplicate of `uffd`, so that its context (and
    /// the faults waiting on it) outlives this agent.
    pub fn keep(&self, uffd: BorrowedFd<'_>) -> Result<(), Errno> {
        self.send([GUARD_KEEP, 0, 0, 0, 0], Some(uffd))
    }

    /// Has the guard kill process `pid` (and the children it forked) if
    /// this agent dies before [`FaultGuard::release`].
    pub fn kill_on_loss(&self, pid: i32) -> Result<(), Errno> {
        let pidfd = crate::kernel::pidfd_open(nix::unistd::Pid::from_raw(pid))?;
        let p = pid.to_ne_bytes();
        self.send([GUARD_KILL, p[0], p[1], p[2], p[3]], Some(pidfd.as_fd()))
    }

    /// Post-copy ended while this agent lives (every page local, or the
    /// workload killed here): the guard lets go of everything and exits;
    /// returns once it did (or after a second). Later calls do nothing.
    pub fn release(&self) {
        let Some(sock) = self.sock.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let msg = [GUARD_RELEASE];
        if let Err(e) = sendmsg::<UnixAddr>(
            sock.as_raw_fd(),
            &[IoSlice::new(&msg)],
            &[],
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            tracing::warn!(%e, "the post-copy guard could not be released");
            return;
        }
        // Its exit closes its end: the socket then reads as hung up.
        let mut fds = [nix::poll::PollFd::new(
            sock.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(RELEASE_WAIT_MS));
    }

    fn send(&self, data: [u8; 5], fd: Option<BorrowedFd<'_>>) -> Result<(), Errno> {
        let guard = self.sock.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sock) = guard.as_ref() else {
            return Ok(());
        };
        let raw = fd.map(|f| [f.as_raw_fd()]);
        let cmsgs: Vec<ControlMessage<'_>> = raw
            .as_ref()
            .map(|r| ControlMessage::ScmRights(r))
            .into_iter()
            .collect();
        sendmsg::<UnixAddr>(
            sock.as_raw_fd(),
            &[IoSlice::new(&data)],
            &cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map(drop)
    }
}

impl Drop for FaultGuard {
    fn drop(&mut self) {
        self.release();
    }
}
