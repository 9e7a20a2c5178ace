//! Recreates an image's sockets here in migrate-agent, to be pulled into
//! the husk like pipes: a unix socket pair with the data that was queued
//! on each end, bound and listening unix sockets, listening TCP sockets
//! and UDP sockets with their options (a UDP socket's connection state,
//! queued datagrams and shutdown in `udp.rs`).

use super::udp;
use crate::image::{Checkpoint, FileImage, InetSocket, ProcessImage, SocketOptions, UnixSocket};
use crate::kernel::sockets::{getsockopt_int, setsockopt_int};
use crate::restore::error::RestoreError;
use nix::errno::Errno;
use nix::sys::socket::{
    bind, connect, listen, send, socket, socketpair, AddressFamily, Backlog, MsgFlags, SockFlag,
    SockType, SockaddrIn, SockaddrIn6, UnixAddr,
};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Creates every socket of the tree `ck`: the result holds, at the index of
/// each socket description in `ck.files`, our fd of it.
pub fn create(ck: &Checkpoint) -> Result<Vec<Option<OwnedFd>>, RestoreError> {
    let mut ours: Vec<Option<OwnedFd>> = (0..ck.files.len()).map(|_| None).collect();
    for (i, file) in ck.files.iter().enumerate() {
        // The first process that holds it (for its working directory and
        // for messages).
        let Some(image) = ck
            .processes
            .iter()
            .find(|p| p.fds.iter().any(|f| f.file as usize == i))
        else {
            continue;
        };
        let pid = image.pid;
        let fail = |call: String| move |errno| RestoreError::Injected { pid, call, errno };
        match file {
            FileImage::UnixSocket(u) if ours[i].is_some() => {
                set_flags(pid, ours[i].as_ref().expect("checked"), u.flags)?
            }
            FileImage::UnixSocket(u) => {
                let sock = match u.peer {
                    Some(j) => {
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
                                        "the image's unix socket #{i} names #{j} as its peer, \
                                         which is not a unix socket of the same type connected \
                                         back to it"
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
                        .map_err(fail("socketpair".into()))?;
                        set_options(pid, &a, &u.options)?;
                        set_options(pid, &b, &peer.options)?;
                        // What is written at one end is queued on the other.
                        refill(pid, &b, &u.queued)?;
                        refill(pid, &a, &peer.queued)?;
                        ours[j as usize] = Some(b);
                        a
                    }
                    None => unconnected_unix(image, u)?,
                };
                set_flags(pid, &sock, u.flags)?;
                ours[i] = Some(sock);
            }
            FileImage::InetSocket(n) => {
                let sock = inet(pid, n)?;
                set_flags(pid, &sock, n.flags)?;
                ours[i] = Some(sock);
            }
            _ => {}
        }
    }
    udp::refill_and_shut(ck, &ours)?;
    Ok(ours)
}

fn sock_type(pid: i32, raw: i32) -> Result<SockType, RestoreError> {
    SockType::try_from(raw).map_err(|errno| RestoreError::Injected {
        pid,
        call: format!("socket type {raw}"),
        errno,
    })
}

fn listen_on(pid: i32, sock: &OwnedFd, backlog: Option<u32>) -> Result<(), RestoreError> {
    if let Some(b) = backlog {
        let b = Backlog::new(b.min(libc::SOMAXCONN as u32) as i32).expect("within range");
        listen(sock, b).map_err(|errno| RestoreError::Injected {
            pid,
            call: format!("listen with backlog {}", i32::from(b)),
            errno,
        })?;
    }
    Ok(())
}

/// A unix socket that is not one end of a pair: bound to its name again
/// (a stale socket file that nothing listens on is removed first) and
/// listening again if it was.
fn unconnected_unix(image: &ProcessImage, u: &UnixSocket) -> Result<OwnedFd, RestoreError> {
    let pid = image.pid;
    let fail = |call: String| move |errno| RestoreError::Injected { pid, call, errno };
    let ty = sock_type(pid, u.sock_type)?;
    let sock = socket(AddressFamily::Unix, ty, SockFlag::SOCK_CLOEXEC, None)
        .map_err(fail("socket(AF_UNIX)".into()))?;
    set_options(pid, &sock, &u.options)?;
    let Some(name) = &u.name else {
        return Ok(sock);
    };
    let shown = String::from_utf8_lossy(name).replace('\0', "@");
    let addr = if name.first() == Some(&0) {
        UnixAddr::new_abstract(&name[1..])
    } else {
        // A relative name was bound from the process's working directory.
        let path = Path::new(&image.cwd).join(std::ffi::OsStr::from_bytes(name));
        clear_stale(pid, &path, ty)?;
        UnixAddr::new(&path)
    }
    .map_err(fail(format!("unix socket name {shown}")))?;
    bind(sock.as_raw_fd(), &addr).map_err(fail(format!("bind to {shown}")))?;
    listen_on(pid, &sock, u.listen_backlog)?;
    Ok(sock)
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

/// A TCP or UDP socket, bound and listening as in the image.
fn inet(pid: i32, n: &InetSocket) -> Result<OwnedFd, RestoreError> {
    let fail = |call: String| move |errno| RestoreError::Injected { pid, call, errno };
    let family = if n.ipv6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let sock = crate::kernel::sockets::socket_with_protocol(family as i32, n.sock_type, n.protocol)
        .map_err(fail(format!(
            "socket({family:?}, {}, {})",
            n.sock_type, n.protocol
        )))?;
    set_options(pid, &sock, &n.options)?;
    let s = sock.as_fd();
    if n.ipv6 {
        setsockopt_int(
            s,
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            i32::from(n.v6only),
        )
        .map_err(fail("setting IPV6_V6ONLY".into()))?;
    }
    if n.nodelay {
        setsockopt_int(s, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)
            .map_err(fail("setting TCP_NODELAY".into()))?;
    }
    if n.broadcast {
        setsockopt_int(s, libc::SOL_SOCKET, libc::SO_BROADCAST, 1)
            .map_err(fail("setting SO_BROADCAST".into()))?;
    }
    match n.local {
        Some(std::net::SocketAddr::V4(a)) if !n.ipv6 => {
            bind(sock.as_raw_fd(), &SockaddrIn::from(a))
        }
        Some(std::net::SocketAddr::V6(a)) if n.ipv6 => {
            bind(sock.as_raw_fd(), &SockaddrIn6::from(a))
        }
        Some(_) => Err(Errno::EAFNOSUPPORT),
        None => Ok(()),
    }
    .map_err(fail(format!(
        "bind to {}",
        n.local
            .map_or_else(|| "no address".into(), |a| a.to_string())
    )))?;
    listen_on(pid, &sock, n.listen_backlog)?;
    udp::connect_peer(pid, &sock, n)?;
    Ok(sock)
}

/// Sets the reuse flags, and the buffer sizes where they differ from those
/// of a fresh socket (setting them pins them, as a user's setsockopt does).
fn set_options(pid: i32, sock: &OwnedFd, o: &SocketOptions) -> Result<(), RestoreError> {
    let s = sock.as_fd();
    let fail = |call: &str| {
        let call = call.to_string();
        move |errno| RestoreError::Injected { pid, call, errno }
    };
    setsockopt_int(
        s,
        libc::SOL_SOCKET,
        libc::SO_REUSEADDR,
        i32::from(o.reuse_addr),
    )
    .map_err(fail("setting SO_REUSEADDR"))?;
    setsockopt_int(
        s,
        libc::SOL_SOCKET,
        libc::SO_REUSEPORT,
        i32::from(o.reuse_port),
    )
    .map_err(fail("setting SO_REUSEPORT"))?;
    for (get, force, size) in [
        (libc::SO_SNDBUF, libc::SO_SNDBUFFORCE, o.sndbuf),
        (libc::SO_RCVBUF, libc::SO_RCVBUFFORCE, o.rcvbuf),
    ] {
        if getsockopt_int(s, libc::SOL_SOCKET, get).map_err(fail("reading a buffer size"))?
            != size as i32
        {
            // The kernel doubles what it is given.
            setsockopt_int(s, libc::SOL_SOCKET, force, (size / 2) as i32)
                .map_err(fail(&format!("setting a buffer size of {size}")))?;
        }
    }
    Ok(())
}

fn set_flags(pid: i32, sock: &OwnedFd, flags: i32) -> Result<(), RestoreError> {
    let status = nix::fcntl::OFlag::from_bits_truncate(flags);
    nix::fcntl::fcntl(sock, nix::fcntl::FcntlArg::F_SETFL(status))
        .map(drop)
        .map_err(|errno| RestoreError::Injected {
            pid,
            call: format!("F_SETFL {flags:#o} on a socket"),
            errno,
        })
}

/// Sends `messages` through `sock`, one send each, so that they are queued
/// at its peer with their boundaries.
fn refill(pid: i32, sock: &OwnedFd, messages: &[Vec<u8>]) -> Result<(), RestoreError> {
    let total: usize = messages.iter().map(Vec::len).sum();
    for m in messages {
        let sent = send(sock.as_raw_fd(), m, MsgFlags::MSG_DONTWAIT).map_err(|errno| {
            RestoreError::Injected {
                pid,
                call: format!(
                    "queueing {} messages ({total} bytes) on a unix socket",
                    messages.len()
                ),
                errno,
            }
        })?;
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
