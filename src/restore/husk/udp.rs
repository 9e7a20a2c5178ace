//! The connection state of a recreated UDP socket: connected to its peer
//! again, its queued datagrams sent to it again from their senders'
//! addresses (so that recvfrom names them), and shut down as it was.

use crate::image::{Checkpoint, Datagram, FileImage, InetSocket};
use crate::kernel::sockets::setsockopt_int;
use crate::restore::error::RestoreError;
use nix::errno::Errno;
use nix::sys::socket::{
    bind, connect, sendto, shutdown, AddressFamily, MsgFlags, Shutdown, SockaddrStorage,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// `a` as an address nix's socket calls take.
fn sockaddr(a: SocketAddr) -> SockaddrStorage {
    SockaddrStorage::from(a)
}

/// Connects the recreated UDP socket `sock` of process `pid` to `n.peer`.
pub fn connect_peer(pid: i32, sock: &OwnedFd, n: &InetSocket) -> Result<(), RestoreError> {
    let Some(peer) = n.peer else {
        return Ok(());
    };
    connect(sock.as_raw_fd(), &sockaddr(peer)).map_err(|errno| RestoreError::Injected {
        pid,
        call: format!("connect a UDP socket to {peer}"),
        errno,
    })
}

/// Once every socket of the tree exists (`ours`, at the index of each
/// description in `ck.files`): queues each UDP socket's datagrams again,
/// then shuts the sockets down as they were (after, as a socket shut
/// for writing may be the sender of another's datagrams).
pub fn refill_and_shut(ck: &Checkpoint, ours: &[Option<OwnedFd>]) -> Result<(), RestoreError> {
    let udp = || {
        ck.files.iter().zip(ours).filter_map(|(f, s)| match (f, s) {
            (FileImage::InetSocket(n), Some(s)) if n.sock_type == libc::SOCK_DGRAM => Some((n, s)),
            _ => None,
        })
    };
    for (n, sock) in udp() {
        let pid = first_holder(ck, ours, sock);
        for d in &n.queued {
            // A socket of the tree bound to the sender's address (or to
            // its port on any address, which holds that port) sends it
            // itself; otherwise a socket made for it, bound there.
            let same = |o: &InetSocket| o.protocol == n.protocol;
            let sender = udp()
                .find(|(o, _)| same(o) && o.local == Some(d.source))
                .or_else(|| {
                    udp().find(|(o, _)| same(o) && o.local.is_some_and(|l| holds(l, d.source)))
                });
            let made;
            let from = match sender {
                Some((_, s)) => s,
                None => {
                    made = sender_at(pid, d.source, n.protocol)?;
                    &made
                }
            };
            resend(pid, n, from, d)?;
        }
    }
    // A TCP socket whose connection ended is shut down too (reading it
    // gives end-of-file).
    let inet = ck.files.iter().zip(ours).filter_map(|(f, s)| match (f, s) {
        (FileImage::InetSocket(n), Some(s)) => Some((n, s)),
        _ => None,
    });
    for (n, sock) in inet {
        let how = match n.shutdown & 3 {
            1 => Shutdown::Read,
            2 => Shutdown::Write,
            3 => Shutdown::Both,
            _ => continue,
        };
        // An unconnected socket is shut down all the same, with ENOTCONN.
        match shutdown(sock.as_raw_fd(), how) {
            Ok(()) | Err(Errno::ENOTCONN) => {}
            Err(errno) => {
                return Err(RestoreError::Injected {
                    pid: first_holder(ck, ours, sock),
                    call: format!("shutdown({how:?}) of an IP socket"),
                    errno,
                })
            }
        }
    }
    Ok(())
}

/// Whether a socket bound to `local` holds the port of `source`: bound to
/// any address of the same family on that port.
fn holds(local: SocketAddr, source: SocketAddr) -> bool {
    local.port() == source.port()
        && local.ip().is_unspecified()
        && local.is_ipv4() == source.is_ipv4()
}

/// The PID of the first process holding the description `sock` (for
/// messages).
fn first_holder(ck: &Checkpoint, ours: &[Option<OwnedFd>], sock: &OwnedFd) -> i32 {
    let index = ours
        .iter()
        .position(|s| s.as_ref().map(AsRawFd::as_raw_fd) == Some(sock.as_raw_fd()));
    ck.processes
        .iter()
        .find(|p| p.fds.iter().any(|f| Some(f.file as usize) == index))
        .map_or(0, |p| p.pid)
}

/// A UDP (or UDP-Lite: `protocol`) socket bound to `source`, which may be
/// an address of no interface here (IP_FREEBIND, IP_TRANSPARENT).
fn sender_at(pid: i32, source: SocketAddr, protocol: i32) -> Result<OwnedFd, RestoreError> {
    let fail = |call: String| move |errno| RestoreError::Injected { pid, call, errno };
    let (family, level, freebind, transparent) = match source {
        SocketAddr::V4(_) => (
            AddressFamily::Inet,
            libc::IPPROTO_IP,
            libc::IP_FREEBIND,
            libc::IP_TRANSPARENT,
        ),
        SocketAddr::V6(_) => (
            AddressFamily::Inet6,
            libc::IPPROTO_IPV6,
            libc::IPV6_FREEBIND,
            libc::IPV6_TRANSPARENT,
        ),
    };
    let s = crate::kernel::sockets::socket_with_protocol(family as i32, libc::SOCK_DGRAM, protocol)
        .map_err(fail(format!("socket({family:?}, SOCK_DGRAM, {protocol})")))?;
    // Best effort: without them only a local address can be bound.
    let _ = setsockopt_int(s.as_fd(), level, freebind, 1);
    let _ = setsockopt_int(s.as_fd(), level, transparent, 1);
    bind(s.as_raw_fd(), &sockaddr(source)).map_err(fail(format!(
        "bind to {source}, the sender of a queued datagram"
    )))?;
    Ok(s)
}

/// Sends `d` from `from` to the recreated socket of image `n`: to its
/// own address, or to loopback on its port when it is bound to any.
fn resend(pid: i32, n: &InetSocket, from: &OwnedFd, d: &Datagram) -> Result<(), RestoreError> {
    let fail = |call: String| move |errno| RestoreError::Injected { pid, call, errno };
    let mut dest = n.local.ok_or(RestoreError::Unsupported {
        pid,
        why: "a UDP socket with datagrams queued is not bound".into(),
    })?;
    if dest.ip().is_unspecified() {
        dest.set_ip(match d.source.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(a) if a.to_ipv4_mapped().is_some() => {
                IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped())
            }
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let call = format!(
        "sending a queued datagram of {} bytes from {} to {dest}",
        d.data.len(),
        d.source
    );
    let sent = sendto(
        from.as_raw_fd(),
        &d.data,
        &sockaddr(dest),
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(fail(call.clone()))?;
    if sent != d.data.len() {
        return Err(RestoreError::Unsupported {
            pid,
            why: format!("{call}: only {sent} bytes went"),
        });
    }
    Ok(())
}
