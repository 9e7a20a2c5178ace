//! epoll, inotify and fanotify instances: their registrations, watches
//! and marks, read and checked by inspection (which refuses what a restore could not rebuild
//! exactly, before freezing) and read again while frozen, for the image.

use super::error::CheckpointError;
use crate::image::{EpollImage, FileImage, InotifyImage};
use crate::inspect::{notify, ClassifiedFd};

/// The image of epoll fd `epoll` of the frozen `pid` (status flags
/// `flags`), whose registrations name fds among `fds`.
pub fn epoll(
    pid: i32,
    epoll: &ClassifiedFd,
    fds: &[ClassifiedFd],
    flags: i32,
) -> Result<FileImage, CheckpointError> {
    Ok(FileImage::Epoll(EpollImage {
        flags: flags & !libc::O_ACCMODE,
        targets: notify::epoll_targets(pid, epoll, fds)?,
    }))
}

/// The image of inotify fd `inotify` of the frozen `pid` (status flags
/// `flags`), with its watches.
pub fn inotify(pid: i32, inotify: &ClassifiedFd, flags: i32) -> Result<FileImage, CheckpointError> {
    Ok(FileImage::Inotify(InotifyImage {
        flags: flags & !libc::O_ACCMODE,
        watches: notify::inotify_watches(pid, inotify)?,
    }))
}

/// The image of fanotify fd `fanotify` of the frozen `pid` (status flags
/// `flags`), with its marks.
pub fn fanotify(
    pid: i32,
    fanotify: &ClassifiedFd,
    flags: i32,
) -> Result<FileImage, CheckpointError> {
    Ok(FileImage::Fanotify(notify::fanotify_marks(
        pid, fanotify, flags,
    )?))
}
