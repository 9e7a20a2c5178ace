//! Packet sockets of a frozen process: type, protocol, interface (and a
//! SOCK_PACKET socket's device name) and the SOL_PACKET options read with
//! ordinary socket calls, and from packet_diag what no option tells: the
//! memberships and the ring configurations. The frames queued on the
//! socket are left behind, as the network may drop them.

use super::error::CheckpointError;
use super::sockets::socket_options;
use crate::image::{FileImage, PacketMembership, PacketSocket};
use crate::inspect::InspectError;
use crate::kernel::packet::{packet_diag, packet_name, SOCK_PACKET};
use crate::kernel::sockets::getsockopt_int;
use nix::errno::Errno;
use std::os::fd::{AsFd, OwnedFd};

/// Describes packet socket `sock` (inode `inode`), fd `fd` (link target
/// `target`) of the frozen process `pid`, whose description has status
/// flags `flags`.
pub fn describe(
    pid: i32,
    fd: i32,
    target: &str,
    inode: u64,
    sock: &OwnedFd,
    flags: i32,
) -> Result<FileImage, CheckpointError> {
    let io = |what: &str| {
        let what = format!("{what} of packet socket {target} (fd {fd}) of process {pid}");
        move |errno: Errno| CheckpointError::Io {
            what,
            source: errno.into(),
        }
    };
    let s = sock.as_fd();
    let sock_type = getsockopt_int(s, libc::SOL_SOCKET, libc::SO_TYPE).map_err(io("SO_TYPE"))?;
    let (protocol, ifindex, device) =
        packet_name(s, sock_type == SOCK_PACKET).map_err(io("getsockname"))?;
    let diag = u32::try_from(inode)
        .map_err(|_| Errno::EOVERFLOW)
        .and_then(packet_diag)
        .map_err(io("packet_diag"))?
        .ok_or_else(|| {
            CheckpointError::from(InspectError::UnsupportedFd {
                pid,
                fd,
                kind: "packet socket that packet_diag no longer lists".into(),
                target: target.to_string(),
            })
        })?;
    // A SOCK_PACKET socket has no SOL_PACKET options.
    let fanout = if sock_type == SOCK_PACKET {
        0
    } else {
        getsockopt_int(s, libc::SOL_PACKET, libc::PACKET_FANOUT).map_err(io("PACKET_FANOUT"))?
            as u32
    };
    Ok(FileImage::PacketSocket(PacketSocket {
        sock_type,
        protocol,
        flags: flags & !libc::O_ACCMODE,
        ifindex,
        device,
        memberships: diag
            .memberships
            .into_iter()
            .map(|m| PacketMembership {
                ifindex: m.ifindex,
                mr_type: m.mr_type,
                address: m.address,
                count: m.count,
            })
            .collect(),
        rx_ring: diag.rx_ring,
        tx_ring: diag.tx_ring,
        fanout,
        inode,
        options: socket_options(s).map_err(io("read an option"))?,
    }))
}
