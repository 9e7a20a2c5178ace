//! What a unix socket of a frozen process holds beyond its options: the
//! messages queued on it (copied by peeking, with the files and
//! credentials in flight), a pending error, the file it is bound to.
//! `sockets.rs` describes the socket with them.

use crate::image::{SocketFileOwner, UnixCreds};
use crate::kernel;
use crate::kernel::sockets::{getsockopt_int, setsockopt_int};
use nix::errno::Errno;
use nix::sys::socket::MsgFlags;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

/// The largest queued datagram ferry copies.
const MAX_MESSAGE: usize = 4 << 20;

/// Owner and mode of the socket file `name` (a path, relative to the
/// working directory of `pid` when it does not start with '/'), seen
/// through the process's own root and working directory; None when the
/// socket's own file (`inode`, unix_diag's) is not there any more.
pub(super) fn socket_file_owner(
    pid: i32,
    name: &[u8],
    inode: Option<u32>,
) -> Option<SocketFileOwner> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let name = std::ffi::OsStr::from_bytes(name);
    let base = if name.as_bytes().first() == Some(&b'/') {
        format!("/proc/{pid}/root")
    } else {
        format!("/proc/{pid}/cwd/")
    };
    let mut path = std::ffi::OsString::from(base);
    path.push(name);
    let meta = std::fs::symlink_metadata(path).ok()?;
    let own = inode.map_or(true, |i| meta.ino() as u32 == i);
    (own && meta.file_type().is_socket()).then(|| SocketFileOwner {
        uid: meta.uid(),
        gid: meta.gid(),
        mode: meta.mode() & 0o7777,
    })
}

/// Whether an error is pending on `sock` (POLLERR), without reading it
/// (SO_ERROR would clear it).
pub(super) fn error_pending(sock: BorrowedFd<'_>) -> Result<bool, Errno> {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(sock, PollFlags::empty())];
    nix::poll::poll(&mut fds, PollTimeout::ZERO)?;
    Ok(fds[0]
        .revents()
        .is_some_and(|r| r.contains(PollFlags::POLLERR)))
}

/// Why the queue of a socket could not be copied.
pub(super) enum Peek {
    Errno(Errno),
    Refused(String),
}

impl From<Errno> for Peek {
    fn from(e: Errno) -> Self {
        Peek::Errno(e)
    }
}

/// A message (or stream chunk) queued on a unix socket, as a peek copied
/// it.
pub(super) struct Peeked {
    pub(super) data: Vec<u8>,
    /// The files in flight with it, received here by the peek.
    pub(super) fds: Vec<OwnedFd>,
    pub(super) creds: Option<UnixCreds>,
}

/// Copies what is queued to be read on `sock` without consuming it:
/// MSG_PEEK from a moving SO_PEEK_OFF, one message at a time (an empty
/// datagram or seqpacket message counts), with SO_PASSCRED on for the
/// while to see each sender's credentials, until nothing is left; the
/// socket's own peek offset and SO_PASSCRED are put back afterwards.
/// Files in flight (SCM_RIGHTS) come here as fds of our own.
/// `rcv_shutdown`: the socket receives nothing more, so a seqpacket read
/// of 0 bytes past the queued bytes is its end of file, not an empty
/// message. A stream socket is peeked only up to the bytes FIONREAD
/// counts: a read past them would consume a pending error. A datagram or
/// seqpacket read reports that error before any message, consuming it: it
/// was seen (POLLERR) before.
pub(super) fn peek_queue(
    sock: BorrowedFd<'_>,
    sock_type: i32,
    rcv_shutdown: bool,
) -> Result<Vec<Peeked>, Peek> {
    let queued_bytes = kernel::bytes_readable(&sock)?;
    let old_passcred = getsockopt_int(sock, libc::SOL_SOCKET, libc::SO_PASSCRED)?;
    setsockopt_int(sock, libc::SOL_SOCKET, libc::SO_PASSCRED, 1)?;
    let stream = sock_type == libc::SOCK_STREAM;
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut out: Vec<Peeked> = Vec::new();
    let mut total = 0;
    let copied = kernel::sockets::peeking_from_start(sock, || loop {
        if stream && total >= queued_bytes {
            break Ok(());
        }
        let got = kernel::sockets::recv_with_ancillary(
            sock,
            &mut buf,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        );
        let m = match got {
            Err(Errno::EAGAIN) => break Ok(()),
            Err(Errno::ECONNRESET) if !stream => continue,
            Err(e) => break Err(Peek::Errno(e)),
            Ok(m) => m,
        };
        let (fds, creds) = (
            m.fds,
            m.creds.map(|(pid, uid, gid)| UnixCreds { pid, uid, gid }),
        );
        if m.flags.contains(MsgFlags::MSG_CTRUNC) {
            break Err(Peek::Refused(
                "with more file descriptors in flight in one message than ferry receives".into(),
            ));
        }
        if m.flags.contains(MsgFlags::MSG_TRUNC) {
            break Err(Peek::Refused(format!(
                "with a message of more than {MAX_MESSAGE} bytes queued"
            )));
        }
        if m.bytes == 0 && fds.is_empty() && (stream || rcv_shutdown && total >= queued_bytes) {
            break Ok(());
        }
        let n = m.bytes;
        total += n;
        out.push(Peeked {
            data: buf[..n].to_vec(),
            fds,
            creds,
        });
    })?;
    setsockopt_int(sock, libc::SOL_SOCKET, libc::SO_PASSCRED, old_passcred)?;
    copied.map(|()| out)
}
