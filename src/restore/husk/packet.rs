//! Recreates an image's packet sockets here in migrate-agent, to be
//! pulled into the husk like the other sockets: made with the same type
//! and protocol, given their options (PACKET_VERSION and PACKET_RESERVE
//! before the rings, which fix them), bound to the same interface, given
//! their memberships, rings and fanout group back.

use super::sockets::{create_each, set_options};
use crate::image::{Checkpoint, FileImage, PacketSocket};
use crate::kernel::packet::{bind_packet, packet_mreq};
use crate::kernel::sockets::{
    getsockopt_int, setsockopt_bytes, setsockopt_int, socket_with_protocol,
};
use crate::restore::error::RestoreError;
use std::os::fd::{AsFd, OwnedFd};

/// Creates every packet socket of the tree `ck`, putting our fd of each
/// at the index of its description in `ours`.
pub fn create(ck: &Checkpoint, ours: &mut [Option<OwnedFd>]) -> Result<(), RestoreError> {
    create_each(ck, ours, |pid, file| match file {
        FileImage::PacketSocket(p) => Some(packet(pid, p).map(|sock| (sock, p.flags))),
        _ => None,
    })
}

/// A packet socket as in the image.
fn packet(pid: i32, p: &PacketSocket) -> Result<OwnedFd, RestoreError> {
    let fail = |call: String| move |errno| RestoreError::Injected { pid, call, errno };
    let sock = socket_with_protocol(libc::AF_PACKET, p.sock_type, i32::from(p.protocol)).map_err(
        fail(format!(
            "socket(AF_PACKET, {}, {:#06x})",
            p.sock_type,
            u16::from_be(p.protocol)
        )),
    )?;
    set_options(pid, &sock, &p.options)?;
    let s = sock.as_fd();
    if p.ifindex != 0 || !p.device.is_empty() {
        bind_packet(s, p.protocol, p.ifindex, &p.device).map_err(fail(format!(
            "bind to interface {} {}",
            p.ifindex,
            String::from_utf8_lossy(&p.device)
        )))?;
    }
    for m in &p.memberships {
        let mreq = packet_mreq(m.ifindex, m.mr_type, &m.address);
        for _ in 0..m.count {
            setsockopt_bytes(s, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq).map_err(
                fail(format!(
                    "PACKET_ADD_MEMBERSHIP of type {} on interface {}",
                    m.mr_type, m.ifindex
                )),
            )?;
        }
    }
    // TPACKET_V3 takes a tpacket_req3, the older versions its first four
    // fields (tpacket_req).
    let v3 = getsockopt_int(s, libc::SOL_PACKET, libc::PACKET_VERSION).ok() == Some(2);
    for (ring, opt, name) in [
        (p.rx_ring, libc::PACKET_RX_RING, "PACKET_RX_RING"),
        (p.tx_ring, libc::PACKET_TX_RING, "PACKET_TX_RING"),
    ] {
        let Some(ring) = ring else { continue };
        let fields = if v3 { &ring[..] } else { &ring[..4] };
        let bytes: Vec<u8> = fields.iter().flat_map(|f| f.to_ne_bytes()).collect();
        setsockopt_bytes(s, libc::SOL_PACKET, opt, &bytes)
            .map_err(fail(format!("setting {name} to {fields:?}")))?;
    }
    if p.fanout != 0 {
        setsockopt_int(s, libc::SOL_PACKET, libc::PACKET_FANOUT, p.fanout as i32)
            .map_err(fail(format!("joining fanout group {:#x}", p.fanout)))?;
    }
    Ok(sock)
}
