//! epoll, inotify and fanotify instances: their registrations, watches
//! and marks, read from fdinfo and checked so that a restore can rebuild
//! them exactly. Both
//! checks run before freezing (to refuse) and again while frozen (to
//! describe).

use super::error::InspectError;
use super::fd_class::ClassifiedFd;
use crate::image::{
    EpollTarget, FanotifyImage, FanotifyMark, FanotifyMarkKind, InotifyWatch, MAX_SKIPPED_WATCHES,
};
use crate::kernel;
use crate::proc;
use crate::proc::notify::FanotifyTarget;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::unistd::Pid;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

/// The registrations of epoll fd `epoll` of `pid`, each checked to name an
/// fd that the process holds and that refers to the registered file, so
/// that the restored registration gets the kernel's same (file, fd) key.
/// A registration whose fd was closed or now refers to another file (a dup
/// kept the registration alive) gets, in `via`, another fd of the process
/// on the registered file, which restore puts at the fd number for the
/// time of the EPOLL_CTL_ADD; with no such fd it is refused.
pub fn epoll_targets(
    pid: i32,
    epoll: &ClassifiedFd,
    fds: &[ClassifiedFd],
) -> Result<Vec<EpollTarget>, InspectError> {
    let mut targets = proc::notify::read_epoll_targets(pid, epoll.fd)?;
    for i in 0..targets.len() {
        let t = targets[i];
        // Registrations of one fd number are told apart by their rank.
        let toff = targets[..i].iter().filter(|o| o.fd == t.fd).count() as u32;
        let is =
            |fd: i32| match kernel::epoll_target_is(Pid::from_raw(pid), fd, epoll.fd, t.fd, toff) {
                Ok(same) => Ok(same),
                Err(Errno::ENOENT) => Ok(false),
                Err(errno) => Err(InspectError::Io {
                    what: format!(
                        "compare fd {fd} of process {pid} with the registration of fd {} in epoll \
                     fd {}",
                        t.fd, epoll.fd
                    ),
                    source: errno.into(),
                }),
            };
        // Open, whether carried or refused on its own (then its refusal
        // says why, not this one).
        let held = std::fs::symlink_metadata(format!("/proc/{pid}/fd/{}", t.fd)).is_ok();
        if held && is(t.fd)? {
            continue;
        }
        let mut via = None;
        for c in fds.iter().filter(|c| c.fd != t.fd) {
            if is(c.fd)? {
                via = Some(c.fd);
                break;
            }
        }
        if via.is_none() {
            return Err(InspectError::UnsupportedFd {
                pid,
                fd: epoll.fd,
                kind: format!(
                    "set of epoll registrations, one of which names fd {}, which {}, and no \
                     other fd of the process refers to the registered file",
                    t.fd,
                    if held {
                        "now refers to another file"
                    } else {
                        "was closed"
                    }
                ),
                target: epoll.target.clone(),
            });
        }
        targets[i].via = via;
    }
    Ok(targets)
}

/// The watches of inotify fd `inotify` of `pid` in watch descriptor order,
/// each with the path of the watched file found from its file handle. A
/// watch whose file has no path leading to it, or descriptor numbers with
/// more gaps than a restore will skip, are refused.
pub fn inotify_watches(
    pid: i32,
    inotify: &ClassifiedFd,
) -> Result<Vec<InotifyWatch>, InspectError> {
    let mut marks = proc::notify::read_inotify_marks(pid, inotify.fd)?;
    marks.sort_by_key(|m| m.wd);
    let refuse = |kind: String| InspectError::UnsupportedFd {
        pid,
        fd: inotify.fd,
        kind,
        target: inotify.target.clone(),
    };
    let mut watches = Vec::with_capacity(marks.len());
    for m in &marks {
        let path = watch_path(m.ino, m.sdev, m.handle_type, &m.handle).map_err(|why| {
            refuse(format!(
                "set of inotify watches, whose watch {} (inode {} on device {}:{}) cannot \
                 be restored: {why}",
                m.wd,
                m.ino,
                m.sdev >> 20,
                m.sdev & 0xfffff
            ))
        })?;
        watches.push(InotifyWatch {
            wd: m.wd,
            mask: m.mask,
            path,
        });
    }
    let highest = watches.last().map_or(0, |w| w.wd);
    if highest - watches.len() as i32 > MAX_SKIPPED_WATCHES {
        return Err(refuse(format!(
            "set of inotify watches, whose highest watch descriptor {highest} would need \
             more than {MAX_SKIPPED_WATCHES} unused numbers skipped on restore"
        )));
    }
    Ok(watches)
}

/// The path of a watched file (inode `ino` on the filesystem of kernel
/// device number `sdev`, with file handle `handle` of type
/// `handle_type`): its file handle opened on a mount of its filesystem,
/// the resulting fd's link read, and the path checked to lead to the same
/// inode.
fn watch_path(ino: u64, sdev: u32, handle_type: i32, handle: &[u8]) -> Result<String, String> {
    if handle.is_empty() {
        return Err("its filesystem gives no file handle".into());
    }
    let (major, minor) = (sdev >> 20, sdev & 0xfffff);
    let point = proc::notify::mount_point(major, minor)
        .map_err(|e| e.to_string())?
        .ok_or("no mount of its filesystem is visible to migrate-agent")?;
    let mount = nix::fcntl::open(
        point.as_str(),
        // open_by_handle_at refuses O_PATH fds (EBADF).
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("cannot open its mount point {point}: {e}"))?;
    let file =
        kernel::open_by_handle_at(&mount, handle_type, handle, libc::O_PATH | libc::O_CLOEXEC)
            .map_err(|e| format!("its file handle cannot be opened: {e}"))?;
    let path = proc::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|e| e.to_string())?;
    let meta = std::fs::symlink_metadata(&path);
    match meta {
        Ok(meta)
            if meta.ino() == ino
                && libc::major(meta.dev()) == major
                && libc::minor(meta.dev()) == minor =>
        {
            Ok(path)
        }
        _ => Err(format!(
            "no path leads to it (it was deleted or lies outside every mount; found {path:?})"
        )),
    }
}

/// Fanotify fd `fanotify` of `pid` (status flags `flags`): its flags and
/// its marks, each with the path of what it is on: a marked file's found
/// from its file handle (as for an inotify watch), a mount's from the
/// process's mount table, a filesystem's from a mount of it. A mark whose
/// object has no path is refused.
pub fn fanotify_marks(
    pid: i32,
    fanotify: &ClassifiedFd,
    flags: i32,
) -> Result<FanotifyImage, InspectError> {
    let info = proc::notify::read_fanotify(pid, fanotify.fd)?;
    let refuse = |kind: String| InspectError::UnsupportedFd {
        pid,
        fd: fanotify.fd,
        kind,
        target: fanotify.target.clone(),
    };
    let mut marks = Vec::with_capacity(info.marks.len());
    for m in &info.marks {
        let (kind, path) = match &m.target {
            FanotifyTarget::Inode {
                ino,
                sdev,
                handle_type,
                handle,
            } => {
                let path = watch_path(*ino, *sdev, *handle_type, handle).map_err(|why| {
                    refuse(format!(
                        "fanotify group, whose mark on inode {ino} of device {}:{} cannot be \
                         restored: {why}",
                        sdev >> 20,
                        sdev & 0xfffff
                    ))
                })?;
                (FanotifyMarkKind::Inode, path)
            }
            FanotifyTarget::Mount { mnt_id } => {
                let path = proc::notify::mount_by_id(pid, *mnt_id)?.ok_or_else(|| {
                    refuse(format!(
                        "fanotify group, whose mark on mount {mnt_id} cannot be restored: the \
                         process's mount table has no such mount"
                    ))
                })?;
                (FanotifyMarkKind::Mount, path)
            }
            FanotifyTarget::Filesystem { sdev } => {
                let (major, minor) = (sdev >> 20, sdev & 0xfffff);
                let path = proc::notify::mount_point(major, minor)?.ok_or_else(|| {
                    refuse(format!(
                        "fanotify group, whose mark on filesystem {major}:{minor} cannot be \
                         restored: no mount of it is visible to migrate-agent"
                    ))
                })?;
                (FanotifyMarkKind::Filesystem, path)
            }
        };
        marks.push(FanotifyMark {
            kind,
            path,
            flags: m.flags,
            mask: m.mask,
            ignored_mask: m.ignored_mask,
        });
    }
    Ok(FanotifyImage {
        flags: flags & !libc::O_ACCMODE,
        init_flags: info.init_flags,
        event_flags: info.event_flags,
        marks,
    })
}
