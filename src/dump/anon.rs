//! Describes the eventfd, timerfd and signalfd descriptions of a frozen
//! process, from their fdinfo and, for a timer, timerfd_gettime on the
//! description taken out of the process.

use super::error::CheckpointError;
use crate::image::{EventfdImage, FileImage, MemfdImage, SignalfdImage, TimerfdImage};
use crate::{kernel, proc};
use std::os::fd::OwnedFd;

/// The status flags kept in the image: `flags` (fdinfo, without
/// O_CLOEXEC) without the access mode, which these kinds always have O_RDWR.
fn status(flags: i32) -> i32 {
    flags & !libc::O_ACCMODE
}

/// Describes eventfd `fd` of `pid`: its counter and mode.
pub fn eventfd(pid: i32, fd: i32, flags: i32) -> Result<FileImage, CheckpointError> {
    let info = proc::anon::read(pid, fd, proc::anon::parse_eventfd)?;
    Ok(FileImage::Eventfd(EventfdImage {
        count: info.count,
        semaphore: info.semaphore,
        flags: status(flags),
    }))
}

/// Describes signalfd `fd` of `pid`: its mask.
pub fn signalfd(pid: i32, fd: i32, flags: i32) -> Result<FileImage, CheckpointError> {
    Ok(FileImage::Signalfd(SignalfdImage {
        sigmask: proc::anon::read(pid, fd, proc::anon::parse_signalfd)?,
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
        kernel::anon::timerfd_gettime(&taken).map_err(fail("read the times"))?;
    let info = proc::anon::read(pid, fd, proc::anon::parse_timerfd)?;
    let wall_clock = matches!(
        info.clockid,
        libc::CLOCK_REALTIME | libc::CLOCK_REALTIME_ALARM
    );
    let deadline_ns =
        if wall_clock && info.settime_flags & libc::TFD_TIMER_ABSTIME != 0 && remaining_ns != 0 {
            Some(
                kernel::anon::clock_now_ns(info.clockid).map_err(fail("read the clock"))?
                    + remaining_ns,
            )
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

/// Describes memfd `taken` (fd `target` of `pid`, inode `inode`): name,
/// size, seals and the data ranges (SEEK_DATA/SEEK_HOLE skip the holes),
/// unless `same_as` names an earlier description of it, which carries
/// them. Seeking moves the offset shared with the process, so it is put
/// back to `pos` afterwards.
pub fn memfd(
    pid: i32,
    target: &str,
    inode: u64,
    taken: &OwnedFd,
    flags: i32,
    pos: i64,
    same_as: Option<u32>,
) -> Result<FileImage, CheckpointError> {
    use nix::unistd::{lseek, Whence};
    let fail = |what: &str| {
        let what = format!("{what} of {target} of process {pid}");
        move |errno: nix::errno::Errno| CheckpointError::Io {
            what,
            source: errno.into(),
        }
    };
    let name = target
        .trim_start_matches("/memfd:")
        .trim_end_matches(" (deleted)")
        .to_string();
    let stat = nix::sys::stat::fstat(taken).map_err(fail("fstat"))?;
    let size = stat.st_size as u64;
    let seals = nix::fcntl::fcntl(taken, nix::fcntl::FcntlArg::F_GET_SEALS)
        .map_err(fail("read the seals"))?;
    let data = match same_as {
        Some(_) => Vec::new(),
        None => {
            let data = data_ranges(taken, size).map_err(fail("read the data"))?;
            lseek(taken, pos, Whence::SeekSet).map_err(fail("restore the offset"))?;
            data
        }
    };
    Ok(FileImage::Memfd(MemfdImage {
        name,
        inode,
        size,
        data,
        seals,
        flags: status(flags),
        pos,
        mode: stat.st_mode & 0o7777,
        access: flags & libc::O_ACCMODE,
        same_as,
    }))
}

/// The ranges of `file` (of `size` bytes) that hold data, as (offset,
/// bytes): SEEK_DATA/SEEK_HOLE skip the holes. Seeking moves the file's
/// offset.
pub fn data_ranges(file: &OwnedFd, size: u64) -> Result<Vec<(u64, Vec<u8>)>, nix::errno::Errno> {
    use nix::unistd::{lseek, Whence};
    let mut data = Vec::new();
    let mut at = 0i64;
    while (at as u64) < size {
        let start = match lseek(file, at, Whence::SeekData) {
            Err(nix::errno::Errno::ENXIO) => break,
            other => other?,
        };
        let end = lseek(file, start, Whence::SeekHole)?;
        let mut bytes = vec![0u8; (end - start) as usize];
        let mut got = 0;
        while got < bytes.len() {
            let n = nix::sys::uio::pread(file, &mut bytes[got..], start + got as i64)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        bytes.truncate(got);
        data.push((start as u64, bytes));
        at = end;
    }
    Ok(data)
}
