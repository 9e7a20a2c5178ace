//! Recreates an image's TCP connections here in migrate-agent, to be
//! pulled into the husk like the other sockets, with TCP_REPAIR: in repair
//! mode a new socket is bound to the connection's local address, given
//! the sequence numbers both queues start at, "connected" without a packet
//! sent, given the options negotiated with the peer, its queues refilled
//! (the receive queue for the program to read, the send queue as sent and
//! unacknowledged) and its windows. They stay in repair mode while the
//! rest of the tree is rebuilt (a restore that fails closes them without a
//! FIN or RST to the peer, whose connection the resumed source may still
//! hold). Just before the tree runs ([`Pending::go_live`]), repair mode
//! goes off on each (the kernel then sends a window probe, which the peer
//! answers with its acknowledgement, or with a reset when nothing holds
//! the peer's side any more: a local checkpoint's network lock is released
//! just before, so neither is dropped), what was never sent is written
//! normally, and the TCP settings are set again.
//!
//! A half-closed connection: an end that had sent its FIN (FIN_WAIT1/2,
//! LAST_ACK, CLOSING) shuts down writing, in repair mode with its FIN
//! queued as sent when nothing was left unsent (acknowledged by the
//! peer's answer to the probe, or retransmitted if the peer lacked it),
//! else once the unsent data is written again. An end that had received
//! its peer's FIN (CLOSE_WAIT, LAST_ACK, CLOSING) is given that FIN again
//! (`tcp_peer.rs`), before its own shutdown or after it as it came.
//!
//! A connection that had ended (reset, or closed both ways) with bytes
//! still to be read is rebuilt with them and given its peer's reset; when
//! the original had reported its error already, the error is read here.
//!
//! A socket still connecting (SYN_SENT) is bound in repair mode and given
//! the sequence number of its SYN; just before the tree runs it leaves
//! repair mode and connects again without blocking (CRIU's libsoccr does
//! the same): the kernel sends the SYN with that number and retransmits it
//! until the peer answers, and the program's connect completes then.

use super::sockets::{set_flags, set_options};
use super::tcp_peer::{self, PeerSegment};
use crate::image::{Checkpoint, FileImage, TcpConnState, TcpConnection};
use crate::kernel::abi::{TcpRepairOpt, TcpRepairWindow};
use crate::kernel::sockets::{
    getsockopt_int, set_tcp_queue_seq, set_tcp_repair_options, set_tcp_repair_window,
    setsockopt_int, tcp_repair, tcp_repair_off_without_probe, tcp_repair_queue, RepairQueue,
    TCPOPT_MSS, TCPOPT_SACK_PERM, TCPOPT_TIMESTAMP, TCPOPT_WINDOW,
};
use crate::restore::error::RestoreError;
use nix::errno::Errno;
use nix::sys::socket::{
    bind, connect, send, shutdown, socket, AddressFamily, MsgFlags, Shutdown, SockFlag, SockType,
    SockaddrIn, SockaddrIn6, SockaddrLike,
};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// The connections of a tree being restored, in repair mode until
/// [`Pending::go_live`]. Dropped without it (a failed restore), they stay
/// in repair mode: closed with the killed husks, they send nothing.
#[derive(Default)]
pub struct Pending {
    /// Each connection, in the order of `Checkpoint::files`.
    conns: Vec<PendingConn>,
}

/// A connection waiting in repair mode.
struct PendingConn {
    /// Index of its description in `Checkpoint::files`.
    file: usize,
    /// The first process holding it, for messages.
    pid: i32,
    /// Our copy of the socket.
    sock: OwnedFd,
    /// A raw socket of the connection's network namespace to give it its
    /// peer's FIN or reset, when it had received one.
    peer_sender: Option<OwnedFd>,
}

impl Pending {
    /// Makes every connection live, once the whole tree is rebuilt (both
    /// ends of a connection inside the tree exist by then: a window probe
    /// sent to an end not created yet would be answered by a reset).
    pub fn go_live(self, ck: &Checkpoint) -> Result<(), RestoreError> {
        // The ended ones first: given their peer's reset, they are gone
        // when a live end of the same connection sends its window probe,
        // which is answered by a reset then, as it was bound to be.
        for ended in [true, false] {
            for p in &self.conns {
                let Some(FileImage::TcpConnection(c)) = ck.files.get(p.file) else {
                    continue;
                };
                if c.state.ended() == ended {
                    go_live(p, c)?;
                }
            }
        }
        Ok(())
    }
}

/// Creates every TCP connection of the tree `ck` in repair mode, storing
/// our fd of each at the index of its description in `ours`.
pub fn create(ck: &Checkpoint, ours: &mut [Option<OwnedFd>]) -> Result<Pending, RestoreError> {
    let mut pending = Pending::default();
    for (i, file) in ck.files.iter().enumerate() {
        let FileImage::TcpConnection(c) = file else {
            continue;
        };
        // The first process that holds it, for messages.
        let pid = ck
            .processes
            .iter()
            .find(|p| p.fds.iter().any(|f| f.file as usize == i))
            .map_or(0, |p| p.pid);
        let sock = repaired(pid, c)?;
        set_flags(pid, &sock, c.flags)?;
        let copy = sock.try_clone().map_err(|e| RestoreError::Injected {
            pid,
            call: format!("dup of TCP connection {} -> {}", c.local, c.remote),
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
        let peer_sender = if c.state.fin_received() || c.state.ended() {
            let sender = tcp_peer::sender(c).map_err(|errno| RestoreError::Injected {
                pid,
                call: format!(
                    "a raw IP socket to give TCP connection {} -> {} its peer's segments",
                    c.local, c.remote
                ),
                errno,
            })?;
            Some(sender)
        } else {
            None
        };
        pending.conns.push(PendingConn {
            file: i,
            pid,
            sock: copy,
            peer_sender,
        });
        ours[i] = Some(sock);
    }
    Ok(pending)
}

/// A connected socket in repair mode with the connection's state and
/// queues, all but the data never sent.
fn repaired(pid: i32, c: &TcpConnection) -> Result<OwnedFd, RestoreError> {
    let fail = |call: String| move |errno| RestoreError::Injected { pid, call, errno };
    let shown = format!("{} -> {}", c.local, c.remote);
    let family = if c.ipv6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let sock = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).map_err(fail(
        format!("socket({family:?}) for TCP connection {shown}"),
    ))?;
    // Before repair mode: SO_REUSEADDR would undo the forced reuse repair
    // mode gives for the bind.
    set_options(pid, &sock, &c.options)?;
    let s = sock.as_fd();
    if c.ipv6 {
        setsockopt_int(
            s,
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            i32::from(c.v6only),
        )
        .map_err(fail("setting IPV6_V6ONLY".into()))?;
    }
    let step = |what: &str| fail(format!("{what} for TCP connection {shown}"));
    if c.state == TcpConnState::SynSent {
        // Its buffers as they were (the window scale its SYN offers
        // follows the receive buffer); bound where it was, with its SYN's
        // sequence number for the connect of `go_live`.
        tcp_repair(s, true).map_err(step("turning repair mode on"))?;
        with_addr(c.local, |a| bind(s.as_raw_fd(), a)).map_err(step("bind"))?;
        tcp_repair_queue(s, RepairQueue::Send).map_err(step("selecting the send queue"))?;
        set_tcp_queue_seq(s, c.send_seq.wrapping_sub(1))
            .map_err(step("setting the SYN's sequence"))?;
        tcp_repair_queue(s, RepairQueue::None).map_err(step("selecting no queue"))?;
        return Ok(sock);
    }
    // Room for the queues however the kernel accounts for them now: the
    // recorded sizes are set again once the connection is live.
    for (force, queued) in [
        (libc::SO_SNDBUFFORCE, c.send_queue.len()),
        (libc::SO_RCVBUFFORCE, c.recv_queue.len()),
    ] {
        let room = (queued.saturating_mul(2) + (1 << 20)).min(i32::MAX as usize / 2);
        setsockopt_int(s, libc::SOL_SOCKET, force, room as i32)
            .map_err(step("making room for the queues"))?;
    }
    tcp_repair(s, true).map_err(step("turning repair mode on"))?;
    with_addr(c.local, |a| bind(s.as_raw_fd(), a)).map_err(step("bind"))?;
    tcp_repair_queue(s, RepairQueue::Recv).map_err(step("selecting the receive queue"))?;
    set_tcp_queue_seq(s, c.recv_seq.wrapping_sub(c.recv_queue.len() as u32))
        .map_err(step("setting the receive sequence"))?;
    tcp_repair_queue(s, RepairQueue::Send).map_err(step("selecting the send queue"))?;
    set_tcp_queue_seq(s, c.send_seq.wrapping_sub(c.send_queue.len() as u32))
        .map_err(step("setting the send sequence"))?;
    // In repair mode connect sends nothing: the socket is established.
    with_addr(c.remote, |a| connect(s.as_raw_fd(), a)).map_err(step("connect"))?;
    let mut opts = vec![TcpRepairOpt {
        opt_code: TCPOPT_MSS,
        opt_val: c.mss,
    }];
    if let Some((snd, rcv)) = c.wscale {
        opts.push(TcpRepairOpt {
            opt_code: TCPOPT_WINDOW,
            opt_val: u32::from(snd) | u32::from(rcv) << 16,
        });
    }
    if c.sack {
        opts.push(TcpRepairOpt {
            opt_code: TCPOPT_SACK_PERM,
            opt_val: 0,
        });
    }
    if c.timestamp.is_some() {
        opts.push(TcpRepairOpt {
            opt_code: TCPOPT_TIMESTAMP,
            opt_val: 0,
        });
    }
    set_tcp_repair_options(s, &opts).map_err(step("TCP_REPAIR_OPTIONS"))?;
    if let Some(ts) = c.timestamp {
        setsockopt_int(s, libc::IPPROTO_TCP, libc::TCP_TIMESTAMP, ts as i32)
            .map_err(step("setting the timestamp clock"))?;
    }
    tcp_repair_queue(s, RepairQueue::Recv).map_err(step("selecting the receive queue"))?;
    fill(s, &c.recv_queue).map_err(step("refilling the receive queue"))?;
    let sent = c.send_queue.len() - c.unsent as usize;
    tcp_repair_queue(s, RepairQueue::Send).map_err(step("selecting the send queue"))?;
    fill(s, &c.send_queue[..sent]).map_err(step("refilling the send queue"))?;
    tcp_repair_queue(s, RepairQueue::None).map_err(step("selecting no queue"))?;
    set_tcp_repair_window(s, &window(c)).map_err(step("TCP_REPAIR_WINDOW"))?;
    Ok(sock)
}

/// The saved windows, made consistent with the restored receive sequence
/// (which a CLOSE_WAIT end has one before its peer's FIN): the kernel
/// refuses a window update point past it.
fn window(c: &TcpConnection) -> TcpRepairWindow {
    let w = c.window;
    let behind = w.rcv_wup.wrapping_sub(c.recv_seq) as i32;
    let (rcv_wup, rcv_wnd) = if behind > 0 {
        (c.recv_seq, w.rcv_wnd.wrapping_add(behind as u32))
    } else {
        (w.rcv_wup, w.rcv_wnd)
    };
    let past_window = w.snd_wl1.wrapping_sub(c.recv_seq.wrapping_add(rcv_wnd)) as i32 > 0;
    TcpRepairWindow {
        snd_wl1: if past_window { c.recv_seq } else { w.snd_wl1 },
        snd_wnd: w.snd_wnd,
        max_window: w.max_window.max(w.snd_wnd),
        rcv_wnd,
        rcv_wup,
    }
}

/// Gives `p` (connection `c`) back the FINs it had sent and received, in
/// their order, turns repair mode off (one still connecting connects
/// again), sets the TCP settings again,
/// writes what was never sent (then the FIN, if it was queued behind),
/// shuts down reading if the program had, and sets the socket options
/// again.
fn go_live(p: &PendingConn, c: &TcpConnection) -> Result<(), RestoreError> {
    let (pid, sock) = (p.pid, &p.sock);
    let shown = format!("{} -> {}", c.local, c.remote);
    let step = |what: &str| {
        let call = format!("{what} for TCP connection {shown}");
        move |errno| RestoreError::Injected { pid, call, errno }
    };
    let s = sock.as_fd();
    let peer = |segment| match &p.peer_sender {
        Some(raw) => tcp_peer::give(raw.as_fd(), s, c, segment).map_err(step(&format!(
            "giving the socket its peer's {segment:?} again"
        ))),
        None => Ok(()),
    };
    let peer_fin = || peer(PeerSegment::Fin);
    if c.state.ended() {
        peer(PeerSegment::Reset)?;
    }
    if c.state.fin_received_first() {
        peer_fin()?;
    }
    let fin_after_ours = c.state.fin_received() && !c.state.fin_received_first();
    if c.state.fin_sent() && c.unsent == 0 {
        // Queued as sent, as it was.
        tcp_repair_queue(s, RepairQueue::Send).map_err(step("selecting the send queue"))?;
        shutdown(s.as_raw_fd(), Shutdown::Write).map_err(step("shutdown(SHUT_WR)"))?;
        tcp_repair_queue(s, RepairQueue::None).map_err(step("selecting no queue"))?;
        if fin_after_ours {
            peer_fin()?;
        }
    }
    if c.state == TcpConnState::SynSent {
        connect_again(p, c)?;
    } else if fin_after_ours && c.unsent > 0 {
        // The peer's FIN comes once the unsent data and this end's FIN
        // are written: no probe meanwhile, whose answer would come first.
        tcp_repair_off_without_probe(s).map_err(step("turning repair mode off"))?;
    } else {
        tcp_repair(s, false).map_err(step("turning repair mode off"))?;
    }
    let t = &c.settings;
    for (level, opt, val, name) in [
        (
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            i32::from(t.nodelay),
            "TCP_NODELAY",
        ),
        (
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            i32::from(t.cork),
            "TCP_CORK",
        ),
        (
            libc::SOL_SOCKET,
            libc::SO_KEEPALIVE,
            i32::from(t.keepalive),
            "SO_KEEPALIVE",
        ),
        (
            libc::IPPROTO_TCP,
            libc::TCP_KEEPIDLE,
            t.keepidle,
            "TCP_KEEPIDLE",
        ),
        (
            libc::IPPROTO_TCP,
            libc::TCP_KEEPINTVL,
            t.keepintvl,
            "TCP_KEEPINTVL",
        ),
        (
            libc::IPPROTO_TCP,
            libc::TCP_KEEPCNT,
            t.keepcnt,
            "TCP_KEEPCNT",
        ),
        (
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            t.user_timeout,
            "TCP_USER_TIMEOUT",
        ),
    ] {
        setsockopt_int(s, level, opt, val).map_err(step(&format!("setting {name}")))?;
    }
    let sent = c.send_queue.len() - c.unsent as usize;
    fill(s, &c.send_queue[sent..]).map_err(step("writing the data never sent"))?;
    if c.state.fin_sent() && c.unsent > 0 {
        shutdown(s.as_raw_fd(), Shutdown::Write).map_err(step("shutdown(SHUT_WR)"))?;
        if fin_after_ours {
            peer_fin()?;
        }
    }
    if c.state == TcpConnState::Closed {
        // Reported by the original already.
        getsockopt_int(s, libc::SOL_SOCKET, libc::SO_ERROR).map_err(step("reading SO_ERROR"))?;
    }
    if c.shut_rd {
        shutdown(s.as_raw_fd(), Shutdown::Read).map_err(step("shutdown(SHUT_RD)"))?;
    }
    // The recorded buffer sizes, and the reuse flag leaving repair mode
    // reset.
    set_options(pid, sock, &c.options)
}

/// Turns repair mode off on `p` (connection `c`, still connecting) and
/// connects it again without blocking: its SYN goes out, with the
/// sequence number set in repair mode, and is retransmitted until the
/// peer answers. Its status flags are given back afterwards (a program
/// blocked in connect() waits again when its call restarts).
fn connect_again(p: &PendingConn, c: &TcpConnection) -> Result<(), RestoreError> {
    let (pid, sock) = (p.pid, &p.sock);
    let step = |what: &str| {
        let call = format!("{what} for TCP connection {} -> {}", c.local, c.remote);
        move |errno| RestoreError::Injected { pid, call, errno }
    };
    tcp_repair(sock.as_fd(), false).map_err(step("turning repair mode off"))?;
    set_flags(pid, sock, c.flags | libc::O_NONBLOCK)?;
    match with_addr(c.remote, |a| connect(sock.as_raw_fd(), a)) {
        Ok(()) | Err(Errno::EINPROGRESS) => {}
        Err(errno) => return Err(step("connect")(errno)),
    }
    set_flags(pid, sock, c.flags)
}

/// Writes all of `data` to `s` (in repair mode, to the selected queue),
/// however many sends it takes.
fn fill(s: BorrowedFd<'_>, mut data: &[u8]) -> Result<(), Errno> {
    while !data.is_empty() {
        match send(s.as_raw_fd(), data, MsgFlags::MSG_DONTWAIT) {
            Ok(0) => return Err(Errno::ENOBUFS),
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Runs `f` with `addr` as the socket address type of its family.
fn with_addr<T>(
    addr: SocketAddr,
    f: impl FnOnce(&dyn SockaddrLike) -> Result<T, Errno>,
) -> Result<T, Errno> {
    match addr {
        SocketAddr::V4(a) => f(&SockaddrIn::from(a)),
        SocketAddr::V6(a) => f(&SockaddrIn6::from(a)),
    }
}

#[cfg(test)]
mod tests {
    use crate::image::{TcpConnState, TcpConnection, TcpSettings, TcpWindow};
    use crate::restore::husk::tcp::window;

    fn conn(recv_seq: u32, w: TcpWindow) -> TcpConnection {
        TcpConnection {
            flags: 0,
            ipv6: false,
            v6only: false,
            local: "127.0.0.1:1".parse().unwrap(),
            remote: "127.0.0.1:2".parse().unwrap(),
            state: TcpConnState::CloseWait,
            send_seq: 0,
            recv_seq,
            send_queue: Vec::new(),
            unsent: 0,
            recv_queue: Vec::new(),
            mss: 1460,
            wscale: None,
            sack: false,
            timestamp: None,
            window: w,
            settings: TcpSettings::default(),
            options: Default::default(),
            shut_rd: false,
        }
    }

    #[test]
    fn the_window_update_point_is_never_past_the_restored_sequence() {
        let w = TcpWindow {
            snd_wl1: 1001,
            snd_wnd: 500,
            max_window: 400,
            rcv_wnd: 100,
            rcv_wup: 1001,
        };
        // A CLOSE_WAIT end restored one before the peer's FIN.
        let r = window(&conn(1000, w));
        assert_eq!((r.rcv_wup, r.rcv_wnd), (1000, 101));
        assert_eq!(r.snd_wl1, 1001);
        assert_eq!(r.max_window, 500);
        // Across the wrap of the sequence space too.
        let w = TcpWindow {
            rcv_wup: 2,
            snd_wl1: 2,
            ..w
        };
        let r = window(&conn(u32::MAX, w));
        assert_eq!((r.rcv_wup, r.rcv_wnd), (u32::MAX, 103));
        // Nothing changes when the update point is behind.
        let r = window(&conn(5000, w));
        assert_eq!((r.rcv_wup, r.rcv_wnd, r.snd_wl1), (2, 100, 2));
    }
}
