//! File locks, taken again from inside the husk once its fds are in
//! place and before it runs: a POSIX lock by the process that held it
//! (this husk), an OFD or flock() lock once on its description (the image
//! records it with the first process holding that description).

use super::process::{Husk, STRUCT_OFF};
use crate::image::{FileLock, FileLockKind};
use crate::kernel::abi::{Flock, IntoBytes};
use crate::restore::error::RestoreError;

impl<'a> Husk<'a> {
    /// Takes every lock of the image's process through its fd. Nothing in
    /// the tree held a conflicting lock, so each is granted at once
    /// (F_SETLK, LOCK_NB): a failure means something outside the tree
    /// holds the file locked now.
    pub(super) fn restore_file_locks(&mut self) -> Result<(), RestoreError> {
        for lock in &self.image.file_locks {
            self.take_lock(lock)?;
        }
        Ok(())
    }

    /// Takes `lock` through its fd.
    fn take_lock(&mut self, lock: &FileLock) -> Result<(), RestoreError> {
        let FileLock {
            fd,
            kind,
            write,
            start,
            len,
        } = *lock;
        let access = if write { "write" } else { "read" };
        let (cmd, name) = match kind {
            FileLockKind::Flock => {
                let op = if write { libc::LOCK_EX } else { libc::LOCK_SH };
                return self.sys(
                    0,
                    |r| r.flock(fd, op | libc::LOCK_NB),
                    || format!("flock() {access} lock of fd {fd}"),
                );
            }
            FileLockKind::Posix => (libc::F_SETLK, "POSIX"),
            FileLockKind::Ofd => (libc::F_OFD_SETLK, "OFD"),
        };
        let flock = Flock {
            kind: (if write { libc::F_WRLCK } else { libc::F_RDLCK }) as i16,
            whence: libc::SEEK_SET as i16,
            start: start as i64,
            len: len as i64,
            ..Flock::default()
        };
        let at = self.put(STRUCT_OFF, flock.as_bytes())?;
        self.sys(
            0,
            |r| r.fcntl_lock(fd, cmd, at),
            || format!("{name} {access} lock of bytes {start}+{len} of fd {fd}"),
        )
    }
}
