//! Sockets of a frozen process: what ferry records about the ones
//! inspection found it can carry (names, options, backlog, queued data;
//! a UDP socket's connection state in `udp.rs`).
//! Each socket is taken out of the process with pidfd_getfd and examined
//! with ordinary socket calls; the peer of a unix socket comes from
//! unix_diag.

use super::error::CheckpointError;
use super::udp;
use crate::image::{FileImage, InetSocket, SocketOptions, UnixSocket};
use crate::inspect::sockets::unix_diag_of;
use crate::inspect::{FdClass, InspectError};
use crate::kernel;
use crate::kernel::sockets::{getsockopt_int, setsockopt_int};
use nix::errno::Errno;
use nix::sys::socket::{getsockname, recvmsg, MsgFlags, SockaddrLike, SockaddrStorage};
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// The largest queued datagram ferry copies.
const MAX_MESSAGE: usize = 4 << 20;

/// Describes the socket at fd `fd` of the frozen process `pid` (link
/// target `target`), taken out of it as `sock`, with status flags `flags`.
/// A unix socket's `peer` is left for
/// [`TreeFiles::link_unix_peers`](super::files::TreeFiles::link_unix_peers).
pub fn describe(
    pid: i32,
    fd: i32,
    target: &str,
    class: FdClass,
    sock: &OwnedFd,
    flags: i32,
) -> Result<FileImage, CheckpointError> {
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
            let name = local.as_unix_addr().and_then(|u| {
                u.path()
                    .map(|p| std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec())
                    .or_else(|| u.as_abstract().map(|a| [&[0u8][..], a].concat()))
            });
            let listen_backlog = if listening {
                Some(
                    unix_diag_of(pid, inode)
                        .map_err(io("unix_diag"))?
                        .max_backlog,
                )
            } else {
                None
            };
            let queued = if peer.is_some() {
                peek_queue(s, sock_type).map_err(|e| match e {
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
            Ok(FileImage::UnixSocket(UnixSocket {
                sock_type,
                flags,
                name: name.filter(|n| peer.is_none() && !n.is_empty()),
                listen_backlog,
                peer: None,
                queued,
                options,
            }))
        }
        _ => {
            let ipv6 = local.family() == Some(nix::sys::socket::AddressFamily::Inet6);
            let local =
                udp::socket_addr(&local).filter(|a| a.port() != 0 || !a.ip().is_unspecified());
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
                    shutdown: 0,
                    queued: Vec::new(),
                }
            };
            Ok(FileImage::InetSocket(InetSocket {
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
            }))
        }
    }
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

/// Copies what is queued to be read on `sock` without consuming it:
/// MSG_PEEK from a moving SO_PEEK_OFF, one message at a time, until
/// nothing is left; the socket's own peek offset is put back afterwards.
fn peek_queue(sock: BorrowedFd<'_>, sock_type: i32) -> Result<Vec<Vec<u8>>, Peek> {
    let old = getsockopt_int(sock, libc::SOL_SOCKET, libc::SO_PEEK_OFF)?;
    setsockopt_int(sock, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut out = Vec::new();
    let copied = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let got = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            None,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        );
        match got {
            Err(Errno::EAGAIN) => break Ok(()),
            Err(e) => break Err(Peek::Errno(e)),
            Ok(m) if m.flags.contains(MsgFlags::MSG_CTRUNC) => {
                break Err(Peek::Refused(
                    "with file descriptors or credentials in flight".into(),
                ))
            }
            Ok(m) if m.flags.contains(MsgFlags::MSG_TRUNC) => {
                break Err(Peek::Refused(format!(
                    "with a message of more than {MAX_MESSAGE} bytes queued"
                )))
            }
            Ok(m) if m.bytes == 0 && sock_type != libc::SOCK_STREAM => {
                break Err(Peek::Refused("with an empty message queued".into()))
            }
            Ok(m) if m.bytes == 0 => break Ok(()),
            Ok(m) => {
                let n = m.bytes;
                out.push(buf[..n].to_vec());
            }
        }
    };
    setsockopt_int(sock, libc::SOL_SOCKET, libc::SO_PEEK_OFF, old)?;
    copied.map(|()| out)
}
