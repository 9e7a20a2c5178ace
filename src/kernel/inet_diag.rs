//! The inet_diag netlink query for what no socket option tells about an
//! IP socket: its shutdown state (sk_shutdown), which a UDP socket keeps
//! after shutdown(2) and which ferry sets again at restore.

use super::sockets::{sock_diag, NLMSG_HDR_LEN, SOCK_DIAG_BY_FAMILY};
use nix::errno::Errno;
use nix::sys::socket::{recv, MsgFlags};
use std::os::fd::AsRawFd;

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
    // struct nlmsghdr + struct inet_diag_req_v2 (family, protocol, ext,
    // pad, states, then a zeroed inet_diag_sockid): a dump of every
    // socket of that family and protocol, in any state.
    let mut req = Vec::with_capacity(NLMSG_HDR_LEN + REQ_LEN);
    req.extend_from_slice(&((NLMSG_HDR_LEN + REQ_LEN) as u32).to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&[family as u8, protocol as u8, 0, 0]);
    req.extend_from_slice(&u32::MAX.to_ne_bytes());
    req.resize(NLMSG_HDR_LEN + REQ_LEN, 0);
    let nl = sock_diag(&req)?;
    let mut buf = vec![0u8; 32 << 10];
    let mut found = None;
    loop {
        let n = recv(nl.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        match scan(&buf[..n], inode)? {
            Scan::More(hit) => found = found.or(hit),
            Scan::Done => return Ok(found),
        }
    }
}

/// What one datagram of a dump held.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// More messages follow; the shutdown bits if the socket was here.
    More(Option<u8>),
    /// NLMSG_DONE was reached.
    Done,
}

/// Looks through the netlink messages of `buf` for the socket `inode`.
fn scan(buf: &[u8], inode: u32) -> Result<Scan, Errno> {
    let u16_at = |o: usize| buf.get(o..o + 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        buf.get(o..o + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut hit = None;
    let mut at = 0;
    while at + NLMSG_HDR_LEN <= buf.len() {
        let len = u32_at(at).ok_or(Errno::EBADMSG)? as usize;
        if len < NLMSG_HDR_LEN || at + len > buf.len() {
            return Err(Errno::EBADMSG);
        }
        match i32::from(u16_at(at + 4).ok_or(Errno::EBADMSG)?) {
            libc::NLMSG_DONE => return Ok(Scan::Done),
            libc::NLMSG_ERROR => {
                let err = u32_at(at + NLMSG_HDR_LEN).ok_or(Errno::EBADMSG)? as i32;
                return Err(Errno::from_raw(-err));
            }
            t if t == i32::from(SOCK_DIAG_BY_FAMILY) => {
                let msg = at + NLMSG_HDR_LEN;
                if u32_at(msg + MSG_INODE).ok_or(Errno::EBADMSG)? == inode {
                    let mut attr = msg + MSG_LEN;
                    hit = Some(0);
                    while attr + 4 <= at + len {
                        let alen = u16_at(attr).ok_or(Errno::EBADMSG)? as usize;
                        if alen < 4 {
                            return Err(Errno::EBADMSG);
                        }
                        if u16_at(attr + 2) == Some(INET_DIAG_SHUTDOWN) {
                            hit = Some(*buf.get(attr + 4).ok_or(Errno::EBADMSG)?);
                        }
                        attr += (alen + 3) & !3;
                    }
                }
            }
            _ => {}
        }
        at += (len + 3) & !3;
    }
    Ok(Scan::More(hit))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One inet_diag_msg for inode `inode` with a SHUTDOWN attribute.
    fn message(inode: u32, shutdown: u8) -> Vec<u8> {
        let mut body = vec![0u8; MSG_LEN];
        body[MSG_INODE..MSG_INODE + 4].copy_from_slice(&inode.to_ne_bytes());
        body.extend_from_slice(&5u16.to_ne_bytes());
        body.extend_from_slice(&INET_DIAG_SHUTDOWN.to_ne_bytes());
        body.extend_from_slice(&[shutdown, 0, 0, 0]);
        crate::kernel::sockets::framed_reply(body)
    }

    #[test]
    fn the_socket_is_found_among_others_and_done_ends_the_dump() {
        let buf = [message(7, 1), message(9, 3)].concat();
        assert_eq!(scan(&buf, 9).unwrap(), Scan::More(Some(3)));
        assert_eq!(scan(&buf, 8).unwrap(), Scan::More(None));
        let mut done = (NLMSG_HDR_LEN as u32 + 4).to_ne_bytes().to_vec();
        done.extend_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
        done.extend_from_slice(&[0; 14]);
        assert_eq!(scan(&done, 9).unwrap(), Scan::Done);
    }
}
