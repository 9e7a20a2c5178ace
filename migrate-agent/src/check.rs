//! `migrate-agent check`.

use std::process::ExitCode;

/// Probes the host and prints the report.
pub fn run(_json: bool) -> anyhow::Result<ExitCode> {
    anyhow::bail!("check is not implemented yet")
}
