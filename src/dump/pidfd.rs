//! pidfds: which process each refers to, as the tree's PID namespace names
//! it (inspection refused those of processes outside the tree).

use super::error::CheckpointError;
use crate::image::{FileImage, PidfdImage};
use crate::proc;
use std::os::unix::fs::MetadataExt;

/// The image of pidfd `fd` of the frozen `pid` (status flags `flags`),
/// which refers to a live process when `alive`.
pub fn describe(pid: i32, fd: i32, alive: bool, flags: i32) -> Result<FileImage, CheckpointError> {
    let target = if alive {
        proc::pidfd::read_pidfd(pid, fd)?.ns_pid
    } else {
        None
    };
    let inode = std::fs::metadata(format!("/proc/{pid}/fd/{fd}"))
        .map_err(|source| CheckpointError::Io {
            what: format!("examine pidfd {fd} of process {pid}"),
            source,
        })?
        .ino();
    Ok(FileImage::Pidfd(PidfdImage {
        pid: target,
        flags: flags & !libc::O_ACCMODE,
        inode,
    }))
}
