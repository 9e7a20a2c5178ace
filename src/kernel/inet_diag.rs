//! The inet_diag netlink query for what no socket option tells about an
//! IP socket: its shutdown state (sk_shutdown), which a UDP socket keeps
//! after shutdown(2) and which ferry sets again at restore.

use super::sock_diag;
use nix::errno::Errno;

/// Length of struct inet_diag_req_v2 and inet_diag_msg.
const REQ_LEN: usize = 56;
const MSG_LEN: usize = 72;
/// Offset of idiag_inode in struct inet_diag_msg.
const MSG_INODE: usize = 68;
/// The inet_diag attribute holding sk_shutdown (one byte).
const INET_DIAG_SHUTDOWN: u16 = 8;

/// The shutdown bits (1: reading shut down, 2: writing shut down) of the
/// socket with inode `inode`, of address family `family` and protocol
/// `protocol`, in this thread's network namespace; None when inet_diag
/// lists no such socket.
pub fn shutdown_state(family: i32, protocol: i32, inode: u32) -> Result<Option<u8>, Errno> {
    // struct inet_diag_req_v2 (family, protocol, ext, pad, states, then a
    // zeroed inet_diag_sockid): a dump of every socket of that family and
    // protocol, in any state.
    let mut req = Vec::with_capacity(REQ_LEN);
    req.extend_from_slice(&[family as u8, protocol as u8, 0, 0]);
    req.extend_from_slice(&u32::MAX.to_ne_bytes());
    req.resize(REQ_LEN, 0);
    let Some(attrs) = sock_diag::find(&req, MSG_LEN, MSG_INODE, inode)? else {
        return Ok(None);
    };
    Ok(Some(
        attrs
            .iter()
            .find(|(kind, _)| *kind == INET_DIAG_SHUTDOWN)
            .and_then(|(_, v)| v.first().copied())
            .unwrap_or(0),
    ))
}
