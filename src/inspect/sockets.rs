//! Sockets: which ones ferry carries (unix sockets whose peer the tree
//! also holds, bound and listening unix sockets, listening TCP sockets,
//! UDP and UDP-Lite sockets bound or connected, shut down or not,
//! established and half-closed TCP connections and those still
//! connecting, netlink sockets with no
//! message queued, packet sockets without a filter). Each socket is taken out of the process with pidfd_getfd
//! and examined with ordinary socket calls; the peer of a unix socket
//! comes from unix_diag.

use super::error::InspectError;
use super::fd_class::{ClassifiedFd, FdClass};
use crate::image::TcpFlow;
use crate::kernel;
use crate::kernel::sockets::{getsockopt_int, TcpQueue};
use nix::errno::Errno;
use nix::sys::socket::{getpeername, getsockname, SockaddrStorage};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// TCP states (include/net/tcp_states.h) that ferry tells apart.
pub const TCP_ESTABLISHED: u8 = 1;
/// SYN_SENT: connect() is still waiting for the peer.
pub const TCP_SYN_SENT: u8 = 2;
/// FIN_WAIT1: shut down for writing, the FIN not acknowledged yet.
pub const TCP_FIN_WAIT1: u8 = 4;
/// FIN_WAIT2: shut down for writing, the FIN acknowledged.
pub const TCP_FIN_WAIT2: u8 = 5;
/// CLOSE: not connected (new, or closed).
pub const TCP_CLOSE: u8 = 7;
/// CLOSE_WAIT: the peer shut down its side.
pub const TCP_CLOSE_WAIT: u8 = 8;
/// LAST_ACK: the peer shut down its side, then this end did.
pub const TCP_LAST_ACK: u8 = 9;
/// CLOSING: both ends shut down, this end's FIN not acknowledged yet.
pub const TCP_CLOSING: u8 = 11;
/// LISTEN.
pub const TCP_LISTEN: u8 = 10;

/// The TCP states ferry carries, for refusals.
pub const CARRIED_TCP_STATES: &str =
    "ferry carries SYN_SENT, ESTABLISHED, FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK and CLOSING";

/// The name of TCP state `s`, for messages.
pub fn tcp_state_name(s: u8) -> String {
    const NAMES: [&str; 13] = [
        "0",
        "ESTABLISHED",
        "SYN_SENT",
        "SYN_RECV",
        "FIN_WAIT1",
        "FIN_WAIT2",
        "TIME_WAIT",
        "CLOSE",
        "CLOSE_WAIT",
        "LAST_ACK",
        "LISTEN",
        "CLOSING",
        "NEW_SYN_RECV",
    ];
    NAMES
        .get(s as usize)
        .map_or_else(|| s.to_string(), |n| (*n).to_string())
}

/// `a` as packets carry it: an IPv4-mapped IPv6 address (an IPv6
/// socket's connection to an IPv4 peer) as the IPv4 address.
pub fn wire_addr(a: std::net::SocketAddr) -> std::net::SocketAddr {
    match a {
        std::net::SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => std::net::SocketAddr::new(v4.into(), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

/// An IPv4 or IPv6 socket address as the standard library's type.
pub fn inet_addr(a: &SockaddrStorage) -> Option<std::net::SocketAddr> {
    a.as_sockaddr_in()
        .map(|a| std::net::SocketAddr::V4((*a).into()))
        .or_else(|| {
            a.as_sockaddr_in6()
                .map(|a| std::net::SocketAddr::V6((*a).into()))
        })
}
/// Decides whether socket `inode` at `fd` of `pid` can be carried, taking
/// it out of the process (which keeps running) to look at it.
pub fn classify(pid: i32, fd: i32, inode: u64) -> Result<FdClass, InspectError> {
    let refuse = |kind: String| InspectError::UnsupportedFd {
        pid,
        fd,
        kind,
        target: format!("socket:[{inode}]"),
    };
    let sock = kernel::pidfd_open(nix::unistd::Pid::from_raw(pid))
        .and_then(|pidfd| kernel::pidfd_getfd(&pidfd, fd))
        .map_err(|e| refuse(format!("socket that cannot be examined ({e})")))?;
    let sock = sock.as_fd();
    let int = |level, opt| {
        getsockopt_int(sock, level, opt)
            .map_err(|e| refuse(format!("socket that cannot be examined ({e})")))
    };
    let (domain, ty) = (
        int(libc::SOL_SOCKET, libc::SO_DOMAIN)?,
        int(libc::SOL_SOCKET, libc::SO_TYPE)?,
    );
    match domain {
        libc::AF_UNIX => {
            if ![libc::SOCK_STREAM, libc::SOCK_DGRAM, libc::SOCK_SEQPACKET].contains(&ty) {
                return Err(refuse(format!("unix socket of type {ty}")));
            }
            let diag = unix_diag_of(pid, inode).map_err(|e| {
                refuse(format!(
                    "unix socket that unix_diag cannot find ({e}; is it in another network namespace?)"
                ))
            })?;
            Ok(FdClass::UnixSocket {
                inode,
                peer: diag.peer.map(u64::from),
            })
        }
        libc::AF_INET | libc::AF_INET6 => {
            let protocol = int(libc::SOL_SOCKET, libc::SO_PROTOCOL)?;
            match (ty, protocol) {
                (libc::SOCK_STREAM, libc::IPPROTO_TCP) => {
                    let st = kernel::sockets::tcp_state(sock)
                        .map_err(|e| refuse(format!("TCP socket that cannot be examined ({e})")))?;
                    let connection = |state: u8| {
                        let names = getsockname::<SockaddrStorage>(sock.as_raw_fd())
                            .and_then(|l| Ok((inet_addr(&l), kernel::sockets::peer_name(sock)?)));
                        match names {
                            Ok((Some(local), Some(remote))) => Ok(FdClass::TcpConnection {
                                local,
                                remote,
                                state,
                            }),
                            Ok(_) => Err(refuse("TCP connection without addresses".into())),
                            Err(e) => Err(refuse(format!(
                                "TCP connection whose addresses cannot be read ({e})"
                            ))),
                        }
                    };
                    match st.state {
                        // A connection that ended with bytes still to be
                        // read is carried with them.
                        TCP_CLOSE
                            if kernel::sockets::tcp_queue_len(sock, TcpQueue::Received)
                                .is_ok_and(|n| n > 0)
                                && kernel::sockets::peer_name(sock).is_ok_and(|p| p.is_some()) =>
                        {
                            connection(TCP_CLOSE)
                        }
                        TCP_LISTEN | TCP_CLOSE => Ok(FdClass::InetSocket),
                        TCP_SYN_SENT | TCP_ESTABLISHED | TCP_FIN_WAIT1 | TCP_FIN_WAIT2
                        | TCP_CLOSE_WAIT | TCP_LAST_ACK | TCP_CLOSING => connection(st.state),
                        s => Err(refuse(format!(
                            "TCP socket of a connection in state {} ({CARRIED_TCP_STATES})",
                            tcp_state_name(s)
                        ))),
                    }
                }
                (libc::SOCK_DGRAM, libc::IPPROTO_UDP | libc::IPPROTO_UDPLITE) => {
                    Ok(FdClass::InetSocket)
                }
                // Its subflows are not TCP sockets a program holds:
                // TCP_REPAIR cannot read them.
                (libc::SOCK_STREAM, libc::IPPROTO_MPTCP) => Err(refuse(
                    "multipath TCP socket (IPPROTO_MPTCP): ferry carries plain TCP".into(),
                )),
                // A raw socket comes back with its options and bound
                // address; the packets queued on it are dropped, as the
                // network may drop them. Connected, it is refused: its
                // peer is not read.
                (libc::SOCK_RAW, _) => match getpeername::<SockaddrStorage>(sock.as_raw_fd()) {
                    Err(Errno::ENOTCONN) => Ok(FdClass::InetSocket),
                    _ => Err(refuse(format!(
                        "connected raw IP socket of protocol {protocol}"
                    ))),
                },
                _ => Err(refuse(format!(
                    "IP socket of type {ty} and protocol {protocol}"
                ))),
            }
        }
        libc::AF_NETLINK => match netlink_queued(sock) {
            Ok(false) => Ok(FdClass::NetlinkSocket),
            Ok(true) => Err(refuse(NETLINK_QUEUED.into())),
            Err(e) => Err(refuse(format!(
                "netlink socket that cannot be polled ({e})"
            ))),
        },
        libc::AF_PACKET => {
            let diag = u32::try_from(inode)
                .map_err(|_| Errno::EOVERFLOW)
                .and_then(kernel::packet::packet_diag)
                .map_err(|e| refuse(format!("packet socket that packet_diag cannot read ({e})")))?
                .ok_or_else(|| {
                    refuse(
                        "packet socket that packet_diag does not list (is it in another \
                         network namespace?)"
                            .into(),
                    )
                })?;
            if diag.filtered {
                return Err(refuse(
                    "packet socket with a socket filter (SO_ATTACH_FILTER), which ferry \
                     does not carry"
                        .into(),
                ));
            }
            // A SOCK_PACKET socket has no SOL_PACKET options.
            let fanout = if ty == kernel::packet::SOCK_PACKET {
                0
            } else {
                int(libc::SOL_PACKET, libc::PACKET_FANOUT)? as u32
            };
            let fanout_type = (fanout >> 16) & 0xff;
            if fanout != 0
                && [libc::PACKET_FANOUT_CBPF, libc::PACKET_FANOUT_EBPF].contains(&fanout_type)
            {
                return Err(refuse(format!(
                    "packet socket in a fanout group of type {fanout_type} (a BPF program, \
                     which ferry does not carry)"
                )));
            }
            Ok(FdClass::PacketSocket { inode })
        }
        other => Err(refuse(format!("socket of address family {other}"))),
    }
}

/// Why a netlink socket holding messages is refused: they are not read
/// at checkpoint (reading would take them from the process).
pub const NETLINK_QUEUED: &str = "netlink socket with messages queued (ferry carries a netlink \
     socket whose messages were all read)";

/// Whether netlink socket `sock` holds a message not read yet (it has no
/// FIONREAD: poll tells, without taking anything).
pub fn netlink_queued(sock: BorrowedFd<'_>) -> Result<bool, Errno> {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(sock, PollFlags::POLLIN)];
    nix::poll::poll(&mut fds, PollTimeout::ZERO)?;
    Ok(fds[0]
        .revents()
        .is_some_and(|r| r.contains(PollFlags::POLLIN)))
}

/// Every TCP connection of the tree (`tree`: every process with its
/// classified fds), sorted, each once (a socket several fds or processes
/// hold is one connection): the flows a network lock must hold still
/// while they move. An IPv6 socket's IPv4-mapped address is given as the
/// IPv4 address its packets carry.
pub fn tcp_connections(tree: &[(i32, Vec<ClassifiedFd>)]) -> Vec<TcpFlow> {
    let flows: std::collections::BTreeSet<TcpFlow> = tree
        .iter()
        .flat_map(|(_, fds)| fds)
        .filter_map(|c| match c.class {
            FdClass::TcpConnection { local, remote, .. } => Some(TcpFlow {
                local: wire_addr(local),
                remote: wire_addr(remote),
            }),
            _ => None,
        })
        .collect();
    flows.into_iter().collect()
}

/// unix_diag of socket `inode` of process `pid`, asked in its network
/// namespace (a container's own, when it has one).
pub fn unix_diag_of(pid: i32, inode: u64) -> Result<kernel::sockets::UnixDiag, Errno> {
    kernel::in_net_namespace(pid, || kernel::sockets::unix_diag(inode as u32))?
}

/// Refuses a connected unix socket whose peer a process outside the tree
/// holds (`tree`: every process with its classified fds). Carried: the
/// ends of a pair the tree holds, a socket whose peer has closed, a
/// datagram socket connected to a socket of the tree that is not connected
/// back (a server shared by several clients, or itself), and a stream
/// connection to a listener of the tree not accepted yet (with nothing
/// sent on it yet: that data sits where only accept() reaches it).
pub fn check_unix_peers(tree: &[(i32, Vec<ClassifiedFd>)]) -> Result<(), InspectError> {
    let all = || {
        tree.iter()
            .flat_map(|(pid, fds)| fds.iter().map(move |c| (*pid, c)))
    };
    let holds = |ino: u64| {
        all().any(|(_, o)| matches!(o.class, FdClass::UnixSocket { inode, .. } if inode == ino))
    };
    // The clients queued on the tree's listeners, asked when first needed.
    let mut queued_clients: Option<Vec<u32>> = None;
    for (pid, c) in all() {
        let FdClass::UnixSocket {
            inode,
            peer: Some(peer),
        } = c.class
        else {
            continue;
        };
        let mutual = all().any(|(_, o)| {
            o.class
                == FdClass::UnixSocket {
                    inode: peer,
                    peer: Some(inode),
                }
        });
        if mutual {
            continue;
        }
        let refuse = |why: &str| InspectError::UnsupportedFd {
            pid,
            fd: c.fd,
            kind: format!("unix socket {why}"),
            target: c.target.clone(),
        };
        let diag = unix_diag_of(pid, inode).map_err(|e| {
            refuse(&format!(
                "that unix_diag cannot find ({e}; is it in another network namespace?)"
            ))
        })?;
        let dgram = diag.sock_type == libc::SOCK_DGRAM;
        if peer != 0 {
            if dgram && holds(peer) {
                continue;
            }
            return Err(refuse("connected to a process outside the checkpoint"));
        }
        if dgram {
            continue;
        }
        let clients = match &queued_clients {
            Some(c) => c,
            None => queued_clients.insert(listeners_queues(tree)),
        };
        if clients.contains(&(inode as u32)) {
            if diag.unread_sent > 0 {
                return Err(refuse(
                    "of a connection not accepted yet, with data sent on it (only accept() \
                     reaches that data)",
                ));
            }
            continue;
        }
        // A peer's close shuts a stream socket down both ways; without that
        // its peer is a connection another process has not accepted yet.
        if diag.shutdown != SHUTDOWN_BOTH {
            return Err(refuse(
                "connected to a process outside the checkpoint (not accepted yet)",
            ));
        }
    }
    Ok(())
}

/// sk_shutdown of a socket shut down both ways (RCV_SHUTDOWN | SEND_SHUTDOWN).
const SHUTDOWN_BOTH: u8 = 3;

/// The client ends of every connection queued on a listening unix socket
/// of the tree (unconnected sockets the kernel cannot describe are left
/// out: they queue nothing).
fn listeners_queues(tree: &[(i32, Vec<ClassifiedFd>)]) -> Vec<u32> {
    tree.iter()
        .flat_map(|(pid, fds)| fds.iter().map(move |c| (*pid, c)))
        .filter_map(|(pid, c)| match c.class {
            FdClass::UnixSocket { inode, peer: None } => unix_diag_of(pid, inode).ok(),
            _ => None,
        })
        .flat_map(|d| d.queued_clients)
        .filter(|&c| c != 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::inspect::fd_class::{ClassifiedFd, FdClass};
    use crate::inspect::sockets::{tcp_connections, tcp_state_name};

    fn conn(fd: i32, local: &str, remote: &str, state: u8) -> ClassifiedFd {
        ClassifiedFd {
            fd,
            target: format!("socket:[{fd}]"),
            class: FdClass::TcpConnection {
                local: local.parse().unwrap(),
                remote: remote.parse().unwrap(),
                state,
            },
        }
    }

    #[test]
    fn connections_are_listed_once_as_packets_carry_them() {
        let (a, b) = ("127.0.0.1:1000", "127.0.0.1:2000");
        // An IPv6 socket's IPv4-mapped end is listed as IPv4.
        let mapped = vec![
            (10, vec![conn(3, "[::ffff:127.0.0.1]:1000", b, 8)]),
            (11, vec![conn(4, b, a, 5), conn(5, b, a, 5)]),
        ];
        assert_eq!(
            tcp_connections(&mapped),
            [
                crate::image::TcpFlow {
                    local: a.parse().unwrap(),
                    remote: b.parse().unwrap(),
                },
                crate::image::TcpFlow {
                    local: b.parse().unwrap(),
                    remote: a.parse().unwrap(),
                }
            ]
        );
        assert_eq!(tcp_state_name(2), "SYN_SENT");
        assert_eq!(tcp_state_name(99), "99");
    }
}
