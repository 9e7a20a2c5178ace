//! Raw link-layer frames (AF_PACKET): what the kernel sends for no one,
//! a gratuitous ARP announcing that an address moved (as a migrated VM's
//! hypervisor does), goes out through a packet socket.

use nix::errno::Errno;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// The Internet checksum (RFC 1071) of `parts` one after the other, each
/// of even length, with `extra` (pseudo-header fields given as a number)
/// added: what IP headers, TCP segments and ICMPv6 messages carry.
pub fn internet_checksum(parts: &[&[u8]], extra: u32) -> u16 {
    let mut sum: u64 = u64::from(extra)
        + parts
            .iter()
            .flat_map(|p| p.chunks(2))
            .map(|w| u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
            .sum::<u64>();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends `frame`, a whole Ethernet frame (its 14-byte header included), of
/// EtherType `ethertype` on interface `ifindex` (to the broadcast or
/// multicast address its header names).
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

/// SOCK_PACKET, the old packet socket type bound by device name (libc
/// deprecates its constant; the kernel still makes such sockets).
pub const SOCK_PACKET: i32 = 10;

/// What packet_diag tells about a packet socket and no socket option
/// does: its multicast and promiscuous memberships, its ring
/// configurations and whether it has a filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacketDiag {
    /// Its memberships (PACKET_ADD_MEMBERSHIP), each with how many times
    /// it was added.
    pub memberships: Vec<PacketMembership>,
    /// PACKET_RX_RING's tpacket_req3 (block size, block count, frame size,
    /// frame count, retire timeout, private size, features), if set.
    pub rx_ring: Option<[u32; 7]>,
    /// PACKET_TX_RING's, if set.
    pub tx_ring: Option<[u32; 7]>,
    /// Whether a socket filter (SO_ATTACH_FILTER) is attached.
    pub filtered: bool,
}

/// One entry of a packet socket's membership list (struct
/// packet_diag_mclist).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacketMembership {
    /// The interface.
    pub ifindex: i32,
    /// How many times it was added.
    pub count: u32,
    /// PACKET_MR_MULTICAST, PACKET_MR_PROMISC, PACKET_MR_ALLMULTI or
    /// PACKET_MR_UNICAST.
    pub mr_type: u16,
    /// The link-layer address (multicast, unicast), at most 8 bytes.
    pub address: Vec<u8>,
}

/// packet_diag_req.pdiag_show: info, memberships, rings, filter.
const PACKET_SHOW: u32 = 0x1 | 0x2 | 0x4 | 0x20;
/// packet_diag attributes.
const PACKET_DIAG_MCLIST: u16 = 1;
const PACKET_DIAG_RX_RING: u16 = 2;
const PACKET_DIAG_TX_RING: u16 = 3;
const PACKET_DIAG_FILTER: u16 = 7;
/// Length of struct packet_diag_msg, offset of its inode, length of one
/// struct packet_diag_mclist.
const MSG_LEN: usize = 16;
const MSG_INODE: usize = 4;
const MCLIST_LEN: usize = 44;

/// Asks packet_diag about the packet socket with inode `inode` in this
/// thread's network namespace; None when it lists no such socket.
pub fn packet_diag(inode: u32) -> Result<Option<PacketDiag>, Errno> {
    // struct packet_diag_req: family, protocol, pad, ino, show, cookie[2].
    let mut req = vec![libc::AF_PACKET as u8, 0, 0, 0];
    req.extend_from_slice(&inode.to_ne_bytes());
    req.extend_from_slice(&PACKET_SHOW.to_ne_bytes());
    req.extend_from_slice(&[0xff; 8]);
    let Some(attrs) = super::sock_diag::find(&req, MSG_LEN, MSG_INODE, inode)? else {
        return Ok(None);
    };
    Ok(Some(parse(&attrs)))
}

/// The diag of a socket from its attributes.
fn parse(attrs: &[super::sock_diag::Attr]) -> PacketDiag {
    let u32s = |v: &[u8]| -> Vec<u32> {
        v.chunks_exact(4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let ring = |v: &[u8]| -> Option<[u32; 7]> { u32s(v).get(..7)?.try_into().ok() };
    let mut out = PacketDiag::default();
    for (kind, v) in attrs {
        match *kind {
            PACKET_DIAG_MCLIST => {
                out.memberships = v
                    .chunks_exact(MCLIST_LEN)
                    .map(|m| {
                        let w = u32s(&m[..12]);
                        let alen = usize::from(u16::from_ne_bytes([m[10], m[11]])).min(32);
                        PacketMembership {
                            ifindex: w[0] as i32,
                            count: w[1],
                            mr_type: u16::from_ne_bytes([m[8], m[9]]),
                            address: m[12..12 + alen].to_vec(),
                        }
                    })
                    .collect();
            }
            PACKET_DIAG_RX_RING => out.rx_ring = ring(v),
            PACKET_DIAG_TX_RING => out.tx_ring = ring(v),
            PACKET_DIAG_FILTER => out.filtered = !v.is_empty(),
            _ => {}
        }
    }
    out
}

/// Where packet socket `fd` is bound: its protocol (network byte order,
/// as socket(2) takes it), interface index and, for a SOCK_PACKET socket,
/// its device name (getsockname gives a sockaddr_pkt then).
pub fn packet_name(fd: BorrowedFd<'_>, spkt: bool) -> Result<(u16, i32, Vec<u8>), Errno> {
    let mut buf = [0u8; 128];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `buf`.
    let r = unsafe { libc::getsockname(fd.as_raw_fd(), buf.as_mut_ptr().cast(), &mut len) };
    Errno::result(r)?;
    Ok(if spkt {
        // struct sockaddr_pkt: family, spkt_device[14], spkt_protocol.
        let name = &buf[2..16];
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        (
            u16::from_ne_bytes([buf[16], buf[17]]),
            0,
            name[..end].to_vec(),
        )
    } else {
        // struct sockaddr_ll: family, protocol, ifindex, ...
        (
            u16::from_ne_bytes([buf[2], buf[3]]),
            i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]),
            Vec::new(),
        )
    })
}

/// Binds packet socket `fd` to `protocol` (network byte order) on
/// interface `ifindex`, or, a SOCK_PACKET socket, to device `device`.
pub fn bind_packet(
    fd: BorrowedFd<'_>,
    protocol: u16,
    ifindex: i32,
    device: &[u8],
) -> Result<(), Errno> {
    let mut addr = [0u8; 20];
    addr[..2].copy_from_slice(&(libc::AF_PACKET as u16).to_ne_bytes());
    let len = if device.is_empty() {
        addr[2..4].copy_from_slice(&protocol.to_ne_bytes());
        addr[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        std::mem::size_of::<libc::sockaddr_ll>()
    } else {
        // A struct sockaddr exactly (the kernel refuses any other
        // length): the family and the device name, the protocol being the
        // socket's own.
        let n = device.len().min(13);
        addr[2..2 + n].copy_from_slice(&device[..n]);
        std::mem::size_of::<libc::sockaddr>()
    };
    // SAFETY: `addr` holds `len` (at most 20) initialised bytes the kernel
    // only reads.
    let r = unsafe { libc::bind(fd.as_raw_fd(), addr.as_ptr().cast(), len as libc::socklen_t) };
    Errno::result(r).map(drop)
}

/// The bytes of a struct packet_mreq (PACKET_ADD_MEMBERSHIP) for a
/// membership of type `mr_type` on interface `ifindex` with link-layer
/// address `address` (at most 8 bytes).
pub fn packet_mreq(ifindex: i32, mr_type: u16, address: &[u8]) -> Vec<u8> {
    let n = address.len().min(8);
    let mut out = ifindex.to_ne_bytes().to_vec();
    out.extend_from_slice(&mr_type.to_ne_bytes());
    out.extend_from_slice(&(n as u16).to_ne_bytes());
    let mut addr = [0u8; 8];
    addr[..n].copy_from_slice(&address[..n]);
    out.extend_from_slice(&addr);
    out
}
