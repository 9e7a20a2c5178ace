//! /proc/PID/limits: every resource limit of a process. Anyone may read
//! it, whatever the process's user: prlimit64 on a process of another
//! user needs CAP_SYS_RESOURCE, which root may lack (a container's, or
//! this project's test machines), so checkpoint reads the limits here.

use super::{parse_err, read_text, ProcError};
use std::path::{Path, PathBuf};

/// The names the kernel prints for RLIMIT_CPU (0) to RLIMIT_RTTIME (15),
/// in resource order (fs/proc/base.c's lnames): line N + 1 of the file is
/// resource N.
const LIMIT_NAMES: [&str; 16] = [
    "Max cpu time",
    "Max file size",
    "Max data size",
    "Max stack size",
    "Max core file size",
    "Max resident set",
    "Max processes",
    "Max open files",
    "Max locked memory",
    "Max address space",
    "Max file locks",
    "Max pending signals",
    "Max msgqueue size",
    "Max nice priority",
    "Max realtime priority",
    "Max realtime timeout",
];

/// What the kernel prints for RLIM_INFINITY.
const UNLIMITED: &str = "unlimited";

/// Parses the text of /proc/PID/limits: (soft, hard) of every resource,
/// indexed by its RLIMIT_* number, RLIM_INFINITY as u64::MAX. The kernel
/// prints the raw values (no unit scaling), so they are exact.
pub fn parse_limits(path: &Path, text: &str) -> Result<Vec<(u64, u64)>, ProcError> {
    let mut lines = text.lines();
    match lines.next() {
        Some(header) if header.starts_with("Limit ") => {}
        _ => return Err(parse_err(path, "no header line")),
    }
    let value = |resource: usize, v: Option<&str>| match v {
        Some(UNLIMITED) => Ok(u64::MAX),
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| parse_err(path, format!("limit {resource} is {v:?}"))),
        None => Err(parse_err(path, format!("limit {resource} has no value"))),
    };
    let mut limits = Vec::with_capacity(LIMIT_NAMES.len());
    for (resource, name) in LIMIT_NAMES.iter().enumerate() {
        let line = lines
            .next()
            .ok_or_else(|| parse_err(path, format!("no line for limit {resource}")))?;
        let rest = line
            .strip_prefix(name)
            .filter(|rest| rest.starts_with(' '))
            .ok_or_else(|| {
                parse_err(
                    path,
                    format!("line {line:?} is not limit {resource} ({name})"),
                )
            })?;
        let mut fields = rest.split_whitespace();
        let soft = value(resource, fields.next())?;
        let hard = value(resource, fields.next())?;
        limits.push((soft, hard));
    }
    Ok(limits)
}

/// Reads every resource limit of process `pid` (see [`parse_limits`]).
pub fn read_limits(pid: i32) -> Result<Vec<(u64, u64)>, ProcError> {
    let (path, text) = read_text(PathBuf::from(format!("/proc/{pid}/limits")))?;
    parse_limits(&path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's own layout: "%-25s %-20s %-20s %-10s".
    fn line(name: &str, soft: &str, hard: &str, units: &str) -> String {
        format!("{name:<25} {soft:<20} {hard:<20} {units:<10}\n")
    }

    #[test]
    fn every_limit_comes_back_exactly() {
        let mut text = line("Limit", "Soft Limit", "Hard Limit", "Units");
        let mut want = Vec::new();
        for (i, name) in LIMIT_NAMES.iter().enumerate() {
            let (soft, hard) = match i {
                0 => (u64::MAX, u64::MAX),
                4 => (0, u64::MAX),
                7 => (1000, 4000),
                // The largest value the kernel prints as a number.
                9 => (u64::MAX - 1, u64::MAX - 1),
                _ => (i as u64 * 4096 + 7, i as u64 * 8192 + 9),
            };
            let show = |v: u64| {
                if v == u64::MAX {
                    UNLIMITED.to_string()
                } else {
                    v.to_string()
                }
            };
            // The nice and realtime priorities have no unit.
            let units = if i == 13 || i == 14 { "" } else { "bytes" };
            text.push_str(&line(name, &show(soft), &show(hard), units));
            want.push((soft, hard));
        }
        let got = parse_limits(Path::new("limits"), &text).unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn this_process_limits_match_getrlimit() {
        let got = read_limits(std::process::id() as i32).unwrap();
        assert_eq!(got.len(), 16);
        let (soft, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(got[libc::RLIMIT_NOFILE as usize], (soft, hard));
    }

    #[test]
    fn a_missing_or_foreign_line_is_an_error() {
        let mut text = line("Limit", "Soft Limit", "Hard Limit", "Units");
        text.push_str(&line("Max cpu time", "unlimited", "unlimited", "seconds"));
        assert!(parse_limits(Path::new("limits"), &text).is_err());
        let text = text.replace("Max cpu time", "Max cpu timer");
        assert!(parse_limits(Path::new("limits"), &text).is_err());
        assert!(parse_limits(Path::new("limits"), "").is_err());
    }
}
