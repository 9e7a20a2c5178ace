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
        let handle = match fields(line).into_iter().find(|(k, _)| *k == "f_handle") {
            Some((_, hex)) => (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
                .collect::<Result<_, _>>()
                .map_err(|_| parse_err(path, format!("bad f_handle in {line:?}")))?,
            None => Vec::new(),
        };
        out.push(InotifyMark {
            wd: hex_field(path, line, "wd")? as i32,
            ino: hex_field(path, line, "ino")?,
            sdev: hex_field(path, line, "sdev")? as u32,
            mask: hex_field(path, line, "mask")? as u32,
            handle_type: if handle.is_empty() {
                0
            } else {
                hex_field(path, line, "fhandle-type")? as i32
            },
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
}
