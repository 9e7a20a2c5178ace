//! Sockets of a frozen process: what ferry records about the ones
//! inspection found it can carry (names, options, backlog, queued data).
//! Each socket is taken out of the process with pidfd_getfd and examined
//! with ordinary socket calls; the peer of a unix socket comes from
//! unix_diag.

use super::error::CheckpointError;
use crate::image::{
    Ancillary, FileImage, InetSocket, SocketFileOwner, SocketOptions, UnixCreds, UnixSocket,
};
use crate::inspect::sockets::unix_diag_of;
use crate::inspect::{FdClass, InspectError};
use crate::kernel;
use crate::kernel::sockets::{getsockopt_int, setsockopt_int};
use nix::errno::Errno;
use nix::sys::socket::{getsockname, MsgFlags, SockaddrLike, SockaddrStorage};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

/// The largest queued datagram ferry copies.
const MAX_MESSAGE: usize = 4 << 20;

/// Describes the socket at fd `fd` of the frozen process `pid` (link
/// target `target`), taken out of it as `sock`, with status flags `flags`.
/// A unix socket's `peer`, `peer_gone`, `connect_to` and `accept_queue`
/// are left for
/// [`TreeFiles::link_unix_peers`](super::files::TreeFiles::link_unix_peers),
/// and the descriptions of its files in flight for the caller.
pub fn describe(
    pid: i32,
    fd: i32,
    target: &str,
    class: FdClass,
    sock: &OwnedFd,
    flags: i32,
) -> Result<Described, CheckpointError> {
    let io = |what: &str| {
        let what = format!("{what} of {target} (fd {fd}) of process {pid}");
        move |errno: Errno| CheckpointError::Io {
            what,
            source: errno.into(),
        }
    };
    let refuse = |kind: String| {
        CheckpointError::from(InspectError::UnsupportedFd {
            pid,
            fd,
            kind,
            target: target.to_string(),
        })
    };
    let s = sock.as_fd();
    let int = |level, opt| getsockopt_int(s, level, opt).map_err(io("read an option"));
    let flags = flags & !libc::O_ACCMODE;
    let sock_type = int(libc::SOL_SOCKET, libc::SO_TYPE)?;
    let listening = int(libc::SOL_SOCKET, libc::SO_ACCEPTCONN)? != 0;
    let options = SocketOptions {
        reuse_addr: int(libc::SOL_SOCKET, libc::SO_REUSEADDR)? != 0,
        reuse_port: int(libc::SOL_SOCKET, libc::SO_REUSEPORT)? != 0,
        sndbuf: int(libc::SOL_SOCKET, libc::SO_SNDBUF)? as u32,
        rcvbuf: int(libc::SOL_SOCKET, libc::SO_RCVBUF)? as u32,
    };
    let local = getsockname::<SockaddrStorage>(s.as_raw_fd()).map_err(io("getsockname"))?;
    match class {
        FdClass::UnixSocket { inode, peer } => {
            let diag = unix_diag_of(pid, inode).map_err(io("unix_diag"))?;
            let name = local.as_unix_addr().and_then(|u| {
                u.path()
                    .map(|p| std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec())
                    .or_else(|| u.as_abstract().map(|a| [&[0u8][..], a].concat()))
            });
            // A connected stream socket reports its listener's name when it
            // was accept()ed: only a datagram socket's name is its own.
            let name =
                name.filter(|n| (peer.is_none() || sock_type == libc::SOCK_DGRAM) && !n.is_empty());
            // The pending error shows as POLLERR; reading it would clear it.
            let reset_pending = peer == Some(0)
                && sock_type != libc::SOCK_DGRAM
                && error_pending(s).map_err(io("poll"))?;
            let peeked = if peer.is_some() {
                peek_queue(s, sock_type, diag.shutdown & 1 != 0).map_err(|e| match e {
                    Peek::Errno(errno) => io("copy the queued data")(errno),
                    Peek::Refused(why) => refuse(format!("unix socket {why}")),
                })?
            } else if !listening && kernel::bytes_readable(sock).map_err(io("FIONREAD"))? > 0 {
                return Err(refuse(
                    "unconnected unix socket with data queued from other sockets".into(),
                ));
            } else {
                Vec::new()
            };
            let mut queued = Vec::with_capacity(peeked.len());
            let mut queued_ancillary = Vec::with_capacity(peeked.len());
            let mut in_flight = Vec::with_capacity(peeked.len());
            for p in peeked {
                queued.push(p.data);
                queued_ancillary.push(Ancillary {
                    fds: Vec::new(),
                    creds: p.creds,
                });
                in_flight.push(p.fds);
            }
            let passcred = int(libc::SOL_SOCKET, libc::SO_PASSCRED)? != 0;
            let bound_file = match &name {
                Some(n) if n.first() != Some(&0) => socket_file_owner(pid, n),
                _ => None,
            };
            let image = FileImage::UnixSocket(UnixSocket {
                sock_type,
                flags,
                name,
                listen_backlog: listening.then_some(diag.max_backlog),
                peer: None,
                queued,
                options,
                peer_gone: false,
                reset_pending,
                shutdown: diag.shutdown,
                connect_to: None,
                accept_queue: Vec::new(),
                bound_file,
                queued_ancillary,
                passcred,
            });
            Ok(Described {
                image,
                queued_clients: diag.queued_clients,
                in_flight,
            })
        }
        _ => {
            let ipv6 = local.family() == Some(nix::sys::socket::AddressFamily::Inet6);
            let local = local
                .as_sockaddr_in()
                .map(|a| std::net::SocketAddr::V4((*a).into()))
                .or_else(|| {
                    local
                        .as_sockaddr_in6()
                        .map(|a| std::net::SocketAddr::V6((*a).into()))
                })
                .filter(|a| a.port() != 0 || !a.ip().is_unspecified());
            let listen_backlog = if listening {
                Some(
                    kernel::sockets::tcp_state(s)
                        .map_err(io("TCP_INFO"))?
                        .max_backlog,
                )
            } else {
                None
            };
            if sock_type == libc::SOCK_DGRAM
                && kernel::bytes_readable(sock).map_err(io("FIONREAD"))? > 0
            {
                return Err(refuse("UDP socket with datagrams queued".into()));
            }
            let image = FileImage::InetSocket(InetSocket {
                sock_type,
                flags,
                local,
                ipv6,
                listen_backlog,
                v6only: ipv6 && int(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)? != 0,
                nodelay: sock_type == libc::SOCK_STREAM
                    && int(libc::IPPROTO_TCP, libc::TCP_NODELAY)? != 0,
                options,
            });
            Ok(Described {
                image,
                queued_clients: Vec::new(),
                in_flight: Vec::new(),
            })
        }
    }
}

/// Owner and mode of the socket file `name` (a path, relative to the
/// working directory of `pid` when it does not start with '/'), seen
/// through the process's own root and working directory; None when no
/// socket is there any more.
fn socket_file_owner(pid: i32, name: &[u8]) -> Option<SocketFileOwner> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let name = std::ffi::OsStr::from_bytes(name);
    let base = if name.as_bytes().first() == Some(&b'/') {
        format!("/proc/{pid}/root")
    } else {
        format!("/proc/{pid}/cwd/")
    };
    let mut path = std::ffi::OsString::from(base);
    path.push(name);
    let meta = std::fs::symlink_metadata(path).ok()?;
    meta.file_type().is_socket().then(|| SocketFileOwner {
        uid: meta.uid(),
        gid: meta.gid(),
        mode: meta.mode() & 0o7777,
    })
}

/// Whether an error is pending on `sock` (POLLERR), without reading it
/// (SO_ERROR would clear it).
fn error_pending(sock: BorrowedFd<'_>) -> Result<bool, Errno> {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(sock, PollFlags::empty())];
    nix::poll::poll(&mut fds, PollTimeout::ZERO)?;
    Ok(fds[0]
        .revents()
        .is_some_and(|r| r.contains(PollFlags::POLLERR)))
}

/// A socket as [`describe`] found it.
pub struct Described {
    /// Its description.
    pub image: FileImage,
    /// For a listening unix socket: the inodes of the clients queued on it
    /// (unix_diag's, in accept order); empty otherwise.
    pub queued_clients: Vec<u32>,
    /// For a unix socket: the files in flight with each queued message
    /// (SCM_RIGHTS), as fds of our own; the indices of their descriptions
    /// go into the image's `queued_ancillary`.
    pub in_flight: Vec<Vec<OwnedFd>>,
}

/// Why the queue of a socket could not be copied.
enum Peek {
    Errno(Errno),
    Refused(String),
}

impl From<Errno> for Peek {
    fn from(e: Errno) -> Self {
        Peek::Errno(e)
    }
}

/// A message (or stream chunk) queued on a unix socket, as a peek copied
/// it.
struct Peeked {
    data: Vec<u8>,
    /// The files in flight with it, received here by the peek.
    fds: Vec<OwnedFd>,
    creds: Option<UnixCreds>,
}

/// Copies what is queued to be read on `sock` without consuming it:
/// MSG_PEEK from a moving SO_PEEK_OFF, one message at a time (an empty
/// datagram or seqpacket message counts), with SO_PASSCRED on for the
/// while to see each sender's credentials, until nothing is left; the
/// socket's own peek offset and SO_PASSCRED are put back afterwards.
/// Files in flight (SCM_RIGHTS) come here as fds of our own.
/// `rcv_shutdown`: the socket receives nothing more, so a seqpacket read
/// of 0 bytes past the queued bytes is its end of file, not an empty
/// message. A stream socket is peeked only up to the bytes FIONREAD
/// counts: a read past them would consume a pending error. A datagram or
/// seqpacket read reports that error before any message, consuming it: it
/// was seen (POLLERR) before.
fn peek_queue(
    sock: BorrowedFd<'_>,
    sock_type: i32,
    rcv_shutdown: bool,
) -> Result<Vec<Peeked>, Peek> {
    let queued_bytes = kernel::bytes_readable(&sock)?;
    let old_peek = getsockopt_int(sock, libc::SOL_SOCKET, libc::SO_PEEK_OFF)?;
    let old_passcred = getsockopt_int(sock, libc::SOL_SOCKET, libc::SO_PASSCRED)?;
    setsockopt_int(sock, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)?;
    setsockopt_int(sock, libc::SOL_SOCKET, libc::SO_PASSCRED, 1)?;
    let stream = sock_type == libc::SOCK_STREAM;
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut out: Vec<Peeked> = Vec::new();
    let mut total = 0;
    let copied = loop {
        if stream && total >= queued_bytes {
            break Ok(());
        }
        let got = kernel::sockets::recv_with_ancillary(
            sock,
            &mut buf,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        );
        let m = match got {
            Err(Errno::EAGAIN) => break Ok(()),
            Err(Errno::ECONNRESET) if !stream => continue,
            Err(e) => break Err(Peek::Errno(e)),
            Ok(m) => m,
        };
        let (fds, creds) = (
            m.fds,
            m.creds.map(|(pid, uid, gid)| UnixCreds { pid, uid, gid }),
        );
        if m.flags.contains(MsgFlags::MSG_CTRUNC) {
            break Err(Peek::Refused(
                "with more file descriptors in flight in one message than ferry receives".into(),
            ));
        }
        if m.flags.contains(MsgFlags::MSG_TRUNC) {
            break Err(Peek::Refused(format!(
                "with a message of more than {MAX_MESSAGE} bytes queued"
            )));
        }
        if m.bytes == 0 && fds.is_empty() && (stream || rcv_shutdown && total >= queued_bytes) {
            break Ok(());
        }
        let n = m.bytes;
        total += n;
        out.push(Peeked {
            data: buf[..n].to_vec(),
            fds,
            creds,
        });
    };
    setsockopt_int(sock, libc::SOL_SOCKET, libc::SO_PASSCRED, old_passcred)?;
    setsockopt_int(sock, libc::SOL_SOCKET, libc::SO_PEEK_OFF, old_peek)?;
    copied.map(|()| out)
}
