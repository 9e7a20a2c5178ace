//! pidfds: opened again inside the husk on the restored process (which
//! has the PID the image names, in the husk's PID namespace), or, for a
//! process that was dead already, made here from a short-lived child that
//! is killed and reaped, and pulled in.

use super::process::Husk;
use crate::image::PidfdImage;
use crate::kernel;
use crate::kernel::child::{fork_child, ChildTask};
use crate::restore::error::RestoreError;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use std::os::fd::OwnedFd;

impl Husk<'_> {
    /// The pidfd of image `d`, at an fd of the husk; `our_pidfd` is our
    /// own pidfd opened in the husk (to pull a description in).
    pub(super) fn create_pidfd(
        &mut self,
        d: &PidfdImage,
        our_pidfd: Option<i32>,
    ) -> Result<i32, RestoreError> {
        let Some(target) = d.pid else {
            let ours = dead_pidfd(self.image.pid)?;
            return self.pull_in(our_pidfd, &ours, Some(d.flags), "a pidfd of a dead process");
        };
        let fd = self.sys(
            0,
            |r| r.syscall(libc::SYS_pidfd_open, &[target as u64, 0]),
            || format!("pidfd_open of process {target}"),
        )? as i32;
        self.sys(
            0,
            |r| r.set_status_flags(fd, d.flags),
            || format!("F_SETFL {:#o} on the pidfd of process {target}", d.flags),
        )?;
        Ok(fd)
    }
}

/// A pidfd of a process that has exited and been reaped.
fn dead_pidfd(pid: i32) -> Result<OwnedFd, RestoreError> {
    let fail = |call: &str| {
        let call = call.to_string();
        move |errno| RestoreError::Injected { pid, call, errno }
    };
    let child = fork_child(ChildTask::IdleUntilKilled)
        .map_err(fail("fork of a child to make a pidfd of a dead process"))?;
    let pidfd = kernel::pidfd_open(child);
    let killed = kill(child, Signal::SIGKILL);
    let reaped = waitpid(child, None);
    let pidfd = pidfd.map_err(fail("pidfd_open of a short-lived child"))?;
    killed.map_err(fail("kill of a short-lived child"))?;
    reaped.map_err(fail("waitpid of a short-lived child"))?;
    Ok(pidfd)
}
