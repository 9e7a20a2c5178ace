//! The owner of a description's signal-driven I/O (F_GETOWN_EX,
//! F_GETSIG), which nix cannot read: checkpoint reads it from the fd it
//! took out of the process.

use super::abi::{FOwnerEx, F_GETOWN_EX, F_GETSIG};
use nix::errno::Errno;
use std::os::fd::{AsRawFd, BorrowedFd};

/// fcntl F_GETOWN_EX and F_GETSIG on `fd`: who gets its description's
/// SIGIO and SIGURG signals (PIDs as our PID namespace sees them) and
/// which signal is sent (0: SIGIO).
pub fn file_owner(fd: BorrowedFd<'_>) -> Result<(FOwnerEx, i32), Errno> {
    let mut owner = FOwnerEx::default();
    // SAFETY: F_GETOWN_EX writes one struct f_owner_ex where the pointer
    // points, and `owner` is one (its layout is the kernel's).
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), F_GETOWN_EX, &mut owner as *mut FOwnerEx) };
    Errno::result(r)?;
    // SAFETY: F_GETSIG takes no argument and touches no memory of ours.
    let signal = Errno::result(unsafe { libc::fcntl(fd.as_raw_fd(), F_GETSIG) })?;
    Ok((owner, signal))
}
