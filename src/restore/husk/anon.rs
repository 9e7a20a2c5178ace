//! Recreates eventfd, timerfd and signalfd descriptions in migrate-agent,
//! from where the husk takes them with pidfd_getfd. None of them belongs to
//! the process that creates it: a signalfd reads the signals of whoever
//! reads it.

use crate::image::{EventfdImage, MemfdImage, SignalfdImage, TimerfdImage};
use crate::kernel::anon;
use crate::restore::error::RestoreError;
use nix::errno::Errno;
use std::os::fd::OwnedFd;

fn fail(pid: i32, call: String) -> impl FnOnce(Errno) -> RestoreError {
    move |errno| RestoreError::Injected { pid, call, errno }
}

/// An eventfd in the image's mode holding the image's counter.
pub fn create_eventfd(pid: i32, e: &EventfdImage) -> Result<OwnedFd, RestoreError> {
    let fd = anon::eventfd(e.semaphore).map_err(fail(pid, "eventfd".into()))?;
    if e.count != 0 {
        // The counter is 64 bits wide, more than eventfd's initial value.
        nix::unistd::write(&fd, &e.count.to_ne_bytes()).map_err(fail(
            pid,
            format!("setting an eventfd's counter to {}", e.count),
        ))?;
    }
    Ok(fd)
}

/// A signalfd on the image's mask.
pub fn create_signalfd(pid: i32, s: &SignalfdImage) -> Result<OwnedFd, RestoreError> {
    anon::signalfd(s.sigmask).map_err(fail(pid, format!("signalfd on mask {:#x}", s.sigmask)))
}

/// A timerfd on the image's clock, re-armed with its remaining time (an
/// absolute wall-clock expiry stays absolute; other TFD_TIMER_ABSTIME timers
/// expire `remaining_ns` after now, on their clock) and interval, holding
/// its unread expirations.
pub fn create_timerfd(pid: i32, t: &TimerfdImage) -> Result<OwnedFd, RestoreError> {
    let what = |op: &str| format!("{op} of a timerfd on clock {}", t.clockid);
    let fd = anon::timerfd_create(t.clockid).map_err(fail(pid, what("timerfd_create")))?;
    // A periodic timer is always armed; one whose expiry is due now reads
    // as 0 remaining, which would disarm it.
    let remaining = if t.interval_ns != 0 {
        t.remaining_ns.max(1)
    } else {
        t.remaining_ns
    };
    if remaining != 0 {
        let value = match t.deadline_ns {
            Some(at) => at,
            None if t.settime_flags & libc::TFD_TIMER_ABSTIME != 0 => {
                anon::clock_now_ns(t.clockid).map_err(fail(pid, what("clock_gettime")))? + remaining
            }
            None => remaining,
        };
        anon::timerfd_settime(&fd, t.settime_flags, value, t.interval_ns).map_err(fail(
            pid,
            format!(
                "{} to {value} ns (flags {:#o}), interval {} ns",
                what("timerfd_settime"),
                t.settime_flags,
                t.interval_ns
            ),
        ))?;
    }
    // After settime, which clears them.
    if t.ticks != 0 {
        anon::timerfd_set_ticks(&fd, t.ticks).map_err(fail(
            pid,
            format!("{} to {}", what("TFD_IOC_SET_TICKS"), t.ticks),
        ))?;
    }
    Ok(fd)
}

/// A memfd with the image's name, size, data, offset and seals (added
/// last, so that they do not stop the refill); created without
/// MFD_ALLOW_SEALING when the image's seals are F_SEAL_SEAL alone.
pub fn create_memfd(pid: i32, m: &MemfdImage) -> Result<OwnedFd, RestoreError> {
    use nix::fcntl::{fcntl, FcntlArg, SealFlag};
    use nix::sys::memfd::{memfd_create, MFdFlags};
    let what = |op: &str| format!("{op} of memfd {}", m.name);
    let mut create = MFdFlags::MFD_CLOEXEC;
    if m.seals != libc::F_SEAL_SEAL {
        create |= MFdFlags::MFD_ALLOW_SEALING;
    }
    let name = std::ffi::CString::new(m.name.as_str()).map_err(|_| RestoreError::Unsupported {
        pid,
        why: format!("the memfd name {:?} holds a NUL byte", m.name),
    })?;
    let fd = memfd_create(name.as_c_str(), create).map_err(fail(pid, what("memfd_create")))?;
    nix::sys::stat::fchmod(&fd, nix::sys::stat::Mode::from_bits_retain(m.mode))
        .map_err(fail(pid, what("fchmod")))?;
    nix::unistd::ftruncate(&fd, m.size as i64).map_err(fail(pid, what("ftruncate")))?;
    for (offset, bytes) in &m.data {
        let mut written = 0;
        while written < bytes.len() {
            written +=
                nix::sys::uio::pwrite(&fd, &bytes[written..], (offset + written as u64) as i64)
                    .map_err(fail(pid, what("pwrite")))?;
        }
    }
    nix::unistd::lseek(&fd, m.pos, nix::unistd::Whence::SeekSet)
        .map_err(fail(pid, what("lseek")))?;
    if m.seals != libc::F_SEAL_SEAL && m.seals != 0 {
        fcntl(
            &fd,
            FcntlArg::F_ADD_SEALS(SealFlag::from_bits_truncate(m.seals)),
        )
        .map_err(fail(pid, what("F_ADD_SEALS")))?;
    }
    if m.access != libc::O_RDWR {
        // memfd_create opens read-write: the description the process
        // had was opened again through /proc with less.
        return reopen_memfd(pid, &fd, m);
    }
    Ok(fd)
}

/// Opens memfd `first` (ours) again through /proc/self/fd, as the process
/// did: a new description of the same memfd, with the access mode and
/// offset of `m`.
pub fn reopen_memfd(pid: i32, first: &OwnedFd, m: &MemfdImage) -> Result<OwnedFd, RestoreError> {
    use std::os::fd::AsRawFd;
    let what = |op: &str| format!("{op} of memfd {}", m.name);
    let fd = nix::fcntl::open(
        format!("/proc/self/fd/{}", first.as_raw_fd()).as_str(),
        nix::fcntl::OFlag::from_bits_retain(m.access | libc::O_CLOEXEC),
        nix::sys::stat::Mode::empty(),
    )
    .map_err(fail(pid, what("reopening through /proc/self/fd")))?;
    nix::unistd::lseek(&fd, m.pos, nix::unistd::Whence::SeekSet)
        .map_err(fail(pid, what("lseek")))?;
    Ok(fd)
}
