//! The log file runc writes with `--log` (and `--log-format json`): one
//! line per entry, as logrus writes them. A shim shows the user the last
//! `error` entry of this file when the runtime fails, so ferry-runc's
//! refusals and failures must land there, worded for that user.

use super::args::GlobalFlags;
use std::io::Write;
use std::path::PathBuf;

/// Where and how ferry-runc logs.
#[derive(Debug, Clone)]
pub struct RuntimeLog {
    path: Option<PathBuf>,
    json: bool,
    debug: bool,
}

impl RuntimeLog {
    /// The log the global flags name (none without `--log`).
    pub fn new(global: &GlobalFlags) -> Self {
        RuntimeLog {
            path: global.log.clone(),
            json: global.log_json,
            debug: global.debug,
        }
    }

    /// Logs an error (also printed on stderr by the caller, as runc does).
    pub fn error(&self, msg: &str) {
        self.write("error", msg);
    }

    /// Logs a step, with `--debug` only.
    pub fn debug(&self, msg: &str) {
        if self.debug {
            self.write("debug", msg);
        }
    }

    fn write(&self, level: &str, msg: &str) {
        let Some(path) = &self.path else { return };
        let line = entry(level, msg, &now(), self.json);
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = appended {
            eprintln!("ferry-runc: cannot write the log {}: {e}", path.display());
        }
    }
}

/// The time as logrus writes it (RFC 3339, UTC).
fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // "YYYY-MM-DD HH:MM:SS UTC" -> "YYYY-MM-DDTHH:MM:SSZ"
    crate::image::show::utc_time(secs)
        .replacen(' ', "T", 1)
        .replace(" UTC", "Z")
}

/// One log line: logrus's JSON formatter or its text formatter.
fn entry(level: &str, msg: &str, time: &str, json: bool) -> String {
    if json {
        let line = serde_json::json!({"level": level, "msg": msg, "time": time});
        format!("{line}\n")
    } else {
        // serde_json's string quoting is close enough to Go's %q here.
        let quoted = serde_json::Value::from(msg).to_string();
        format!("time=\"{time}\" level={level} msg={quoted}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_logrus_lines() {
        let j = entry("error", "no \"x\"", "2026-12-06T20:00:00Z", true);
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "no \"x\"");
        assert_eq!(
            entry("debug", "step", "2026-12-06T20:00:00Z", false),
            "time=\"2026-12-06T20:00:00Z\" level=debug msg=\"step\"\n"
        );
        assert!(now().ends_with('Z') && now().contains('T'), "{}", now());
    }
}
