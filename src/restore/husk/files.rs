//! The fd table and what it points to: pipes, FIFOs, files opened by
//! path, the descriptions created here and pulled in; the working
//! directory and umask.

use super::anon;
use super::netlink;
use super::notify;
use super::packet;
use super::pidfd;
use super::process::{Husk, STRUCT_OFF};
use super::reopen::reopen_flags;
use super::sockets;
use super::tcp;
use super::tty;
use super::unix;
use crate::image::{
    Checkpoint, FifoEnd, FileImage, FileOwnerKind, GhostDevice, GhostFile, OpenFile,
};
use crate::kernel;
use crate::kernel::abi::{FOwnerEx, IntoBytes};
use crate::ptrace::read_memory;
use crate::ptrace::remote::Remote;
use crate::restore::channel;
use crate::restore::error::RestoreError;
use nix::errno::Errno;
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, OwnedFd};

/// The open file descriptions of the tree while it is restored: the ones
/// migrate-agent creates (pipes, sockets, eventfds ...) are kept here
/// until every husk has pulled them in; one created inside a husk (a file
/// opened by path, an epoll or inotify instance, a FIFO end) is taken from
/// that husk by the other processes that share it.
pub(super) struct TreeFds {
    /// Our copy of each description created here, by file index.
    pub(super) ours: Vec<Option<OwnedFd>>,
    /// For a description created inside a husk: that process and an fd
    /// number it holds it at.
    pub(super) installed: Vec<Option<(i32, i32)>>,
    /// Each deleted file of the image ([`Checkpoint::ghost_files`]),
    /// recreated with its contents and unlinked again: a read-write
    /// description of ours (an O_PATH one for a device node, which is not
    /// opened until a description of it is), from which each description
    /// of it is reopened; with the device it is, for a device node.
    ghosts: Vec<(OwnedFd, Option<GhostDevice>)>,
    /// The TCP connections, in repair mode until the tree runs.
    pub(super) connections: tcp::Pending,
}

impl TreeFds {
    /// Creates the tree's pipes (with their data), the files in flight in
    /// its unix sockets, its sockets (with their queues) and pidfds of dead
    /// processes here, and its deleted files inside the root directory of
    /// `husk` (the root's husk: a container's root when it has one).
    /// `stdio` is the root husk's own stdio ([`husk_stdio`]): every
    /// description that was the container's external stdio is made from
    /// it.
    pub(super) fn create(
        ck: &Checkpoint,
        husk: Pid,
        stdio: &[Option<OwnedFd>; 3],
    ) -> Result<Self, RestoreError> {
        let pid = ck.root().map_or(0, |p| p.pid);
        let pipes = create_pipes(pid, &ck.pipes)?;
        let mut ours: Vec<Option<OwnedFd>> = (0..ck.files.len()).map(|_| None).collect();
        pidfd::create_dead_pidfds(ck, &mut ours)?;
        // The pipe ends given out so far, as (pipe, write end).
        let mut given: Vec<(u32, bool)> = Vec::new();
        for (i, file) in ck.files.iter().enumerate() {
            if let FileImage::Pipe(end) = file {
                let (rd, wr) =
                    pipes
                        .get(end.pipe as usize)
                        .ok_or_else(|| RestoreError::Unsupported {
                            pid,
                            why: format!(
                                "file #{i} is an end of pipe #{}, which the image lacks",
                                end.pipe
                            ),
                        })?;
                let end_fd = if end.write_end { wr } else { rd };
                let key = (end.pipe, end.write_end);
                ours[i] = Some(if given.contains(&key) {
                    // Another description of the same end (the process
                    // reopened it through /proc/PID/fd): a dup would share
                    // status flags with the first.
                    reopen_pipe_end(pid, end_fd, end.pipe, end.write_end)?
                } else {
                    given.push(key);
                    end_fd.try_clone().map_err(|e| RestoreError::Injected {
                        pid,
                        call: format!("dup of pipe #{}", end.pipe),
                        errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                    })?
                });
            }
        }
        external_stdio(pid, ck, stdio, &mut ours)?;
        unix::create_in_flight(ck, husk, &mut ours)?;
        unix::create(ck, &mut ours)?;
        sockets::create(ck, &mut ours)?;
        netlink::create(ck, &mut ours)?;
        packet::create(ck, &mut ours)?;
        tty::create(ck, husk, &mut ours)?;
        let connections = tcp::create(ck, &mut ours)?;
        let ghosts = ck
            .ghost_files
            .iter()
            .map(|g| create_ghost(pid, husk, g).map(|fd| (fd, g.device)))
            .collect::<Result<_, _>>()?;
        Ok(TreeFds {
            ours,
            installed: vec![None; ck.files.len()],
            ghosts,
            connections,
        })
    }
}

/// A new open file description of the end `end_fd` of pipe #`pipe` (its
/// write end if `write_end`), opened through /proc/self/fd as the process
/// made it (`pid` names the restore in errors). O_NONBLOCK: both ends are
/// open here, so it cannot block anyway; the status flags are set when it
/// is pulled in.
fn reopen_pipe_end(
    pid: i32,
    end_fd: &OwnedFd,
    pipe: u32,
    write_end: bool,
) -> Result<OwnedFd, RestoreError> {
    let access = if write_end {
        libc::O_WRONLY
    } else {
        libc::O_RDONLY
    };
    reopen_through_proc(pid, end_fd, access, &format!("an end of pipe #{pipe}"))
}

/// A new open file description of what `fd` is open on, with access mode
/// `access`, opened through /proc/self/fd (`pid` names the restore in
/// errors, `what` the file). O_NONBLOCK, so that a pipe whose other end
/// nobody holds does not block the open; the status flags are set when
/// it is pulled in.
fn reopen_through_proc(
    pid: i32,
    fd: &OwnedFd,
    access: i32,
    what: &str,
) -> Result<OwnedFd, RestoreError> {
    nix::fcntl::open(
        format!("/proc/self/fd/{}", fd.as_raw_fd()).as_str(),
        nix::fcntl::OFlag::from_bits_retain(access | libc::O_NONBLOCK | libc::O_CLOEXEC),
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|errno| RestoreError::Injected {
        pid,
        call: format!("reopening {what} through /proc/self/fd"),
        errno,
    })
}

/// The stdio fds of `husk`, the restored root's husk (a container's init
/// as its runtime created it), that the image's external stdio needs:
/// taken with pidfd_getfd before the husk's own fds are closed. They are
/// what the restoring runtime gave the new container (its caller's stdio).
pub(super) fn husk_stdio(ck: &Checkpoint, husk: Pid) -> Result<[Option<OwnedFd>; 3], RestoreError> {
    let mut stdio: [Option<OwnedFd>; 3] = [None, None, None];
    let pid = ck.root().map_or(0, |p| p.pid);
    for file in &ck.files {
        let FileImage::ExternalStdio(s) = file else {
            continue;
        };
        let slot = usize::from(s.slot);
        if slot >= stdio.len() || stdio[slot].is_some() {
            continue;
        }
        let taken = kernel::pidfd_open(husk)
            .and_then(|pidfd| kernel::pidfd_getfd(&pidfd, slot as i32))
            .map_err(|errno| RestoreError::Injected {
                pid,
                call: format!(
                    "taking fd {slot} of the restored init's husk {husk}, the container's new stdio for {}",
                    s.target
                ),
                errno,
            })?;
        stdio[slot] = Some(taken);
    }
    Ok(stdio)
}

/// Fills `ours` with each description of the image that was the
/// container's external stdio: the first of each slot as a dup of the
/// husk's fd of that slot (`stdio`), a later one of the same slot (a
/// description opened again through /proc/PID/fd) as a new description
/// of the same file, so that status flags stay per description.
fn external_stdio(
    pid: i32,
    ck: &Checkpoint,
    stdio: &[Option<OwnedFd>; 3],
    ours: &mut [Option<OwnedFd>],
) -> Result<(), RestoreError> {
    let mut given: Vec<u8> = Vec::new();
    for (i, file) in ck.files.iter().enumerate() {
        let FileImage::ExternalStdio(s) = file else {
            continue;
        };
        let fd = stdio
            .get(usize::from(s.slot))
            .and_then(Option::as_ref)
            .ok_or_else(|| RestoreError::Unsupported {
                pid,
                why: format!(
                    "file #{i} was the container's stdio fd {} ({}), which the restored init's husk does not have",
                    s.slot, s.target
                ),
            })?;
        let what = format!("the container's stdio fd {}", s.slot);
        let fail = |e: std::io::Error| RestoreError::Injected {
            pid,
            call: format!("dup of {what}"),
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        };
        ours[i] = Some(if given.contains(&s.slot) {
            let access = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL).map_err(|errno| {
                RestoreError::Injected {
                    pid,
                    call: format!("F_GETFL of {what}"),
                    errno,
                }
            })? & libc::O_ACCMODE;
            reopen_through_proc(pid, fd, access, &what)?
        } else {
            given.push(s.slot);
            fd.try_clone().map_err(fail)?
        });
    }
    Ok(())
}

/// Recreates deleted file `g` here (`pid`, the root, names the restore in
/// errors), inside the root directory of `husk`: at its old path, or
/// beside it under a name of its own if that path is taken, with its
/// contents, owner, mode and times; then unlinks it again. Returns a
/// read-write description of it, or for a device node (made with mknod)
/// an O_PATH one.
fn create_ghost(pid: i32, husk: Pid, g: &GhostFile) -> Result<OwnedFd, RestoreError> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    let fail = |what: String| {
        move |errno| RestoreError::Injected {
            pid,
            call: what,
            errno,
        }
    };
    let create = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC;
    let root = format!("/proc/{husk}/root");
    let mut path = g.path.clone();
    let mut attempt = 0;
    let fd = loop {
        let at = format!("{root}{path}");
        match make_ghost(&at, g, create) {
            Err(Errno::EEXIST) if attempt < 100 => {
                attempt += 1;
                path = format!("{}.ferry-ghost.{}.{attempt}", g.path, std::process::id());
            }
            other => break other.map_err(fail(format!("recreating deleted file {path}")))?,
        }
    };
    let what = |op: &str| format!("{op} of deleted file {} (recreated as {path})", g.path);
    let filled = (|| {
        if g.device.is_none() {
            nix::unistd::ftruncate(&fd, g.size as i64).map_err(fail(what("ftruncate")))?;
        }
        for (offset, bytes) in &g.data {
            let mut written = 0;
            while written < bytes.len() {
                written +=
                    nix::sys::uio::pwrite(&fd, &bytes[written..], (offset + written as u64) as i64)
                        .map_err(fail(what("pwrite")))?;
            }
        }
        // Through /proc/self/fd, which an O_PATH description allows too.
        let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
        nix::unistd::chown(
            link.as_str(),
            Some(nix::unistd::Uid::from_raw(g.uid)),
            Some(nix::unistd::Gid::from_raw(g.gid)),
        )
        .map_err(fail(what("chown")))?;
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            link.as_str(),
            Mode::from_bits_retain(g.mode),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(fail(what("chmod")))?;
        let time = |(sec, nsec): (i64, i64)| nix::sys::time::TimeSpec::new(sec, nsec);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            link.as_str(),
            &time(g.atime),
            &time(g.mtime),
            nix::sys::stat::UtimensatFlags::FollowSymlink,
        )
        .map_err(fail(what("utimensat")))
    })();
    let unlinked =
        nix::unistd::unlink(format!("{root}{path}").as_str()).map_err(fail(what("unlink")));
    filled.and(unlinked)?;
    Ok(fd)
}

/// Makes deleted file `g` anew at `at` (a path in this mount namespace):
/// a regular file opened with `create`, or a device node (mknod), opened
/// O_PATH (and removed again if that fails).
fn make_ghost(at: &str, g: &GhostFile, create: nix::fcntl::OFlag) -> nix::Result<OwnedFd> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::{Mode, SFlag};
    let Some(d) = g.device else {
        return nix::fcntl::open(at, create, Mode::from_bits_truncate(0o600));
    };
    let kind = if d.block {
        SFlag::S_IFBLK
    } else {
        SFlag::S_IFCHR
    };
    let rdev = nix::sys::stat::makedev(d.major.into(), d.minor.into());
    nix::sys::stat::mknod(at, kind, Mode::from_bits_truncate(0o600), rdev)?;
    nix::fcntl::open(at, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).inspect_err(|_| {
        let _ = nix::unistd::unlink(at);
    })
}

impl TreeFds {
    /// Opens deleted file `ghost` (recreated by [`TreeFds::create`]) anew
    /// here with open flags `flags`, through /proc/self/fd, which still
    /// leads to it (`pid` names the process in errors).
    fn reopen_ghost(&self, pid: i32, ghost: u32, flags: i32) -> Result<OwnedFd, RestoreError> {
        let (ours, device) =
            self.ghosts
                .get(ghost as usize)
                .ok_or_else(|| RestoreError::Unsupported {
                    pid,
                    why: format!("an fd refers to deleted file #{ghost}, which the image lacks"),
                })?;
        let flags = reopen_flags(flags);
        nix::fcntl::open(
            format!("/proc/self/fd/{}", ours.as_raw_fd()).as_str(),
            nix::fcntl::OFlag::from_bits_retain(flags),
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|errno| match device {
            // The node is there; the device behind it is not.
            Some(d) if matches!(errno, Errno::ENXIO | Errno::ENODEV) => RestoreError::Unsupported {
                pid,
                why: format!(
                    "deleted file #{ghost} is {} device {}:{}, which this host does not have ({errno})",
                    if d.block { "block" } else { "character" },
                    d.major,
                    d.minor
                ),
            },
            _ => RestoreError::Injected {
                pid,
                call: format!("reopening deleted file #{ghost} (flags {flags:#o})"),
                errno,
            },
        })
    }
}

/// Creates the image's pipes here, each with its capacity and the data
/// that was buffered in it (`pid`, the root, names the restore in errors).
pub(super) fn create_pipes(
    pid: i32,
    pipes: &[crate::image::PipeImage],
) -> Result<Vec<(OwnedFd, OwnedFd)>, RestoreError> {
    let fail = |what: String| {
        move |errno| RestoreError::Injected {
            pid,
            call: what,
            errno,
        }
    };
    let mut out = Vec::with_capacity(pipes.len());
    for p in pipes {
        let (rd, wr) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(fail("pipe2".into()))?;
        nix::fcntl::fcntl(&wr, nix::fcntl::FcntlArg::F_SETPIPE_SZ(p.capacity as i32)).map_err(
            fail(format!(
                "setting the size of pipe {} to {}",
                p.inode, p.capacity
            )),
        )?;
        let mut written = 0;
        while written < p.data.len() {
            written += nix::unistd::write(&wr, &p.data[written..]).map_err(fail(format!(
                "refilling pipe {} with {} bytes",
                p.inode,
                p.data.len()
            )))?;
        }
        out.push((rd, wr));
    }
    Ok(out)
}

impl<'a> Husk<'a> {
    /// Sets the working directory and the umask.
    pub(super) fn restore_fs_state(&mut self) -> Result<(), RestoreError> {
        let cwd = self.image.cwd.clone();
        let addr = self.put_str(&cwd)?;
        self.sys(
            0,
            |r| r.syscall(libc::SYS_chdir, &[addr]),
            || format!("chdir to {cwd}"),
        )?;
        let umask = u64::from(self.image.umask);
        self.sys(
            0,
            |r| r.syscall(libc::SYS_umask, &[umask]),
            || "umask".into(),
        )?;
        Ok(())
    }

    /// Chroots a process that was chrooted, once its files, mappings and
    /// cwd are back (the image names them from the namespace's root, as
    /// /proc showed them; a cwd outside the new root stays where it is,
    /// as chroot leaves it). A process sharing its fs information with
    /// its parent (CLONE_FS) had it done by the parent.
    pub(super) fn restore_root(&mut self) -> Result<(), RestoreError> {
        let root = self.image.root.clone();
        if root == "/" || self.image.shares_fs_with_parent {
            return Ok(());
        }
        let addr = self.put_str(&root)?;
        self.sys(
            0,
            |r| r.syscall(libc::SYS_chroot, &[addr]),
            || format!("chroot to {root}"),
        )?;
        Ok(())
    }

    /// Brings in every open file description the process holds, each once:
    /// one another process of the tree already has is taken from there
    /// (our copy of a pipe, socket or anonymous file, or, for one created
    /// inside another husk, that husk's fd), pulled in by an injected
    /// pidfd_getfd; a new one is created (a file by path inside the husk; an
    /// eventfd, timerfd, signalfd or memfd here in migrate-agent, then
    /// pulled in; an epoll or inotify instance inside the husk). Each is
    /// parked above the image's fd numbers, then installed at each fd that
    /// shares it. epoll registrations come last, when every fd they name is
    /// in place.
    pub(super) fn restore_fds(&mut self, tree: &mut TreeFds) -> Result<(), RestoreError> {
        let image = self.image;
        let files = self.files;
        let park_at = image.fds.iter().map(|f| f.fd).max().map_or(3, |m| m + 1);
        // The descriptions of this process, in fd order, each once.
        let mut mine: Vec<u32> = Vec::new();
        for f in &image.fds {
            if !mine.contains(&f.file) {
                mine.push(f.file);
            }
        }
        let missing = |i: u32| RestoreError::Unsupported {
            pid: image.pid,
            why: format!("an fd refers to file #{i}, which the image lacks"),
        };
        let needs_pidfd = mine.iter().any(|&i| {
            tree.installed.get(i as usize).is_some_and(Option::is_some)
                || !matches!(
                    files.get(i as usize),
                    Some(
                        FileImage::Path(OpenFile { ghost: None, .. })
                            | FileImage::Epoll(_)
                            | FileImage::Inotify(_)
                            | FileImage::Fifo(_)
                    )
                )
        });
        let our_pidfd = if needs_pidfd {
            let fd = match self.channel {
                Some(channel) => self.connect_channel(channel)?,
                None => self.sys(
                    0,
                    |r| r.pidfd_open(std::process::id()),
                    || "pidfd_open of migrate-agent".into(),
                )?,
            };
            // Parked above the image's fds like the files: at a low number
            // it would be replaced by an installed fd, and closing it would
            // then close that fd.
            Some(self.park(fd, park_at, || {
                format!("parking the pidfd of migrate-agent above fd {park_at}")
            })?)
        } else {
            None
        };
        // (file index, parked fd in the husk).
        let mut parked: Vec<(u32, i32)> = Vec::with_capacity(mine.len());
        // The descriptions created in this husk.
        let mut created: Vec<u32> = Vec::new();
        // (path, parked fd in the husk) of a read-write open of each FIFO
        // that keeps it open while its ends are opened.
        let mut fifo_keepalives: Vec<(&str, i32)> = Vec::new();
        let own_dir = format!("/proc/{}/", image.pid);
        let (own_proc, mine): (Vec<u32>, Vec<u32>) = mine.into_iter().partition(|&i| {
            matches!(files.get(i as usize), Some(FileImage::Path(f))
                if f.ghost.is_none() && f.path.starts_with(&own_dir))
                && tree.installed.get(i as usize).is_some_and(Option::is_none)
        });
        for &i in &mine {
            let file = files.get(i as usize).ok_or_else(|| missing(i))?;
            let from_husk = tree.installed.get(i as usize).copied().flatten();
            let fd = if let Some(ours) = tree.ours.get(i as usize).and_then(Option::as_ref) {
                let status = match file {
                    FileImage::Pipe(end) => Some(end.flags),
                    FileImage::ExternalStdio(s) => Some(s.flags),
                    FileImage::Pty(end) => Some(end.flags),
                    _ => None,
                };
                self.pull_in(our_pidfd, ours, status, &format!("file #{i}"))?
            } else if let Some((owner, fd)) = from_husk {
                let fail = |call: String| {
                    move |errno| RestoreError::Injected {
                        pid: image.pid,
                        call,
                        errno,
                    }
                };
                let ours = kernel::pidfd_open(Pid::from_raw(owner))
                    .and_then(|pidfd| kernel::pidfd_getfd(&pidfd, fd))
                    .map_err(fail(format!(
                        "taking fd {fd} of restored process {owner}, which shares file #{i}"
                    )))?;
                self.pull_in(our_pidfd, &ours, None, &format!("file #{i}"))?
            } else {
                created.push(i);
                match file {
                    FileImage::Path(OpenFile {
                        ghost: Some(g),
                        flags,
                        ..
                    }) => {
                        let ours = tree.reopen_ghost(image.pid, *g, *flags)?;
                        let fd = self.pull_in(our_pidfd, &ours, None, &format!("file #{i}"))?;
                        tree.ours[i as usize] = Some(ours);
                        fd
                    }
                    FileImage::Path(f) => self.open_path(f)?,
                    FileImage::Pipe(_)
                    | FileImage::ExternalStdio(_)
                    | FileImage::UnixSocket(_)
                    | FileImage::InetSocket(_)
                    | FileImage::NetlinkSocket(_)
                    | FileImage::PacketSocket(_)
                    | FileImage::TcpConnection(_)
                    | FileImage::Pty(_) => {
                        return Err(RestoreError::Unsupported {
                            pid: image.pid,
                            why: format!("file #{i} (a pipe, socket or terminal) was not created"),
                        })
                    }
                    FileImage::Eventfd(e) => {
                        let ours = anon::create_eventfd(image.pid, e)?;
                        let fd = self.pull_in(our_pidfd, &ours, Some(e.flags), "an eventfd")?;
                        tree.ours[i as usize] = Some(ours);
                        fd
                    }
                    FileImage::Timerfd(t) => {
                        let ours = anon::create_timerfd(image.pid, t)?;
                        let fd = self.pull_in(our_pidfd, &ours, Some(t.flags), "a timerfd")?;
                        tree.ours[i as usize] = Some(ours);
                        fd
                    }
                    FileImage::Signalfd(sfd) => {
                        let ours = anon::create_signalfd(image.pid, sfd)?;
                        let fd = self.pull_in(our_pidfd, &ours, Some(sfd.flags), "a signalfd")?;
                        tree.ours[i as usize] = Some(ours);
                        fd
                    }
                    FileImage::Epoll(e) => self.create_epoll(e)?,
                    FileImage::Inotify(ino) => self.create_inotify(ino)?,
                    FileImage::Fanotify(f) => {
                        let ours = notify::create_fanotify(image.pid, self.pid, f)?;
                        let fd = self.pull_in(our_pidfd, &ours, Some(f.flags), "fanotify")?;
                        tree.ours[i as usize] = Some(ours);
                        fd
                    }
                    FileImage::Fifo(f) => self.open_fifo(f, park_at, &mut fifo_keepalives)?,
                    FileImage::Pidfd(d) => self.create_pidfd(d)?,
                    FileImage::Memfd(m) => {
                        let ours = match m.same_as {
                            Some(j) => {
                                let first = tree
                                    .ours
                                    .get(j as usize)
                                    .and_then(Option::as_ref)
                                    .ok_or_else(|| RestoreError::Unsupported {
                                        pid: image.pid,
                                        why: format!(
                                            "file #{i} opens memfd {} again, but file #{j}, \
                                             the memfd itself, was not made before it",
                                            m.name
                                        ),
                                    })?;
                                anon::reopen_memfd(image.pid, first, m)?
                            }
                            None => anon::create_memfd(image.pid, m)?,
                        };
                        let what = format!("memfd {}", m.name);
                        let fd = self.pull_in(our_pidfd, &ours, Some(m.flags), &what)?;
                        tree.ours[i as usize] = Some(ours);
                        fd
                    }
                }
            };
            let park = self.park(fd, park_at, || {
                format!("parking file {i} above fd {park_at}")
            })?;
            if let (FileImage::Path(f), true) = (file, created.contains(&i)) {
                self.seek_reopened(park, f)?;
            }
            parked.push((i, park));
        }
        // A file of this process's own /proc/PID (its fdinfo, say) exists
        // once the other fds are in place: opened last.
        for (k, &i) in mine.iter().chain(&own_proc).enumerate() {
            // Past the descriptions opened above: an own /proc file.
            if k >= parked.len() {
                let Some(FileImage::Path(f)) = files.get(i as usize) else {
                    continue;
                };
                let fd = self.open_path(f)?;
                let park = self.park(fd, park_at, || format!("parking file {i}"))?;
                self.seek_reopened(park, f)?;
                parked.push((i, park));
                created.push(i);
            }
            for f in image.fds.iter().filter(|f| f.file == i) {
                let flags = if f.cloexec { libc::O_CLOEXEC } else { 0 };
                let park = parked[k].1;
                self.sys(
                    0,
                    |r| r.dup3(park, f.fd, flags),
                    || format!("installing fd {}", f.fd),
                )?;
            }
        }
        self.register_epoll_targets(&created)?;
        // Later processes that share a description created here take it
        // from this process.
        for &i in &created {
            if tree.ours.get(i as usize).is_some_and(Option::is_none) {
                if let Some(f) = image.fds.iter().find(|f| f.file == i) {
                    tree.installed[i as usize] = Some((self.pid.as_raw(), f.fd));
                }
            }
        }
        let keepalives = fifo_keepalives.into_iter().map(|(_, fd)| fd);
        let parked = parked.into_iter().map(|(_, fd)| fd);
        for fd in parked.chain(keepalives).chain(our_pidfd) {
            self.sys(0, |r| r.close(fd), || format!("close of fd {fd}"))?;
        }
        self.channel_end = None;
        Ok(())
    }

    /// Sets again who gets the SIGIO and SIGURG signals of each
    /// description the image records it for, which signal, and O_ASYNC.
    /// Run once every process of the tree and its threads exist (an owner
    /// may be any of them) and the credentials are back, which the kernel
    /// records with the owner to check the signal's delivery against.
    /// O_ASYNC is cleared and set again, so that the signals name the fd
    /// the process knows (a description made in migrate-agent was armed
    /// there, under the fd number it had there).
    pub(super) fn restore_file_owners(&mut self) -> Result<(), RestoreError> {
        for owner in &self.image.file_owners {
            let fd = owner.fd;
            let kind = match owner.kind {
                FileOwnerKind::Thread => crate::kernel::abi::F_OWNER_TID,
                FileOwnerKind::Process => crate::kernel::abi::F_OWNER_PID,
                FileOwnerKind::ProcessGroup => crate::kernel::abi::F_OWNER_PGRP,
            };
            let ex = FOwnerEx {
                kind,
                pid: owner.pid,
            };
            let at = self.put(STRUCT_OFF, ex.as_bytes())?;
            self.sys(
                0,
                |r| r.set_file_owner(fd, at, owner.signal),
                || {
                    format!(
                        "setting the owner of fd {fd} to {:?} {} (signal {})",
                        owner.kind, owner.pid, owner.signal
                    )
                },
            )?;
            if owner.async_io {
                let what = || format!("setting O_ASYNC on fd {fd}");
                let flags = self.sys(0, |r| r.status_flags(fd), what)?;
                self.sys(0, |r| r.set_status_flags(fd, flags & !libc::O_ASYNC), what)?;
                self.sys(0, |r| r.set_status_flags(fd, flags | libc::O_ASYNC), what)?;
            }
        }
        Ok(())
    }

    /// Moves `fd` to the lowest free number from `park_at` on (closing
    /// `fd`); `what` names the move. Returns the new number.
    pub(super) fn park(
        &mut self,
        fd: i32,
        park_at: i32,
        what: impl FnOnce() -> String,
    ) -> Result<i32, RestoreError> {
        let parked = self.sys(0, |r| r.dup_above(fd, park_at), what)?;
        self.sys(0, |r| r.close(fd), || format!("close of fd {fd}"))?;
        Ok(parked)
    }

    /// Connects the husk to the fd channel (an injected unix socket,
    /// connected to migrate-agent's abstract name); returns the husk's fd.
    pub(super) fn connect_channel(
        &mut self,
        channel: &channel::FdChannel,
    ) -> Result<i32, RestoreError> {
        let fd = self.sys(
            0,
            |r| r.socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC),
            || "socket(AF_UNIX) for the fd channel".into(),
        )?;
        let (addr, len) = channel.sockaddr();
        let addr_at = self.put(STRUCT_OFF, &addr)?;
        self.sys(
            0,
            |r| r.syscall(libc::SYS_connect, &[fd as u64, addr_at, len]),
            || "connect to migrate-agent's fd channel".into(),
        )?;
        self.channel_end = Some(channel.accept(self.image.pid)?);
        Ok(fd)
    }

    /// Opens FIFO end `f` by path in the husk; returns its fd there. The
    /// first time a FIFO is seen it is opened read-write and non-blocking
    /// (parked above `park_at`, kept in `keepalives`) so that opening the
    /// ends does not block, recreated first if it is gone; the buffered
    /// data is written back through that keep-alive.
    pub(super) fn open_fifo<'f>(
        &mut self,
        f: &'f FifoEnd,
        park_at: i32,
        keepalives: &mut Vec<(&'f str, i32)>,
    ) -> Result<i32, RestoreError> {
        let pid = self.image.pid;
        let path = self.put_str(&f.path)?;
        let keepalive = match keepalives.iter().find(|(p, _)| *p == f.path) {
            Some(&(_, fd)) => fd,
            None => {
                let open = |r: &mut Remote<'_>| {
                    r.open(path, libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC)
                };
                let what = || format!("opening FIFO {} to keep it open", f.path);
                let fd = match self.sys(0, open, what) {
                    Err(RestoreError::Injected {
                        errno: Errno::ENOENT,
                        ..
                    }) => {
                        let mode = u64::from(libc::S_IFIFO | f.mode);
                        let at = libc::AT_FDCWD as u64;
                        self.sys(
                            0,
                            |r| r.syscall(libc::SYS_mknodat, &[at, path, mode]),
                            || format!("recreating the FIFO {} (mode {:#o})", f.path, f.mode),
                        )?;
                        self.sys(0, open, what)?
                    }
                    other => other?,
                };
                let parked = self.park(fd, park_at, || {
                    format!("parking the keep-alive of FIFO {}", f.path)
                })?;
                keepalives.push((&f.path, parked));
                parked
            }
        };
        if !f.data.is_empty() {
            let fail = |call: String| move |errno| RestoreError::Injected { pid, call, errno };
            let husk =
                kernel::pidfd_open(self.pid).map_err(fail("pidfd_open of the husk".into()))?;
            let writer = kernel::pidfd_getfd(&husk, keepalive)
                .map_err(fail(format!("taking the keep-alive of FIFO {}", f.path)))?;
            let mut written = 0;
            while written < f.data.len() {
                written += nix::unistd::write(&writer, &f.data[written..]).map_err(fail(
                    format!("refilling FIFO {} with {} bytes", f.path, f.data.len()),
                ))?;
            }
        }
        let flags = reopen_flags(f.flags);
        self.sys(
            0,
            |r| r.open(path, flags),
            || format!("reopening FIFO {} (flags {:#o})", f.path, flags),
        )
    }

    /// Gives our description `ours` the status flags `status` and takes it
    /// into the husk (pidfd_getfd through `our_pidfd`, our own pidfd opened
    /// in the husk); returns its fd there.
    pub(super) fn pull_in(
        &mut self,
        our_pidfd: Option<i32>,
        ours: &OwnedFd,
        status: Option<i32>,
        what: &str,
    ) -> Result<i32, RestoreError> {
        if let Some(status) = status {
            let flags = nix::fcntl::OFlag::from_bits_truncate(status);
            nix::fcntl::fcntl(ours, nix::fcntl::FcntlArg::F_SETFL(flags)).map_err(|errno| {
                RestoreError::Injected {
                    pid: self.image.pid,
                    call: format!("F_SETFL {status:#o} on {what}"),
                    errno,
                }
            })?;
        }
        let pidfd = our_pidfd.expect("opened when files are created here");
        if let Some(end) = &self.channel_end {
            channel::send_fd(end, ours, self.image.pid)?;
            let iov_at = self.helper + STRUCT_OFF + 256;
            let control_at = self.helper + STRUCT_OFF + 512;
            let byte_at = self.helper + STRUCT_OFF + 1024;
            self.put(
                STRUCT_OFF + 256,
                &[byte_at.to_ne_bytes(), 1u64.to_ne_bytes()].concat(),
            )?;
            self.put(STRUCT_OFF + 512, &[0u8; channel::CONTROL_LEN as usize])?;
            let msg = self.put(STRUCT_OFF, &channel::msghdr(iov_at, control_at))?;
            let flags = libc::MSG_CMSG_CLOEXEC as u64;
            self.sys(
                0,
                |r| r.syscall(libc::SYS_recvmsg, &[pidfd as u64, msg, flags]),
                || format!("recvmsg of {what} from the fd channel"),
            )?;
            let mut control = [0u8; channel::CONTROL_LEN as usize];
            read_memory(self.pid, control_at, &mut control)?;
            return channel::received_fd(&control).ok_or_else(|| RestoreError::Unsupported {
                pid: self.image.pid,
                why: format!("{what} did not arrive over the fd channel"),
            });
        }
        let fd = ours.as_raw_fd();
        self.sys(
            0,
            |r| r.pidfd_getfd(pidfd, fd),
            || format!("pidfd_getfd of {what} from migrate-agent"),
        )
    }
}
