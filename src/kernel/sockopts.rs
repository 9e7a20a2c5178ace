//! The int-valued socket options ferry carries for every kind of socket,
//! in one table read at checkpoint and written at restore (CRIU's
//! sockets.c and sk-inet.c carry the same ones), and the struct-valued
//! ones (SO_LINGER, SO_RCVTIMEO/SO_SNDTIMEO, SO_BINDTODEVICE) as plain
//! values.

use super::sockets::{getsockopt_bytes, setsockopt_bytes};
use nix::errno::Errno;
use std::os::fd::BorrowedFd;

/// Which sockets an option of [`CARRIED`] is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    /// Every socket (SOL_SOCKET).
    All,
    /// AF_INET sockets (SOL_IP).
    Inet4,
    /// AF_INET6 sockets (SOL_IPV6).
    Inet6,
    /// AF_INET sockets but TCP ones (multicast: a stream socket refuses it).
    Inet4Datagram,
    /// AF_INET6 sockets but TCP ones.
    Inet6Datagram,
    /// Raw ICMP sockets (SOL_RAW: which ICMP types it drops).
    RawIcmp,
    /// TCP sockets (SOL_TCP).
    Tcp,
    /// Netlink sockets (SOL_NETLINK).
    Netlink,
    /// Packet sockets (SOL_PACKET).
    Packet,
}

/// One carried option: its level, name, how messages show it and which
/// sockets have it.
#[derive(Debug, Clone, Copy)]
pub struct Carried {
    /// SOL_SOCKET, SOL_IP, SOL_IPV6 or SOL_TCP.
    pub level: i32,
    /// The option.
    pub name: i32,
    /// Its name in messages.
    pub shown: &'static str,
    /// The sockets it is read from.
    pub applies: Applies,
}

const fn opt(level: i32, name: i32, shown: &'static str, applies: Applies) -> Carried {
    Carried {
        level,
        name,
        shown,
        applies,
    }
}

/// The int-valued options carried, in the order restore sets them: the IP
/// ones first (IP_TOS also sets SO_PRIORITY), SO_BUF_LOCK last (setting a
/// buffer size locks it). SO_REUSEADDR, SO_REUSEPORT, the buffer sizes,
/// SO_PASSCRED (unix), SO_BROADCAST, IPV6_V6ONLY and TCP_NODELAY have
/// their own fields; TCP_MAXSEG means the MSS clamp in repair mode and is
/// carried with a connection's negotiated options instead.
pub const CARRIED: &[Carried] = {
    use libc::*;
    use Applies::{All, Inet4, Inet4Datagram, Inet6, Inet6Datagram, Netlink, Packet, RawIcmp, Tcp};
    &[
        opt(SOL_IP, IP_TOS, "IP_TOS", Inet4),
        opt(SOL_IP, IP_TTL, "IP_TTL", Inet4),
        opt(SOL_IP, IP_FREEBIND, "IP_FREEBIND", Inet4),
        opt(SOL_IP, IP_PKTINFO, "IP_PKTINFO", Inet4),
        opt(SOL_IP, IP_RECVERR, "IP_RECVERR", Inet4),
        opt(SOL_IP, IP_RECVTTL, "IP_RECVTTL", Inet4),
        opt(SOL_IP, IP_RECVTOS, "IP_RECVTOS", Inet4),
        opt(SOL_IP, IP_RECVORIGDSTADDR, "IP_RECVORIGDSTADDR", Inet4),
        opt(SOL_IP, IP_MTU_DISCOVER, "IP_MTU_DISCOVER", Inet4),
        opt(SOL_IP, IP_TRANSPARENT, "IP_TRANSPARENT", Inet4),
        opt(
            SOL_IP,
            IP_BIND_ADDRESS_NO_PORT,
            "IP_BIND_ADDRESS_NO_PORT",
            Inet4,
        ),
        opt(SOL_IP, IP_MULTICAST_TTL, "IP_MULTICAST_TTL", Inet4Datagram),
        opt(
            SOL_IP,
            IP_MULTICAST_LOOP,
            "IP_MULTICAST_LOOP",
            Inet4Datagram,
        ),
        opt(SOL_IP, IP_MULTICAST_ALL, "IP_MULTICAST_ALL", Inet4Datagram),
        opt(SOL_IP, IP_HDRINCL, "IP_HDRINCL", Inet4),
        opt(SOL_RAW, self::ICMP_FILTER, "ICMP_FILTER", RawIcmp),
        opt(SOL_IPV6, IPV6_TCLASS, "IPV6_TCLASS", Inet6),
        opt(SOL_IPV6, IPV6_UNICAST_HOPS, "IPV6_UNICAST_HOPS", Inet6),
        opt(SOL_IPV6, IPV6_FREEBIND, "IPV6_FREEBIND", Inet6),
        opt(SOL_IPV6, IPV6_RECVPKTINFO, "IPV6_RECVPKTINFO", Inet6),
        opt(SOL_IPV6, IPV6_RECVERR, "IPV6_RECVERR", Inet6),
        opt(SOL_IPV6, IPV6_RECVTCLASS, "IPV6_RECVTCLASS", Inet6),
        opt(SOL_IPV6, IPV6_RECVHOPLIMIT, "IPV6_RECVHOPLIMIT", Inet6),
        opt(
            SOL_IPV6,
            IPV6_RECVORIGDSTADDR,
            "IPV6_RECVORIGDSTADDR",
            Inet6,
        ),
        opt(SOL_IPV6, IPV6_MTU_DISCOVER, "IPV6_MTU_DISCOVER", Inet6),
        opt(SOL_IPV6, IPV6_TRANSPARENT, "IPV6_TRANSPARENT", Inet6),
        opt(
            SOL_IPV6,
            IPV6_MULTICAST_HOPS,
            "IPV6_MULTICAST_HOPS",
            Inet6Datagram,
        ),
        opt(
            SOL_IPV6,
            IPV6_MULTICAST_LOOP,
            "IPV6_MULTICAST_LOOP",
            Inet6Datagram,
        ),
        opt(SOL_IPV6, IPV6_HDRINCL, "IPV6_HDRINCL", Inet6),
        opt(SOL_TCP, TCP_CORK, "TCP_CORK", Tcp),
        opt(SOL_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE", Tcp),
        opt(SOL_TCP, TCP_KEEPINTVL, "TCP_KEEPINTVL", Tcp),
        opt(SOL_TCP, TCP_KEEPCNT, "TCP_KEEPCNT", Tcp),
        opt(SOL_TCP, TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT", Tcp),
        opt(SOL_TCP, TCP_DEFER_ACCEPT, "TCP_DEFER_ACCEPT", Tcp),
        opt(SOL_TCP, TCP_NOTSENT_LOWAT, "TCP_NOTSENT_LOWAT", Tcp),
        opt(SOL_TCP, TCP_LINGER2, "TCP_LINGER2", Tcp),
        opt(SOL_TCP, TCP_SYNCNT, "TCP_SYNCNT", Tcp),
        opt(SOL_TCP, TCP_FASTOPEN, "TCP_FASTOPEN", Tcp),
        opt(SOL_NETLINK, NETLINK_PKTINFO, "NETLINK_PKTINFO", Netlink),
        opt(
            SOL_NETLINK,
            NETLINK_BROADCAST_ERROR,
            "NETLINK_BROADCAST_ERROR",
            Netlink,
        ),
        opt(
            SOL_NETLINK,
            NETLINK_NO_ENOBUFS,
            "NETLINK_NO_ENOBUFS",
            Netlink,
        ),
        opt(
            SOL_NETLINK,
            NETLINK_LISTEN_ALL_NSID,
            "NETLINK_LISTEN_ALL_NSID",
            Netlink,
        ),
        opt(SOL_NETLINK, NETLINK_CAP_ACK, "NETLINK_CAP_ACK", Netlink),
        opt(SOL_NETLINK, NETLINK_EXT_ACK, "NETLINK_EXT_ACK", Netlink),
        opt(
            SOL_NETLINK,
            NETLINK_GET_STRICT_CHK,
            "NETLINK_GET_STRICT_CHK",
            Netlink,
        ),
        opt(SOL_PACKET, PACKET_VERSION, "PACKET_VERSION", Packet),
        opt(SOL_PACKET, PACKET_RESERVE, "PACKET_RESERVE", Packet),
        opt(SOL_PACKET, PACKET_AUXDATA, "PACKET_AUXDATA", Packet),
        opt(SOL_PACKET, PACKET_ORIGDEV, "PACKET_ORIGDEV", Packet),
        opt(SOL_PACKET, PACKET_LOSS, "PACKET_LOSS", Packet),
        opt(SOL_PACKET, PACKET_VNET_HDR, "PACKET_VNET_HDR", Packet),
        opt(SOL_PACKET, PACKET_TIMESTAMP, "PACKET_TIMESTAMP", Packet),
        opt(
            SOL_PACKET,
            PACKET_QDISC_BYPASS,
            "PACKET_QDISC_BYPASS",
            Packet,
        ),
        opt(
            SOL_PACKET,
            PACKET_IGNORE_OUTGOING,
            "PACKET_IGNORE_OUTGOING",
            Packet,
        ),
        opt(SOL_SOCKET, SO_PRIORITY, "SO_PRIORITY", All),
        opt(SOL_SOCKET, SO_RCVLOWAT, "SO_RCVLOWAT", All),
        opt(SOL_SOCKET, SO_MARK, "SO_MARK", All),
        opt(SOL_SOCKET, SO_PASSSEC, "SO_PASSSEC", All),
        opt(SOL_SOCKET, SO_DONTROUTE, "SO_DONTROUTE", All),
        opt(SOL_SOCKET, SO_NO_CHECK, "SO_NO_CHECK", All),
        opt(SOL_SOCKET, SO_OOBINLINE, "SO_OOBINLINE", All),
        opt(SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE", All),
        opt(SOL_SOCKET, SO_TIMESTAMP, "SO_TIMESTAMP", All),
        opt(SOL_SOCKET, SO_TIMESTAMPNS, "SO_TIMESTAMPNS", All),
        opt(SOL_SOCKET, SO_TIMESTAMPING, "SO_TIMESTAMPING", All),
        opt(SOL_SOCKET, SO_RXQ_OVFL, "SO_RXQ_OVFL", All),
        opt(SOL_SOCKET, SO_SELECT_ERR_QUEUE, "SO_SELECT_ERR_QUEUE", All),
        opt(SOL_SOCKET, SO_BUF_LOCK, "SO_BUF_LOCK", All),
    ]
};

/// The options of [`CARRIED`] a socket of `domain`, `ty` and `protocol`
/// has.
pub fn carried_for(domain: i32, ty: i32, protocol: i32) -> impl Iterator<Item = &'static Carried> {
    CARRIED.iter().filter(move |c| match c.applies {
        Applies::All => true,
        Applies::Inet4 => domain == libc::AF_INET,
        Applies::Inet6 => domain == libc::AF_INET6,
        Applies::Inet4Datagram => domain == libc::AF_INET && ty != libc::SOCK_STREAM,
        Applies::Inet6Datagram => domain == libc::AF_INET6 && ty != libc::SOCK_STREAM,
        Applies::RawIcmp => {
            domain == libc::AF_INET && ty == libc::SOCK_RAW && protocol == libc::IPPROTO_ICMP
        }
        Applies::Tcp => {
            matches!(domain, libc::AF_INET | libc::AF_INET6)
                && ty == libc::SOCK_STREAM
                && protocol == libc::IPPROTO_TCP
        }
        Applies::Netlink => domain == libc::AF_NETLINK,
        Applies::Packet => domain == libc::AF_PACKET,
    })
}

/// How messages show option `name` of `level`.
pub fn shown(level: i32, name: i32) -> String {
    CARRIED
        .iter()
        .find(|c| c.level == level && c.name == name)
        .map_or_else(
            || format!("option {name} of level {level}"),
            |c| c.shown.into(),
        )
}

/// Whether a getsockopt error means this socket (or this kernel) does not
/// have the option, rather than a failure.
pub fn lacks_option(errno: Errno) -> bool {
    matches!(
        errno,
        Errno::ENOPROTOOPT | Errno::EINVAL | Errno::EOPNOTSUPP
    )
}

/// SO_LINGER: the linger time in seconds when it is on.
pub fn linger(fd: BorrowedFd<'_>) -> Result<Option<i32>, Errno> {
    let mut buf = [0u8; 8];
    getsockopt_bytes(fd, libc::SOL_SOCKET, libc::SO_LINGER, &mut buf)?;
    let (on, secs) = buf.split_at(4);
    let int = |b: &[u8]| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    Ok((int(on) != 0).then(|| int(secs)))
}

/// Sets SO_LINGER: on with `secs`, or off.
pub fn set_linger(fd: BorrowedFd<'_>, secs: Option<i32>) -> Result<(), Errno> {
    let on = i32::from(secs.is_some()).to_ne_bytes();
    let val = [on, secs.unwrap_or(0).to_ne_bytes()].concat();
    setsockopt_bytes(fd, libc::SOL_SOCKET, libc::SO_LINGER, &val)
}

/// SO_RCVTIMEO or SO_SNDTIMEO (`opt`) in microseconds (0: none).
pub fn timeout_us(fd: BorrowedFd<'_>, opt: i32) -> Result<u64, Errno> {
    let mut buf = [0u8; 16];
    getsockopt_bytes(fd, libc::SOL_SOCKET, opt, &mut buf)?;
    let (sec, usec) = buf.split_at(8);
    let long = |b: &[u8]| i64::from_ne_bytes(b.try_into().expect("8 bytes"));
    Ok((long(sec).max(0) as u64) * 1_000_000 + long(usec).max(0) as u64)
}

/// Sets SO_RCVTIMEO or SO_SNDTIMEO (`opt`) to `us` microseconds.
pub fn set_timeout_us(fd: BorrowedFd<'_>, opt: i32, us: u64) -> Result<(), Errno> {
    let sec = ((us / 1_000_000) as i64).to_ne_bytes();
    let usec = ((us % 1_000_000) as i64).to_ne_bytes();
    setsockopt_bytes(fd, libc::SOL_SOCKET, opt, &[sec, usec].concat())
}

/// SO_BINDTODEVICE: the interface the socket is bound to, if any.
pub fn bound_device(fd: BorrowedFd<'_>) -> Result<Option<String>, Errno> {
    let mut buf = [0u8; libc::IFNAMSIZ];
    let n = getsockopt_bytes(fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, &mut buf)?;
    let name = buf[..n].split(|&b| b == 0).next().unwrap_or_default();
    Ok((!name.is_empty()).then(|| String::from_utf8_lossy(name).into_owned()))
}

/// Binds the socket to interface `name` (SO_BINDTODEVICE; needs
/// CAP_NET_RAW).
pub fn bind_to_device(fd: BorrowedFd<'_>, name: &str) -> Result<(), Errno> {
    setsockopt_bytes(fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, name.as_bytes())
}

/// ICMPV6_FILTER (linux/icmpv6.h), which libc lacks.
const ICMPV6_FILTER: i32 = 1;
/// ICMP_FILTER (linux/icmp.h, level SOL_RAW), which libc lacks.
const ICMP_FILTER: i32 = 1;

/// The ICMPv6 types a raw ICMPv6 socket drops (ICMPV6_FILTER, a bitmap
/// of 256 bits), for a socket of `domain`, `ty` and `protocol` that has
/// one.
pub fn icmp6_filter(
    fd: BorrowedFd<'_>,
    domain: i32,
    ty: i32,
    protocol: i32,
) -> Result<Option<Vec<u8>>, Errno> {
    if (domain, ty, protocol) != (libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6) {
        return Ok(None);
    }
    let mut buf = [0u8; 32];
    let n = getsockopt_bytes(fd, libc::SOL_ICMPV6, ICMPV6_FILTER, &mut buf)?;
    Ok(Some(buf[..n].to_vec()))
}

/// Sets the ICMPv6 types a raw ICMPv6 socket drops.
pub fn set_icmp6_filter(fd: BorrowedFd<'_>, filter: &[u8]) -> Result<(), Errno> {
    setsockopt_bytes(fd, libc::SOL_ICMPV6, ICMPV6_FILTER, filter)
}

/// NETLINK_LIST_MEMBERSHIPS: the multicast groups netlink socket `fd`
/// listens to, as 1-based group numbers (NETLINK_ADD_MEMBERSHIP's).
pub fn netlink_groups(fd: BorrowedFd<'_>) -> Result<Vec<u32>, Errno> {
    let mut buf = vec![0u8; 128];
    loop {
        // The kernel reports the size the whole bitmap needs, copying
        // only what fits.
        let needed = getsockopt_bytes(
            fd,
            libc::SOL_NETLINK,
            libc::NETLINK_LIST_MEMBERSHIPS,
            &mut buf,
        )?;
        if needed <= buf.len() {
            buf.truncate(needed);
            break;
        }
        buf = vec![0u8; needed];
    }
    Ok(buf
        .chunks_exact(4)
        .enumerate()
        .flat_map(|(word, bytes)| {
            let bits = u32::from_ne_bytes(bytes.try_into().expect("four bytes"));
            (0..32u32)
                .filter(move |bit| bits & (1 << bit) != 0)
                .map(move |bit| word as u32 * 32 + bit + 1)
        })
        .collect())
}
