//! `migrate-agent checkpoint`.

use std::path::Path;
use std::process::ExitCode;

/// Checkpoints `pid` into `dir`.
pub fn run(_pid: i32, _dir: &Path, _leave_running: bool, _json: bool) -> anyhow::Result<ExitCode> {
    anyhow::bail!("checkpoint is not implemented yet")
}
