//! Pseudo-terminal pairs: each pair is described once, from its master
//! taken out of the process (its index, lock, packet mode, and the
//! terminal's settings and window size, which the master's ioctls read
//! from its slave), with the owner of the slave's inode read from a slave
//! description. Data queued in the terminal is not carried (CRIU does not
//! carry it either).

use super::error::CheckpointError;
use crate::image::{FileImage, PtyEnd, PtyImage, TtySettings};
use crate::kernel::tty;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

/// Describes fd `fd` of `pid`, an end of pty `index` (its master if
/// `master`, `taken` being our copy of it) opened with `flags`, adding the
/// pair to `ptys` when first seen.
pub(super) fn describe(
    pid: i32,
    fd: i32,
    (index, master): (u32, bool),
    taken: &OwnedFd,
    flags: i32,
    ptys: &mut Vec<PtyImage>,
) -> Result<FileImage, CheckpointError> {
    let fail = |what: &str| {
        let what = format!("read the {what} of fd {fd} of process {pid} (pseudo-terminal {index})");
        move |errno: nix::errno::Errno| CheckpointError::Io {
            what,
            source: errno.into(),
        }
    };
    let pty = match ptys.iter().position(|p| p.index == index) {
        Some(p) => p,
        None => {
            let settings = tty::termios(taken.as_fd()).map_err(fail("terminal settings"))?;
            let window = tty::window_size(taken.as_fd()).map_err(fail("window size"))?;
            ptys.push(PtyImage {
                index,
                locked: false,
                packet_mode: false,
                settings: TtySettings {
                    input_flags: settings.c_iflag,
                    output_flags: settings.c_oflag,
                    control_flags: settings.c_cflag,
                    local_flags: settings.c_lflag,
                    line_discipline: settings.c_line,
                    control_chars: settings.c_cc.to_vec(),
                    input_speed: settings.c_ispeed,
                    output_speed: settings.c_ospeed,
                },
                window: [
                    window.ws_row,
                    window.ws_col,
                    window.ws_xpixel,
                    window.ws_ypixel,
                ],
                slave_owner: None,
            });
            ptys.len() - 1
        }
    };
    let image = &mut ptys[pty];
    if master {
        image.locked = tty::pty_locked(taken.as_fd()).map_err(fail("lock"))?;
        image.packet_mode = tty::packet_mode(taken.as_fd()).map_err(fail("packet mode"))?;
    } else if image.slave_owner.is_none() {
        let meta = std::fs::metadata(format!("/proc/{pid}/fd/{fd}")).map_err(|source| {
            CheckpointError::Io {
                what: format!("examine fd {fd} of process {pid} (pseudo-terminal {index})"),
                source,
            }
        })?;
        image.slave_owner = Some([meta.uid(), meta.gid(), meta.mode() & 0o7777]);
    }
    Ok(FileImage::Pty(PtyEnd {
        pty: pty as u32,
        master,
        flags,
    }))
}
