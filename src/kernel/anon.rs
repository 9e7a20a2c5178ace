//! eventfd, timerfd and signalfd: created here to restore them (then pulled
//! into the husk), and a taken timerfd read with timerfd_gettime.

use nix::errno::Errno;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `TFD_IOC_SET_TICKS`: `_IOW('T', 0, u64)`, which sets a timerfd's count of
/// unread expirations (kernels built with CONFIG_CHECKPOINT_RESTORE).
const TFD_IOC_SET_TICKS: libc::c_ulong = 0x4008_5400;
/// Nanoseconds in a second.
const NANOS: u64 = 1_000_000_000;

fn owned(r: libc::c_long) -> Result<OwnedFd, Errno> {
    let fd = Errno::result(r)? as RawFd;
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates a close-on-exec eventfd with counter 0 (`semaphore`: in
/// EFD_SEMAPHORE mode).
pub fn eventfd(semaphore: bool) -> Result<OwnedFd, Errno> {
    let mut flags = libc::EFD_CLOEXEC;
    if semaphore {
        flags |= libc::EFD_SEMAPHORE;
    }
    // SAFETY: eventfd2 takes two integers and returns a new fd.
    owned(unsafe { libc::syscall(libc::SYS_eventfd2, 0, flags) })
}

/// Creates a close-on-exec signalfd reading the signals of `mask` (bit
/// `n - 1` for signal `n`).
pub fn signalfd(mask: u64) -> Result<OwnedFd, Errno> {
    // SAFETY: the kernel reads 8 bytes (the size passed) of the live mask.
    owned(unsafe {
        libc::syscall(
            libc::SYS_signalfd4,
            -1,
            &mask as *const u64,
            std::mem::size_of::<u64>(),
            libc::SFD_CLOEXEC,
        )
    })
}

/// Creates a close-on-exec, disarmed timerfd on clock `clockid`.
pub fn timerfd_create(clockid: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: timerfd_create takes two integers and returns a new fd.
    owned(unsafe { libc::syscall(libc::SYS_timerfd_create, clockid, libc::TFD_CLOEXEC) })
}

fn to_ns(ts: &libc::timespec) -> u64 {
    ts.tv_sec as u64 * NANOS + ts.tv_nsec as u64
}

fn to_timespec(ns: u64) -> libc::timespec {
    libc::timespec {
        tv_sec: (ns / NANOS) as libc::time_t,
        tv_nsec: (ns % NANOS) as libc::c_long,
    }
}

/// timerfd_gettime: (time to the next expiration, interval) in
/// nanoseconds. The kernel first accounts the expirations of a periodic
/// timer that fired since its last read into its ticks.
pub fn timerfd_gettime(fd: &OwnedFd) -> Result<(u64, u64), Errno> {
    let zero = to_timespec(0);
    let mut cur = libc::itimerspec {
        it_interval: zero,
        it_value: zero,
    };
    // SAFETY: the kernel writes one itimerspec into cur.
    let r = unsafe { libc::syscall(libc::SYS_timerfd_gettime, fd.as_raw_fd(), &mut cur) };
    Errno::result(r)?;
    Ok((to_ns(&cur.it_value), to_ns(&cur.it_interval)))
}

/// timerfd_settime with `flags` (TFD_TIMER_*), first expiration `value_ns`
/// (relative, or absolute with TFD_TIMER_ABSTIME) and period `interval_ns`.
pub fn timerfd_settime(
    fd: &OwnedFd,
    flags: i32,
    value_ns: u64,
    interval_ns: u64,
) -> Result<(), Errno> {
    let new = libc::itimerspec {
        it_interval: to_timespec(interval_ns),
        it_value: to_timespec(value_ns),
    };
    // SAFETY: the kernel reads one itimerspec; the old value is not asked for.
    let r = unsafe {
        libc::syscall(
            libc::SYS_timerfd_settime,
            fd.as_raw_fd(),
            flags,
            &new,
            std::ptr::null_mut::<libc::itimerspec>(),
        )
    };
    Errno::result(r).map(drop)
}

/// Sets a timerfd's count of unread expirations (TFD_IOC_SET_TICKS), which
/// its next read returns; `ticks` must not be 0.
pub fn timerfd_set_ticks(fd: &OwnedFd, ticks: u64) -> Result<(), Errno> {
    // SAFETY: the kernel reads one u64 from the live `ticks`.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), TFD_IOC_SET_TICKS, &ticks as *const u64) };
    Errno::result(r).map(drop)
}

/// The current time of clock `clockid` in nanoseconds.
pub fn clock_now_ns(clockid: i32) -> Result<u64, Errno> {
    let mut ts = to_timespec(0);
    // SAFETY: the kernel writes one timespec into ts.
    let r = unsafe { libc::clock_gettime(clockid, &mut ts) };
    Errno::result(r)?;
    Ok(to_ns(&ts))
}
