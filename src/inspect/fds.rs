//! File descriptors: which ones ferry can carry, and the refusals for the
//! rest (unsupported kinds, epoll and inotify instances that could not be
//! rebuilt exactly, pipes, FIFOs and unix sockets whose other end lies
//! outside the tree, files holding locks that cannot be taken again).

use super::error::InspectError;
use super::fd_class::{ClassifiedFd, FdClass};
use super::locks;
use super::notify;
use super::pidfd;
use super::sockets;
use super::tty;
use crate::image::{PathFileType, GHOST_FILE_MAX};
use crate::proc;
use std::os::unix::fs::MetadataExt;

/// Character devices that are reopened by path on restore.
const REOPENABLE_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/urandom",
    "/dev/random",
    "/dev/full",
];

/// The largest memfd carried: its contents are kept in the manifest.
const MEMFD_MAX: u64 = 64 << 20;

/// Decides whether an fd can be carried and how, or refuses it naming the
/// kind of file it is.
pub fn classify_fd(pid: i32, fd: i32, target: &str) -> Result<FdClass, InspectError> {
    let refuse = |kind: String| InspectError::UnsupportedFd {
        pid,
        fd,
        kind,
        target: target.to_string(),
    };
    match target {
        "anon_inode:[eventpoll]" => return Ok(FdClass::Epoll),
        "anon_inode:inotify" => return Ok(FdClass::Inotify),
        "anon_inode:[fanotify]" => return Ok(FdClass::Fanotify),
        "anon_inode:[pidfd]" => return pidfd::classify(pid, fd),
        _ => {}
    }
    if let Some(rest) = target.strip_prefix("anon_inode:") {
        let kind = rest.trim_start_matches('[').trim_end_matches(']');
        return match kind {
            "eventfd" => Ok(FdClass::Eventfd),
            "timerfd" => Ok(FdClass::Timerfd),
            "signalfd" => Ok(FdClass::Signalfd),
            _ => Err(refuse(kind.to_string())),
        };
    }
    if let Some(inode) = target
        .strip_prefix("pipe:[")
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|n| n.parse().ok())
    {
        return Ok(FdClass::Pipe { inode });
    }
    if let Some(inode) = target
        .strip_prefix("socket:[")
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|n| n.parse().ok())
    {
        return sockets::classify(pid, fd, inode);
    }
    for (prefix, kind) in [("net:", "namespace"), ("mnt:", "namespace")] {
        if target.starts_with(prefix) {
            return Err(refuse(kind.to_string()));
        }
    }
    if !target.starts_with('/') {
        return Err(refuse(format!("special file {target}")));
    }
    if let Some(name) = target
        .strip_prefix("/memfd:")
        .and_then(|rest| rest.strip_suffix(" (deleted)"))
    {
        let meta = std::fs::metadata(format!("/proc/{pid}/fd/{fd}"))
            .map_err(|e| refuse(format!("memfd that cannot be examined ({e})")))?;
        if meta.size() > MEMFD_MAX {
            return Err(refuse(format!(
                "memfd {name} of {} bytes (memfds over 64 MiB are not supported yet: their contents travel in the manifest)",
                meta.size()
            )));
        }
        return Ok(FdClass::Memfd { inode: meta.ino() });
    }
    if target.ends_with(" (deleted)") {
        // A deleted regular file is carried with its contents (a ghost
        // file), up to a bound; anything else deleted is refused.
        let meta = std::fs::metadata(format!("/proc/{pid}/fd/{fd}"))
            .map_err(|e| refuse(format!("deleted file that cannot be examined ({e})")))?;
        use std::os::unix::fs::FileTypeExt;
        let ft = meta.file_type();
        if ft.is_char_device() || ft.is_block_device() {
            // A deleted device node is made again with mknod; a deleted
            // terminal (a pty whose master closed) would be another one.
            let major = libc::major(meta.rdev());
            if ft.is_char_device() && (matches!(major, 4 | 5) || (136..=143).contains(&major)) {
                return Err(refuse("deleted terminal".into()));
            }
            return Ok(FdClass::Path(if ft.is_block_device() {
                PathFileType::BlockDevice
            } else {
                PathFileType::CharDevice
            }));
        }
        if !ft.is_file() {
            return Err(refuse("deleted file".into()));
        }
        if meta.size() > GHOST_FILE_MAX {
            return Err(refuse(format!(
                "deleted file of {} bytes (deleted files over 64 MiB are not supported: their contents travel in the image)",
                meta.size()
            )));
        }
        return Ok(FdClass::Path(PathFileType::Regular));
    }
    // Follow the fd itself, not the path, so a renamed file is still seen.
    let meta = std::fs::metadata(format!("/proc/{pid}/fd/{fd}"))
        .map_err(|e| refuse(format!("file that cannot be examined ({e})")))?;
    let ft = meta.file_type();
    use std::os::unix::fs::FileTypeExt;
    if ft.is_file() {
        Ok(FdClass::Path(PathFileType::Regular))
    } else if ft.is_char_device() && REOPENABLE_DEVICES.contains(&target) {
        Ok(FdClass::Path(PathFileType::CharDevice))
    } else if let Some(class) = ft
        .is_char_device()
        .then(|| tty::classify(pid, fd, meta.rdev(), target))
        .transpose()?
        .flatten()
    {
        Ok(class)
    } else if ft.is_char_device() {
        Err(refuse(
            if target.starts_with("/dev/pts/") || target.starts_with("/dev/tty") {
                "terminal".into()
            } else {
                "character device".into()
            },
        ))
    } else if ft.is_dir() {
        Ok(FdClass::Path(PathFileType::Directory))
    } else if ft.is_fifo() {
        Ok(FdClass::Fifo { inode: meta.ino() })
    } else if ft.is_block_device() {
        Err(refuse("block device".into()))
    } else {
        Err(refuse("special file".into()))
    }
}

/// Classifies every fd of `pid`, refusing the first unsupported one, and
/// epoll and inotify instances that could not be rebuilt exactly.
pub fn classify_fds(pid: i32) -> Result<Vec<ClassifiedFd>, InspectError> {
    let (fds, refused) = classify_each_fd(pid)?;
    match refused.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(fds),
    }
}

/// Classifies every fd of `pid`: the fds ferry can carry, and a refusal
/// for each other one (unsupported kinds, epoll and inotify instances that
/// could not be rebuilt exactly). Only reading /proc fails the call.
pub fn classify_each_fd(pid: i32) -> Result<(Vec<ClassifiedFd>, Vec<InspectError>), InspectError> {
    let mut out = Vec::new();
    let mut refused = Vec::new();
    for (fd, target) in proc::fds(pid)? {
        match classify_fd(pid, fd, &target) {
            Ok(class) => out.push(ClassifiedFd { fd, target, class }),
            // Closed between the listing and its reading (a running
            // shell's command substitution pipe): nothing to carry.
            Err(InspectError::Proc(_)) if proc::fd_closed(pid, fd) => {}
            Err(e @ InspectError::Proc(_)) => return Err(e),
            Err(e) => refused.push(e),
        }
    }
    for c in &out {
        let checked = match c.class {
            FdClass::Epoll => notify::epoll_targets(pid, c, &out).map(drop),
            FdClass::Inotify => notify::inotify_watches(pid, c).map(drop),
            FdClass::Fanotify => notify::fanotify_marks(pid, c, 0).map(drop),
            _ => Ok(()),
        }
        .and_then(|()| locks::check_fd_locks(pid, c));
        match checked {
            Err(InspectError::Proc(_)) if proc::fd_closed(pid, c.fd) => {}
            Err(e @ InspectError::Proc(_)) => return Err(e),
            Err(e) => refused.push(e),
            Ok(()) => {}
        }
    }
    Ok((out, refused))
}

/// Whether the processes of `tree` hold a read end, and a write end, of
/// the pipe or FIFO `class` names.
pub(super) fn ends_held(
    tree: &[(i32, Vec<ClassifiedFd>)],
    class: FdClass,
) -> Result<(bool, bool), InspectError> {
    let (mut reads, mut writes) = (false, false);
    for (pid, fds) in tree {
        for o in fds.iter().filter(|o| o.class == class) {
            let mode = proc::read_fdinfo(*pid, o.fd)?.flags & libc::O_ACCMODE;
            reads |= mode != libc::O_WRONLY;
            writes |= mode != libc::O_RDONLY;
        }
    }
    Ok((reads, writes))
}

/// Refuses a pipe whose other end a process outside the tree (`tree`:
/// every process with its classified fds) holds, a FIFO of which the tree
/// holds only one end, or a unix socket connected to a socket no process
/// of the tree holds: the other end belongs to a process outside the
/// checkpoint.
pub fn check_tree_fds(tree: &[(i32, Vec<ClassifiedFd>)]) -> Result<(), InspectError> {
    match tree_fd_blockers(tree)?.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Every refusal of [`check_tree_fds`], each fd on its own; only reading
/// /proc fails the call.
pub fn tree_fd_blockers(
    tree: &[(i32, Vec<ClassifiedFd>)],
) -> Result<Vec<InspectError>, InspectError> {
    let mut refused = Vec::new();
    // A pipe or FIFO is carried only with both its ends: the data in it
    // would otherwise be shared with a process left behind.
    let all = || {
        tree.iter()
            .flat_map(|(pid, fds)| fds.iter().map(move |c| (*pid, c)))
    };
    for (pid, c) in all() {
        let (kind, inode) = match c.class {
            FdClass::Pipe { inode } => ("pipe", inode),
            FdClass::Fifo { inode } => ("FIFO", inode),
            _ => continue,
        };
        let (reads, writes) = ends_held(tree, c.class)?;
        if reads && writes {
            continue;
        }
        // A pipe end that no process holds any more is simply closed after
        // restore too (the reader sees the data, then end of file). So is
        // the write end of a FIFO the tree reads: its data is carried.
        let tree_pids: Vec<i32> = tree.iter().map(|(p, _)| *p).collect();
        // (A FIFO only written keeps its data for a later reader, which
        // its write end cannot copy: still refused.)
        let outside = if kind == "pipe" {
            proc::pipe_holder_outside(inode, &tree_pids)?.is_some()
        } else {
            !reads || proc::fifo_holder_outside(&c.target, inode, &tree_pids)?.is_some()
        };
        if !outside {
            continue;
        }
        refused.push(InspectError::UnsupportedFd {
            pid,
            fd: c.fd,
            kind: format!(
                "{kind} whose {} end is held outside the checkpointed process tree",
                if reads { "write" } else { "read" }
            ),
            target: if kind == "pipe" {
                format!("pipe:[{inode}]")
            } else {
                c.target.clone()
            },
        });
    }
    refused.extend(tty::check_pty_masters(tree));
    match pidfd::check_pidfd_targets(tree) {
        Err(e @ InspectError::Proc(_)) => return Err(e),
        Err(e) => refused.push(e),
        Ok(()) => {}
    }
    match sockets::check_unix_peers(tree) {
        Err(e @ InspectError::Proc(_)) => Err(e),
        Err(e) => {
            refused.push(e);
            Ok(refused)
        }
        Ok(()) => Ok(refused),
    }
}

#[cfg(test)]
mod tests {
    use crate::inspect::error::InspectError;
    use crate::inspect::fd_class::FdClass;
    use crate::inspect::fds::classify_fd;

    #[test]
    fn fd_kinds_are_named() {
        let kind = |t: &str| match classify_fd(1, 3, t) {
            Err(InspectError::UnsupportedFd { kind, .. }) => kind,
            other => panic!("{other:?}"),
        };
        assert_eq!(kind("anon_inode:[io_uring]"), "io_uring");
        assert_eq!(kind("anon_inode:[userfaultfd]"), "userfaultfd");
    }

    #[test]
    fn epoll_and_inotify_are_carried() {
        assert_eq!(
            classify_fd(1, 3, "anon_inode:[eventpoll]").unwrap(),
            FdClass::Epoll
        );
        assert_eq!(
            classify_fd(1, 3, "anon_inode:inotify").unwrap(),
            FdClass::Inotify
        );
    }

    #[test]
    fn event_timer_and_signal_fds_are_carried() {
        for (target, class) in [
            ("anon_inode:[eventfd]", FdClass::Eventfd),
            ("anon_inode:[timerfd]", FdClass::Timerfd),
            ("anon_inode:[signalfd]", FdClass::Signalfd),
        ] {
            assert_eq!(classify_fd(1, 3, target).unwrap(), class);
        }
    }

    #[test]
    fn directories_are_carried() {
        use crate::image::PathFileType;
        use std::os::fd::AsRawFd;
        let dir = std::fs::File::open(std::env::temp_dir()).unwrap();
        let target = std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd())).unwrap();
        assert_eq!(
            classify_fd(
                std::process::id() as i32,
                dir.as_raw_fd(),
                target.to_str().unwrap()
            )
            .unwrap(),
            FdClass::Path(PathFileType::Directory)
        );
    }

    #[test]
    fn pipes_are_carried() {
        assert_eq!(
            classify_fd(1, 3, "pipe:[9]").unwrap(),
            FdClass::Pipe { inode: 9 }
        );
    }

    #[test]
    fn deleted_files_are_carried_up_to_the_bound() {
        use crate::image::{PathFileType, GHOST_FILE_MAX};
        use std::os::fd::AsRawFd;
        let pid = std::process::id() as i32;
        let path = std::env::temp_dir().join(format!("ferry-ghost-test-{pid}"));
        let file = std::fs::File::create(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let fd = file.as_raw_fd();
        let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        let target = target.to_str().unwrap();
        assert!(target.ends_with(" (deleted)"), "{target}");
        assert_eq!(
            classify_fd(pid, fd, target).unwrap(),
            FdClass::Path(PathFileType::Regular)
        );
        file.set_len(GHOST_FILE_MAX + 1).unwrap();
        let refused = classify_fd(pid, fd, target).unwrap_err().to_string();
        assert!(
            refused.contains(&format!(
                "fd {fd}, a deleted file of {} bytes",
                GHOST_FILE_MAX + 1
            )) && refused.contains(&format!("process {pid}"))
                && refused.contains(target),
            "{refused}"
        );
    }

    #[test]
    fn deleted_device_nodes_are_carried() {
        use crate::image::PathFileType;
        use std::os::fd::AsRawFd;
        let pid = std::process::id() as i32;
        let path = std::env::temp_dir().join(format!("ferry-ghost-dev-test-{pid}"));
        let _ = std::fs::remove_file(&path);
        let null = nix::sys::stat::makedev(1, 3);
        let made = nix::sys::stat::mknod(
            &path,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            null,
        );
        if made.is_err() {
            return; // No CAP_MKNOD here.
        }
        let Ok(file) = std::fs::File::open(&path) else {
            let _ = std::fs::remove_file(&path);
            return; // A nodev mount.
        };
        std::fs::remove_file(&path).unwrap();
        let fd = file.as_raw_fd();
        let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        let target = target.to_str().unwrap();
        assert!(target.ends_with(" (deleted)"), "{target}");
        assert_eq!(
            classify_fd(pid, fd, target).unwrap(),
            FdClass::Path(PathFileType::CharDevice)
        );
    }
}
