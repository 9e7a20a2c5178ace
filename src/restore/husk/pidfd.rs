//! pidfds: opened again inside the husk on the restored process (which
//! has the PID the image names, in the husk's PID namespace), or, for a
//! process that was dead already, made here (one short-lived child, killed
//! and reaped, for each dead process) and pulled in like a pipe. A pidfd of a thread of the process
//! itself (PIDFD_THREAD) is opened once its threads exist: until then its
//! fds hold a pidfd of the process.

use super::process::Husk;
use crate::image::{Checkpoint, FileImage, PidfdImage};
use crate::kernel;
use crate::kernel::child::{fork_child, ChildTask};
use crate::restore::error::RestoreError;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use std::os::fd::OwnedFd;

impl Husk<'_> {
    /// The pidfd of image `d` (of a live process: a dead one's was made
    /// by [`create_dead_pidfds`]), at an fd of the husk.
    pub(super) fn create_pidfd(&mut self, d: &PidfdImage) -> Result<i32, RestoreError> {
        let Some(target) = d.pid else {
            return Err(RestoreError::Unsupported {
                pid: self.image.pid,
                why: "a pidfd of a dead process was not created".into(),
            });
        };
        // A stand-in until open_thread_pidfds.
        let (target, thread) = match self.own_thread(d) {
            Some(_) => (self.image.pid, 0),
            None => (target, d.flags & libc::O_EXCL),
        };
        let fd = self.sys(
            0,
            |r| r.syscall(libc::SYS_pidfd_open, &[target as u64, thread as u64]),
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

impl Husk<'_> {
    /// The thread of this process (not its leader) that pidfd `d` refers
    /// to, if it does.
    fn own_thread(&self, d: &PidfdImage) -> Option<i32> {
        let tid = d.pid?;
        let threads = &self.image.threads;
        (tid != self.image.pid && threads.iter().any(|t| t.tid == tid)).then_some(tid)
    }

    /// Once the threads exist: opens each pidfd of a thread of this
    /// process (PIDFD_THREAD) and puts it at every fd that held the
    /// stand-in.
    pub(super) fn open_thread_pidfds(&mut self) -> Result<(), RestoreError> {
        let image = self.image;
        let mut done: Vec<u32> = Vec::new();
        for f in &image.fds {
            let Some(FileImage::Pidfd(d)) = self.files.get(f.file as usize) else {
                continue;
            };
            let Some(tid) = self.own_thread(d) else {
                continue;
            };
            if done.contains(&f.file) {
                continue;
            }
            done.push(f.file);
            let thread = libc::O_EXCL as u64;
            let fd = self.sys(
                0,
                |r| r.syscall(libc::SYS_pidfd_open, &[tid as u64, thread]),
                || format!("pidfd_open of thread {tid}"),
            )? as i32;
            self.sys(
                0,
                |r| r.set_status_flags(fd, d.flags),
                || format!("F_SETFL {:#o} on the pidfd of thread {tid}", d.flags),
            )?;
            for at in image.fds.iter().filter(|o| o.file == f.file) {
                let cloexec = if at.cloexec { libc::O_CLOEXEC } else { 0 };
                self.sys(
                    0,
                    |r| r.dup3(fd, at.fd, cloexec),
                    || format!("installing the pidfd of thread {tid} at fd {}", at.fd),
                )?;
            }
            self.sys(0, |r| r.close(fd), || format!("close of fd {fd}"))?;
        }
        Ok(())
    }
}

/// Makes each pidfd of a dead process of the tree `ck` here, at its index
/// in `ours`, with its status flags: the descriptions of one dead process
/// (one inode at checkpoint) are pidfds of one short-lived child, opened
/// before it is killed and reaped.
pub(super) fn create_dead_pidfds(
    ck: &Checkpoint,
    ours: &mut [Option<OwnedFd>],
) -> Result<(), RestoreError> {
    let pid = ck.root().map_or(0, |p| p.pid);
    let fail = |call: &str| {
        let call = call.to_string();
        move |errno| RestoreError::Injected { pid, call, errno }
    };
    let dead = |i: usize| match ck.files.get(i) {
        Some(FileImage::Pidfd(d)) if d.pid.is_none() => Some(*d),
        _ => None,
    };
    let mut inodes: Vec<u64> = (0..ck.files.len())
        .filter_map(|i| dead(i).map(|d| d.inode))
        .collect();
    inodes.sort_unstable();
    inodes.dedup();
    for inode in inodes {
        let child = fork_child(ChildTask::IdleUntilKilled)
            .map_err(fail("fork of a child to make a pidfd of a dead process"))?;
        let opened = (0..ck.files.len())
            .filter_map(|i| dead(i).filter(|d| d.inode == inode).map(|d| (i, d)))
            .try_for_each(|(i, d)| {
                let pidfd = kernel::pidfd_open(child)?;
                let status = nix::fcntl::OFlag::from_bits_truncate(d.flags);
                nix::fcntl::fcntl(&pidfd, nix::fcntl::FcntlArg::F_SETFL(status))?;
                ours[i] = Some(pidfd);
                Ok(())
            });
        let killed = kill(child, Signal::SIGKILL);
        let reaped = waitpid(child, None);
        opened.map_err(fail("pidfd_open of a short-lived child"))?;
        killed.map_err(fail("kill of a short-lived child"))?;
        reaped.map_err(fail("waitpid of a short-lived child"))?;
    }
    Ok(())
}
