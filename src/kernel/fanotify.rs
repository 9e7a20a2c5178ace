//! fanotify_init and fanotify_mark, which nix offers only behind a feature
//! ferry does not build: restore makes a fanotify group again with them.

use nix::errno::Errno;
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// A new fanotify group (fanotify_init with `flags` and `event_flags`).
pub fn fanotify_init(flags: u32, event_flags: u32) -> Result<OwnedFd, Errno> {
    // SAFETY: fanotify_init takes its flags by value and touches no memory
    // of ours.
    let fd = Errno::result(unsafe { libc::fanotify_init(flags, event_flags) })?;
    // SAFETY: `fd` is a new fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// fanotify_mark on group `group`: `flags` (FAN_MARK_ADD ...) with `mask`
/// on the object at `path`.
pub fn fanotify_mark(
    group: BorrowedFd<'_>,
    flags: u32,
    mask: u64,
    path: &str,
) -> Result<(), Errno> {
    let path = CString::new(path).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `path` is a NUL-terminated string that lives across the
    // call; the kernel only reads it.
    Errno::result(unsafe {
        libc::fanotify_mark(
            group.as_raw_fd(),
            flags,
            mask,
            libc::AT_FDCWD,
            path.as_ptr(),
        )
    })
    .map(drop)
}
