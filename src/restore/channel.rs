//! Handing open file descriptions to a husk that cannot take them from
//! migrate-agent with pidfd_getfd: a container's init lives in another PID
//! namespace (migrate-agent has no PID there) and has fewer capabilities
//! than migrate-agent (ptrace access to it is denied). The husk connects an
//! injected unix socket to an abstract socket that migrate-agent listens
//! on (created in the husk's network namespace, where the abstract name
//! lives) and receives each description with SCM_RIGHTS.

use crate::restore::error::RestoreError;
use nix::errno::Errno;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};

/// The listening end, for the whole restore.
pub struct FdChannel {
    listener: UnixListener,
    name: Vec<u8>,
}

fn io_err(pid: i32, call: String) -> impl FnOnce(std::io::Error) -> RestoreError {
    move |e| RestoreError::Injected {
        pid,
        call,
        errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

impl FdChannel {
    /// Listens on a fresh abstract name (`pid` names the restore in errors).
    pub fn listen(pid: i32) -> Result<Self, RestoreError> {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("ferry-restore-{}-{nonce}", std::process::id()).into_bytes();
        let addr = SocketAddr::from_abstract_name(&name)
            .map_err(io_err(pid, "naming the fd channel".into()))?;
        let listener =
            UnixListener::bind_addr(&addr).map_err(io_err(pid, "binding the fd channel".into()))?;
        Ok(FdChannel { listener, name })
    }

    /// The sockaddr_un a husk connects to, and its length.
    pub fn sockaddr(&self) -> (Vec<u8>, u64) {
        let mut addr = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        addr.push(0);
        addr.extend_from_slice(&self.name);
        let len = addr.len() as u64;
        addr.resize(110, 0);
        (addr, len)
    }

    /// Accepts the connection a husk just made (its connect returned, so
    /// it waits in the backlog).
    pub fn accept(&self, pid: i32) -> Result<UnixStream, RestoreError> {
        self.listener
            .accept()
            .map(|(s, _)| s)
            .map_err(io_err(pid, "accepting the husk's fd channel".into()))
    }
}

/// Sends `fd` over `end` with one byte of data.
pub fn send_fd(end: &UnixStream, fd: &OwnedFd, pid: i32) -> Result<(), RestoreError> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(
        end.as_raw_fd(),
        &[IoSlice::new(&[0])],
        &cmsg,
        MsgFlags::empty(),
        None,
    )
    .map(drop)
    .map_err(|errno| RestoreError::Injected {
        pid,
        call: "sendmsg of an fd over the fd channel".into(),
        errno,
    })
}

/// `struct msghdr` for a husk's recvmsg of one byte at `buf` and one fd
/// into the control buffer at `control` (CMSG_SPACE(4) = 24 bytes).
pub fn msghdr(iov: u64, control: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(56);
    m.extend_from_slice(&0u64.to_ne_bytes()); // msg_name
    m.extend_from_slice(&0u64.to_ne_bytes()); // msg_namelen + padding
    m.extend_from_slice(&iov.to_ne_bytes()); // msg_iov
    m.extend_from_slice(&1u64.to_ne_bytes()); // msg_iovlen
    m.extend_from_slice(&control.to_ne_bytes()); // msg_control
    m.extend_from_slice(&CONTROL_LEN.to_ne_bytes()); // msg_controllen
    m.extend_from_slice(&0u64.to_ne_bytes()); // msg_flags + padding
    m
}

/// CMSG_SPACE(sizeof(int)).
pub const CONTROL_LEN: u64 = 24;

/// The fd a received control buffer carries (SOL_SOCKET, SCM_RIGHTS).
pub fn received_fd(control: &[u8]) -> Option<i32> {
    let level = i32::from_ne_bytes(control.get(8..12)?.try_into().ok()?);
    let kind = i32::from_ne_bytes(control.get(12..16)?.try_into().ok()?);
    (level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS)
        .then(|| i32::from_ne_bytes(control[16..20].try_into().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use crate::restore::channel::{msghdr, received_fd, CONTROL_LEN};

    #[test]
    fn control_buffer_layout_matches_the_kernel() {
        let mut c = vec![0u8; CONTROL_LEN as usize];
        c[..8].copy_from_slice(&20u64.to_ne_bytes());
        c[8..12].copy_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
        c[12..16].copy_from_slice(&libc::SCM_RIGHTS.to_ne_bytes());
        c[16..20].copy_from_slice(&7i32.to_ne_bytes());
        assert_eq!(received_fd(&c), Some(7));
        assert_eq!(received_fd(&[0u8; 24]), None);
        assert_eq!(msghdr(1, 2).len(), std::mem::size_of::<libc::msghdr>());
    }
}
