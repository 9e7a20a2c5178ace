//! /proc/sysvipc/shm: the SysV shared memory segments of the reader's IPC
//! namespace.

use super::{parse_err, read_text, ProcError};
use std::path::{Path, PathBuf};

/// SHM_DEST in the perms column: the segment is marked for removal.
pub const SHM_DEST: u32 = 0o1000;

/// One segment as /proc/sysvipc/shm lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShmSegment {
    /// Its key (0: IPC_PRIVATE, or marked for removal).
    pub key: i32,
    /// Its ID.
    pub shmid: i32,
    /// shm_perm.mode: permission bits plus SHM_DEST and SHM_LOCKED.
    pub perms: u32,
    /// Size in bytes.
    pub size: u64,
    /// Attachments.
    pub nattch: u64,
    /// Owner user ID.
    pub uid: u32,
    /// Owner group ID.
    pub gid: u32,
}

/// Reads /proc/sysvipc/shm (of the calling thread's IPC namespace).
pub fn read_shm() -> Result<Vec<ShmSegment>, ProcError> {
    let (path, text) = read_text(PathBuf::from("/proc/sysvipc/shm"))?;
    parse_shm(&path, &text)
}

/// Parses the text of /proc/sysvipc/shm: a header line, then per segment
/// key shmid perms(octal) size cpid lpid nattch uid gid cuid cgid ...
pub fn parse_shm(path: &Path, text: &str) -> Result<Vec<ShmSegment>, ProcError> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() < 11 {
            return Err(parse_err(path, format!("short line {line:?}")));
        }
        let bad = |what: &str| parse_err(path, format!("bad {what} in {line:?}"));
        out.push(ShmSegment {
            key: f[0].parse().map_err(|_| bad("key"))?,
            shmid: f[1].parse().map_err(|_| bad("shmid"))?,
            perms: u32::from_str_radix(f[2], 8).map_err(|_| bad("perms"))?,
            size: f[3].parse().map_err(|_| bad("size"))?,
            nattch: f[6].parse().map_err(|_| bad("nattch"))?,
            uid: f[7].parse().map_err(|_| bad("uid"))?,
            gid: f[8].parse().map_err(|_| bad("gid"))?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_segments() {
        let text = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n\
                    1111638594      32769   640                 10000  4242  4243      2  1000  1000     0     0 1764362000          0 1764362000                 12288                     0\n\
                    \x20        0          3  1600                  4096     5     5      1     0     0     0     0          0          0 1764362000                     0                     0\n";
        let segs = parse_shm(Path::new("x"), text).unwrap();
        assert_eq!(segs.len(), 2);
        assert_eq!(
            segs[0],
            ShmSegment {
                key: 1111638594,
                shmid: 32769,
                perms: 0o640,
                size: 10000,
                nattch: 2,
                uid: 1000,
                gid: 1000,
            }
        );
        assert_eq!(segs[1].perms & SHM_DEST, SHM_DEST);
        assert!(parse_shm(Path::new("x"), "h\n1 2 3\n").is_err());
    }
}
