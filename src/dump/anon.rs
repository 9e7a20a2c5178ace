//! Describes the eventfd, timerfd and signalfd descriptions of a frozen
//! process, from their fdinfo and, for a timer, timerfd_gettime on the
//! description taken out of the process.

use super::CheckpointError;
use crate::image::{EventfdImage, FileImage, SignalfdImage, TimerfdImage};
use crate::kernel::{self, anonfd};
use crate::proc::anon_fdinfo;
use std::os::fd::OwnedFd;

/// The status flags kept in the image: `flags` (fdinfo, without
/// O_CLOEXEC) without the access mode, which these kinds always have O_RDWR.
fn status(flags: i32) -> i32 {
    flags & !libc::O_ACCMODE
}

/// Describes eventfd `fd` of `pid`: its counter and mode.
pub fn eventfd(pid: i32, fd: i32, flags: i32) -> Result<FileImage, CheckpointError> {
    let info = anon_fdinfo::read(pid, fd, anon_fdinfo::parse_eventfd)?;
    Ok(FileImage::Eventfd(EventfdImage {
        count: info.count,
        semaphore: info.semaphore,
        flags: status(flags),
    }))
}

/// Describes signalfd `fd` of `pid`: its mask.
pub fn signalfd(pid: i32, fd: i32, flags: i32) -> Result<FileImage, CheckpointError> {
    Ok(FileImage::Signalfd(SignalfdImage {
        sigmask: anon_fdinfo::read(pid, fd, anon_fdinfo::parse_signalfd)?,
        flags: status(flags),
    }))
}

/// Describes timerfd `fd` of `pid`: timerfd_gettime first (it accounts the
/// expirations a periodic timer had since its last read into its ticks),
/// then the clock, ticks and settime flags from fdinfo.
pub fn timerfd(
    pid: i32,
    pidfd: &OwnedFd,
    fd: i32,
    flags: i32,
) -> Result<FileImage, CheckpointError> {
    let fail = |what: &str| {
        let what = format!("{what} of timerfd {fd} of process {pid}");
        move |errno: nix::errno::Errno| CheckpointError::Io {
            what,
            source: errno.into(),
        }
    };
    let taken = kernel::pidfd_getfd(pidfd, fd).map_err(fail("take"))?;
    let (remaining_ns, interval_ns) =
        anonfd::timerfd_gettime(&taken).map_err(fail("read the times"))?;
    let info = anon_fdinfo::read(pid, fd, anon_fdinfo::parse_timerfd)?;
    let wall_clock = matches!(
        info.clockid,
        libc::CLOCK_REALTIME | libc::CLOCK_REALTIME_ALARM
    );
    let deadline_ns =
        if wall_clock && info.settime_flags & libc::TFD_TIMER_ABSTIME != 0 && remaining_ns != 0 {
            Some(anonfd::clock_now_ns(info.clockid).map_err(fail("read the clock"))? + remaining_ns)
        } else {
            None
        };
    Ok(FileImage::Timerfd(TimerfdImage {
        clockid: info.clockid,
        flags: status(flags),
        settime_flags: info.settime_flags,
        ticks: info.ticks,
        remaining_ns,
        interval_ns,
        deadline_ns,
    }))
}
