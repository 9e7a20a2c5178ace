//! The model of terminals: pseudo-terminal pairs and the descriptions of
//! their ends ([`FileImage::Pty`](crate::image::model::FileImage::Pty)).

use serde::{Deserialize, Serialize};

/// An open file description of one end of a pseudo-terminal pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtyEnd {
    /// Index into [`Checkpoint::ptys`](crate::image::model::Checkpoint::ptys).
    pub pty: u32,
    /// The master end (an open of /dev/ptmx), else the slave
    /// (/dev/pts/N).
    pub master: bool,
    /// The description's access mode and status flags (O_NONBLOCK ...),
    /// without O_CLOEXEC.
    pub flags: i32,
}

/// A pseudo-terminal pair whose master the tree holds: made again by
/// opening /dev/ptmx in the restored tree's mount namespace, each slave
/// description opened from the master (TIOCGPTPEER), so the restored pair
/// may have another index (another /dev/pts/N). Data queued in it is not
/// carried (CRIU does not carry it either).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtyImage {
    /// Its index at checkpoint (N of /dev/pts/N).
    pub index: u32,
    /// The slave was locked (unlockpt not called yet, TIOCGPTLCK).
    pub locked: bool,
    /// The master was in packet mode (TIOCPKT).
    pub packet_mode: bool,
    /// The terminal's settings.
    pub settings: TtySettings,
    /// Its window size as (rows, columns, x pixels, y pixels).
    pub window: [u16; 4],
    /// The owner, group and permission bits of the slave's inode
    /// (grantpt or fchown set them), when a slave description was
    /// described.
    pub slave_owner: Option<[u32; 3]>,
}

/// A terminal's settings (struct termios).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtySettings {
    /// c_iflag.
    pub input_flags: u32,
    /// c_oflag.
    pub output_flags: u32,
    /// c_cflag.
    pub control_flags: u32,
    /// c_lflag.
    pub local_flags: u32,
    /// c_line: the line discipline.
    pub line_discipline: u8,
    /// c_cc: the control characters.
    pub control_chars: Vec<u8>,
    /// The input speed.
    pub input_speed: u32,
    /// The output speed.
    pub output_speed: u32,
}
