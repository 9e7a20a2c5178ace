//! What a UDP socket holds beyond its address and options: the address it
//! is connected to, its shutdown state and the datagrams queued on it
//! (each with its sender, so that the restored socket's recvfrom still
//! names it).

use crate::image::Datagram;
use crate::inspect::sockets::inet_addr;
use crate::kernel::inet_diag;
use crate::kernel::sockets::{getsockopt_int, peeking_from_start};
use nix::errno::Errno;
use nix::sys::socket::{getpeername, recvmsg, MsgFlags, SockaddrStorage};
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The largest UDP payload (an IPv6 jumbogram aside).
const MAX_DATAGRAM: usize = 64 << 10;

/// The connection state of a UDP socket.
pub struct UdpState {
    /// The address it is connected to.
    pub peer: Option<SocketAddr>,
    /// Its shutdown bits (1 reading, 2 writing; 0 for a socket neither
    /// bound nor connected, which inet_diag does not list).
    pub shutdown: u8,
    /// Its queued datagrams, oldest first.
    pub queued: Vec<Datagram>,
}

/// Why the state of a UDP socket could not be read.
pub enum UdpError {
    /// A call failed (what was being done, and the error).
    Errno(&'static str, Errno),
    /// Something ferry does not carry is there.
    Refused(String),
}

/// Reads the state of the UDP (or UDP-Lite: `protocol`) socket `sock` of
/// process `pid` (in that process's network namespace, for inet_diag).
pub fn read(pid: i32, sock: BorrowedFd<'_>, protocol: i32) -> Result<UdpState, UdpError> {
    let peer = match getpeername::<SockaddrStorage>(sock.as_raw_fd()) {
        Ok(a) => inet_addr(&a),
        Err(Errno::ENOTCONN) => None,
        Err(e) => return Err(UdpError::Errno("getpeername", e)),
    };
    let family = getsockopt_int(sock, libc::SOL_SOCKET, libc::SO_DOMAIN)
        .map_err(|e| UdpError::Errno("read SO_DOMAIN", e))?;
    let inode = nix::sys::stat::fstat(sock)
        .map_err(|e| UdpError::Errno("fstat", e))?
        .st_ino as u32;
    let shutdown =
        crate::kernel::in_net_namespace(pid, || inet_diag::shutdown_state(family, protocol, inode))
            .and_then(|r| r)
            .map_err(|e| UdpError::Errno("inet_diag", e))?
            // Not listed: neither bound nor connected (not hashed), so nothing a
            // shutdown could have reached yet... but its bits, if any, are lost.
            .unwrap_or(0);
    Ok(UdpState {
        peer,
        shutdown,
        queued: peek_datagrams(sock)?,
    })
}

/// Copies the datagrams queued on `sock` with their senders, without
/// consuming them: MSG_PEEK from a moving SO_PEEK_OFF, put back after.
fn peek_datagrams(sock: BorrowedFd<'_>) -> Result<Vec<Datagram>, UdpError> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut out = Vec::new();
    let copied = peeking_from_start(sock, || loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let got = recvmsg::<SockaddrStorage>(
            sock.as_raw_fd(),
            &mut iov,
            None,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        );
        let m = match got {
            Err(Errno::EAGAIN) => break Ok(()),
            Err(e) => break Err(UdpError::Errno("copy the queued datagrams", e)),
            Ok(m) => m,
        };
        let (bytes, truncated) = (m.bytes, m.flags.contains(MsgFlags::MSG_TRUNC));
        let source = m.address.as_ref().and_then(inet_addr);
        match source {
            _ if truncated => {
                break Err(UdpError::Refused(format!(
                    "UDP socket with a datagram of more than {MAX_DATAGRAM} bytes queued"
                )))
            }
            // A moving peek offset cannot step over an empty datagram.
            _ if bytes == 0 => {
                break Err(UdpError::Refused(
                    "UDP socket with an empty datagram queued".into(),
                ))
            }
            None => {
                break Err(UdpError::Refused(
                    "UDP socket with a datagram of unknown sender queued".into(),
                ))
            }
            Some(source) => out.push(Datagram {
                source,
                data: buf[..bytes].to_vec(),
            }),
        }
    })
    .map_err(|e| UdpError::Errno("move SO_PEEK_OFF", e))?;
    copied.map(|()| out)
}
