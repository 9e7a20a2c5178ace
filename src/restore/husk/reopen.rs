//! Reopening a file by path inside the husk: the flags it is opened with
//! and the position it is moved to, for the files of the fd table and
//! the FIFOs.

use super::process::Husk;
use crate::image::{OpenFile, PathFileType};
use crate::restore::error::RestoreError;

/// The flags to reopen a description with by path, from its saved open
/// flags: O_CLOEXEC (the fd is parked first, then installed with its own
/// FD_CLOEXEC); without the flags that act only at creation, and without
/// O_ASYNC, which open() records without arming the signals (F_SETFL
/// cannot arm them afterwards while the flag shows as set):
/// `Husk::restore_file_owners` sets it. A file made with O_TMPFILE
/// (O_DIRECTORY with a bit of its own) is reopened as the file it is.
pub(super) fn reopen_flags(flags: i32) -> i32 {
    let mut once = libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY | libc::O_ASYNC;
    if flags & libc::O_TMPFILE & !libc::O_DIRECTORY != 0 {
        once |= libc::O_TMPFILE;
    }
    (flags & !once) | libc::O_CLOEXEC
}

impl Husk<'_> {
    /// Opens `f` by path inside the husk; returns its fd there.
    pub(super) fn open_path(&mut self, f: &OpenFile) -> Result<i32, RestoreError> {
        let flags = reopen_flags(f.flags);
        let addr = self.put_str(&f.path)?;
        self.sys(
            0,
            |r| r.open(addr, flags),
            || format!("reopening {} (flags {:#o})", f.path, flags),
        )
    }

    /// Moves `fd`, `f` opened again, to its file position (a fresh open
    /// is at 0 already, and an O_PATH fd or a device has none).
    pub(super) fn seek_reopened(&mut self, fd: i32, f: &OpenFile) -> Result<(), RestoreError> {
        if f.file_type == PathFileType::CharDevice || f.flags & libc::O_PATH != 0 || f.pos == 0 {
            return Ok(());
        }
        self.sys(
            0,
            |r| r.seek_to(fd, f.pos),
            || format!("lseek of {} to {}", f.path, f.pos),
        )
    }
}
