//! `migrate-agent restore`.

use anyhow::Context;
use std::path::Path;
use std::process::ExitCode;

/// `restore --cgroups`: what becomes of the tree's cgroup membership.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Cgroups {
    /// Back into the cgroups the tasks were in, made where missing.
    Soft,
    /// Left in this command's cgroups.
    Ignore,
}

/// Restores the image in `dir` (its tasks' cgroups as `cgroups` says,
/// below the roots it gives, in network namespace `join_netns` when given)
/// and optionally writes the PID to `pidfile`.
pub fn run(
    dir: &Path,
    pidfile: Option<&Path>,
    json: bool,
    (cgroups, cgroup_roots): (Cgroups, Vec<ferry::proc::cgroups::CgroupRoot>),
    join_netns: Option<std::path::PathBuf>,
) -> anyhow::Result<ExitCode> {
    let opts = ferry::restore::RestoreOptions {
        cgroups: match cgroups {
            Cgroups::Soft => ferry::restore::CgroupMode::Soft,
            Cgroups::Ignore => ferry::restore::CgroupMode::Ignore,
        },
        cgroup_roots,
        join_netns,
        ..Default::default()
    };
    let stats = ferry::restore::restore_with(dir, opts).with_context(|| {
        format!(
            "restore from {} failed; nothing was left running",
            dir.display()
        )
    })?;
    if let Some(path) = pidfile {
        std::fs::write(path, format!("{}\n", stats.pid)).with_context(|| {
            format!(
                "process {} runs, but writing {} failed",
                stats.pid,
                path.display()
            )
        })?;
    }
    if json {
        println!("{}", serde_json::to_string(&stats)?);
    } else {
        println!(
            "restored process {} ({} processes, {} zombies) from {}: {} pages in {:.1} ms",
            stats.pid,
            stats.processes,
            stats.zombies,
            dir.display(),
            stats.pages_restored,
            stats.restore_ms
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Creates container `c` from `bundle`, restores the image in `dir` into
/// it and optionally writes its init's PID to `pidfile`.
pub fn run_container(
    c: &ferry::container::Container,
    bundle: &Path,
    dir: &Path,
    pidfile: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let stats = ferry::container::restore(c, bundle, dir).with_context(|| {
        format!(
            "restore of container {} from {} failed; the container was deleted",
            c.id,
            dir.display()
        )
    })?;
    if let Some(path) = pidfile {
        ferry::container::write_pid_file(path, stats.pid).with_context(|| {
            format!(
                "container {} runs (init {}), but writing {} failed",
                c.id,
                stats.pid,
                path.display()
            )
        })?;
    }
    if json {
        println!("{}", serde_json::to_string(&stats)?);
    } else {
        println!(
            "restored container {} (init {}, {} processes) from {}: {} pages in {:.1} ms",
            c.id,
            stats.pid,
            stats.processes,
            dir.display(),
            stats.pages_restored,
            stats.restore_ms
        );
    }
    Ok(ExitCode::SUCCESS)
}
