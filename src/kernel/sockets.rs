//! Socket options that nix lacks (SO_DOMAIN, SO_PEEK_OFF, TCP_INFO, the
//! TCP_REPAIR family and its structs), the queue-length ioctls of a TCP
//! socket, and the unix_diag netlink query that names the peer of a unix
//! socket.

use super::abi::{IntoBytes, TcpRepairOpt, TcpRepairWindow};
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

/// Runs `peek` with the peek offset of `sock` at 0, so that each MSG_PEEK
/// copies the next message or bytes rather than the first again
/// (SO_PEEK_OFF moves past what a peek copied), and puts the socket's own
/// offset back afterwards: the queue is copied and left as it was.
pub fn peeking_from_start<T>(sock: BorrowedFd<'_>, peek: impl FnOnce() -> T) -> Result<T, Errno> {
    let old = getsockopt_int(sock, libc::SOL_SOCKET, libc::SO_PEEK_OFF)?;
    setsockopt_int(sock, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)?;
    let copied = peek();
    setsockopt_int(sock, libc::SOL_SOCKET, libc::SO_PEEK_OFF, old)?;
    Ok(copied)
}

/// A message received (or peeked) from a unix socket with its ancillary
/// data.
pub struct ReceivedMessage {
    /// Bytes copied into the buffer.
    pub bytes: usize,
    /// The message flags (MSG_TRUNC, MSG_CTRUNC ...).
    pub flags: MsgFlags,
    /// The fds SCM_RIGHTS installed in this process, owned here.
    pub fds: Vec<OwnedFd>,
    /// SCM_CREDENTIALS: (pid, uid, gid), when SO_PASSCRED is on.
    pub creds: Option<(i32, u32, u32)>,
}

/// The most fds one message carries (the kernel's SCM_MAX_FD).
pub const SCM_MAX_FD: usize = 253;

/// recvmsg on `fd` into `buf` with `flags` (MSG_CMSG_CLOEXEC is added),
/// taking ownership of any fd the kernel installs (a MSG_PEEK of a message
/// with SCM_RIGHTS installs duplicates of the files in flight).
pub fn recv_with_ancillary(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: MsgFlags,
) -> Result<ReceivedMessage, Errno> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned};
    use std::os::fd::{FromRawFd, RawFd};
    let mut cmsg = nix::cmsg_space!([RawFd; SCM_MAX_FD], libc::ucred);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let m = recvmsg::<()>(
        fd.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        flags | MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut out = ReceivedMessage {
        bytes: m.bytes,
        flags: m.flags,
        fds: Vec::new(),
        creds: None,
    };
    for c in m.cmsgs()? {
        match c {
            ControlMessageOwned::ScmRights(fds) => out.fds.extend(fds.into_iter().map(|fd| {
                // SAFETY: the kernel has just installed `fd` in this process
                // for this call; nothing else refers to it.
                unsafe { OwnedFd::from_raw_fd(fd) }
            })),
            ControlMessageOwned::ScmCredentials(c) => out.creds = Some((c.pid(), c.uid(), c.gid())),
            _ => {}
        }
    }
    Ok(out)
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
    let info = tcp_info(fd)?;
    Ok(TcpState {
        state: info.tcpi_state,
        max_backlog: info.tcpi_sacked,
    })
}

/// The whole of getsockopt TCP_INFO (state, negotiated options, window
/// scales, unacknowledged segments ...).
pub fn tcp_info(fd: BorrowedFd<'_>) -> Result<libc::tcp_info, Errno> {
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
    Errno::result(r).map(|_| info)
}

/// Reads a socket option into `buf`; returns the length the kernel wrote.
pub fn getsockopt_bytes(
    fd: BorrowedFd<'_>,
    level: i32,
    opt: i32,
    buf: &mut [u8],
) -> Result<usize, Errno> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `buf`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            buf.as_mut_ptr().cast::<libc::c_void>(),
            &mut len,
        )
    };
    Errno::result(r).map(|_| len as usize)
}

/// The peer's address of IP socket `fd` (SO_PEERNAME, which unlike
/// getpeername still gives it once the connection is closed), `None` when
/// it has none.
pub fn peer_name(fd: BorrowedFd<'_>) -> Result<Option<std::net::SocketAddr>, Errno> {
    let mut buf = [0u8; std::mem::size_of::<libc::sockaddr_in6>()];
    // The kernel refuses a buffer longer than the address.
    let size = match getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)? {
        libc::AF_INET => std::mem::size_of::<libc::sockaddr_in>(),
        libc::AF_INET6 => buf.len(),
        _ => return Ok(None),
    };
    let len = match getsockopt_bytes(fd, libc::SOL_SOCKET, libc::SO_PEERNAME, &mut buf[..size]) {
        Err(Errno::ENOTCONN) => return Ok(None),
        other => other?,
    };
    let port = u16::from_be_bytes([buf[2], buf[3]]);
    Ok(match i32::from(u16::from_ne_bytes([buf[0], buf[1]])) {
        libc::AF_INET if len >= 8 => Some(std::net::SocketAddr::from((
            [buf[4], buf[5], buf[6], buf[7]],
            port,
        ))),
        libc::AF_INET6 if len >= 28 => {
            let ip: [u8; 16] = buf[8..24].try_into().map_err(|_| Errno::EINVAL)?;
            let scope = u32::from_ne_bytes(buf[24..28].try_into().map_err(|_| Errno::EINVAL)?);
            Some(std::net::SocketAddr::V6(std::net::SocketAddrV6::new(
                ip.into(),
                port,
                0,
                scope,
            )))
        }
        _ => None,
    })
}

/// Sets a socket option whose value is the bytes `val` (a kernel struct
/// or an array of them).
pub fn setsockopt_bytes(fd: BorrowedFd<'_>, level: i32, opt: i32, val: &[u8]) -> Result<(), Errno> {
    // SAFETY: the kernel reads `val.len()` bytes from `val`.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            val.as_ptr().cast::<libc::c_void>(),
            val.len() as libc::socklen_t,
        )
    };
    Errno::result(r).map(drop)
}

/// Whether socket `fd` is shut down for reading (poll's POLLRDHUP, which
/// nix's flags lack: by shutdown(SHUT_RD), or by the peer's FIN).
pub fn read_shut_down(fd: BorrowedFd<'_>) -> Result<bool, Errno> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one pollfd, valid for the call; a zero timeout.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    Errno::result(r).map(|_| p.revents & libc::POLLRDHUP != 0)
}

/// Which queue of a TCP socket [`tcp_queue_len`] measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpQueue {
    /// SIOCINQ: bytes received and not read (a received FIN not counted).
    Received,
    /// SIOCOUTQ: bytes written and not acknowledged by the peer.
    Unacked,
    /// SIOCOUTQNSD: bytes written and never sent.
    Unsent,
}

/// SIOCOUTQNSD (linux/sockios.h), which libc lacks.
const SIOCOUTQNSD: libc::Ioctl = 0x894B;

/// The length of one queue of TCP socket `fd`.
pub fn tcp_queue_len(fd: BorrowedFd<'_>, queue: TcpQueue) -> Result<u32, Errno> {
    let request = match queue {
        TcpQueue::Received => libc::FIONREAD,
        TcpQueue::Unacked => libc::TIOCOUTQ,
        TcpQueue::Unsent => SIOCOUTQNSD,
    };
    let mut n: libc::c_int = 0;
    // SAFETY: these three ioctls write one int into n.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request, &mut n as *mut libc::c_int) };
    Errno::result(r).map(|_| n.max(0) as u32)
}

/// The queue a TCP socket in repair mode reads from or writes to
/// (TCP_REPAIR_QUEUE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum RepairQueue {
    /// TCP_NO_QUEUE: none.
    None = 0,
    /// TCP_RECV_QUEUE: what the program has to read.
    Recv = 1,
    /// TCP_SEND_QUEUE: what the program wrote and the peer has not
    /// acknowledged.
    Send = 2,
}

/// tcpi_options bits: timestamps, SACK and window scaling negotiated.
pub const TCPI_OPT_TIMESTAMPS: u8 = 1;
/// SACK negotiated.
pub const TCPI_OPT_SACK: u8 = 2;
/// Window scaling negotiated.
pub const TCPI_OPT_WSCALE: u8 = 4;
/// TCP option kinds TCP_REPAIR_OPTIONS takes.
pub const TCPOPT_MSS: u32 = 2;
/// Window scale option.
pub const TCPOPT_WINDOW: u32 = 3;
/// SACK permitted option.
pub const TCPOPT_SACK_PERM: u32 = 4;
/// Timestamps option.
pub const TCPOPT_TIMESTAMP: u32 = 8;

/// Turns repair mode on or off on TCP socket `fd` (needs CAP_NET_ADMIN).
/// In repair mode the socket sends nothing: its state, sequence numbers
/// and queues can be read and written, and closing it sends no FIN or RST.
pub fn tcp_repair(fd: BorrowedFd<'_>, on: bool) -> Result<(), Errno> {
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_REPAIR, i32::from(on))
}

/// TCP_REPAIR_OFF_NO_WP (linux/tcp.h), which libc lacks.
const TCP_REPAIR_OFF_NO_WP: i32 = -1;

/// Turns repair mode off on TCP socket `fd` without the window probe
/// [`tcp_repair`] makes the kernel send.
pub fn tcp_repair_off_without_probe(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    setsockopt_int(
        fd,
        libc::IPPROTO_TCP,
        libc::TCP_REPAIR,
        TCP_REPAIR_OFF_NO_WP,
    )
}

/// Selects the queue that TCP_QUEUE_SEQ, MSG_PEEK and send() act on in
/// repair mode.
pub fn tcp_repair_queue(fd: BorrowedFd<'_>, queue: RepairQueue) -> Result<(), Errno> {
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_REPAIR_QUEUE, queue as i32)
}

/// The sequence number at the end of the selected queue (rcv_nxt or
/// write_seq).
pub fn tcp_queue_seq(fd: BorrowedFd<'_>) -> Result<u32, Errno> {
    getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_QUEUE_SEQ).map(|v| v as u32)
}

/// Sets the first sequence number of the selected queue (only before
/// connect).
pub fn set_tcp_queue_seq(fd: BorrowedFd<'_>, seq: u32) -> Result<(), Errno> {
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_QUEUE_SEQ, seq as i32)
}

/// The windows of a TCP socket in repair mode.
pub fn tcp_repair_window(fd: BorrowedFd<'_>) -> Result<TcpRepairWindow, Errno> {
    let mut w = TcpRepairWindow::default();
    let n = getsockopt_bytes(
        fd,
        libc::IPPROTO_TCP,
        libc::TCP_REPAIR_WINDOW,
        w.as_mut_bytes(),
    )?;
    if n != std::mem::size_of::<TcpRepairWindow>() {
        return Err(Errno::EINVAL);
    }
    Ok(w)
}

/// Sets the windows of a TCP socket in repair mode.
pub fn set_tcp_repair_window(fd: BorrowedFd<'_>, w: &TcpRepairWindow) -> Result<(), Errno> {
    setsockopt_bytes(fd, libc::IPPROTO_TCP, libc::TCP_REPAIR_WINDOW, w.as_bytes())
}

/// Gives a connected TCP socket in repair mode the options negotiated
/// with its peer.
pub fn set_tcp_repair_options(fd: BorrowedFd<'_>, opts: &[TcpRepairOpt]) -> Result<(), Errno> {
    setsockopt_bytes(
        fd,
        libc::IPPROTO_TCP,
        libc::TCP_REPAIR_OPTIONS,
        opts.as_bytes(),
    )
}

/// What unix_diag tells about a unix socket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnixDiag {
    /// SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET.
    pub sock_type: i32,
    /// Inode of the peer socket (0 when the peer is gone, or is a
    /// connection not accepted yet), if connected.
    pub peer: Option<u32>,
    /// For a listening socket: its backlog.
    pub max_backlog: u32,
    /// For a socket that is not listening: bytes it sent that its peer
    /// has not read yet (their memory is charged to the sender).
    pub unread_sent: u32,
    /// For a listening socket: the inode of the client end of each
    /// connection queued and not accepted yet, in accept order (0 for a
    /// client that has closed).
    pub queued_clients: Vec<u32>,
    /// The shutdown bits (1: no more receiving, 2: no more sending).
    pub shutdown: u8,
    /// For a socket bound to a path: the inode of its socket file (which
    /// may have been unlinked since, or replaced by another's).
    pub bound_inode: Option<u32>,
}

/// SOCK_DIAG_BY_FAMILY netlink message type.
pub(super) const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// unix_diag_req.udiag_show bits: the socket file, the peer, the
/// connections queued on a listener, and the queue lengths.
const UDIAG_SHOW_VFS: u32 = 0x2;
const UDIAG_SHOW_PEER: u32 = 0x4;
const UDIAG_SHOW_ICONS: u32 = 0x8;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
/// unix_diag attributes.
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_ICONS: u16 = 3;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_SHUTDOWN: u16 = 6;
/// unix_diag_msg.udiag_state of a listening socket.
const TCP_LISTEN: u8 = 10;
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
    req.extend_from_slice(
        &(UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN).to_ne_bytes(),
    );
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
    let listening = msg.get(NLMSG_HDR_LEN + 2) == Some(&TCP_LISTEN);
    let mut out = UnixDiag {
        sock_type: i32::from(*msg.get(NLMSG_HDR_LEN + 1).ok_or(Errno::EBADMSG)?),
        ..UnixDiag::default()
    };
    let mut at = NLMSG_HDR_LEN + UNIX_DIAG_MSG_LEN;
    while at + 4 <= len.min(msg.len()) {
        let alen = u16_at(at).ok_or(Errno::EBADMSG)? as usize;
        if alen < 4 {
            return Err(Errno::EBADMSG);
        }
        match u16_at(at + 2).ok_or(Errno::EBADMSG)? {
            UNIX_DIAG_PEER => out.peer = Some(u32_at(at + 4).ok_or(Errno::EBADMSG)?),
            UNIX_DIAG_RQLEN if listening => {
                out.max_backlog = u32_at(at + 8).ok_or(Errno::EBADMSG)?
            }
            UNIX_DIAG_RQLEN => out.unread_sent = u32_at(at + 8).ok_or(Errno::EBADMSG)?,
            UNIX_DIAG_ICONS => {
                let end = (at + alen).min(msg.len());
                out.queued_clients = msg[at + 4..end]
                    .chunks_exact(4)
                    .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
            }
            UNIX_DIAG_VFS => out.bound_inode = Some(u32_at(at + 4).ok_or(Errno::EBADMSG)?),
            UNIX_DIAG_SHUTDOWN => out.shutdown = *msg.get(at + 4).ok_or(Errno::EBADMSG)?,
            _ => {}
        }
        at += (alen + 3) & !3;
    }
    Ok(out)
}

/// A sock_diag reply as the kernel frames it (a netlink header, then
/// `body`), for the parsers' unit tests.
#[cfg(test)]
pub(super) fn framed_reply(body: Vec<u8>) -> Vec<u8> {
    let mut msg = ((NLMSG_HDR_LEN + body.len()) as u32).to_ne_bytes().to_vec();
    msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    msg.extend_from_slice(&[0; 10]);
    msg.extend(body);
    msg
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
        framed_reply(body)
    }

    #[test]
    fn peer_and_backlog_are_read() {
        let rq = [3u32.to_ne_bytes(), 5u32.to_ne_bytes()].concat();
        let icons = [7u32.to_ne_bytes(), 0u32.to_ne_bytes()].concat();
        let msg = reply(&[
            (UNIX_DIAG_PEER, &42u32.to_ne_bytes()),
            (UNIX_DIAG_RQLEN, &rq),
            (UNIX_DIAG_ICONS, &icons),
            (UNIX_DIAG_SHUTDOWN, &[2, 0, 0, 0]),
        ]);
        assert_eq!(
            parse_unix_diag(&msg).unwrap(),
            UnixDiag {
                sock_type: libc::SOCK_STREAM,
                peer: Some(42),
                max_backlog: 5,
                queued_clients: vec![7, 0],
                shutdown: 2,
                ..UnixDiag::default()
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
