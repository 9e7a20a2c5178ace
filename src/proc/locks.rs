//! The file locks an open file holds, as the "lock:" lines of
//! /proc/PID/fdinfo/N list them: the POSIX locks the process took through
//! that description, and the OFD locks, flock() locks and leases of the
//! description itself (fs/locks.c's show_fd_locks).

use super::{parse_err, read_text, ProcError};
use std::path::{Path, PathBuf};

/// What kind of lock a "lock:" line names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FdLockKind {
    /// "POSIX": a record lock of the process (F_SETLK).
    Posix,
    /// "OFDLCK": a lock of the open file description (F_OFD_SETLK).
    Ofd,
    /// "FLOCK": a flock() lock of the description.
    Flock,
    /// Anything else (a "LEASE", a "DELEG"ation ...), by its name.
    Other(String),
}

/// One "lock:" line of an fdinfo file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdLock {
    /// Its kind.
    pub kind: FdLockKind,
    /// The lock is mandatory (kernels before 5.15 still had them), not
    /// advisory.
    pub mandatory: bool,
    /// A write lock (otherwise a read one).
    pub write: bool,
    /// First byte locked.
    pub start: u64,
    /// Last byte locked, None up to the end of the file ("EOF").
    pub end: Option<u64>,
}

/// Parses the "lock:" lines of /proc/PID/fdinfo/N text, in file order.
pub fn parse_fd_locks(path: &Path, text: &str) -> Result<Vec<FdLock>, ProcError> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("lock:") else {
            continue;
        };
        let bad = || parse_err(path, format!("bad lock line {rest:?}"));
        // "1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 99"
        let words: Vec<&str> = rest.split_whitespace().collect();
        let [_, kind, mode, access, _pid, _dev, start, end] = words[..] else {
            return Err(bad());
        };
        let kind = match kind {
            "POSIX" => FdLockKind::Posix,
            "OFDLCK" => FdLockKind::Ofd,
            "FLOCK" => FdLockKind::Flock,
            other => FdLockKind::Other(other.to_string()),
        };
        out.push(FdLock {
            kind,
            mandatory: mode == "MANDATORY",
            write: access == "WRITE",
            start: start.parse().map_err(|_| bad())?,
            end: match end {
                "EOF" => None,
                n => Some(n.parse().map_err(|_| bad())?),
            },
        });
    }
    Ok(out)
}

/// Reads the locks listed in /proc/PID/fdinfo/N.
pub fn read_fd_locks(pid: i32, fd: i32) -> Result<Vec<FdLock>, ProcError> {
    let (path, text) = read_text(PathBuf::from(format!("/proc/{pid}/fdinfo/{fd}")))?;
    parse_fd_locks(&path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_lines_are_parsed() {
        let text = "pos:\t0\nflags:\t02\nmnt_id:\t1\nino:\t5678\n\
            lock:\t1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 99\n\
            lock:\t2: OFDLCK ADVISORY  READ -1 08:01:5678 400 EOF\n\
            lock:\t3: FLOCK  ADVISORY  READ 1234 08:01:5678 0 EOF\n\
            lock:\t4: LEASE  ACTIVE    READ 1234 08:01:5678 0 EOF\n";
        let locks = parse_fd_locks(Path::new("fdinfo"), text).unwrap();
        assert_eq!(locks.len(), 4);
        assert_eq!(
            locks[0],
            FdLock {
                kind: FdLockKind::Posix,
                mandatory: false,
                write: true,
                start: 0,
                end: Some(99),
            }
        );
        assert_eq!(locks[1].kind, FdLockKind::Ofd);
        assert_eq!(
            (locks[1].start, locks[1].end, locks[1].write),
            (400, None, false)
        );
        assert_eq!(locks[2].kind, FdLockKind::Flock);
        assert_eq!(locks[3].kind, FdLockKind::Other("LEASE".into()));
        assert!(parse_fd_locks(Path::new("fdinfo"), "lock:\t1: POSIX\n").is_err());
    }
}
