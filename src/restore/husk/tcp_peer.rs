//! Segments a restored TCP connection had received from its peer and
//! that no socket call can give it again, sent to it as the peer sent
//! them: the peer's FIN, for a connection that had received it
//! (CLOSE_WAIT, LAST_ACK, CLOSING; a peer whose FIN was acknowledged never
//! sends it again), at the sequence number the receive queue ends at,
//! acknowledging what the peer had acknowledged; and the peer's reset, for
//! a connection reset with bytes still queued (its error comes back as
//! ECONNRESET). They go from the peer's address and port to the
//! connection's, through a raw IP socket (with the IP header, IP_HDRINCL)
//! of the network namespace the connection is restored in, and carry
//! [`REPAIR_MARK`], which the network lock lets through while it drops
//! everything else of the connection. (CRIU's libsoccr sends the FIN with
//! libnet.)

use crate::image::TcpConnection;
use crate::inspect::sockets::{
    wire_addr, TCP_CLOSE, TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2,
};
use crate::kernel::packet::internet_checksum;
use crate::kernel::sockets::{setsockopt_int, tcp_state};
use crate::netlock::REPAIR_MARK;
use nix::errno::Errno;
use nix::sys::socket::{
    sendto, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn,
    SockaddrIn6,
};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// What the peer sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerSegment {
    /// Its FIN (with ACK).
    Fin,
    /// A reset.
    Reset,
}

impl PeerSegment {
    /// The segment's TCP flags.
    fn flags(self) -> u8 {
        match self {
            Self::Fin => 0x11,
            Self::Reset => 0x04,
        }
    }
}
/// Length of the TCP header sent (no options).
const TCP_HEADER: usize = 20;
/// The states of a socket that has not taken its peer's FIN yet.
const BEFORE_FIN: [u8; 3] = [TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2];
/// How long the restored socket may take to take a segment (it is
/// delivered through the loopback's backlog).
const TAKE_WITHIN: Duration = Duration::from_secs(2);

/// A raw IP socket to send connection `c` its peer's segments from, made
/// in the network namespace the caller is in (the connection's).
pub fn sender(c: &TcpConnection) -> Result<OwnedFd, Errno> {
    let family = match wire_addr(c.local) {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let raw = socket(
        family,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Raw,
    )?;
    setsockopt_int(
        raw.as_fd(),
        libc::SOL_SOCKET,
        libc::SO_MARK,
        REPAIR_MARK as i32,
    )?;
    Ok(raw)
}

/// Sends restored connection `sock` (`c`) its peer's `segment` through
/// `raw` (from [`sender`]) and waits until the socket took it.
pub fn give(
    raw: BorrowedFd<'_>,
    sock: BorrowedFd<'_>,
    c: &TcpConnection,
    segment: PeerSegment,
) -> Result<(), Errno> {
    let (from, to) = (wire_addr(c.remote), wire_addr(c.local));
    let packet = peer_packet(c, from, to, segment);
    match to {
        SocketAddr::V4(a) => sendto(
            raw.as_raw_fd(),
            &packet,
            &SockaddrIn::from(std::net::SocketAddrV4::new(*a.ip(), 0)),
            MsgFlags::empty(),
        )?,
        SocketAddr::V6(a) => sendto(
            raw.as_raw_fd(),
            &packet,
            &SockaddrIn6::from(std::net::SocketAddrV6::new(*a.ip(), 0, 0, a.scope_id())),
            MsgFlags::empty(),
        )?,
    };
    let taken = |state: u8| match segment {
        PeerSegment::Fin => !BEFORE_FIN.contains(&state),
        PeerSegment::Reset => state == TCP_CLOSE,
    };
    let started = Instant::now();
    while !taken(tcp_state(sock)?.state) {
        if started.elapsed() > TAKE_WITHIN {
            // Dropped on its way (a filter) or refused by the socket.
            return Err(Errno::ETIMEDOUT);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// The IP packet (header included) of the peer's `segment` to `c`, from
/// `from` to `to` (the connection's addresses as packets carry them). A
/// reset is at exactly the next sequence number expected, the only one
/// the kernel takes without a challenge.
fn peer_packet(
    c: &TcpConnection,
    from: SocketAddr,
    to: SocketAddr,
    segment: PeerSegment,
) -> Vec<u8> {
    // What the peer had acknowledged: the start of the send queue.
    let acked = match segment {
        PeerSegment::Fin => c.send_seq.wrapping_sub(c.send_queue.len() as u32),
        PeerSegment::Reset => 0,
    };
    // The window the peer advertised, in its scaled units.
    let shift = c.wscale.map_or(0, |(snd, _)| snd);
    let window = (c.window.snd_wnd >> shift).min(0xffff) as u16;
    let mut tcp = Vec::with_capacity(TCP_HEADER);
    tcp.extend(from.port().to_be_bytes());
    tcp.extend(to.port().to_be_bytes());
    tcp.extend(c.recv_seq.to_be_bytes());
    tcp.extend(acked.to_be_bytes());
    tcp.push((TCP_HEADER as u8 / 4) << 4);
    tcp.push(segment.flags());
    tcp.extend(window.to_be_bytes());
    tcp.extend([0, 0, 0, 0]); // checksum, urgent pointer
    let sum = internet_checksum(&[&pseudo_header(from.ip(), to.ip()), &tcp], 0);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    let mut packet = match (from.ip(), to.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = vec![0x45, 0];
            h.extend((20 + TCP_HEADER as u16).to_be_bytes());
            // Identification, fragment offset, TTL, protocol, checksum
            // (the kernel fills the identification and the checksum).
            h.extend([0, 0, 0, 0, 64, libc::IPPROTO_TCP as u8, 0, 0]);
            h.extend(s.octets());
            h.extend(d.octets());
            h
        }
        (s, d) => {
            let mut h = vec![0x60, 0, 0, 0];
            h.extend((TCP_HEADER as u16).to_be_bytes());
            h.extend([libc::IPPROTO_TCP as u8, 64]);
            h.extend(v6(s).octets());
            h.extend(v6(d).octets());
            h
        }
    };
    packet.extend(tcp);
    packet
}

/// `a` as an IPv6 address (an IPv4 one mapped).
fn v6(a: IpAddr) -> std::net::Ipv6Addr {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// The pseudo-header of a TCP segment (no options, no data) from `from`
/// to `to`, which its checksum covers.
fn pseudo_header(from: IpAddr, to: IpAddr) -> Vec<u8> {
    let mut p = Vec::new();
    match (from, to) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend(s.octets());
            p.extend(d.octets());
            p.extend([0, libc::IPPROTO_TCP as u8]);
            p.extend((TCP_HEADER as u16).to_be_bytes());
        }
        (s, d) => {
            p.extend(v6(s).octets());
            p.extend(v6(d).octets());
            p.extend((TCP_HEADER as u32).to_be_bytes());
            p.extend([0, 0, 0, libc::IPPROTO_TCP as u8]);
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::{peer_packet, pseudo_header, PeerSegment};
    use crate::image::{TcpConnState, TcpConnection, TcpSettings, TcpWindow};
    use crate::kernel::packet::internet_checksum;

    fn conn(local: &str, remote: &str) -> TcpConnection {
        TcpConnection {
            flags: 0,
            ipv6: false,
            v6only: false,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            state: TcpConnState::LastAck,
            send_seq: 5000,
            recv_seq: 0xfffffff0,
            send_queue: vec![1; 100],
            unsent: 0,
            recv_queue: Vec::new(),
            mss: 1460,
            wscale: Some((7, 7)),
            sack: true,
            timestamp: None,
            window: TcpWindow {
                snd_wnd: 65536 << 7,
                ..TcpWindow::default()
            },
            settings: TcpSettings::default(),
            options: Default::default(),
            shut_rd: false,
        }
    }

    #[test]
    fn the_fin_comes_from_the_peer_at_the_end_of_the_receive_queue() {
        let c = conn("10.0.0.1:80", "10.0.0.2:5000");
        let p = peer_packet(&c, c.remote, c.local, PeerSegment::Fin);
        assert_eq!(p.len(), 40);
        assert_eq!(&p[12..16], &[10, 0, 0, 2]);
        assert_eq!(&p[16..20], &[10, 0, 0, 1]);
        let tcp = &p[20..];
        assert_eq!(u16::from_be_bytes([tcp[0], tcp[1]]), 5000);
        assert_eq!(u16::from_be_bytes([tcp[2], tcp[3]]), 80);
        assert_eq!(&tcp[4..8], &0xfffffff0u32.to_be_bytes());
        assert_eq!(&tcp[8..12], &4900u32.to_be_bytes());
        assert_eq!(tcp[13], 0x11);
        // The peer's window in its units, at most what the field holds.
        assert_eq!(&tcp[14..16], &[0xff, 0xff]);
        // A segment with its checksum in place sums to zero.
        let pseudo = pseudo_header(c.remote.ip(), c.local.ip());
        assert_eq!(internet_checksum(&[&pseudo, tcp], 0), 0);
    }

    #[test]
    fn an_ipv6_fin_has_the_ipv6_header_and_pseudo_header() {
        let c = conn("[fd00::1]:80", "[fd00::2]:5000");
        let p = peer_packet(&c, c.remote, c.local, PeerSegment::Fin);
        assert_eq!(p.len(), 60);
        assert_eq!(p[0], 0x60);
        assert_eq!(&p[4..7], &[0, 20, 6]);
        let pseudo = pseudo_header(c.remote.ip(), c.local.ip());
        assert_eq!(internet_checksum(&[&pseudo, &p[40..]], 0), 0);
    }

    #[test]
    fn a_reset_is_at_the_next_sequence_number_and_acknowledges_nothing() {
        let c = conn("10.0.0.1:80", "10.0.0.2:5000");
        let p = peer_packet(&c, c.remote, c.local, PeerSegment::Reset);
        let tcp = &p[20..];
        assert_eq!(&tcp[4..8], &0xfffffff0u32.to_be_bytes());
        assert_eq!(&tcp[8..12], &[0, 0, 0, 0]);
        assert_eq!(tcp[13], 0x04);
    }
}
