//! Sockets of a frozen process: what ferry records about the ones
//! inspection found it can carry (names, options, backlog, queued data;
//! a UDP socket's connection state in `udp.rs`).
//! Each socket is taken out of the process with pidfd_getfd and examined
//! with ordinary socket calls; the peer of a unix socket comes from
//! unix_diag.

use super::error::CheckpointError;
use super::udp;
use super::unix;
use crate::image::{Ancillary, FileImage, InetSocket, IntOption, SocketOptions, UnixSocket};
use crate::inspect::sockets::{inet_addr, unix_diag_of};
use crate::inspect::{FdClass, InspectError};
use crate::kernel;
use crate::kernel::sockets::getsockopt_int;
use crate::kernel::sockopts;
use nix::errno::Errno;
use nix::sys::socket::{getsockname, SockaddrLike, SockaddrStorage};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

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
    let options = socket_options(s).map_err(io("read an option"))?;
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
                && unix::error_pending(s).map_err(io("poll"))?;
            let peeked = if peer.is_some() {
                unix::peek_queue(s, sock_type, diag.shutdown & 1 != 0).map_err(|e| match e {
                    unix::Peek::Errno(errno) => io("copy the queued data")(errno),
                    unix::Peek::Refused(why) => refuse(format!("unix socket {why}")),
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
                Some(n) if n.first() != Some(&0) => {
                    unix::socket_file_owner(pid, n, diag.bound_inode)
                }
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
            // A raw socket's port is its protocol: only its address is
            // bound.
            let raw = sock_type == libc::SOCK_RAW;
            let local =
                inet_addr(&local).filter(|a| (a.port() != 0 && !raw) || !a.ip().is_unspecified());
            let listen_backlog = if listening {
                Some(
                    kernel::sockets::tcp_state(s)
                        .map_err(io("TCP_INFO"))?
                        .max_backlog,
                )
            } else {
                None
            };
            let protocol = int(libc::SOL_SOCKET, libc::SO_PROTOCOL)?;
            let udp = if sock_type == libc::SOCK_DGRAM {
                udp::read(pid, s, protocol).map_err(|e| match e {
                    udp::UdpError::Errno(what, errno) => io(what)(errno),
                    udp::UdpError::Refused(why) => refuse(why),
                })?
            } else {
                udp::UdpState {
                    peer: None,
                    shutdown: if listening {
                        0
                    } else {
                        tcp_closed_shutdown(s).map_err(io("poll"))?
                    },
                    queued: Vec::new(),
                }
            };
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
                peer: udp.peer,
                shutdown: udp.shutdown,
                queued: udp.queued,
                protocol,
                broadcast: int(libc::SOL_SOCKET, libc::SO_BROADCAST)? != 0,
            });
            Ok(Described {
                image,
                queued_clients: Vec::new(),
                in_flight: Vec::new(),
            })
        }
    }
}

/// The options of socket `s` that every kind of socket has (reuse flags,
/// buffer sizes, the table of `kernel::sockopts`, linger, timeouts, bound
/// device): the one reading of them, for unix, UDP, raw and TCP sockets
/// listening or connected alike. An option this socket or kernel lacks is
/// left out.
pub fn socket_options(s: BorrowedFd<'_>) -> Result<SocketOptions, Errno> {
    let int = |level, opt| getsockopt_int(s, level, opt);
    let (domain, ty, protocol) = (
        int(libc::SOL_SOCKET, libc::SO_DOMAIN)?,
        int(libc::SOL_SOCKET, libc::SO_TYPE)?,
        int(libc::SOL_SOCKET, libc::SO_PROTOCOL)?,
    );
    let mut int_options = Vec::new();
    for c in sockopts::carried_for(domain, ty, protocol) {
        match int(c.level, c.name) {
            Ok(value) => int_options.push(IntOption {
                level: c.level,
                name: c.name,
                value,
            }),
            Err(e) if sockopts::lacks_option(e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(SocketOptions {
        reuse_addr: int(libc::SOL_SOCKET, libc::SO_REUSEADDR)? != 0,
        reuse_port: int(libc::SOL_SOCKET, libc::SO_REUSEPORT)? != 0,
        sndbuf: int(libc::SOL_SOCKET, libc::SO_SNDBUF)? as u32,
        rcvbuf: int(libc::SOL_SOCKET, libc::SO_RCVBUF)? as u32,
        int_options,
        linger: sockopts::linger(s)?,
        rcv_timeout_us: sockopts::timeout_us(s, libc::SO_RCVTIMEO)?,
        snd_timeout_us: sockopts::timeout_us(s, libc::SO_SNDTIMEO)?,
        bound_device: sockopts::bound_device(s)?,
        icmp6_filter: sockopts::icmp6_filter(s, domain, ty, protocol)?,
    })
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

/// The shutdown bits of a TCP socket that is neither listening nor
/// connected: 3 (both ways) for one whose connection ended (reset, or
/// closed both ways: the kernel shuts such a socket down both ways, so
/// that reading it gives end-of-file, not ENOTCONN), 0 for one never
/// connected. Seen without changing it: poll reports POLLIN (with
/// POLLRDHUP) for the first only, a never connected one having nothing
/// to read (inet_diag does not list such a socket any more).
fn tcp_closed_shutdown(s: BorrowedFd<'_>) -> Result<u8, Errno> {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(s, PollFlags::POLLIN)];
    nix::poll::poll(&mut fds, PollTimeout::ZERO)?;
    let ended = fds[0]
        .revents()
        .is_some_and(|r| r.contains(PollFlags::POLLIN));
    Ok(if ended { 3 } else { 0 })
}
