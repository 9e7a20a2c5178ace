//! `migrate-agent restore`.

use std::path::Path;
use std::process::ExitCode;

/// Restores the image in `dir`.
pub fn run(_dir: &Path, _pidfile: Option<&Path>, _json: bool) -> anyhow::Result<ExitCode> {
    anyhow::bail!("restore is not implemented yet")
}
