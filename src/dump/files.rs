//! Open file descriptions of a stopped process. Each fd is taken out of the
//! process with pidfd_getfd, so that ferry inspects the very description
//! the process holds with ordinary system calls (pipe sizes, buffered
//! data); fds that share a description (dup'ed, or inherited across fork
//! by another process of the tree) are found with kcmp.

use super::anon;
use super::error::CheckpointError;
use super::netlink;
use super::notify;
use super::packet;
use super::pidfd;
use super::sockets;
use super::tcp;
use super::tty;
use crate::image::{
    ExternalStdio, FdImage, FifoEnd, FileImage, FileOwner, FileOwnerKind, GhostDevice, GhostFile,
    OpenFile, PathFileType, PipeEnd, PipeImage, PtyImage,
};
use crate::inspect::{ClassifiedFd, FdClass};
use crate::kernel;
use crate::proc;
use nix::fcntl::{fcntl, tee, FcntlArg, SpliceFFlags};
use nix::unistd::Pid;
use std::os::fd::OwnedFd;

/// The descriptions and pipes of a whole tree, filled process by process:
/// a description shared by several processes is described once.
#[derive(Default)]
pub struct TreeFiles {
    /// Every description.
    pub files: Vec<FileImage>,
    /// The pipes those descriptions are ends of.
    pub pipes: Vec<PipeImage>,
    /// The pseudo-terminal pairs those descriptions are ends of.
    pub ptys: Vec<PtyImage>,
    /// The deleted files those descriptions refer to, with their contents.
    pub ghosts: Vec<GhostFile>,
    /// (device, inode) of each of `ghosts`, to describe a file once however
    /// many descriptions refer to it.
    ghost_inodes: Vec<(u64, u64)>,
    /// (pid, fd, link target, index of its description) of every fd
    /// described so far.
    seen: Vec<(i32, i32, String, u32)>,
    /// (socket inode, peer inode if connected, description, clients queued
    /// on it if listening) of every unix socket, linked to its peer by
    /// [`TreeFiles::link_unix_peers`].
    unix: Vec<(u64, Option<u64>, u32, Vec<u32>)>,
    /// FIFOs whose buffered data has been copied already.
    fifos_copied: Vec<u64>,
    /// Our copies of the files in flight in unix sockets, kept open until
    /// the whole tree is described: `seen` compares them with the fds of
    /// the processes described later.
    in_flight_fds: Vec<OwnedFd>,
    /// Descriptions whose OFD and flock() locks are recorded already (by
    /// the first process of the tree that holds them).
    pub(super) locked: Vec<u32>,
    /// The TCP connections read so far, held in repair mode.
    pub repaired: tcp::RepairedSockets,
    /// The signal-driven I/O settings of the descriptions the process
    /// being described is the first to hold; taken by its image.
    pub(super) owners: Vec<FileOwner>,
}

impl TreeFiles {
    /// Once every process is described, points each connected unix
    /// socket at its peer's description, marks those whose peer has closed,
    /// and points a datagram socket connected to a server (or itself) and
    /// a connection not accepted yet at the socket they connect to by name,
    /// each listener listing its queued connections in accept order.
    pub fn link_unix_peers(&mut self) {
        let file_of = |ino: u64| self.unix.iter().find(|u| u.0 == ino).map(|u| u.2);
        let mut links = Vec::new();
        for (inode, peer, file, _) in &self.unix {
            let Some(peer) = *peer else { continue };
            let mutual = self
                .unix
                .iter()
                .find(|u| u.0 == peer && u.1 == Some(*inode) && peer != *inode)
                .map(|u| u.2);
            let queued_on = self
                .unix
                .iter()
                .find(|u| u.3.contains(&(*inode as u32)))
                .map(|u| u.2);
            let link = match (mutual, queued_on) {
                (Some(p), _) => UnixLink::Peer(p),
                (None, Some(listener)) => UnixLink::ConnectTo(listener),
                (None, None) if peer == 0 => UnixLink::PeerGone,
                (None, None) => match file_of(peer) {
                    Some(server) => UnixLink::ConnectTo(server),
                    None => continue,
                },
            };
            links.push((*file, link));
        }
        let queues: Vec<(u32, Vec<u32>)> = self
            .unix
            .iter()
            .filter(|u| !u.3.is_empty())
            .map(|u| {
                let clients = u.3.iter().filter_map(|&c| file_of(u64::from(c))).collect();
                (u.2, clients)
            })
            .collect();
        for (file, link) in links {
            if let Some(FileImage::UnixSocket(u)) = self.files.get_mut(file as usize) {
                match link {
                    UnixLink::Peer(p) => u.peer = Some(p),
                    UnixLink::PeerGone => u.peer_gone = true,
                    UnixLink::ConnectTo(s) => u.connect_to = Some(s),
                }
            }
        }
        for (file, clients) in queues {
            if let Some(FileImage::UnixSocket(u)) = self.files.get_mut(file as usize) {
                u.accept_queue = clients;
            }
        }
    }
}

/// How a connected unix socket is connected, found once the tree is
/// described.
enum UnixLink {
    /// To this description, which is connected back to it.
    Peer(u32),
    /// To a socket that has closed.
    PeerGone,
    /// By name, to this description (a datagram server, or a listener).
    ConnectTo(u32),
}

/// Describes every fd of the stopped process `pid`, adding the
/// descriptions not seen in the tree yet to `tree`.
pub fn describe(
    pid: i32,
    fds: &[ClassifiedFd],
    tree: &mut TreeFiles,
) -> Result<Vec<FdImage>, CheckpointError> {
    let process = Pid::from_raw(pid);
    let fail = |what: String| {
        move |errno: nix::errno::Errno| CheckpointError::Io {
            what,
            source: errno.into(),
        }
    };
    let pidfd =
        kernel::pidfd_open(process).map_err(fail(format!("open a pidfd for process {pid}")))?;
    let mut out = Vec::with_capacity(fds.len());
    for c in fds {
        let info = proc::read_fdinfo(pid, c.fd)?;
        let mut shared = None;
        // Only fds with the same link target can share a description.
        for (opid, ofd, _, file) in tree.seen.iter().filter(|s| s.2 == c.target) {
            if kernel::same_file_description(process, c.fd, Pid::from_raw(*opid), *ofd).map_err(
                fail(format!(
                    "compare fd {} of process {pid} with fd {ofd} of process {opid}",
                    c.fd
                )),
            )? {
                shared = Some(*file);
                break;
            }
        }
        let file = match shared {
            Some(file) => file,
            None => {
                let flags = info.flags & !libc::O_CLOEXEC;
                let mut queued_clients = Vec::new();
                let mut in_flight = Vec::new();
                let image =
                    match c.class {
                        FdClass::Path(file_type) => {
                            let deleted = c.target.strip_suffix(" (deleted)");
                            let ghost = match deleted {
                                Some(path) if file_type != PathFileType::Directory => {
                                    Some(ghost_index(pid, c.fd, path, tree)?)
                                }
                                _ => None,
                            };
                            FileImage::Path(OpenFile {
                                path: deleted.unwrap_or(&c.target).to_string(),
                                file_type,
                                flags,
                                pos: info.pos,
                                ghost,
                            })
                        }
                        FdClass::Pipe { inode } => {
                            let taken = kernel::pidfd_getfd(&pidfd, c.fd).map_err(fail(
                                format!("take fd {} (a pipe) of process {pid}", c.fd),
                            ))?;
                            let write_end = flags & libc::O_ACCMODE == libc::O_WRONLY;
                            let pipe = pipe_index(pid, &mut tree.pipes, inode, &taken, write_end)?;
                            FileImage::Pipe(PipeEnd {
                                pipe,
                                write_end,
                                flags: flags & !libc::O_ACCMODE,
                            })
                        }
                        FdClass::Eventfd => anon::eventfd(pid, c.fd, flags)?,
                        FdClass::Timerfd => anon::timerfd(pid, &pidfd, c.fd, flags)?,
                        FdClass::Signalfd => anon::signalfd(pid, c.fd, flags)?,
                        FdClass::Epoll => notify::epoll(pid, c, fds, flags)?,
                        FdClass::Inotify => notify::inotify(pid, c, flags)?,
                        FdClass::Fanotify => notify::fanotify(pid, c, flags)?,
                        FdClass::Memfd { inode } => {
                            let taken = kernel::pidfd_getfd(&pidfd, c.fd).map_err(fail(
                                format!("take fd {} (a memfd) of process {pid}", c.fd),
                            ))?;
                            // An earlier description of the same memfd
                            // carries its data.
                            let same_as = tree.files.iter().position(|f| {
                                matches!(f, FileImage::Memfd(m)
                                    if m.inode == inode && m.same_as.is_none())
                            });
                            let same_as = same_as.map(|i| i as u32);
                            anon::memfd(pid, &c.target, inode, &taken, flags, info.pos, same_as)?
                        }
                        FdClass::Fifo { inode } => {
                            let mut data = Vec::new();
                            if flags & libc::O_ACCMODE != libc::O_WRONLY
                                && !tree.fifos_copied.contains(&inode)
                            {
                                let taken = kernel::pidfd_getfd(&pidfd, c.fd).map_err(fail(
                                    format!("take fd {} (a FIFO) of process {pid}", c.fd),
                                ))?;
                                data = fcntl(&taken, FcntlArg::F_GETPIPE_SZ)
                                    .and_then(|capacity| peek_pipe(&taken, capacity as u32))
                                    .map_err(fail(format!(
                                        "copy the data of FIFO {} of process {pid}",
                                        c.target
                                    )))?;
                                tree.fifos_copied.push(inode);
                            }
                            let meta = std::fs::metadata(format!("/proc/{pid}/fd/{}", c.fd))
                                .map_err(|source| CheckpointError::Io {
                                    what: format!("examine FIFO {} of process {pid}", c.target),
                                    source,
                                })?;
                            FileImage::Fifo(FifoEnd {
                                path: c.target.clone(),
                                mode: std::os::unix::fs::PermissionsExt::mode(&meta.permissions())
                                    & 0o7777,
                                flags,
                                data,
                            })
                        }
                        FdClass::Pidfd { pid: target } => {
                            pidfd::describe(pid, c.fd, target.is_some(), flags)?
                        }
                        FdClass::UnixSocket { .. } | FdClass::InetSocket => {
                            let taken = kernel::pidfd_getfd(&pidfd, c.fd).map_err(fail(
                                format!("take fd {} (a socket) of process {pid}", c.fd),
                            ))?;
                            let described =
                                sockets::describe(pid, c.fd, &c.target, c.class, &taken, flags)?;
                            queued_clients = described.queued_clients;
                            in_flight = described.in_flight;
                            described.image
                        }
                        FdClass::NetlinkSocket => {
                            let taken = kernel::pidfd_getfd(&pidfd, c.fd).map_err(fail(
                                format!("take fd {} (a netlink socket) of process {pid}", c.fd),
                            ))?;
                            netlink::describe(pid, c.fd, &c.target, &taken, flags)?
                        }
                        FdClass::PacketSocket { inode } => {
                            let taken = kernel::pidfd_getfd(&pidfd, c.fd).map_err(fail(
                                format!("take fd {} (a packet socket) of process {pid}", c.fd),
                            ))?;
                            packet::describe(pid, c.fd, &c.target, inode, &taken, flags)?
                        }
                        FdClass::ExternalStdio { slot, .. } => {
                            FileImage::ExternalStdio(ExternalStdio {
                                slot,
                                flags,
                                target: c.target.clone(),
                            })
                        }
                        FdClass::TcpConnection { .. } => {
                            let taken = kernel::pidfd_getfd(&pidfd, c.fd).map_err(fail(
                                format!("take fd {} (a TCP connection) of process {pid}", c.fd),
                            ))?;
                            tcp::describe(pid, c.fd, &c.target, taken, flags, &mut tree.repaired)?
                        }
                        FdClass::Pty { index, master } => {
                            let taken = kernel::pidfd_getfd(&pidfd, c.fd).map_err(fail(
                                format!("take fd {} (a terminal) of process {pid}", c.fd),
                            ))?;
                            let end = (index, master);
                            tty::describe(pid, c.fd, end, &taken, flags, &mut tree.ptys)?
                        }
                    };
                tree.files.push(image);
                let file = (tree.files.len() - 1) as u32;
                let taken = kernel::pidfd_getfd(&pidfd, c.fd)
                    .map_err(fail(format!("take fd {} of process {pid}", c.fd)))?;
                tree.owners.extend(file_owner(pid, c.fd, &taken, flags)?);
                if let FdClass::UnixSocket { inode, peer } = c.class {
                    tree.unix.push((inode, peer, file, queued_clients));
                }
                for (message, fds) in in_flight.into_iter().enumerate() {
                    let mut files = Vec::with_capacity(fds.len());
                    for f in fds {
                        files.push(in_flight_file(pid, c, f, tree)?);
                    }
                    if let Some(FileImage::UnixSocket(u)) = tree.files.get_mut(file as usize) {
                        if let Some(a) = u.queued_ancillary.get_mut(message) {
                            a.fds = files;
                        }
                    }
                }
                file
            }
        };
        tree.seen.push((pid, c.fd, c.target.clone(), file));
        out.push(FdImage {
            fd: c.fd,
            cloexec: info.flags & libc::O_CLOEXEC != 0,
            file,
        });
    }
    Ok(out)
}

/// The signal-driven I/O settings of fd `fd` of `pid` (`taken` is our copy
/// of it, `flags` its status flags), when any is set. The owner's PID is
/// as our PID namespace sees it (the dump translates it with the others).
fn file_owner(
    pid: i32,
    fd: i32,
    taken: &OwnedFd,
    flags: i32,
) -> Result<Option<FileOwner>, CheckpointError> {
    use std::os::fd::AsFd;
    if flags & libc::O_PATH != 0 {
        // An O_PATH fd does no I/O: fcntl refuses to read an owner there.
        return Ok(None);
    }
    let (owner, signal) =
        kernel::fown::file_owner(taken.as_fd()).map_err(|errno| CheckpointError::Io {
            what: format!("read the owner of fd {fd} of process {pid}"),
            source: errno.into(),
        })?;
    let async_io = flags & libc::O_ASYNC != 0;
    if owner.pid == 0 && signal == 0 && !async_io {
        return Ok(None);
    }
    let kind = match owner.kind {
        crate::kernel::abi::F_OWNER_TID => FileOwnerKind::Thread,
        crate::kernel::abi::F_OWNER_PGRP => FileOwnerKind::ProcessGroup,
        _ => FileOwnerKind::Process,
    };
    Ok(Some(FileOwner {
        fd,
        kind,
        pid: owner.pid,
        signal,
        async_io,
    }))
}

/// The index of the description of `fd`, a file in flight in the unix
/// socket `socket` of `pid` that a peek received here: described as an fd
/// of this process (shared with a process of the tree when one holds it
/// too). Only descriptions restore can create without a process holding
/// them are carried: files opened by path, pipes, eventfds and memfds.
fn in_flight_file(
    pid: i32,
    socket: &ClassifiedFd,
    fd: OwnedFd,
    tree: &mut TreeFiles,
) -> Result<u32, CheckpointError> {
    use std::os::fd::AsRawFd;
    let me = std::process::id() as i32;
    let raw = fd.as_raw_fd();
    let refuse = |kind: String| {
        CheckpointError::from(crate::inspect::InspectError::UnsupportedFd {
            pid,
            fd: socket.fd,
            kind: format!("unix socket with {kind} in flight (sent and not received yet)"),
            target: socket.target.clone(),
        })
    };
    let target = std::fs::read_link(format!("/proc/self/fd/{raw}"))
        .map_err(|source| CheckpointError::Io {
            what: format!(
                "examine a file in flight in fd {} of process {pid}",
                socket.fd
            ),
            source,
        })?
        .to_string_lossy()
        .into_owned();
    let class = crate::inspect::fds::classify_fd(me, raw, &target)
        .map_err(|e| refuse(format!("a file ferry cannot carry ({e})")))?;
    match class {
        FdClass::Path(_) if !target.ends_with(" (deleted)") => {}
        FdClass::Pipe { .. } | FdClass::Eventfd | FdClass::Memfd { .. } => {}
        FdClass::UnixSocket { .. } => return Err(refuse("a unix socket".into())),
        _ => return Err(refuse(target)),
    }
    // A file in flight is no fd of a process: the signal-driven I/O
    // settings read from it have no fd to be set through.
    let owners = tree.owners.len();
    let described = describe(
        me,
        &[ClassifiedFd {
            fd: raw,
            target,
            class,
        }],
        tree,
    )?;
    tree.owners.truncate(owners);
    tree.in_flight_fds.push(fd);
    Ok(described[0].file)
}

/// The index in `tree.ghosts` of the deleted file fd `fd` of `pid` refers
/// to (it was at `path`), adding it with its contents when first seen. The
/// contents are read through a description of our own, opened through
/// /proc/PID/fd (which still leads to a deleted file), so the process's
/// offset is untouched.
fn ghost_index(
    pid: i32,
    fd: i32,
    path: &str,
    tree: &mut TreeFiles,
) -> Result<u32, CheckpointError> {
    use std::os::unix::fs::MetadataExt;
    let io = |what: &str| {
        let what = format!("{what} deleted file {path} (fd {fd} of process {pid})");
        move |source: std::io::Error| CheckpointError::Io { what, source }
    };
    use std::os::unix::fs::FileTypeExt;
    let proc_fd = format!("/proc/{pid}/fd/{fd}");
    // stat, not open: a device node is not opened at checkpoint.
    let meta = std::fs::metadata(&proc_fd).map_err(io("examine"))?;
    let key = (meta.dev(), meta.ino());
    if let Some(i) = tree.ghost_inodes.iter().position(|k| *k == key) {
        return Ok(i as u32);
    }
    let ft = meta.file_type();
    let (device, size, data) = if ft.is_char_device() || ft.is_block_device() {
        let device = GhostDevice {
            block: ft.is_block_device(),
            major: libc::major(meta.rdev()),
            minor: libc::minor(meta.rdev()),
        };
        (Some(device), 0, Vec::new())
    } else {
        let file = OwnedFd::from(std::fs::File::open(&proc_fd).map_err(io("open"))?);
        let data = anon::data_ranges(&file, meta.size()).map_err(|e| io("read")(e.into()))?;
        (None, meta.size(), data)
    };
    tree.ghosts.push(GhostFile {
        path: path.to_string(),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        size,
        data,
        atime: (meta.atime(), meta.atime_nsec()),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        device,
    });
    tree.ghost_inodes.push(key);
    Ok((tree.ghosts.len() - 1) as u32)
}

/// The index of pipe `inode` in `pipes`, adding it when first seen; the
/// buffered data is copied (without consuming it) through the read end.
fn pipe_index(
    pid: i32,
    pipes: &mut Vec<PipeImage>,
    inode: u64,
    taken: &OwnedFd,
    write_end: bool,
) -> Result<u32, CheckpointError> {
    let fail = |what: &str| {
        let what = format!("{what} of pipe {inode} of process {pid}");
        move |errno: nix::errno::Errno| CheckpointError::Io {
            what,
            source: errno.into(),
        }
    };
    let index = match pipes.iter().position(|p| p.inode == inode) {
        Some(i) => i,
        None => {
            let capacity = fcntl(taken, FcntlArg::F_GETPIPE_SZ).map_err(fail("read the size"))?;
            pipes.push(PipeImage {
                inode,
                capacity: capacity as u32,
                data: Vec::new(),
            });
            pipes.len() - 1
        }
    };
    if !write_end {
        pipes[index].data =
            peek_pipe(taken, pipes[index].capacity).map_err(fail("copy the data"))?;
    }
    Ok(index as u32)
}

/// Copies the bytes buffered in a pipe without consuming them: tee() into
/// a pipe of our own, then read that.
fn peek_pipe(read_end: &OwnedFd, capacity: u32) -> Result<Vec<u8>, nix::errno::Errno> {
    let buffered = kernel::bytes_readable(read_end)?;
    if buffered == 0 {
        return Ok(Vec::new());
    }
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    fcntl(
        &wr,
        FcntlArg::F_SETPIPE_SZ(capacity.max(buffered as u32) as i32),
    )?;
    // tee() does not consume, so one call must copy everything: our pipe
    // has room for all of it.
    let copied = tee(read_end, &wr, buffered, SpliceFFlags::SPLICE_F_NONBLOCK)?;
    if copied != buffered {
        return Err(nix::errno::Errno::EAGAIN);
    }
    drop(wr);
    let mut data = vec![0u8; copied];
    let mut got = 0;
    while got < copied {
        let n = nix::unistd::read(&rd, &mut data[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    data.truncate(got);
    Ok(data)
}
