//! Recreates an image's netlink sockets here in migrate-agent, to be
//! pulled into the husk like the other sockets: made with the same
//! protocol, bound to the same port id (a port id is a name within the
//! network namespace, not a process's: any free one can be bound), joined
//! to its multicast groups, connected to its destination, with its
//! options.

use super::sockets::{create_each, set_options};
use crate::image::{Checkpoint, FileImage, NetlinkSocket};
use crate::kernel::sockets::{setsockopt_int, socket_with_protocol};
use crate::restore::error::RestoreError;
use nix::sys::socket::{bind, connect, NetlinkAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// Creates every netlink socket of the tree `ck`, putting our fd of each
/// at the index of its description in `ours`.
pub fn create(ck: &Checkpoint, ours: &mut [Option<OwnedFd>]) -> Result<(), RestoreError> {
    create_each(ck, ours, |pid, file| match file {
        FileImage::NetlinkSocket(n) => Some(netlink(pid, n).map(|sock| (sock, n.flags))),
        _ => None,
    })
}

/// A netlink socket as in the image.
fn netlink(pid: i32, n: &NetlinkSocket) -> Result<OwnedFd, RestoreError> {
    let fail = |call: String| move |errno| RestoreError::Injected { pid, call, errno };
    let sock = socket_with_protocol(libc::AF_NETLINK, n.sock_type, n.protocol).map_err(fail(
        format!("socket(AF_NETLINK, {}, {})", n.sock_type, n.protocol),
    ))?;
    set_options(pid, &sock, &n.options)?;
    // Bound to its port id alone: the groups are joined one by one below
    // (bind's mask reaches only the first 32).
    if n.port_id != 0 {
        bind(sock.as_raw_fd(), &NetlinkAddr::new(n.port_id, 0))
            .map_err(fail(format!("bind to netlink port id {}", n.port_id)))?;
    }
    for &group in &n.groups {
        setsockopt_int(
            sock.as_fd(),
            libc::SOL_NETLINK,
            libc::NETLINK_ADD_MEMBERSHIP,
            group as i32,
        )
        .map_err(fail(format!("joining netlink group {group}")))?;
    }
    if n.dst_port_id != 0 || n.dst_group != 0 {
        let mask = match n.dst_group {
            0 => 0,
            g => 1u32.checked_shl(g - 1).unwrap_or(0),
        };
        connect(sock.as_raw_fd(), &NetlinkAddr::new(n.dst_port_id, mask)).map_err(fail(
            format!(
                "connect to netlink port id {} group {}",
                n.dst_port_id, n.dst_group
            ),
        ))?;
    }
    Ok(sock)
}
