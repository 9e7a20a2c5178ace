//! Socket options that nix lacks (SO_DOMAIN, SO_PEEK_OFF, TCP_INFO) and the
//! unix_diag netlink query that names the peer of a unix socket.

use nix::errno::Errno;
use nix::sys::socket::{
    recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// Reads an int-valued socket option.
pub fn getsockopt_int(fd: BorrowedFd<'_>, level: i32, opt: i32) -> Result<i32, Errno> {
    let mut val: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `val`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&mut val as *mut libc::c_int).cast::<libc::c_void>(),
            &mut len,
        )
    };
    Errno::result(r).map(|_| val)
}

/// Sets an int-valued socket option.
pub fn setsockopt_int(fd: BorrowedFd<'_>, level: i32, opt: i32, val: i32) -> Result<(), Errno> {
    // SAFETY: the kernel reads `sizeof(int)` bytes from `val`.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&val as *const libc::c_int).cast::<libc::c_void>(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    Errno::result(r).map(drop)
}

/// socket(domain, ty | SOCK_CLOEXEC, protocol), for the protocols nix's
/// `SockProtocol` lacks (IPPROTO_UDPLITE).
pub fn socket_with_protocol(domain: i32, ty: i32, protocol: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: socket takes three integers and touches no memory of ours.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) };
    Errno::result(fd)?;
    // SAFETY: the fd was just returned by socket and is owned by no one
    // else.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// What TCP_INFO tells about a TCP socket's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpState {
    /// TCP_ESTABLISHED (1) ... TCP_LISTEN (10), TCP_CLOSE (7).
    pub state: u8,
    /// For a listening socket: its backlog (the kernel reports
    /// sk_max_ack_backlog in tcpi_sacked).
    pub max_backlog: u32,
}

/// The state of a TCP socket (getsockopt TCP_INFO).
pub fn tcp_state(fd: BorrowedFd<'_>) -> Result<TcpState, Errno> {
    // SAFETY: tcp_info is plain old data; all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `info`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast::<libc::c_void>(),
            &mut len,
        )
    };
    Errno::result(r)?;
    Ok(TcpState {
        state: info.tcpi_state,
        max_backlog: info.tcpi_sacked,
    })
}

/// What unix_diag tells about a unix socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixDiag {
    /// Inode of the peer socket (0 when the peer is gone), if connected.
    pub peer: Option<u32>,
    /// For a listening socket: its backlog.
    pub max_backlog: u32,
}

/// SOCK_DIAG_BY_FAMILY netlink message type.
pub(super) const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// unix_diag_req.udiag_show bits: the peer, and the queue lengths.
const UDIAG_SHOW_PEER: u32 = 0x4;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
/// unix_diag attributes.
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_RQLEN: u16 = 4;
/// Length of struct nlmsghdr and struct unix_diag_msg.
pub(super) const NLMSG_HDR_LEN: usize = 16;
const UNIX_DIAG_MSG_LEN: usize = 16;

/// Asks the kernel (NETLINK_SOCK_DIAG, unix_diag) about the unix socket
/// with inode `inode` in this process's network namespace.
pub fn unix_diag(inode: u32) -> Result<UnixDiag, Errno> {
    // struct nlmsghdr + struct unix_diag_req (family, protocol, pad,
    // states, ino, show, cookie[2]); an all-ones cookie means "any".
    let mut req = Vec::with_capacity(NLMSG_HDR_LEN + 24);
    req.extend_from_slice(&((NLMSG_HDR_LEN + 24) as u32).to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]);
    req.extend_from_slice(&u32::MAX.to_ne_bytes());
    req.extend_from_slice(&inode.to_ne_bytes());
    req.extend_from_slice(&(UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN).to_ne_bytes());
    req.extend_from_slice(&[0xff; 8]);
    let nl = sock_diag(&req)?;
    let mut buf = vec![0u8; 8192];
    let n = recv(nl.as_raw_fd(), &mut buf, MsgFlags::empty())?;
    parse_unix_diag(&buf[..n])
}

/// Sends request `req` (a netlink message) on a new NETLINK_SOCK_DIAG
/// socket, returned for the replies to be read from.
pub(super) fn sock_diag(req: &[u8]) -> Result<OwnedFd, Errno> {
    let nl = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    sendto(
        nl.as_raw_fd(),
        req,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    Ok(nl)
}

fn parse_unix_diag(msg: &[u8]) -> Result<UnixDiag, Errno> {
    let u16_at = |o: usize| msg.get(o..o + 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        msg.get(o..o + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    let len = u32_at(0).ok_or(Errno::EBADMSG)? as usize;
    match i32::from(u16_at(4).ok_or(Errno::EBADMSG)?) {
        libc::NLMSG_ERROR => {
            let err = u32_at(NLMSG_HDR_LEN).ok_or(Errno::EBADMSG)? as i32;
            return Err(Errno::from_raw(-err));
        }
        t if t == i32::from(SOCK_DIAG_BY_FAMILY) => {}
        _ => return Err(Errno::EBADMSG),
    }
    let mut out = UnixDiag {
        peer: None,
        max_backlog: 0,
    };
    let mut at = NLMSG_HDR_LEN + UNIX_DIAG_MSG_LEN;
    while at + 4 <= len.min(msg.len()) {
        let alen = u16_at(at).ok_or(Errno::EBADMSG)? as usize;
        if alen < 4 {
            return Err(Errno::EBADMSG);
        }
        match u16_at(at + 2).ok_or(Errno::EBADMSG)? {
            UNIX_DIAG_PEER => out.peer = Some(u32_at(at + 4).ok_or(Errno::EBADMSG)?),
            UNIX_DIAG_RQLEN => out.max_backlog = u32_at(at + 8).ok_or(Errno::EBADMSG)?,
            _ => {}
        }
        at += (alen + 3) & !3;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply as the kernel builds it: header, unix_diag_msg, then the
    /// PEER and RQLEN attributes.
    fn reply(attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![libc::AF_UNIX as u8, libc::SOCK_STREAM as u8, 10, 0];
        body.extend_from_slice(&77u32.to_ne_bytes());
        body.extend_from_slice(&[0; 8]);
        for (ty, data) in attrs {
            body.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
            body.extend_from_slice(&ty.to_ne_bytes());
            body.extend_from_slice(data);
        }
        let mut msg = ((NLMSG_HDR_LEN + body.len()) as u32).to_ne_bytes().to_vec();
        msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        msg.extend_from_slice(&[0; 10]);
        msg.extend(body);
        msg
    }

    #[test]
    fn peer_and_backlog_are_read() {
        let rq = [3u32.to_ne_bytes(), 5u32.to_ne_bytes()].concat();
        let msg = reply(&[
            (UNIX_DIAG_PEER, &42u32.to_ne_bytes()),
            (UNIX_DIAG_RQLEN, &rq),
        ]);
        assert_eq!(
            parse_unix_diag(&msg).unwrap(),
            UnixDiag {
                peer: Some(42),
                max_backlog: 5
            }
        );
        assert_eq!(parse_unix_diag(&reply(&[])).unwrap().peer, None);
    }

    #[test]
    fn netlink_errors_are_errnos() {
        let mut msg = 36u32.to_ne_bytes().to_vec();
        msg.extend_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        msg.extend_from_slice(&[0; 10]);
        msg.extend_from_slice(&(-libc::ENOENT).to_ne_bytes());
        msg.extend_from_slice(&[0; 16]);
        assert_eq!(parse_unix_diag(&msg), Err(Errno::ENOENT));
        assert_eq!(parse_unix_diag(&[1, 2]), Err(Errno::EBADMSG));
    }
}
