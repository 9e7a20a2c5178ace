//! The fdinfo of epoll and inotify fds, and the mount table that turns an
//! inotify watch's file handle back into a path.

use super::{parse_err, read_text, ProcError};
use crate::image::EpollTarget;
use std::path::{Path, PathBuf};

/// The `key:value` fields of one fdinfo line. A value may be separated from
/// its key by spaces ("tfd:        5").
fn fields(line: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut tokens = line.split_whitespace();
    while let Some(token) = tokens.next() {
        if let Some((key, value)) = token.split_once(':') {
            let value = if value.is_empty() {
                tokens.next().unwrap_or("")
            } else {
                value
            };
            out.push((key, value));
        }
    }
    out
}

/// The hexadecimal field `key` of a line, which must be there.
fn hex_field(path: &Path, line: &str, key: &str) -> Result<u64, ProcError> {
    let value = fields(line)
        .into_iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .ok_or_else(|| parse_err(path, format!("no {key} in {line:?}")))?;
    u64::from_str_radix(value, 16).map_err(|_| parse_err(path, format!("bad {key} in {line:?}")))
}

/// The registrations an epoll fd's fdinfo lists, one `tfd:` line each (the
/// fd in decimal, events and data in hexadecimal).
pub fn parse_epoll_targets(path: &Path, text: &str) -> Result<Vec<EpollTarget>, ProcError> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("tfd:")) {
        let fd = fields(line)[0]
            .1
            .parse()
            .map_err(|_| parse_err(path, format!("bad tfd in {line:?}")))?;
        out.push(EpollTarget {
            fd,
            events: hex_field(path, line, "events")? as u32,
            data: hex_field(path, line, "data")?,
            via: None,
        });
    }
    Ok(out)
}

/// One watch as an inotify fd's fdinfo lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InotifyMark {
    /// Watch descriptor.
    pub wd: i32,
    /// Inode number of the watched file.
    pub ino: u64,
    /// The kernel's device number of its filesystem (major << 20 | minor).
    pub sdev: u32,
    /// Event mask with IN_ONESHOT / IN_EXCL_UNLINK.
    pub mask: u32,
    /// The file handle type, for open_by_handle_at.
    pub handle_type: i32,
    /// The file handle bytes; empty when the filesystem has none.
    pub handle: Vec<u8>,
}

/// The watches an inotify fd's fdinfo lists, one `inotify wd:` line each
/// (every number in hexadecimal).
pub fn parse_inotify_marks(path: &Path, text: &str) -> Result<Vec<InotifyMark>, ProcError> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("inotify ")) {
        let (handle_type, handle) = file_handle(path, line)?;
        out.push(InotifyMark {
            wd: hex_field(path, line, "wd")? as i32,
            ino: hex_field(path, line, "ino")?,
            sdev: hex_field(path, line, "sdev")? as u32,
            mask: hex_field(path, line, "mask")? as u32,
            handle_type,
            handle,
        });
    }
    Ok(out)
}

/// Reads the watches of inotify fd `fd` of `pid`.
pub fn read_inotify_marks(pid: i32, fd: i32) -> Result<Vec<InotifyMark>, ProcError> {
    let (path, text) = read_text(PathBuf::from(format!("/proc/{pid}/fdinfo/{fd}")))?;
    parse_inotify_marks(&path, &text)
}

/// Reads the registrations of epoll fd `fd` of `pid`.
pub fn read_epoll_targets(pid: i32, fd: i32) -> Result<Vec<EpollTarget>, ProcError> {
    let (path, text) = read_text(PathBuf::from(format!("/proc/{pid}/fdinfo/{fd}")))?;
    parse_epoll_targets(&path, &text)
}

/// A mount point of the filesystem `major:minor` in mountinfo text,
/// preferring a mount of the filesystem's root (from which every file
/// handle resolves to its full path).
pub fn parse_mount_point(text: &str, major: u32, minor: u32) -> Option<String> {
    let dev = format!("{major}:{minor}");
    let mounts: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() > 4 && f[2] == dev).then(|| (f[3], f[4]))
        })
        .collect();
    mounts
        .iter()
        .find(|(root, _)| *root == "/")
        .or(mounts.first())
        .map(|(_, point)| unescape_octal(point).to_string_lossy().into_owned())
}

/// Undoes mountinfo's octal escapes of space, tab, newline and backslash
/// (\\040 for a space).
pub fn unescape_octal(s: &str) -> std::ffi::OsString {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let code = b.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (b[i], code) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    std::os::unix::ffi::OsStringExt::from_vec(out)
}

/// A mount point of filesystem `major:minor` in this process's mount table.
pub fn mount_point(major: u32, minor: u32) -> Result<Option<String>, ProcError> {
    let (_, text) = read_text(PathBuf::from("/proc/self/mountinfo"))?;
    Ok(parse_mount_point(&text, major, minor))
}

/// What a fanotify mark is on, as the group's fdinfo names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FanotifyTarget {
    /// A file (an inode mark): its inode, its filesystem's device number
    /// (major << 20 | minor), and its file handle's type and bytes (empty
    /// when the filesystem gives none).
    Inode {
        /// Inode number.
        ino: u64,
        /// The kernel's device number of its filesystem.
        sdev: u32,
        /// The file handle type, for open_by_handle_at.
        handle_type: i32,
        /// The file handle bytes.
        handle: Vec<u8>,
    },
    /// A mount (FAN_MARK_MOUNT), by its mount id.
    Mount {
        /// The mount id, as mountinfo's first field.
        mnt_id: u32,
    },
    /// A whole filesystem (FAN_MARK_FILESYSTEM), by its device number.
    Filesystem {
        /// The kernel's device number of the filesystem.
        sdev: u32,
    },
}

/// One mark of a fanotify group as its fdinfo lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanotifyMarkInfo {
    /// What it is on.
    pub target: FanotifyTarget,
    /// Its flags (FAN_MARK_IGNORED_SURV_MODIFY, FAN_MARK_EVICTABLE,
    /// FAN_MARK_IGNORE).
    pub flags: u32,
    /// The events it reports.
    pub mask: u64,
    /// The events it ignores.
    pub ignored_mask: u64,
}

/// A fanotify group as its fdinfo shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanotifyInfo {
    /// The flags given to fanotify_init.
    pub init_flags: u32,
    /// The open flags of the event fds (fanotify_init's event_f_flags).
    pub event_flags: u32,
    /// Its marks.
    pub marks: Vec<FanotifyMarkInfo>,
}

/// The file handle type and bytes of an inotify or fanotify mark's line
/// (empty when the filesystem gives none).
fn file_handle(path: &Path, line: &str) -> Result<(i32, Vec<u8>), ProcError> {
    let Some((_, hex)) = fields(line).into_iter().find(|(k, _)| *k == "f_handle") else {
        return Ok((0, Vec::new()));
    };
    let handle = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| parse_err(path, format!("bad f_handle in {line:?}")))?;
    Ok((hex_field(path, line, "fhandle-type")? as i32, handle))
}

/// A fanotify group from its fdinfo text: the `fanotify flags:` line, then
/// one `fanotify ino:`, `fanotify mnt_id:` or `fanotify sdev:` line per
/// mark (every number in hexadecimal).
pub fn parse_fanotify(path: &Path, text: &str) -> Result<FanotifyInfo, ProcError> {
    let mut info = FanotifyInfo {
        init_flags: 0,
        event_flags: 0,
        marks: Vec::new(),
    };
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("fanotify ") else {
            continue;
        };
        if rest.starts_with("flags:") {
            info.init_flags = hex_field(path, line, "flags")? as u32;
            info.event_flags = hex_field(path, line, "event-flags")? as u32;
            continue;
        }
        let target = if rest.starts_with("ino:") {
            let (handle_type, handle) = file_handle(path, line)?;
            FanotifyTarget::Inode {
                ino: hex_field(path, line, "ino")?,
                sdev: hex_field(path, line, "sdev")? as u32,
                handle_type,
                handle,
            }
        } else if rest.starts_with("mnt_id:") {
            FanotifyTarget::Mount {
                mnt_id: hex_field(path, line, "mnt_id")? as u32,
            }
        } else if rest.starts_with("sdev:") {
            FanotifyTarget::Filesystem {
                sdev: hex_field(path, line, "sdev")? as u32,
            }
        } else {
            return Err(parse_err(path, format!("unknown fanotify mark {line:?}")));
        };
        info.marks.push(FanotifyMarkInfo {
            target,
            flags: hex_field(path, line, "mflags")? as u32,
            mask: hex_field(path, line, "mask")?,
            ignored_mask: hex_field(path, line, "ignored_mask")?,
        });
    }
    Ok(info)
}

/// Reads fanotify fd `fd` of `pid`: its flags and marks.
pub fn read_fanotify(pid: i32, fd: i32) -> Result<FanotifyInfo, ProcError> {
    let (path, text) = read_text(PathBuf::from(format!("/proc/{pid}/fdinfo/{fd}")))?;
    parse_fanotify(&path, &text)
}

/// The mount point of mount `mnt_id` in mountinfo text.
pub fn parse_mount_by_id(text: &str, mnt_id: u32) -> Option<String> {
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.len() > 4 && f[0].parse() == Ok(mnt_id))
            .then(|| unescape_octal(f[4]).to_string_lossy().into_owned())
    })
}

/// The mount point of mount `mnt_id` as process `pid` sees it.
pub fn mount_by_id(pid: i32, mnt_id: u32) -> Result<Option<String>, ProcError> {
    let (_, text) = read_text(PathBuf::from(format!("/proc/{pid}/mountinfo")))?;
    Ok(parse_mount_by_id(&text, mnt_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoll_lines() {
        let text = "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t26\n\
tfd:        3 events: 80000019 data:       1234567890  pos:0 ino:19cfa sdev:f\n\
tfd:       14 events: 1000001c data:                7  pos:0 ino:19cfa sdev:f\n";
        let t = parse_epoll_targets(Path::new("x"), text).unwrap();
        assert_eq!(
            t,
            vec![
                EpollTarget {
                    fd: 3,
                    events: 0x8000_0019,
                    data: 0x12_3456_7890,
                    via: None,
                },
                EpollTarget {
                    fd: 14,
                    events: 0x1000_001c,
                    data: 7,
                    via: None,
                }
            ]
        );
    }

    #[test]
    fn inotify_lines() {
        let text = "pos:\t0\nflags:\t04000\n\
inotify wd:1a ino:98c142 sdev:fe00000 mask:80000002 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:42c19800474fdf1e\n\
inotify wd:2 ino:5 sdev:f mask:100 ignored_mask:0\n";
        let m = parse_inotify_marks(Path::new("x"), text).unwrap();
        assert_eq!(m[0].wd, 0x1a);
        assert_eq!(m[0].ino, 0x98c142);
        assert_eq!(m[0].sdev, 0xfe0_0000);
        assert_eq!(m[0].mask, 0x8000_0002);
        assert_eq!(m[0].handle_type, 1);
        assert_eq!(m[0].handle, [0x42, 0xc1, 0x98, 0, 0x47, 0x4f, 0xdf, 0x1e]);
        assert!(m[1].handle.is_empty());
    }

    #[test]
    fn mount_point_prefers_the_root_of_the_filesystem() {
        let text = "\
30 1 254:0 /srv /mnt/bind rw - ext4 /dev/vda1 rw
26 1 254:0 / / rw - ext4 /dev/vda1 rw
40 26 0:50 / /mnt/with\\040space rw - tmpfs tmpfs rw
";
        assert_eq!(parse_mount_point(text, 254, 0).as_deref(), Some("/"));
        assert_eq!(
            parse_mount_point(text, 0, 50).as_deref(),
            Some("/mnt/with space")
        );
        assert_eq!(parse_mount_point(text, 1, 1), None);
    }

    #[test]
    fn fanotify_lines() {
        let text = "pos:\t0\nflags:\t04002\n\
fanotify flags:12 event-flags:8000\n\
fanotify ino:1a sdev:fe00001 mflags:0 mask:3b ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:42c19800474fdf1e\n\
fanotify mnt_id:2a mflags:40 mask:40000030 ignored_mask:3\n\
fanotify sdev:f mflags:0 mask:2 ignored_mask:0\n";
        let f = parse_fanotify(Path::new("x"), text).unwrap();
        assert_eq!((f.init_flags, f.event_flags), (0x12, 0x8000));
        assert_eq!(
            f.marks[0].target,
            FanotifyTarget::Inode {
                ino: 0x1a,
                sdev: 0xfe0_0001,
                handle_type: 1,
                handle: vec![0x42, 0xc1, 0x98, 0x00, 0x47, 0x4f, 0xdf, 0x1e],
            }
        );
        assert_eq!(f.marks[0].mask, 0x3b);
        assert_eq!(f.marks[1].target, FanotifyTarget::Mount { mnt_id: 0x2a });
        assert_eq!(
            (f.marks[1].flags, f.marks[1].mask, f.marks[1].ignored_mask),
            (0x40, 0x4000_0030, 3)
        );
        assert_eq!(f.marks[2].target, FanotifyTarget::Filesystem { sdev: 0xf });
        let mountinfo =
            "24 1 254:1 / / rw - ext4 /dev/vda1 rw\n42 24 0:40 / /my\\040tmp rw - tmpfs t rw\n";
        assert_eq!(parse_mount_by_id(mountinfo, 42).as_deref(), Some("/my tmp"));
    }
}
