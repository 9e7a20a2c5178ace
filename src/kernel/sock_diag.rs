//! The dump side of NETLINK_SOCK_DIAG shared by the families that can only
//! list every socket of a namespace (inet_diag, packet_diag): send the
//! request, read the replies until NLMSG_DONE, keep the attributes of the
//! one socket asked about.

use super::sockets::{sock_diag, NLMSG_HDR_LEN, SOCK_DIAG_BY_FAMILY};
use nix::errno::Errno;
use nix::sys::socket::{recv, MsgFlags};
use std::os::fd::AsRawFd;

/// One netlink attribute of a reply: its type and its payload.
pub type Attr = (u16, Vec<u8>);

/// Sends `body` (a `*_diag_req` asking for a dump) as a SOCK_DIAG_BY_FAMILY
/// request and returns the attributes of the socket whose reply carries
/// `inode` at byte `inode_at` of its `msg_len`-byte `*_diag_msg`; None when
/// the dump does not list it.
pub fn find(
    body: &[u8],
    msg_len: usize,
    inode_at: usize,
    inode: u32,
) -> Result<Option<Vec<Attr>>, Errno> {
    let mut req = Vec::with_capacity(NLMSG_HDR_LEN + body.len());
    req.extend_from_slice(&((NLMSG_HDR_LEN + body.len()) as u32).to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(body);
    let nl = sock_diag(&req)?;
    let mut buf = vec![0u8; 32 << 10];
    let mut found = None;
    loop {
        let n = recv(nl.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        match scan(&buf[..n], msg_len, inode_at, inode)? {
            Scan::More(hit) => found = found.or(hit),
            Scan::Done => return Ok(found),
        }
    }
}

/// What one datagram of a dump held.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// More messages follow; the socket's attributes if it was here.
    More(Option<Vec<Attr>>),
    /// NLMSG_DONE was reached.
    Done,
}

/// Looks through the netlink messages of `buf` for the socket `inode`.
fn scan(buf: &[u8], msg_len: usize, inode_at: usize, inode: u32) -> Result<Scan, Errno> {
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
                if u32_at(msg + inode_at).ok_or(Errno::EBADMSG)? == inode {
                    let mut attrs = Vec::new();
                    let mut attr = msg + msg_len;
                    while attr + 4 <= at + len {
                        let alen = u16_at(attr).ok_or(Errno::EBADMSG)? as usize;
                        if alen < 4 || attr + alen > at + len {
                            return Err(Errno::EBADMSG);
                        }
                        let kind = u16_at(attr + 2).ok_or(Errno::EBADMSG)?;
                        attrs.push((kind, buf[attr + 4..attr + alen].to_vec()));
                        attr += (alen + 3) & !3;
                    }
                    hit = Some(attrs);
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

    /// One 8-byte diag message for inode `inode` (at byte 4) with one
    /// attribute of type 8 holding `value`.
    fn message(inode: u32, value: u8) -> Vec<u8> {
        let mut body = vec![0u8; 8];
        body[4..8].copy_from_slice(&inode.to_ne_bytes());
        body.extend_from_slice(&5u16.to_ne_bytes());
        body.extend_from_slice(&8u16.to_ne_bytes());
        body.extend_from_slice(&[value, 0, 0, 0]);
        crate::kernel::sockets::framed_reply(body)
    }

    #[test]
    fn the_socket_is_found_among_others_and_done_ends_the_dump() {
        let buf = [message(7, 1), message(9, 3)].concat();
        assert_eq!(
            scan(&buf, 8, 4, 9).unwrap(),
            Scan::More(Some(vec![(8, vec![3])]))
        );
        assert_eq!(scan(&buf, 8, 4, 8).unwrap(), Scan::More(None));
        let mut done = (NLMSG_HDR_LEN as u32 + 4).to_ne_bytes().to_vec();
        done.extend_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
        done.extend_from_slice(&[0; 14]);
        assert_eq!(scan(&done, 8, 4, 9).unwrap(), Scan::Done);
    }
}
