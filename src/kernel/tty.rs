//! Pseudo-terminal ioctls nix lacks: the index of a pty master
//! (TIOCGPTN), its lock (TIOCGPTLCK, TIOCSPTLCK), packet mode (TIOCGPKT,
//! TIOCPKT), opening its slave from the master (TIOCGPTPEER), the window
//! size and the terminal's settings (termios). Checkpoint reads them from
//! the master it took out of the process; restore sets them on the master
//! it opened. On a pty master, the termios and window size ioctls act on
//! the slave's settings, which are the terminal's.

use nix::errno::Errno;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// ioctl(TIOCGPTN, TIOCGPTLCK, TIOCGPKT) on `fd`: reads one int.
fn get_int(fd: BorrowedFd<'_>, request: libc::Ioctl) -> Result<i32, Errno> {
    let mut value: libc::c_int = 0;
    // SAFETY: these requests write one int where the pointer points, and
    // `value` is one.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), request, &mut value as *mut libc::c_int) })?;
    Ok(value)
}

/// ioctl(TIOCSPTLCK, TIOCPKT) on `fd`: passes one int by pointer.
fn set_int(fd: BorrowedFd<'_>, request: libc::Ioctl, value: i32) -> Result<(), Errno> {
    let value: libc::c_int = value;
    // SAFETY: these requests read one int where the pointer points, and
    // `value` is one.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), request, &value as *const libc::c_int) })
        .map(drop)
}

/// The index of the pty whose master is `fd` (N of /dev/pts/N).
pub fn pty_index(fd: BorrowedFd<'_>) -> Result<u32, Errno> {
    get_int(fd, libc::TIOCGPTN).map(|n| n as u32)
}

/// Whether the slave of master `fd` is locked (unlockpt not called yet).
pub fn pty_locked(fd: BorrowedFd<'_>) -> Result<bool, Errno> {
    get_int(fd, libc::TIOCGPTLCK).map(|n| n != 0)
}

/// Locks or unlocks the slave of master `fd`.
pub fn set_pty_locked(fd: BorrowedFd<'_>, locked: bool) -> Result<(), Errno> {
    set_int(fd, libc::TIOCSPTLCK, i32::from(locked))
}

/// Whether master `fd` is in packet mode (TIOCPKT).
pub fn packet_mode(fd: BorrowedFd<'_>) -> Result<bool, Errno> {
    get_int(fd, libc::TIOCGPKT).map(|n| n != 0)
}

/// Turns packet mode of master `fd` on or off.
pub fn set_packet_mode(fd: BorrowedFd<'_>, on: bool) -> Result<(), Errno> {
    set_int(fd, libc::TIOCPKT, i32::from(on))
}

/// A new open file description of the slave of master `fd`, opened with
/// `flags` (an access mode, O_NOCTTY ...), whatever path the slave has in
/// this mount namespace.
pub fn open_pty_peer(fd: BorrowedFd<'_>, flags: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: TIOCGPTPEER takes its open flags by value and touches no
    // memory of ours; it returns a new fd, which we own from here on.
    let peer = Errno::result(unsafe {
        libc::ioctl(fd.as_raw_fd(), libc::TIOCGPTPEER, flags as libc::c_ulong)
    })?;
    // SAFETY: `peer` is a new fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(peer) })
}

/// The window size of the terminal `fd` is on.
pub fn window_size(fd: BorrowedFd<'_>) -> Result<libc::winsize, Errno> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one struct winsize where the pointer
    // points, and `size` is one.
    Errno::result(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TIOCGWINSZ,
            &mut size as *mut libc::winsize,
        )
    })?;
    Ok(size)
}

/// Sets the window size of the terminal `fd` is on.
pub fn set_window_size(fd: BorrowedFd<'_>, size: &libc::winsize) -> Result<(), Errno> {
    // SAFETY: TIOCSWINSZ reads one struct winsize where the pointer
    // points, and `size` is one.
    Errno::result(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TIOCSWINSZ,
            size as *const libc::winsize,
        )
    })
    .map(drop)
}

/// The settings (termios) of the terminal `fd` is on.
pub fn termios(fd: BorrowedFd<'_>) -> Result<libc::termios, Errno> {
    // SAFETY: termios is plain integers and arrays, for which all zeroes
    // is a valid value.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: tcgetattr writes one struct termios where the pointer
    // points, and `t` is one.
    Errno::result(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) })?;
    Ok(t)
}

/// Sets the settings (termios) of the terminal `fd` is on, at once.
pub fn set_termios(fd: BorrowedFd<'_>, t: &libc::termios) -> Result<(), Errno> {
    // SAFETY: tcsetattr reads one struct termios where the pointer points,
    // and `t` is one.
    Errno::result(unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, t) }).map(drop)
}
