//! Rebuilding epoll and inotify instances inside the husk, and fanotify
//! groups here in migrate-agent (pulled into the husk like an eventfd).

use super::process::{Husk, STRUCT_OFF};
use crate::image::{
    EpollImage, FanotifyImage, FanotifyMarkKind, FileImage, InotifyImage, MAX_SKIPPED_WATCHES,
    PAGE_SIZE,
};
use crate::kernel::abi::{EpollEvent, IntoBytes};
use crate::kernel::fanotify::{fanotify_init, fanotify_mark};
use crate::restore::error::RestoreError;
use nix::unistd::Pid;
use std::os::fd::{AsFd, OwnedFd};

/// IN_MASK_ADD: never wanted when a watch is created afresh.
const IN_MASK_ADD: u32 = 0x2000_0000;
/// IN_MASK_CREATE: fail with EEXIST instead of changing an existing watch
/// when the path now leads to a file another watch already names.
const IN_MASK_CREATE: u32 = 0x1000_0000;
/// `sizeof(struct inotify_event)` without a name (IN_IGNORED has none).
const INOTIFY_EVENT_LEN: u64 = 16;

impl Husk<'_> {
    /// Creates an empty epoll instance with the saved status flags; its
    /// registrations are added by [`Husk::register_epoll_targets`] once
    /// every fd is at its number.
    pub(super) fn create_epoll(&mut self, e: &EpollImage) -> Result<i32, RestoreError> {
        let flags = libc::EPOLL_CLOEXEC as u64;
        let fd = self.sys(
            0,
            |r| r.syscall(libc::SYS_epoll_create1, &[flags]),
            || "epoll_create1".into(),
        )? as i32;
        self.set_status_flags(fd, e.flags, "epoll")?;
        Ok(fd)
    }

    /// Adds every registration of every epoll instance created in this
    /// husk (`created`: file indexes) with the image's fd numbers, so that
    /// the kernel's (file, fd) keys match what the program later passes to
    /// EPOLL_CTL_MOD and EPOLL_CTL_DEL. An instance shared with a later
    /// process is taken from here with its registrations.
    pub(super) fn register_epoll_targets(&mut self, created: &[u32]) -> Result<(), RestoreError> {
        let image = self.image;
        for &i in created {
            let Some(FileImage::Epoll(e)) = self.files.get(i as usize) else {
                continue;
            };
            let Some(epfd) = image.fds.iter().find(|f| f.file == i) else {
                continue;
            };
            for t in &e.targets {
                let event = EpollEvent {
                    events: t.events,
                    data: t.data,
                };
                let addr = self.put(STRUCT_OFF, event.as_bytes())?;
                let args = [
                    epfd.fd as u64,
                    libc::EPOLL_CTL_ADD as u64,
                    t.fd as u64,
                    addr,
                ];
                let swapped = match t.via {
                    Some(via) => Some(self.lend_fd(via, t.fd)?),
                    None => None,
                };
                self.sys(
                    0,
                    |r| r.syscall(libc::SYS_epoll_ctl, &args),
                    || {
                        format!(
                            "EPOLL_CTL_ADD of fd {} (events {:#x}, data {:#x}) to epoll fd {}",
                            t.fd, t.events, t.data, epfd.fd
                        )
                    },
                )?;
                if let Some(saved) = swapped {
                    self.give_back_fd(t.fd, saved)?;
                }
            }
        }
        Ok(())
    }

    /// Makes fd number `at` refer to the file of fd `via` for the time of
    /// an EPOLL_CTL_ADD (a registration made through an fd since closed):
    /// what `at` held (an fd of the image, or one parked above them) is
    /// moved above every fd of the image first. Returns where it went
    /// ([`Husk::give_back_fd`] puts it back).
    fn lend_fd(&mut self, via: i32, at: i32) -> Result<Option<i32>, RestoreError> {
        let image = self.image;
        let above = image.fds.iter().map(|f| f.fd).max().map_or(3, |m| m + 1);
        let saved = match self.sys(
            0,
            |r| r.dup_above(at, above),
            || format!("moving fd {at} aside to register fd {via} in its place"),
        ) {
            Ok(saved) => Some(saved),
            Err(RestoreError::Injected {
                errno: nix::errno::Errno::EBADF,
                ..
            }) => None,
            Err(e) => return Err(e),
        };
        self.sys(
            0,
            |r| r.dup3(via, at, libc::O_CLOEXEC),
            || format!("dup of fd {via} to fd {at}, whose epoll registration it keeps"),
        )?;
        Ok(saved)
    }

    /// Undoes [`Husk::lend_fd`]: fd `at` holds again what it held (`saved`,
    /// with its image's close-on-exec flag; a parked fd gets it too), or is
    /// closed.
    fn give_back_fd(&mut self, at: i32, saved: Option<i32>) -> Result<(), RestoreError> {
        let Some(saved) = saved else {
            return self.sys(0, |r| r.close(at), || format!("close of fd {at}"));
        };
        let image_fd = self.image.fds.iter().find(|f| f.fd == at);
        let cloexec = image_fd.map_or(true, |f| f.cloexec);
        let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
        self.sys(
            0,
            |r| r.dup3(saved, at, flags),
            || format!("putting fd {at} back"),
        )?;
        self.sys(0, |r| r.close(saved), || format!("close of fd {saved}"))
    }

    /// Creates an inotify instance and adds its watches in descriptor
    /// order. The kernel hands out increasing numbers, so a number the
    /// image skips is used up by adding the watch and removing it again
    /// (its IN_IGNORED event is read away, as is any event a concurrent
    /// change to a watched file queued meanwhile, which a program could not
    /// tell from one lost at checkpoint); every watch must get its saved
    /// number or the restore fails.
    pub(super) fn create_inotify(&mut self, ino: &InotifyImage) -> Result<i32, RestoreError> {
        let pid = self.image.pid;
        let flags = (libc::IN_CLOEXEC | libc::IN_NONBLOCK) as u64;
        let fd = self.sys(
            0,
            |r| r.syscall(libc::SYS_inotify_init1, &[flags]),
            || "inotify_init1".into(),
        )? as i32;
        let mut skipped = 0;
        for w in &ino.watches {
            let addr = self.put_str(&w.path)?;
            let mask = (w.mask & !IN_MASK_ADD) | IN_MASK_CREATE;
            loop {
                let wd = self.sys(
                    0,
                    |r| {
                        r.syscall(
                            libc::SYS_inotify_add_watch,
                            &[fd as u64, addr, u64::from(mask)],
                        )
                    },
                    || format!("inotify watch {} on {} (mask {:#x})", w.wd, w.path, w.mask),
                )? as i32;
                if wd == w.wd {
                    break;
                }
                if wd > w.wd || skipped == MAX_SKIPPED_WATCHES {
                    return Err(RestoreError::Unsupported {
                        pid,
                        why: format!(
                            "inotify watch {} on {} got watch descriptor {wd} instead",
                            w.wd, w.path
                        ),
                    });
                }
                self.sys(
                    0,
                    |r| r.syscall(libc::SYS_inotify_rm_watch, &[fd as u64, wd as u64]),
                    || format!("removing inotify watch {wd}, used to skip its number"),
                )?;
                skipped += 1;
            }
        }
        // Each removed watch queued one IN_IGNORED event.
        let per_read = PAGE_SIZE / INOTIFY_EVENT_LEN;
        let mut left = skipped as u64;
        while left > 0 {
            let n = left.min(per_read);
            let buf = self.helper + STRUCT_OFF;
            let got = self.sys(
                0,
                |r| r.read(fd, buf, n * INOTIFY_EVENT_LEN),
                || format!("reading the IN_IGNORED events of {n} skipped inotify watches"),
            )?;
            if got < INOTIFY_EVENT_LEN {
                return Err(RestoreError::Unsupported {
                    pid,
                    why: format!("reading IN_IGNORED events returned {got} bytes"),
                });
            }
            left -= (got / INOTIFY_EVENT_LEN).min(left);
        }
        self.set_status_flags(fd, ino.flags, "inotify")?;
        Ok(fd)
    }

    /// Gives the description behind `fd` the status flags `flags`.
    fn set_status_flags(&mut self, fd: i32, flags: i32, kind: &str) -> Result<(), RestoreError> {
        self.sys(
            0,
            |r| r.set_status_flags(fd, flags),
            || format!("F_SETFL {flags:#o} on the new {kind} fd"),
        )
    }
}

/// A fanotify group with the image's flags and marks (`husk`: the
/// restoring husk, through whose root a marked mount's path, as the
/// process saw it, is found; `pid` names the restore in errors). Each
/// mark is added as the process would: its events, then its ignored
/// events (with FAN_MARK_IGNORE or FAN_MARK_IGNORED_MASK, as it was made).
pub(super) fn create_fanotify(
    pid: i32,
    husk: Pid,
    f: &FanotifyImage,
) -> Result<OwnedFd, RestoreError> {
    let fail = |call: String| move |errno| RestoreError::Injected { pid, call, errno };
    let group = fanotify_init(f.init_flags, f.event_flags).map_err(fail(format!(
        "fanotify_init({:#x}, {:#x})",
        f.init_flags, f.event_flags
    )))?;
    for m in &f.marks {
        let (kind, path) = match m.kind {
            FanotifyMarkKind::Inode => (libc::FAN_MARK_INODE, m.path.clone()),
            FanotifyMarkKind::Mount => {
                (libc::FAN_MARK_MOUNT, format!("/proc/{husk}/root{}", m.path))
            }
            FanotifyMarkKind::Filesystem => (libc::FAN_MARK_FILESYSTEM, m.path.clone()),
        };
        let add = libc::FAN_MARK_ADD | kind | (m.flags & libc::FAN_MARK_EVICTABLE);
        let ignore = if m.flags & libc::FAN_MARK_IGNORE != 0 {
            libc::FAN_MARK_IGNORE
        } else {
            libc::FAN_MARK_IGNORED_MASK
        } | (m.flags & libc::FAN_MARK_IGNORED_SURV_MODIFY);
        for (flags, mask) in [(add, m.mask), (add | ignore, m.ignored_mask)] {
            if mask != 0 {
                fanotify_mark(group.as_fd(), flags, mask, &path).map_err(fail(format!(
                    "fanotify_mark({flags:#x}, {mask:#x}) on {path}"
                )))?;
            }
        }
    }
    Ok(group)
}
