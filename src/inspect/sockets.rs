//! Sockets: which ones ferry carries (unix sockets whose peer the tree
//! also holds, bound and listening unix sockets, listening TCP and bound
//! UDP sockets). Each socket is taken out of the process with pidfd_getfd
//! and examined with ordinary socket calls; the peer of a unix socket
//! comes from unix_diag.

use super::error::InspectError;
use super::fd_class::{ClassifiedFd, FdClass};
use crate::kernel;
use crate::kernel::sockets::getsockopt_int;
use nix::errno::Errno;
use nix::sys::socket::{getpeername, SockaddrStorage};
use std::os::fd::{AsFd, AsRawFd};

/// TCP states (include/net/tcp_states.h) that ferry tells apart.
const TCP_ESTABLISHED: u8 = 1;
const TCP_CLOSE: u8 = 7;
const TCP_LISTEN: u8 = 10;
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
                    match st.state {
                        TCP_LISTEN | TCP_CLOSE => Ok(FdClass::InetSocket),
                        TCP_ESTABLISHED => Err(refuse(
                            "TCP socket of an established connection (carrying established TCP \
                             connections comes in a later issue)"
                                .into(),
                        )),
                        s => Err(refuse(format!(
                            "TCP socket of a connection in state {s} (carrying TCP connections \
                             comes in a later issue)"
                        ))),
                    }
                }
                (libc::SOCK_DGRAM, libc::IPPROTO_UDP) => {
                    if getpeername::<SockaddrStorage>(sock.as_raw_fd()).is_ok() {
                        return Err(refuse("connected UDP socket".into()));
                    }
                    Ok(FdClass::InetSocket)
                }
                _ => Err(refuse(format!(
                    "IP socket of type {ty} and protocol {protocol}"
                ))),
            }
        }
        libc::AF_NETLINK => Err(refuse("netlink socket".into())),
        libc::AF_PACKET => Err(refuse("packet socket".into())),
        other => Err(refuse(format!("socket of address family {other}"))),
    }
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
