//! `migrate-agent image show`.

use std::path::Path;
use std::process::ExitCode;

/// Prints a person-readable description of the image in `dir`.
pub fn run(_dir: &Path) -> anyhow::Result<ExitCode> {
    anyhow::bail!("image show is not implemented yet")
}
