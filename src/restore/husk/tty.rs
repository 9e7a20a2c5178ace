//! Recreates an image's pseudo-terminal pairs here in migrate-agent, to
//! be pulled into the husks like pipes: each master is a new open of
//! /dev/ptmx in the restored root's mount namespace (so in its devpts
//! instance), given the terminal's settings, window size and packet mode,
//! its slave's owner and mode; each slave description is opened from its
//! master (TIOCGPTPEER), so whichever index the new pair has, the slave
//! is its own. O_NOCTTY: a slave does not become a controlling terminal.

use crate::image::{Checkpoint, FileImage, PtyImage};
use crate::kernel::tty;
use crate::restore::error::RestoreError;
use nix::fcntl::OFlag;
use nix::unistd::Pid;
use std::os::fd::{AsFd, OwnedFd};

/// Creates every pseudo-terminal pair of the tree `ck` (`husk`: the
/// restored root's husk, in whose mount namespace /dev/ptmx is opened),
/// putting our fd of each of its descriptions at the index of that
/// description in `ours`.
pub(super) fn create(
    ck: &Checkpoint,
    husk: Pid,
    ours: &mut [Option<OwnedFd>],
) -> Result<(), RestoreError> {
    let pid = ck.root().map_or(0, |p| p.pid);
    let masters = ck
        .ptys
        .iter()
        .map(|p| open_master(pid, husk, p))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, file) in ck.files.iter().enumerate() {
        let FileImage::Pty(end) = file else { continue };
        let (master, image) = masters
            .get(end.pty as usize)
            .zip(ck.ptys.get(end.pty as usize))
            .ok_or_else(|| RestoreError::Unsupported {
                pid,
                why: format!(
                    "file #{i} is an end of pseudo-terminal #{}, which the image lacks",
                    end.pty
                ),
            })?;
        let fail = |call: String| move |errno| RestoreError::Injected { pid, call, errno };
        ours[i] = Some(if end.master {
            master.try_clone().map_err(|e| RestoreError::Injected {
                pid,
                call: format!("dup of the master of pseudo-terminal {}", image.index),
                errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })?
        } else {
            let access = end.flags & libc::O_ACCMODE;
            tty::open_pty_peer(master.as_fd(), access | libc::O_NOCTTY | libc::O_CLOEXEC).map_err(
                fail(format!(
                    "opening the slave of pseudo-terminal {} from its master (TIOCGPTPEER)",
                    image.index
                )),
            )?
        });
    }
    for (master, image) in masters.iter().zip(&ck.ptys) {
        if image.locked {
            tty::set_pty_locked(master.as_fd(), true).map_err(|errno| RestoreError::Injected {
                pid,
                call: format!("locking the slave of pseudo-terminal {} again", image.index),
                errno,
            })?;
        }
    }
    Ok(())
}

/// A new master for pty `p`, with its slave unlocked (the slave
/// descriptions are opened from it next) and the pair's settings, window
/// size, packet mode and the slave's owner and mode as in the image
/// (`pid` names the restore in errors).
fn open_master(pid: i32, husk: Pid, p: &PtyImage) -> Result<OwnedFd, RestoreError> {
    let fail = |call: &str| {
        let call = format!("{call} of pseudo-terminal {} (restored)", p.index);
        move |errno| RestoreError::Injected { pid, call, errno }
    };
    let master = nix::fcntl::open(
        format!("/proc/{husk}/root/dev/ptmx").as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(fail("opening /dev/ptmx for the master"))?;
    let m = master.as_fd();
    tty::set_pty_locked(m, false).map_err(fail("unlocking the slave (TIOCSPTLCK)"))?;
    let s = &p.settings;
    let mut settings = tty::termios(m).map_err(fail("reading the terminal settings"))?;
    settings.c_iflag = s.input_flags;
    settings.c_oflag = s.output_flags;
    settings.c_cflag = s.control_flags;
    settings.c_lflag = s.local_flags;
    settings.c_line = s.line_discipline;
    let chars = s.control_chars.len().min(settings.c_cc.len());
    settings.c_cc[..chars].copy_from_slice(&s.control_chars[..chars]);
    settings.c_ispeed = s.input_speed;
    settings.c_ospeed = s.output_speed;
    tty::set_termios(m, &settings).map_err(fail("setting the terminal settings"))?;
    let [ws_row, ws_col, ws_xpixel, ws_ypixel] = p.window;
    let window = libc::winsize {
        ws_row,
        ws_col,
        ws_xpixel,
        ws_ypixel,
    };
    tty::set_window_size(m, &window).map_err(fail("setting the window size"))?;
    tty::set_packet_mode(m, p.packet_mode).map_err(fail("setting packet mode"))?;
    if let Some([uid, gid, mode]) = p.slave_owner {
        let slave = tty::open_pty_peer(m, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC)
            .map_err(fail("opening the slave (TIOCGPTPEER)"))?;
        nix::unistd::fchown(
            slave.as_fd(),
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(fail(&format!("fchown of the slave to {uid}:{gid}")))?;
        nix::sys::stat::fchmod(
            slave.as_fd(),
            nix::sys::stat::Mode::from_bits_truncate(mode),
        )
        .map_err(fail(&format!("fchmod of the slave to {mode:#o}")))?;
    }
    Ok(master)
}
