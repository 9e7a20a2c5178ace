//! Established and half-closed TCP connections of a frozen process, and
//! those still connecting (SYN_SENT), read with TCP_REPAIR (as CRIU's --tcp-established): the socket is taken out
//! of the process with pidfd_getfd (the same socket) and put in repair
//! mode, in which it sends nothing; its sequence numbers, both queues,
//! negotiated options and windows are read with ordinary socket calls.
//!
//! The sockets stay in repair mode until the checkpoint ends
//! ([`RepairedSockets`]): when the tree is killed they are closed still in
//! repair mode, so the peer gets neither FIN nor RST and the restored
//! socket takes the connection over; when the tree resumes (leave-running,
//! or a failed checkpoint or migration) repair mode goes off again and the
//! connection carries on.

use super::error::CheckpointError;
use super::sockets::socket_options;
use crate::image::{FileImage, TcpConnState, TcpConnection, TcpSettings, TcpWindow};
use crate::inspect::sockets::{
    inet_addr, tcp_state_name, CARRIED_TCP_STATES, TCP_CLOSE, TCP_CLOSE_WAIT, TCP_CLOSING,
    TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_LAST_ACK, TCP_SYN_SENT,
};
use crate::inspect::InspectError;
use crate::kernel::sockets::{
    getsockopt_int, peer_name, read_shut_down, setsockopt_int, tcp_info, tcp_queue_len,
    tcp_queue_seq, tcp_repair, tcp_repair_queue, tcp_repair_window, RepairQueue, TcpQueue,
    TCPI_OPT_SACK, TCPI_OPT_TIMESTAMPS, TCPI_OPT_WSCALE,
};
use nix::errno::Errno;
use nix::sys::socket::{getsockname, recv, MsgFlags, SockaddrLike, SockaddrStorage};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// The connections of the tree put in repair mode by the dump, held until
/// the checkpoint ends. Dropped, it turns repair mode off again (the tree
/// resumes and its connections must work);
/// [`RepairedSockets::close_in_repair`] instead leaves them in repair mode
/// for the tree to be killed silently.
#[derive(Default)]
pub struct RepairedSockets {
    /// Each socket, with its SO_REUSEADDR before repair mode.
    socks: Vec<(OwnedFd, bool)>,
}

impl RepairedSockets {
    /// How many connections are held in repair mode.
    pub fn len(&self) -> usize {
        self.socks.len()
    }

    /// Whether no connection is held in repair mode.
    pub fn is_empty(&self) -> bool {
        self.socks.is_empty()
    }

    /// Closes our copies of the sockets, leaving them in repair mode: once
    /// the processes holding them are killed too, the connections go away
    /// without a FIN or RST to the peer, for the restored sockets to take
    /// them over.
    pub fn close_in_repair(mut self) {
        self.socks.clear();
    }
}

impl Drop for RepairedSockets {
    fn drop(&mut self) {
        for (s, reuse_addr) in &self.socks {
            // Leaving repair mode clears SO_REUSEADDR: set again if it was.
            let off = tcp_repair(s.as_fd(), false).and_then(|()| {
                if *reuse_addr {
                    setsockopt_int(s.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)
                } else {
                    Ok(())
                }
            });
            if let Err(errno) = off {
                tracing::error!(%errno, "turning TCP repair mode off on a resumed connection failed");
            }
        }
    }
}

/// Describes TCP connection `sock`, at fd `fd` of the frozen process `pid`
/// (link target `target`, status flags `flags`, TCP state `state` as
/// inspection saw it), leaving it in repair mode in `repaired`.
pub fn describe(
    pid: i32,
    fd: i32,
    target: &str,
    sock: OwnedFd,
    flags: i32,
    repaired: &mut RepairedSockets,
) -> Result<FileImage, CheckpointError> {
    let io = |what: &str| {
        let what = format!("{what} of TCP connection {target} (fd {fd}) of process {pid}");
        move |errno: Errno| CheckpointError::Io {
            what,
            source: errno.into(),
        }
    };
    // Before repair mode, which forces SO_REUSEADDR on while it lasts.
    let options = socket_options(sock.as_fd()).map_err(io("read the socket options"))?;
    let read_hup = read_shut_down(sock.as_fd()).map_err(io("poll"))?;
    tcp_repair(sock.as_fd(), true).map_err(io("turn repair mode on"))?;
    match read(sock.as_fd()) {
        Ok(mut conn) => {
            conn.flags = flags & !libc::O_ACCMODE;
            repaired.socks.push((sock, options.reuse_addr));
            conn.options = options;
            // The peer's FIN (or the end) shuts it down for reading too.
            conn.shut_rd = read_hup && !conn.state.fin_received() && !conn.state.ended();
            Ok(FileImage::TcpConnection(conn))
        }
        Err(e) => {
            let _ = tcp_repair(sock.as_fd(), false);
            Err(match e {
                Read::Errno(what, errno) => io(what)(errno),
                Read::Refused(kind) => InspectError::UnsupportedFd {
                    pid,
                    fd,
                    kind,
                    target: target.to_string(),
                }
                .into(),
            })
        }
    }
}

/// Why a connection could not be read.
enum Read {
    /// A call failed: what it was for, and its errno.
    Errno(&'static str, Errno),
    /// Its state cannot be carried.
    Refused(String),
}

/// Reads connection `s`, in repair mode (its flags and socket options
/// are left to the caller).
fn read(s: BorrowedFd<'_>) -> Result<TcpConnection, Read> {
    let err = |what: &'static str| move |errno| Read::Errno(what, errno);
    let int = |level, opt| getsockopt_int(s, level, opt).map_err(err("read an option"));
    let info = tcp_info(s).map_err(err("TCP_INFO"))?;
    let state = match info.tcpi_state {
        TCP_ESTABLISHED => TcpConnState::Established,
        TCP_FIN_WAIT1 => TcpConnState::FinWait1,
        TCP_FIN_WAIT2 => TcpConnState::FinWait2,
        TCP_CLOSE_WAIT => TcpConnState::CloseWait,
        TCP_LAST_ACK => TcpConnState::LastAck,
        TCP_CLOSING => TcpConnState::Closing,
        // Inspection lets through only a closed one with bytes queued.
        TCP_CLOSE if error_pending(s) => TcpConnState::Reset,
        TCP_CLOSE => TcpConnState::Closed,
        // Its send sequence counts the SYN: the restore connects again
        // from the sequence number before it.
        TCP_SYN_SENT => TcpConnState::SynSent,
        other => {
            return Err(Read::Refused(format!(
                "TCP socket of a connection in state {} ({CARRIED_TCP_STATES})",
                tcp_state_name(other)
            )))
        }
    };
    let local = getsockname::<SockaddrStorage>(s.as_raw_fd()).map_err(err("getsockname"))?;
    let remote = peer_name(s).map_err(err("SO_PEERNAME"))?;
    let ipv6 = local.family() == Some(nix::sys::socket::AddressFamily::Inet6);
    let (Some(local), Some(remote)) = (inet_addr(&local), remote) else {
        return Err(Read::Refused("TCP connection without addresses".into()));
    };

    // Both queues, each with the sequence number at its end. A FIN sent
    // or received takes a sequence number of its own: not counted here.
    tcp_repair_queue(s, RepairQueue::Recv).map_err(err("select the receive queue"))?;
    let recv_end = tcp_queue_seq(s).map_err(err("read the receive sequence"))?;
    let inq = tcp_queue_len(s, TcpQueue::Received).map_err(err("SIOCINQ"))?;
    let recv_queue = peek(s, inq as usize).map_err(err("copy the receive queue"))?;
    if recv_queue.len() != inq as usize {
        return Err(Read::Refused(format!(
            "TCP connection whose receive queue gave {} of its {inq} bytes",
            recv_queue.len()
        )));
    }
    tcp_repair_queue(s, RepairQueue::Send).map_err(err("select the send queue"))?;
    let send_end = tcp_queue_seq(s).map_err(err("read the send sequence"))?;
    let outq = tcp_queue_len(s, TcpQueue::Unacked).map_err(err("SIOCOUTQ"))?;
    let unsent = tcp_queue_len(s, TcpQueue::Unsent).map_err(err("SIOCOUTQNSD"))?;
    let send_queue = peek(s, outq as usize).map_err(err("copy the send queue"))?;
    tcp_repair_queue(s, RepairQueue::None).map_err(err("select no queue"))?;
    let fin_sent = state.fin_sent();
    // The queue lengths count an unacknowledged (or unsent) FIN too.
    let unsent = if fin_sent {
        unsent.saturating_sub(1)
    } else {
        unsent
    };

    let options = info.tcpi_options;
    let timestamps = options & TCPI_OPT_TIMESTAMPS != 0;
    let settings = TcpSettings {
        nodelay: int(libc::IPPROTO_TCP, libc::TCP_NODELAY)? != 0,
        cork: int(libc::IPPROTO_TCP, libc::TCP_CORK)? != 0,
        keepalive: int(libc::SOL_SOCKET, libc::SO_KEEPALIVE)? != 0,
        keepidle: int(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE)?,
        keepintvl: int(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL)?,
        keepcnt: int(libc::IPPROTO_TCP, libc::TCP_KEEPCNT)?,
        user_timeout: int(libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT)?,
    };
    let w = tcp_repair_window(s).map_err(err("TCP_REPAIR_WINDOW"))?;
    Ok(TcpConnection {
        flags: 0,
        ipv6,
        v6only: ipv6 && int(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)? != 0,
        local,
        remote,
        state,
        send_seq: send_end.wrapping_sub(u32::from(fin_sent)),
        recv_seq: recv_end.wrapping_sub(u32::from(state.fin_received())),
        unsent: unsent.min(send_queue.len() as u32),
        send_queue,
        recv_queue,
        // In repair mode TCP_MAXSEG reports the MSS clamp.
        mss: int(libc::IPPROTO_TCP, libc::TCP_MAXSEG)? as u32,
        wscale: (options & TCPI_OPT_WSCALE != 0).then_some((
            info.tcpi_snd_rcv_wscale & 0xf,
            info.tcpi_snd_rcv_wscale >> 4,
        )),
        sack: options & TCPI_OPT_SACK != 0,
        timestamp: if timestamps {
            Some(int(libc::IPPROTO_TCP, libc::TCP_TIMESTAMP)? as u32)
        } else {
            None
        },
        window: TcpWindow {
            snd_wl1: w.snd_wl1,
            snd_wnd: w.snd_wnd,
            max_window: w.max_window,
            rcv_wnd: w.rcv_wnd,
            rcv_wup: w.rcv_wup,
        },
        settings,
        options: Default::default(),
        shut_rd: false,
    })
}

/// Whether socket `s` holds an error not reported yet (poll's POLLERR,
/// which reading SO_ERROR would clear).
fn error_pending(s: BorrowedFd<'_>) -> bool {
    let mut fds = [nix::poll::PollFd::new(s, nix::poll::PollFlags::empty())];
    nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).is_ok()
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLERR))
}

/// Copies up to `len` bytes of the queue selected by TCP_REPAIR_QUEUE
/// without consuming them (MSG_PEEK copies the whole queue at once).
fn peek(s: BorrowedFd<'_>, len: usize) -> Result<Vec<u8>, Errno> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let mut buf = vec![0u8; len];
    let n = match recv(
        s.as_raw_fd(),
        &mut buf,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    ) {
        Err(Errno::EAGAIN) => 0,
        other => other?,
    };
    buf.truncate(n);
    Ok(buf)
}
