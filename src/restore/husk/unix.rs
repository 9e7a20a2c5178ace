//! Recreates an image's unix sockets here in migrate-agent, to be pulled
//! into the husk like pipes: a socket pair with the data that was queued
//! on each end (with its files and credentials in flight, created here
//! first when no process holds them), a socket whose peer has closed,
//! bound and listening sockets (their socket files with their owner and
//! mode, or unlinked again), sockets connected by name to a datagram
//! server or queued on a listener, each shut down as it was.

use super::anon;
use super::sockets::{holder, listen_on, set_flags, set_options, sock_type};
use crate::image::{Checkpoint, FileImage, OpenFile, ProcessImage, UnixSocket};
use crate::kernel::sockets::setsockopt_int;
use crate::restore::error::RestoreError;
use nix::errno::Errno;
use nix::sys::socket::{
    bind, connect, send, shutdown, socket, socketpair, AddressFamily, MsgFlags, Shutdown, SockFlag,
    SockType, UnixAddr,
};
use nix::unistd::Pid;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Creates every unix socket of the tree `ck`, putting our fd of each at
/// the index of its description in `ours` (which already holds the files
/// in flight their queues carry). Sockets connected
/// by name (to a datagram server, or queued on a listener) come last, once
/// every name they connect to is bound; a listener's queue is refilled in
/// accept order.
pub fn create(ck: &Checkpoint, ours: &mut [Option<OwnedFd>]) -> Result<(), RestoreError> {
    let made_dirs = make_ghost_dirs(ck)?;
    // Sockets whose file was unlinked first: each is bound, its clients
    // connect, and its file goes before another socket binds the same path.
    let ghosts = (0..ck.files.len()).filter(|&i| unix_at(ck, 0, i).is_ok_and(is_ghost));
    let others = (0..ck.files.len()).filter(|&i| !unix_at(ck, 0, i).is_ok_and(is_ghost));
    for i in ghosts.chain(others).collect::<Vec<_>>() {
        let (Some(image), Some(FileImage::UnixSocket(u))) = (holder(ck, i), ck.files.get(i)) else {
            continue;
        };
        let pid = image.pid;
        if ours[i].is_some() {
            set_flags(pid, ours[i].as_ref().expect("checked"), u.flags)?;
            continue;
        }
        if u.connect_to.is_some() {
            continue;
        }
        let sock = match u.peer {
            Some(j) => {
                let peer_image = holder(ck, j as usize).unwrap_or(image);
                let (a, b) = pair(ck, image, peer_image, i, j, ours)?;
                ours[j as usize] = Some(b);
                a
            }
            None if u.peer_gone => pair_with_closed_peer(image, u, ours)?,
            None => unconnected_unix(image, u)?,
        };
        set_flags(pid, &sock, u.flags)?;
        set_passcred(pid, &sock, u.passcred)?;
        if let Some(j) = u.peer.and_then(|j| unix_at(ck, pid, j as usize).ok()) {
            let b = ours[u.peer.expect("checked") as usize].as_ref();
            set_passcred(pid, b.expect("created with its peer"), j.passcred)?;
        }
        ours[i] = Some(sock);
        if is_ghost(u) {
            connect_clients(ck, ours, Some(i))?;
            unlink_ghost(image, u)?;
        }
    }
    connect_clients(ck, ours, None)?;
    // The others were unlinked above, and a later socket may own the path.
    for (i, u) in ck.files.iter().enumerate().filter_map(|(i, f)| match f {
        FileImage::UnixSocket(u) if u.connect_to.is_some() => Some((i, u)),
        _ => None,
    }) {
        if let Some(image) = holder(ck, i) {
            unlink_ghost(image, u)?;
        }
    }
    for dir in made_dirs.iter().rev() {
        // Left in place if something else is in it now.
        let _ = std::fs::remove_dir(dir);
    }
    Ok(())
}

/// Connects the sockets that connect by name (queued on a listener in
/// accept order, then datagram clients), those of `server` only when
/// given, that are not created yet.
fn connect_clients(
    ck: &Checkpoint,
    ours: &mut [Option<OwnedFd>],
    server: Option<usize>,
) -> Result<(), RestoreError> {
    let by_name = ck.files.iter().enumerate().flat_map(|(i, f)| match f {
        FileImage::UnixSocket(l) => l.accept_queue.iter().map(|&k| (k as usize, i)).collect(),
        _ => Vec::new(),
    });
    let servers = ck.files.iter().enumerate().filter_map(|(i, f)| match f {
        FileImage::UnixSocket(UnixSocket {
            connect_to: Some(t),
            ..
        }) => Some((i, *t as usize)),
        _ => None,
    });
    let wanted = by_name
        .chain(servers)
        .filter(|&(_, t)| server.map_or(true, |s| s == t));
    for (i, target) in wanted.collect::<Vec<_>>() {
        if ours[i].is_some() {
            continue;
        }
        let Some(image) = holder(ck, i) else {
            continue;
        };
        let sock = connect_by_name(ck, image, i, target, ours)?;
        set_passcred(image.pid, &sock, unix_at(ck, image.pid, i)?.passcred)?;
        ours[i] = Some(sock);
    }
    Ok(())
}

/// A socket bound to a path whose file was gone at checkpoint (unlinked
/// while bound: the socket keeps its name).
fn is_ghost(u: &UnixSocket) -> bool {
    u.bound_file.is_none() && u.name.as_ref().is_some_and(|n| n.first() != Some(&0))
}

/// Removes again the file of `u` if it was gone at checkpoint.
fn unlink_ghost(image: &ProcessImage, u: &UnixSocket) -> Result<(), RestoreError> {
    let (true, Some(name)) = (is_ghost(u), &u.name) else {
        return Ok(());
    };
    let (addr, shown) = unix_addr(image, name)?;
    match addr.path().map(std::fs::remove_file) {
        Some(Err(e)) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(RestoreError::Unsupported {
                pid: image.pid,
                why: format!("cannot unlink socket file {shown} again: {e}"),
            })
        }
        _ => {}
    }
    let Some(path) = addr.path() else {
        return Ok(());
    };
    let aside = aside_path(path);
    if std::fs::symlink_metadata(&aside).is_ok() {
        std::fs::rename(&aside, path).map_err(|e| RestoreError::Unsupported {
            pid: image.pid,
            why: format!(
                "cannot put {} back at {shown} (where a unix socket had to be bound): {e}",
                aside.display()
            ),
        })?;
    }
    Ok(())
}

/// Where [`set_aside`] moves what is at `path`: a hidden name in the same
/// directory, named after this migrate-agent.
fn aside_path(path: &Path) -> std::path::PathBuf {
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
    path.with_file_name(format!(
        ".ferry-aside-{}-{}",
        std::process::id(),
        file.unwrap_or_default()
    ))
}

/// Moves what is at `path` (a FIFO or file made there after the socket
/// bound to it was unlinked) out of the way while the socket is bound
/// there again and its clients connect; [`unlink_ghost`] puts it back.
fn set_aside(pid: i32, path: &Path) -> Result<(), RestoreError> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    let aside = aside_path(path);
    std::fs::rename(path, &aside).map_err(|e| RestoreError::Unsupported {
        pid,
        why: format!(
            "cannot move {} aside to bind the unix socket that was bound there: {e}",
            path.display()
        ),
    })
}

/// Creates the missing directories that sockets whose file was gone were
/// bound in (a directory removed after them): they are bound there, then
/// the directories go again. Returns those made, outermost first.
fn make_ghost_dirs(ck: &Checkpoint) -> Result<Vec<std::path::PathBuf>, RestoreError> {
    let mut made = Vec::new();
    for (i, f) in ck.files.iter().enumerate() {
        let (FileImage::UnixSocket(u), Some(image)) = (f, holder(ck, i)) else {
            continue;
        };
        let (true, Some(name)) = (is_ghost(u), &u.name) else {
            continue;
        };
        let (addr, shown) = unix_addr(image, name)?;
        let Some(parent) = addr.path().and_then(Path::parent) else {
            continue;
        };
        let missing: Vec<_> = parent
            .ancestors()
            .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
            .map(Path::to_path_buf)
            .collect();
        for dir in missing.into_iter().rev() {
            std::fs::create_dir(&dir).map_err(|e| RestoreError::Unsupported {
                pid: image.pid,
                why: format!("cannot make the directory of socket file {shown} again: {e}"),
            })?;
            made.push(dir);
        }
    }
    Ok(made)
}

/// Sets SO_PASSCRED, once the socket has sent what it queues (with it on,
/// an unbound socket that sends binds itself to an automatic name).
fn set_passcred(pid: i32, sock: &OwnedFd, on: bool) -> Result<(), RestoreError> {
    if !on {
        return Ok(());
    }
    setsockopt_int(sock.as_fd(), libc::SOL_SOCKET, libc::SO_PASSCRED, 1).map_err(|errno| {
        RestoreError::Injected {
            pid,
            call: "setting SO_PASSCRED".into(),
            errno,
        }
    })
}

/// Creates here the files in flight in the tree's unix sockets (sent and
/// not received yet) that are not created yet (pipe ends are), into
/// `ours`: eventfds, memfds, and files reopened by path inside the root
/// directory of `husk`; a process that holds one too pulls it in from
/// there.
pub fn create_in_flight(
    ck: &Checkpoint,
    husk: Pid,
    ours: &mut [Option<OwnedFd>],
) -> Result<(), RestoreError> {
    let pid = ck.root().map_or(0, |p| p.pid);
    let in_flight = ck.files.iter().flat_map(|f| match f {
        FileImage::UnixSocket(u) => u
            .queued_ancillary
            .iter()
            .flat_map(|a| a.fds.clone())
            .collect(),
        _ => Vec::new(),
    });
    for d in in_flight.collect::<Vec<u32>>() {
        let d = d as usize;
        if ours.get(d).is_some_and(Option::is_some) {
            continue;
        }
        let fd = match ck.files.get(d) {
            Some(FileImage::Eventfd(e)) => {
                let fd = anon::create_eventfd(pid, e)?;
                set_flags(pid, &fd, e.flags)?;
                fd
            }
            Some(FileImage::Memfd(m)) => {
                let fd = match m.same_as {
                    // Another description of a memfd an earlier file
                    // describes: that one is made first (with its data).
                    Some(j) => {
                        let j = j as usize;
                        if let (Some(None), Some(FileImage::Memfd(first))) =
                            (ours.get(j), ck.files.get(j))
                        {
                            let made = anon::create_memfd(pid, first)?;
                            set_flags(pid, &made, first.flags)?;
                            ours[j] = Some(made);
                        }
                        let first = ours.get(j).and_then(Option::as_ref).ok_or_else(|| {
                            RestoreError::Unsupported {
                                pid,
                                why: format!("file #{d} opens file #{j} again, not a memfd"),
                            }
                        })?;
                        anon::reopen_memfd(pid, first, m)?
                    }
                    None => anon::create_memfd(pid, m)?,
                };
                set_flags(pid, &fd, m.flags)?;
                fd
            }
            Some(FileImage::Path(f)) if f.ghost.is_none() => reopen(pid, husk, f)?,
            _ => {
                return Err(RestoreError::Unsupported {
                    pid,
                    why: format!("file #{d}, in flight in a unix socket, cannot be created here"),
                })
            }
        };
        if let Some(slot) = ours.get_mut(d) {
            *slot = Some(fd);
        }
    }
    Ok(())
}

/// Opens file `f` through the root directory of `husk`, with its flags and
/// at its offset.
fn reopen(pid: i32, husk: Pid, f: &OpenFile) -> Result<OwnedFd, RestoreError> {
    use nix::fcntl::OFlag;
    let fail = |call: &str| {
        let call = format!("{call} {} (flags {:#o}), in flight", f.path, f.flags);
        move |errno| RestoreError::Injected { pid, call, errno }
    };
    let flags = f.flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY);
    let path = format!("/proc/{husk}/root{}", f.path);
    let fd = nix::fcntl::open(
        path.as_str(),
        OFlag::from_bits_truncate(flags) | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(fail("reopening"))?;
    if f.pos != 0 {
        nix::unistd::lseek(&fd, f.pos, nix::unistd::Whence::SeekSet).map_err(fail("seeking"))?;
    }
    Ok(fd)
}

/// The unix socket at index `i` of the image's files.
fn unix_at(ck: &Checkpoint, pid: i32, i: usize) -> Result<&UnixSocket, RestoreError> {
    match ck.files.get(i) {
        Some(FileImage::UnixSocket(u)) => Ok(u),
        _ => Err(RestoreError::Unsupported {
            pid,
            why: format!("the image names file #{i} as a unix socket, which it is not"),
        }),
    }
}

/// Both ends of the connection between the image's unix sockets `i`
/// (held by `image`) and `j` (held by `peer_image`): a socket pair with the
/// data that was queued at each end, their names (a datagram socket's own)
/// and their shutdowns.
fn pair(
    ck: &Checkpoint,
    image: &ProcessImage,
    peer_image: &ProcessImage,
    i: usize,
    j: u32,
    ours: &[Option<OwnedFd>],
) -> Result<(OwnedFd, OwnedFd), RestoreError> {
    let pid = image.pid;
    let u = unix_at(ck, pid, i)?;
    let peer = match ck.files.get(j as usize) {
        Some(FileImage::UnixSocket(p))
            if p.peer == Some(i as u32) && p.sock_type == u.sock_type =>
        {
            p
        }
        _ => {
            return Err(RestoreError::Unsupported {
                pid,
                why: format!(
                    "the image's unix socket #{i} names #{j} as its peer, which is not a unix \
                     socket of the same type connected back to it"
                ),
            })
        }
    };
    let (a, b) = socketpair(
        AddressFamily::Unix,
        sock_type(pid, u.sock_type)?,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|errno| RestoreError::Injected {
        pid,
        call: "socketpair".into(),
        errno,
    })?;
    set_options(pid, &a, &u.options)?;
    set_options(pid, &b, &peer.options)?;
    // A pair end whose file was unlinked is bound (and its file removed)
    // first: the other end may be bound to the same path.
    let mut ends = [(image, &a, u), (peer_image, &b, peer)];
    ends.sort_by_key(|e| !is_ghost(e.2));
    for (img, sock, end) in ends {
        bind_name(img, sock, end)?;
        unlink_ghost(img, end)?;
    }
    // What is written at one end is queued on the other.
    refill(pid, &b, u, ours, None)?;
    refill(pid, &a, peer, ours, None)?;
    shut_down(pid, &a, u.shutdown)?;
    shut_down(pid, &b, peer.shutdown)?;
    Ok((a, b))
}

/// A connected unix socket whose peer has closed: one end of a pair, with
/// its queued data sent from the other end, which is then closed (with
/// data left unread first if an ECONNRESET was pending).
fn pair_with_closed_peer(
    image: &ProcessImage,
    u: &UnixSocket,
    ours: &[Option<OwnedFd>],
) -> Result<OwnedFd, RestoreError> {
    let pid = image.pid;
    let fail = |call: &str| {
        let call = call.to_string();
        move |errno| RestoreError::Injected { pid, call, errno }
    };
    let (a, b) = socketpair(
        AddressFamily::Unix,
        sock_type(pid, u.sock_type)?,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(fail("socketpair"))?;
    set_options(pid, &a, &u.options)?;
    bind_name(image, &a, u)?;
    refill(pid, &b, u, ours, None)?;
    if u.reset_pending {
        // A peer closed with data unread leaves ECONNRESET on this end.
        send(a.as_raw_fd(), &[0], MsgFlags::MSG_DONTWAIT)
            .map_err(fail("leaving data unread at a closing peer"))?;
    }
    drop(b);
    Ok(a)
}

/// A unix socket connected by name to the image's socket `target`: a
/// datagram socket to its server (or itself), or a stream or seqpacket
/// connection queued on a listener and not accepted yet. Its own name and
/// the data queued on it come back too (sent by the server, to its name).
fn connect_by_name(
    ck: &Checkpoint,
    image: &ProcessImage,
    i: usize,
    target: usize,
    ours: &[Option<OwnedFd>],
) -> Result<OwnedFd, RestoreError> {
    let pid = image.pid;
    let fail = |call: String| move |errno| RestoreError::Injected { pid, call, errno };
    let u = unix_at(ck, pid, i)?;
    let server = unix_at(ck, pid, target)?;
    let server_image = holder(ck, target).unwrap_or(image);
    let Some(name) = &server.name else {
        return Err(RestoreError::Unsupported {
            pid,
            why: format!(
                "the image's unix socket #{i} is connected to #{target}, which has no name to \
                 connect to"
            ),
        });
    };
    let ty = sock_type(pid, u.sock_type)?;
    let sock = socket(
        AddressFamily::Unix,
        ty,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(fail("socket(AF_UNIX)".into()))?;
    set_options(pid, &sock, &u.options)?;
    bind_name(image, &sock, u)?;
    let (addr, shown) = unix_addr(server_image, name)?;
    connect(sock.as_raw_fd(), &addr).map_err(fail(format!("connect to {shown}")))?;
    if target == i {
        refill(pid, &sock, u, ours, None)?;
    } else if !u.queued.is_empty() {
        let (Some(own), Some(Some(from))) = (&u.name, ours.get(target)) else {
            return Err(RestoreError::Unsupported {
                pid,
                why: format!(
                    "the image's unix socket #{i} has messages queued but no name its server \
                     can send them to"
                ),
            });
        };
        let (to, _) = unix_addr(image, own)?;
        refill(pid, from, u, ours, Some(&to))?;
    }
    shut_down(pid, &sock, u.shutdown)?;
    set_flags(pid, &sock, u.flags)?;
    Ok(sock)
}

/// Shuts `sock` down as `bits` say (1: receiving, 2: sending).
fn shut_down(pid: i32, sock: &OwnedFd, bits: u8) -> Result<(), RestoreError> {
    let how = match bits & 3 {
        0 => return Ok(()),
        1 => Shutdown::Read,
        2 => Shutdown::Write,
        _ => Shutdown::Both,
    };
    shutdown(sock.as_raw_fd(), how).map_err(|errno| RestoreError::Injected {
        pid,
        call: format!("shutdown({how:?}) of a unix socket"),
        errno,
    })
}

/// A unix socket that is not one end of a pair: bound to its name again
/// (a stale socket file that nothing listens on is removed first),
/// listening again if it was, and shut down as it was.
fn unconnected_unix(image: &ProcessImage, u: &UnixSocket) -> Result<OwnedFd, RestoreError> {
    let pid = image.pid;
    let ty = sock_type(pid, u.sock_type)?;
    let sock = socket(AddressFamily::Unix, ty, SockFlag::SOCK_CLOEXEC, None).map_err(|errno| {
        RestoreError::Injected {
            pid,
            call: "socket(AF_UNIX)".into(),
            errno,
        }
    })?;
    set_options(pid, &sock, &u.options)?;
    if u.name.is_some() {
        bind_name(image, &sock, u)?;
        listen_on(pid, &sock, u.listen_backlog)?;
    }
    shut_down(pid, &sock, u.shutdown)?;
    Ok(sock)
}

/// The address of unix socket name `name` (a relative one was bound
/// from the working directory of `image`), and how messages show it.
fn unix_addr(image: &ProcessImage, name: &[u8]) -> Result<(UnixAddr, String), RestoreError> {
    let shown = String::from_utf8_lossy(name).replace('\0', "@");
    let addr = if name.first() == Some(&0) {
        UnixAddr::new_abstract(&name[1..])
    } else {
        UnixAddr::new(&Path::new(&image.cwd).join(std::ffi::OsStr::from_bytes(name)))
    }
    .map_err(|errno| RestoreError::Injected {
        pid: image.pid,
        call: format!("unix socket name {shown}"),
        errno,
    })?;
    Ok((addr, shown))
}

/// Binds `sock` to the name of `u`, if it has one: a stale socket file at
/// its path is removed first, and the new one gets the owner and mode the
/// old one had.
fn bind_name(image: &ProcessImage, sock: &OwnedFd, u: &UnixSocket) -> Result<(), RestoreError> {
    let pid = image.pid;
    let Some(name) = &u.name else {
        return Ok(());
    };
    let (addr, shown) = unix_addr(image, name)?;
    let path = addr.path().map(Path::to_path_buf);
    match &path {
        // Its own file was gone: whatever is there now is another's.
        Some(path) if is_ghost(u) => set_aside(pid, path)?,
        Some(path) => clear_stale(pid, path, sock_type(pid, u.sock_type)?)?,
        None => {}
    }
    bind(sock.as_raw_fd(), &addr).map_err(|errno| RestoreError::Injected {
        pid,
        call: format!("bind to {shown}"),
        errno,
    })?;
    if let (Some(path), Some(owner)) = (path, u.bound_file) {
        use std::os::unix::fs::PermissionsExt;
        std::os::unix::fs::lchown(&path, Some(owner.uid), Some(owner.gid))
            .and_then(|()| {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(owner.mode))
            })
            .map_err(|e| RestoreError::Unsupported {
                pid,
                why: format!(
                    "cannot give socket file {shown} its owner {}:{} and mode {:o}: {e}",
                    owner.uid, owner.gid, owner.mode
                ),
            })?;
    }
    Ok(())
}

/// Removes the socket file at `path` left by the checkpointed process, if
/// nothing accepts connections on it any more; refuses anything else there.
fn clear_stale(pid: i32, path: &Path, ty: SockType) -> Result<(), RestoreError> {
    use std::os::unix::fs::FileTypeExt;
    let shown = path.display();
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(RestoreError::Unsupported {
            pid,
            why: format!("{shown}, where a unix socket was bound, now exists and is not a socket"),
        });
    }
    let probe = socket(AddressFamily::Unix, ty, SockFlag::SOCK_CLOEXEC, None).map_err(|errno| {
        RestoreError::Injected {
            pid,
            call: "socket(AF_UNIX)".into(),
            errno,
        }
    })?;
    let addr = UnixAddr::new(path).map_err(|errno| RestoreError::Injected {
        pid,
        call: format!("unix socket name {shown}"),
        errno,
    })?;
    match connect(probe.as_raw_fd(), &addr) {
        Err(Errno::ECONNREFUSED) => {
            std::fs::remove_file(path).map_err(|e| RestoreError::Unsupported {
                pid,
                why: format!("cannot remove the stale socket file {shown}: {e}"),
            })
        }
        Ok(()) | Err(Errno::EAGAIN) => Err(RestoreError::Unsupported {
            pid,
            why: format!("another socket is bound to {shown} and accepts connections"),
        }),
        Err(errno) => Err(RestoreError::Injected {
            pid,
            call: format!("connect to {shown} to see whether it is stale"),
            errno,
        }),
    }
}

/// Sends the messages queued on `u` through `sock` (to `to`, or to its
/// peer), one send each with its files in flight (found in `ours`) and,
/// when `u` has SO_PASSCRED, its sender's credentials, so that they are
/// queued at `u` with their boundaries.
fn refill(
    pid: i32,
    sock: &OwnedFd,
    u: &UnixSocket,
    ours: &[Option<OwnedFd>],
    to: Option<&UnixAddr>,
) -> Result<(), RestoreError> {
    use nix::sys::socket::{sendmsg, ControlMessage, UnixCredentials};
    use std::os::fd::RawFd;
    let messages = &u.queued;
    let total: usize = messages.iter().map(Vec::len).sum();
    let fail = |errno| RestoreError::Injected {
        pid,
        call: format!(
            "queueing {} messages ({total} bytes) on a unix socket",
            messages.len()
        ),
        errno,
    };
    for (k, m) in messages.iter().enumerate() {
        let ancillary = u.queued_ancillary.get(k);
        let fds = ancillary
            .map_or(&[][..], |a| &a.fds[..])
            .iter()
            .map(|&d| {
                ours.get(d as usize)
                    .and_then(Option::as_ref)
                    .map(|f| f.as_raw_fd())
                    .ok_or_else(|| RestoreError::Unsupported {
                        pid,
                        why: format!("file #{d}, in flight in a unix socket, was not created"),
                    })
            })
            .collect::<Result<Vec<RawFd>, _>>()?;
        // Only a receiver with SO_PASSCRED sees them; the others get the
        // kernel's own (ours), as any message sent after restore would.
        let creds = ancillary.and_then(|a| a.creds).filter(|_| u.passcred);
        let send = |creds_pid: Option<i32>| {
            let ucred = creds.map(|c| {
                UnixCredentials::from(libc::ucred {
                    pid: creds_pid.unwrap_or(c.pid),
                    uid: c.uid,
                    gid: c.gid,
                })
            });
            let mut cmsgs = Vec::new();
            if !fds.is_empty() {
                cmsgs.push(ControlMessage::ScmRights(&fds));
            }
            if let Some(c) = &ucred {
                cmsgs.push(ControlMessage::ScmCredentials(c));
            }
            sendmsg(
                sock.as_raw_fd(),
                &[std::io::IoSlice::new(m)],
                &cmsgs,
                MsgFlags::MSG_DONTWAIT,
                to,
            )
        };
        // A sender that is gone cannot be named: ours stands in for it.
        let sent = match send(None) {
            Err(Errno::ESRCH) if creds.is_some() => send(Some(std::process::id() as i32)),
            other => other,
        }
        .map_err(fail)?;
        if sent != m.len() {
            return Err(RestoreError::Unsupported {
                pid,
                why: format!(
                    "a unix socket took {sent} of the {} bytes of a queued message",
                    m.len()
                ),
            });
        }
    }
    Ok(())
}
