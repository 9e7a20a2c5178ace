//! Classifies a process's mappings and fds into what ferry can carry, and
//! refuses the rest with a reason, before anything is frozen.

use super::error::CheckpointError;
use crate::image::{PathFileType, Vma, VmaKind};
use crate::proc::MapsEntry;
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

/// Refuses a MAP_SHARED mapping of a memfd that no fd of the process holds:
/// the memfd's contents travel with its fd, and the mapping is made from it.
pub fn check_memfd_mappings(
    pid: i32,
    vmas: &[Vma],
    fds: &[super::files::ClassifiedFd],
) -> Result<(), CheckpointError> {
    for v in vmas {
        if let VmaKind::SharedMemfd { inode, .. } = v.kind {
            if !fds.iter().any(|c| c.class == FdClass::Memfd { inode }) {
                return Err(CheckpointError::UnsupportedMapping {
                    pid,
                    start: v.start,
                    end: v.end,
                    name: format!("memfd inode {inode}"),
                    why: "a shared memfd mapping is carried only when the process also holds the memfd as an fd".into(),
                });
            }
        }
    }
    Ok(())
}

/// Path `path` as process `pid` sees it, reachable from here: through
/// /proc/PID/root, which is our own root for a process of our mount
/// namespace and the container's root for a container's process.
pub fn in_root(pid: i32, path: &str) -> String {
    format!("/proc/{pid}/root{path}")
}

/// Turns the mappings of `pid` into the model, or refuses the first one that
/// ferry cannot carry.
pub fn classify_mappings(pid: i32, maps: &[MapsEntry]) -> Result<Vec<Vma>, CheckpointError> {
    maps.iter().map(|m| classify_mapping(pid, m)).collect()
}

/// Classifies every mapping of `pid`: the mappings ferry can carry, and a
/// refusal for each other one (for the dry run, which lists them all).
pub fn classify_each_mapping(pid: i32, maps: &[MapsEntry]) -> (Vec<Vma>, Vec<CheckpointError>) {
    let mut vmas = Vec::with_capacity(maps.len());
    let mut refused = Vec::new();
    for m in maps {
        match classify_mapping(pid, m) {
            Ok(v) => vmas.push(v),
            Err(e) => refused.push(e),
        }
    }
    (vmas, refused)
}

fn classify_mapping(pid: i32, m: &MapsEntry) -> Result<Vma, CheckpointError> {
    let refuse = |why: String| CheckpointError::UnsupportedMapping {
        pid,
        start: m.start,
        end: m.end,
        name: if m.path.is_empty() {
            "anonymous".into()
        } else {
            m.path.clone()
        },
        why,
    };
    let prot = (if m.read { libc::PROT_READ } else { 0 })
        | (if m.write { libc::PROT_WRITE } else { 0 })
        | (if m.exec { libc::PROT_EXEC } else { 0 });
    let kind = match m.path.as_str() {
        "[vdso]" => VmaKind::Vdso,
        "[vvar]" => VmaKind::Vvar,
        "[vvar_vclock]" => VmaKind::VvarVclock,
        "[vsyscall]" => VmaKind::Vsyscall,
        // MAP_SHARED|MAP_ANONYMOUS shows as a deleted /dev/zero.
        "/dev/zero (deleted)" if m.shared => VmaKind::SharedAnonymous {
            inode: m.inode,
            offset: m.offset,
        },
        // A shmat attachment shows as "/SYSV<key> (deleted)" with the
        // shmid as its inode number.
        p if m.shared && p.starts_with("/SYSV") => {
            if m.vm_flags.split_whitespace().any(|f| f == "ht") {
                return Err(refuse(
                    "SysV shared memory in huge pages (SHM_HUGETLB) is not supported".into(),
                ));
            }
            if m.offset != 0 {
                return Err(refuse(format!(
                    "only part of SysV segment {} is attached here (from offset {:#x}: split by mprotect or partly unmapped); only whole attachments are carried",
                    m.inode, m.offset
                )));
            }
            let shmid = i32::try_from(m.inode).map_err(|_| {
                refuse(format!(
                    "SysV shared memory inode {} is not a shmid",
                    m.inode
                ))
            })?;
            VmaKind::SysvShm { shmid }
        }
        p if m.shared && p.starts_with("/memfd:") => VmaKind::SharedMemfd {
            inode: m.inode,
            offset: m.offset,
        },
        p if m.shared && p.ends_with(" (deleted)") => {
            return Err(refuse("the shared file it maps has been deleted".into()))
        }
        p if m.shared && p.starts_with('/') => {
            let meta = std::fs::metadata(in_root(pid, p))
                .map_err(|e| refuse(format!("the mapped file cannot be examined: {e}")))?;
            if meta.ino() != m.inode || !meta.is_file() {
                return Err(refuse(format!(
                    "the path now names another file (inode {} instead of {})",
                    meta.ino(),
                    m.inode
                )));
            }
            VmaKind::SharedFile {
                path: p.to_string(),
                offset: m.offset,
            }
        }
        _ if m.shared => {
            return Err(refuse(
                "this kind of shared mapping is not supported yet".into(),
            ))
        }
        "[heap]" => VmaKind::Heap,
        "[stack]" => VmaKind::Stack,
        "" => VmaKind::Anonymous,
        p if p.starts_with("[anon:") => VmaKind::Anonymous,
        p if p.ends_with(" (deleted)") => {
            return Err(refuse("the mapped file has been deleted".into()))
        }
        p if p.starts_with('/') => {
            let meta = std::fs::metadata(in_root(pid, p))
                .map_err(|e| refuse(format!("the mapped file cannot be examined: {e}")))?;
            if meta.ino() != m.inode {
                return Err(refuse(format!(
                    "the path now names another file (inode {} instead of {})",
                    meta.ino(),
                    m.inode
                )));
            }
            VmaKind::File {
                path: p.to_string(),
                offset: m.offset,
                identity: crate::proc::file_identity(&meta),
            }
        }
        other => {
            return Err(refuse(format!(
                "the special mapping {other} is not supported"
            )))
        }
    };
    let vma = Vma {
        start: m.start,
        end: m.end,
        prot: prot as u32,
        kind,
        vm_flags: m.vm_flags.clone(),
    };
    // [vvar] is VM_PFNMAP by nature; only other mappings of device memory
    // are refused.
    let device_memory = ["io", "pf"].iter().any(|flag| vma.has_vm_flag(flag));
    if device_memory && !vma.is_special() {
        return Err(refuse("it maps device memory (VM_IO/VM_PFNMAP)".into()));
    }
    Ok(vma)
}

/// How an fd is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdClass {
    /// Reopened by path.
    Path(PathFileType),
    /// An end of pipe `inode`, recreated with its buffered data.
    Pipe {
        /// The pipe's inode number.
        inode: u64,
    },
    /// An eventfd, recreated with its counter.
    Eventfd,
    /// A timerfd, re-armed with its remaining time and unread expirations.
    Timerfd,
    /// A signalfd, recreated with its mask.
    Signalfd,
    /// An epoll instance, rebuilt with its registrations.
    Epoll,
    /// An inotify instance, rebuilt with its watches.
    Inotify,
    /// Unix socket `inode`; `peer` is the inode of the socket it is
    /// connected to (0 when that one is closed), if connected.
    UnixSocket {
        /// The socket's inode number.
        inode: u64,
        /// The peer's inode number.
        peer: Option<u64>,
    },
    /// A listening TCP socket, or an unconnected TCP or UDP socket.
    InetSocket,
    /// Memfd `inode`, recreated with its contents.
    Memfd {
        /// The memfd's inode number.
        inode: u64,
    },
    /// An end of FIFO `inode`, reopened by path.
    Fifo {
        /// The FIFO's inode number.
        inode: u64,
    },
}

/// Decides whether an fd can be carried and how, or refuses it naming the
/// kind of file it is.
pub fn classify_fd(pid: i32, fd: i32, target: &str) -> Result<FdClass, CheckpointError> {
    let refuse = |kind: String| CheckpointError::UnsupportedFd {
        pid,
        fd,
        kind,
        target: target.to_string(),
    };
    match target {
        "anon_inode:[eventpoll]" => return Ok(FdClass::Epoll),
        "anon_inode:inotify" => return Ok(FdClass::Inotify),
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
        return super::sockets::classify(pid, fd, inode);
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
        return Err(refuse("deleted file".into()));
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
    } else if ft.is_char_device() {
        Err(refuse(
            if target.starts_with("/dev/pts/") || target.starts_with("/dev/tty") {
                "terminal".into()
            } else {
                "character device".into()
            },
        ))
    } else if ft.is_dir() {
        Err(refuse("directory".into()))
    } else if ft.is_fifo() {
        Ok(FdClass::Fifo { inode: meta.ino() })
    } else if ft.is_block_device() {
        Err(refuse("block device".into()))
    } else {
        Err(refuse("special file".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_kinds_are_named() {
        let kind = |t: &str| match classify_fd(1, 3, t) {
            Err(CheckpointError::UnsupportedFd { kind, .. }) => kind,
            other => panic!("{other:?}"),
        };
        assert_eq!(kind("anon_inode:[io_uring]"), "io_uring");
        assert_eq!(kind("anon_inode:[fanotify]"), "fanotify");
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
    fn pipes_are_carried() {
        assert_eq!(
            classify_fd(1, 3, "pipe:[9]").unwrap(),
            FdClass::Pipe { inode: 9 }
        );
    }

    #[test]
    fn shared_mapping_is_refused_with_reason() {
        let m = MapsEntry {
            start: 0x1000,
            end: 0x2000,
            read: true,
            write: true,
            exec: false,
            shared: true,
            offset: 0,
            inode: 32769,
            path: "/SYSV00000000 (deleted)".into(),
            vm_flags: String::new(),
        };
        assert_eq!(
            classify_mappings(7, std::slice::from_ref(&m)).unwrap()[0].kind,
            VmaKind::SysvShm { shmid: 32769 }
        );
        let huge = MapsEntry {
            vm_flags: "rd wr sh mr mw me ms ht".into(),
            ..m.clone()
        };
        let err = classify_mappings(7, &[huge]).unwrap_err().to_string();
        assert!(err.contains("process 7"), "{err}");
        assert!(err.contains("SHM_HUGETLB"), "{err}");
        let part = MapsEntry {
            offset: 0x3000,
            ..m.clone()
        };
        let err = classify_mappings(7, &[part]).unwrap_err().to_string();
        assert!(err.contains("only part of SysV segment 32769"), "{err}");
        let anon = MapsEntry {
            path: "/dev/zero (deleted)".into(),
            ..m
        };
        assert!(matches!(
            classify_mappings(7, &[anon]).unwrap()[0].kind,
            VmaKind::SharedAnonymous { .. }
        ));
    }
}
