//! The kind-specific lines of /proc/PID/fdinfo/N for eventfd, timerfd and
//! signalfd descriptions.

use super::{parse_err, read_text, ProcError};
use std::path::{Path, PathBuf};

/// An eventfd's fdinfo lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventfdInfo {
    /// "eventfd-count:" (hex).
    pub count: u64,
    /// "eventfd-semaphore:" (0 or 1).
    pub semaphore: bool,
}

/// A timerfd's fdinfo lines (its times come from timerfd_gettime, which
/// brings the ticks of a periodic timer up to date first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerfdInfo {
    /// "clockid:".
    pub clockid: i32,
    /// "ticks:": expirations not yet read.
    pub ticks: u64,
    /// "settime flags:" (octal).
    pub settime_flags: i32,
}

/// The value after `key` on its line of `text`, trimmed.
fn field<'t>(path: &Path, text: &'t str, key: &str) -> Result<&'t str, ProcError> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .ok_or_else(|| parse_err(path, format!("no {key:?} line")))
}

/// The number after `key`, in base `radix`.
fn number(path: &Path, text: &str, key: &str, radix: u32) -> Result<u64, ProcError> {
    let v = field(path, text, key)?;
    u64::from_str_radix(v, radix).map_err(|_| parse_err(path, format!("bad {key} {v:?}")))
}

/// Parses an eventfd's fdinfo text.
pub fn parse_eventfd(path: &Path, text: &str) -> Result<EventfdInfo, ProcError> {
    Ok(EventfdInfo {
        count: number(path, text, "eventfd-count:", 16)?,
        semaphore: number(path, text, "eventfd-semaphore:", 10)? != 0,
    })
}

/// Parses a timerfd's fdinfo text.
pub fn parse_timerfd(path: &Path, text: &str) -> Result<TimerfdInfo, ProcError> {
    Ok(TimerfdInfo {
        clockid: number(path, text, "clockid:", 10)? as i32,
        ticks: number(path, text, "ticks:", 10)?,
        settime_flags: number(path, text, "settime flags:", 8)? as i32,
    })
}

/// Parses a signalfd's fdinfo text: its mask (hex, bit `n - 1` for signal
/// `n`).
pub fn parse_signalfd(path: &Path, text: &str) -> Result<u64, ProcError> {
    number(path, text, "sigmask:", 16)
}

/// Reads /proc/PID/fdinfo/N and parses it with `parse`.
pub fn read<T>(
    pid: i32,
    fd: i32,
    parse: fn(&Path, &str) -> Result<T, ProcError>,
) -> Result<T, ProcError> {
    let (path, text) = read_text(PathBuf::from(format!("/proc/{pid}/fdinfo/{fd}")))?;
    parse(&path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured on Linux 6.18.
    #[test]
    fn kinds_parse() {
        let p = Path::new("x");
        let e = "pos:\t0\nflags:\t04002\nmnt_id:\t17\nino:\t26\neventfd-count:               2a\neventfd-id: 2\neventfd-semaphore: 1\n";
        assert_eq!(
            parse_eventfd(p, e).unwrap(),
            EventfdInfo {
                count: 42,
                semaphore: true
            }
        );
        let t = "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t26\nclockid: 0\nticks: 3\nsettime flags: 03\nit_value: (999, 819147330)\nit_interval: (0, 0)\n";
        assert_eq!(
            parse_timerfd(p, t).unwrap(),
            TimerfdInfo {
                clockid: 0,
                ticks: 3,
                settime_flags: 3
            }
        );
        let s = "pos:\t0\nflags:\t04002\nmnt_id:\t17\nino:\t26\nsigmask:\t0000000000000802\n";
        assert_eq!(parse_signalfd(p, s).unwrap(), 0x802);
    }

    #[test]
    fn missing_line_is_named() {
        let err = parse_eventfd(Path::new("x"), "eventfd-count: 5\n").unwrap_err();
        assert!(err.to_string().contains("eventfd-semaphore"), "{err}");
    }
}
