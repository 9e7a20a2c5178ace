//! `migrate-agent serve`: the per-host daemon.

use anyhow::Context;
use ferry::config::AgentConfig;
use std::path::Path;
use std::process::ExitCode;

/// Loads the configuration and runs the daemon until killed.
pub fn run(config: &Path) -> anyhow::Result<ExitCode> {
    let config = AgentConfig::load(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(ferry::agent::serve(config))?;
    Ok(ExitCode::SUCCESS)
}
