//! Raw link-layer frames (AF_PACKET): what the kernel sends for no one,
//! a gratuitous ARP announcing that an address moved (as a migrated VM's
//! hypervisor does), goes out through a packet socket.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Sends `frame`, a whole Ethernet frame (its 14-byte header included), of
/// EtherType `ethertype` on interface `ifindex` to the broadcast address.
pub fn send_broadcast(ifindex: u32, ethertype: u16, frame: &[u8]) -> io::Result<()> {
    let protocol = ethertype.to_be();
    // SAFETY: socket(2) with constant arguments and no pointer.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(protocol),
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a descriptor just made here, owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let ifindex =
        i32::try_from(ifindex).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let to = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: protocol,
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0],
    };
    // SAFETY: `frame` is valid for its length and `to` for its size; the
    // kernel only reads both.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            std::ptr::from_ref(&to).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
