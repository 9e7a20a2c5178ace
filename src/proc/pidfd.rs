//! The lines of /proc/PID/fdinfo/N of a pidfd: which process it refers to.

use super::{parse_err, read_text, ProcError};
use std::path::{Path, PathBuf};

/// What a pidfd's fdinfo tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidfdInfo {
    /// "Pid:": the process as this /proc sees it; None once it has exited
    /// and been reaped (the kernel shows -1).
    pub pid: Option<i32>,
    /// The last field of "NSpid:": the process as its own PID namespace
    /// sees it (the same as `pid` outside PID namespaces).
    pub ns_pid: Option<i32>,
}

/// Parses a pidfd's fdinfo text.
pub fn parse_pidfd(path: &Path, text: &str) -> Result<PidfdInfo, ProcError> {
    let last = |key: &str| -> Result<Option<i32>, ProcError> {
        let v = text
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .ok_or_else(|| parse_err(path, format!("no {key:?} line")))?;
        let n: i32 = v
            .split_whitespace()
            .last()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| parse_err(path, format!("bad {key} {v:?}")))?;
        Ok((n > 0).then_some(n))
    };
    Ok(PidfdInfo {
        pid: last("Pid:")?,
        ns_pid: last("NSpid:")?,
    })
}

/// Reads the fdinfo of pidfd `fd` of process `pid`.
pub fn read_pidfd(pid: i32, fd: i32) -> Result<PidfdInfo, ProcError> {
    let (path, text) = read_text(PathBuf::from(format!("/proc/{pid}/fdinfo/{fd}")))?;
    parse_pidfd(&path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_nested_and_dead_pidfds() {
        let p = Path::new("x");
        let live = "pos:\t0\nflags:\t02000002\nPid:\t31470\nNSpid:\t31470\t2\n";
        assert_eq!(
            parse_pidfd(p, live).unwrap(),
            PidfdInfo {
                pid: Some(31470),
                ns_pid: Some(2)
            }
        );
        let dead = "pos:\t0\nflags:\t02000002\nPid:\t-1\nNSpid:\t-1\n";
        assert_eq!(
            parse_pidfd(p, dead).unwrap(),
            PidfdInfo {
                pid: None,
                ns_pid: None
            }
        );
        assert!(parse_pidfd(p, "pos:\t0\n").is_err());
    }
}
