//! Sockets: which ones ferry carries (unix sockets whose peer the tree
//! also holds, bound and listening unix sockets, listening TCP sockets,
//! UDP and UDP-Lite sockets bound or connected, shut down or not). Each socket is taken out of the process with pidfd_getfd
//! and examined with ordinary socket calls; the peer of a unix socket
//! comes from unix_diag.

use super::error::InspectError;
use super::fd_class::{ClassifiedFd, FdClass};
use crate::kernel;
use crate::kernel::sockets::getsockopt_int;
use nix::errno::Errno;
use std::os::fd::AsFd;

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
                (libc::SOCK_DGRAM, libc::IPPROTO_UDP | libc::IPPROTO_UDPLITE) => {
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

/// Refuses a connected unix socket whose peer no process of the tree
/// holds (`tree`: every process with its classified fds): the other end
/// belongs to a process outside the checkpoint.
pub fn check_unix_peers(tree: &[(i32, Vec<ClassifiedFd>)]) -> Result<(), InspectError> {
    let all = || tree.iter().flat_map(|(_, fds)| fds);
    for (pid, fds) in tree {
        for c in fds {
            let FdClass::UnixSocket {
                inode,
                peer: Some(peer),
            } = c.class
            else {
                continue;
            };
            let back = all().any(|o| {
                o.class
                    == FdClass::UnixSocket {
                        inode: peer,
                        peer: Some(inode),
                    }
            });
            if !back {
                return Err(InspectError::UnsupportedFd {
                    pid: *pid,
                    fd: c.fd,
                    kind: format!(
                        "unix socket connected to a process outside the checkpoint{}",
                        if peer == 0 {
                            " (its peer is closed, or not accepted yet)"
                        } else {
                            ""
                        }
                    ),
                    target: c.target.clone(),
                });
            }
        }
    }
    Ok(())
}
