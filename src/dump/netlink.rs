//! Netlink sockets of a frozen process: protocol, port id, multicast
//! groups, connected destination and options, read from the socket taken
//! out of the process with ordinary socket calls (getsockname and
//! getpeername give what the kernel's netlink_diag reports, and
//! NETLINK_LIST_MEMBERSHIPS the groups past the first 32). A socket still
//! holding messages is refused: they are not read.

use super::error::CheckpointError;
use super::sockets::socket_options;
use crate::image::{FileImage, NetlinkSocket};
use crate::inspect::sockets::{netlink_queued, NETLINK_QUEUED};
use crate::inspect::InspectError;
use crate::kernel::sockets::getsockopt_int;
use crate::kernel::sockopts;
use nix::errno::Errno;
use nix::sys::socket::{getpeername, getsockname, NetlinkAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// Describes netlink socket `sock`, fd `fd` (link target `target`) of the
/// frozen process `pid`, whose description has status flags `flags`.
pub fn describe(
    pid: i32,
    fd: i32,
    target: &str,
    sock: &OwnedFd,
    flags: i32,
) -> Result<FileImage, CheckpointError> {
    let io = |what: &str| {
        let what = format!("{what} of netlink socket {target} (fd {fd}) of process {pid}");
        move |errno: Errno| CheckpointError::Io {
            what,
            source: errno.into(),
        }
    };
    let s = sock.as_fd();
    // Checked again now that the process is frozen: a message may have
    // come since inspection (a uevent, a multicast notification).
    if netlink_queued(s).map_err(io("poll"))? {
        return Err(InspectError::UnsupportedFd {
            pid,
            fd,
            kind: NETLINK_QUEUED.into(),
            target: target.to_string(),
        }
        .into());
    }
    let int = |opt| getsockopt_int(s, libc::SOL_SOCKET, opt).map_err(io("read an option"));
    let local = getsockname::<NetlinkAddr>(s.as_raw_fd()).map_err(io("getsockname"))?;
    let peer = getpeername::<NetlinkAddr>(s.as_raw_fd()).map_err(io("getpeername"))?;
    Ok(FileImage::NetlinkSocket(NetlinkSocket {
        sock_type: int(libc::SO_TYPE)?,
        protocol: int(libc::SO_PROTOCOL)?,
        flags: flags & !libc::O_ACCMODE,
        port_id: local.pid(),
        groups: sockopts::netlink_groups(s).map_err(io("NETLINK_LIST_MEMBERSHIPS"))?,
        dst_port_id: peer.pid(),
        // getpeername gives the group as a one-bit mask.
        dst_group: match peer.groups() {
            0 => 0,
            mask => mask.trailing_zeros() + 1,
        },
        options: socket_options(s).map_err(io("read an option"))?,
    }))
}
