//! Terminals: which character devices that are terminals ferry carries.
//! A pseudo-terminal pair is carried when the tree holds its master (its
//! slave alone, such as the terminal a shell runs on, belongs to whoever
//! holds the master: refused); the console and virtual terminals are
//! reopened by path.

use super::error::InspectError;
use super::fd_class::{ClassifiedFd, FdClass};
use crate::image::PathFileType;
use crate::proc;

/// The device numbers of a pty master: /dev/ptmx, and each devpts
/// instance's ptmx.
const PTMX: (u32, u32) = (5, 2);
/// The major number of pty slaves (/dev/pts/N is 136:N).
const PTY_SLAVE_MAJOR: u32 = 136;
/// The device numbers of /dev/console.
const CONSOLE: (u32, u32) = (5, 1);
/// The major number of virtual terminals (/dev/ttyN is 4:N, N < 64).
const VT_MAJOR: u32 = 4;

/// How fd `fd` of `pid`, a character device `rdev` at `target`, is
/// carried if it is a terminal ferry carries; None for any other device.
pub(super) fn classify(
    pid: i32,
    fd: i32,
    rdev: u64,
    target: &str,
) -> Result<Option<FdClass>, InspectError> {
    let device = (libc::major(rdev), libc::minor(rdev));
    if device == PTMX {
        let index =
            proc::read_fdinfo(pid, fd)?
                .tty_index
                .ok_or_else(|| InspectError::UnsupportedFd {
                    pid,
                    fd,
                    kind: "pseudo-terminal master whose fdinfo names no tty-index".into(),
                    target: target.to_string(),
                })?;
        return Ok(Some(FdClass::Pty {
            index,
            master: true,
        }));
    }
    if device.0 == PTY_SLAVE_MAJOR {
        return Ok(Some(FdClass::Pty {
            index: device.1,
            master: false,
        }));
    }
    let reopenable = device == CONSOLE || (device.0 == VT_MAJOR && device.1 < 64);
    Ok(reopenable.then_some(FdClass::Path(PathFileType::CharDevice)))
}

/// Refuses each pty slave of the tree (`tree`: every process with its
/// classified fds) whose master no process of the tree holds: the
/// terminal belongs to a process outside the checkpoint.
pub(super) fn check_pty_masters(tree: &[(i32, Vec<ClassifiedFd>)]) -> Vec<InspectError> {
    let all = || {
        tree.iter()
            .flat_map(|(pid, fds)| fds.iter().map(move |c| (*pid, c)))
    };
    let master_held = |index: u32| {
        all().any(|(_, c)| {
            c.class
                == FdClass::Pty {
                    index,
                    master: true,
                }
        })
    };
    all()
        .filter_map(|(pid, c)| match c.class {
            FdClass::Pty {
                index,
                master: false,
            } if !master_held(index) => Some(InspectError::UnsupportedFd {
                pid,
                fd: c.fd,
                kind: format!(
                    "terminal (pseudo-terminal {index}) whose master is held outside the checkpointed process tree"
                ),
                target: c.target.clone(),
            }),
            _ => None,
        })
        .collect()
}
