//! `migrate-agent checkpoint`.

use anyhow::Context;
use ferry::dump::{checkpoint, CheckpointOptions};
use std::path::Path;
use std::process::ExitCode;

/// Checkpoints `pid` into `dir` (its cgroups relative to `cgroup_roots`),
/// then kills it or lets it run; with `external_netns` its own network
/// namespace is left where it is (locked until the restore joins it)
/// instead of carried.
pub fn run(
    pid: i32,
    dir: &Path,
    leave_running: bool,
    external_netns: bool,
    json: bool,
    cgroup_roots: Vec<ferry::proc::cgroups::CgroupRoot>,
) -> anyhow::Result<ExitCode> {
    let stats = checkpoint(
        pid,
        dir,
        CheckpointOptions {
            leave_running,
            cgroup_roots,
            external_netns,
            ..Default::default()
        },
    )
    .with_context(|| format!("checkpoint of process {pid} failed; it was left running"))?;
    if json {
        println!("{}", serde_json::to_string(&stats)?);
    } else {
        println!(
            "checkpointed the tree of process {pid} ({} processes, {} zombies) into {}: {} pages copied while it ran, {} while frozen ({} zero pages skipped), {:.1} MiB, frozen {:.1} ms, {}",
            stats.processes,
            stats.zombies,
            dir.display(),
            stats.precopy_pages,
            stats.frozen_pages,
            stats.zero_pages,
            stats.image_bytes as f64 / f64::from(1 << 20),
            stats.frozen_ms,
            if leave_running { "left running" } else { "killed" },
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Checkpoints container `c` into `dir`, then deletes it or lets it run.
pub fn run_container(
    c: &ferry::container::Container,
    dir: &Path,
    leave_running: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let stats = ferry::container::checkpoint(c, dir, leave_running).with_context(|| {
        format!(
            "checkpoint of container {} failed; it was left running",
            c.id
        )
    })?;
    if json {
        println!("{}", serde_json::to_string(&stats)?);
    } else {
        println!(
            "checkpointed container {} (init {}, {} processes) into {}: frozen {:.1} ms, {}",
            c.id,
            stats.pid,
            stats.processes,
            dir.display(),
            stats.frozen_ms,
            if leave_running {
                "left running"
            } else {
                "deleted"
            },
        );
    }
    Ok(ExitCode::SUCCESS)
}
