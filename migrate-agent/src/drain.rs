//! `migrate-agent drain`: empties this host of a runtime's (or a
//! dockerd's) running containers before maintenance, migrating each in
//! turn through the local agent (as `migrate --container` or `migrate
//! --docker` does), going on after a failure, and printing one line per
//! container.

use crate::container::{ContainerArgs, DockerArgs};
use crate::migrate::{execute, DestinationArgs, TransferArgs, Workload};
use ferry::container::docker::Docker;
use ferry::container::{self, Runtime};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

/// `drain`'s options.
#[derive(clap::Args, Debug)]
pub struct DrainArgs {
    #[command(flatten)]
    destination: DestinationArgs,
    /// The OCI runtime whose running containers move: runc or crun.
    #[arg(long, default_value = "runc")]
    runtime: String,
    /// The runtime's state directory (its --root; default /run/runc or
    /// /run/crun).
    #[arg(long)]
    runtime_root: Option<PathBuf>,
    /// Drain the running containers of this dockerd instead
    /// (unix:///PATH; default /var/run/docker.sock): each moves as
    /// `migrate --docker` moves it.
    #[arg(long, value_name = "HOST", num_args = 0..=1, default_missing_value = "unix:///var/run/docker.sock")]
    docker: Option<String>,
    #[command(flatten)]
    transfer: TransferArgs,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// The outcome for one container.
#[derive(Debug, Serialize)]
struct Outcome {
    id: String,
    ok: bool,
    downtime_ms: Option<f64>,
    total_ms: Option<f64>,
    error: Option<String>,
}

/// Migrates every running container of the runtime, one after the other;
/// exits 1 when any of them failed (each failed one still runs here).
pub fn run(a: DrainArgs) -> anyhow::Result<ExitCode> {
    let Some(runtime) = Runtime::from_name(&a.runtime) else {
        anyhow::bail!(
            "unknown runtime {:?}: ferry drives runc and crun",
            a.runtime
        );
    };
    let running: Vec<String> = match &a.docker {
        Some(host) => Docker::from_host(host).running_names()?,
        None => container::list(runtime, a.runtime_root.as_deref())?
            .into_iter()
            .filter(|s| s.status == "running")
            .map(|s| s.id)
            .collect(),
    };
    let mut outcomes = Vec::new();
    for id in running {
        let (container, docker) = match &a.docker {
            Some(host) => (
                None,
                DockerArgs {
                    docker: Some(id.clone()),
                    docker_host: Some(host.clone()),
                },
            ),
            None => (Some(id.clone()), DockerArgs::default()),
        };
        let container = ContainerArgs {
            container,
            runtime: a.runtime.clone(),
            runtime_root: a.runtime_root.clone(),
        };
        let workload = Workload {
            pid: 0,
            container: &container,
            docker: &docker,
            keep_stopped: false,
        };
        let outcome = match execute(&workload, &a.destination, &a.transfer, true) {
            Ok(stats) => Outcome {
                id,
                ok: true,
                downtime_ms: Some(stats.downtime.total_ms),
                total_ms: Some(stats.total_ms),
                error: None,
            },
            Err(e) => Outcome {
                id,
                ok: false,
                downtime_ms: None,
                total_ms: None,
                error: Some(crate::output::error_report(&e)),
            },
        };
        if !a.json {
            print_line(&outcome, &a.destination.to);
        }
        outcomes.push(outcome);
    }
    let failed = outcomes.iter().filter(|o| !o.ok).count();
    if a.json {
        let summary = serde_json::json!({
            "to": a.destination.to,
            "migrated": outcomes.len() - failed,
            "failed": failed,
            "containers": outcomes,
        });
        println!("{summary}");
    } else {
        println!(
            "drained {} of {} running {} containers to {}",
            outcomes.len() - failed,
            outcomes.len(),
            if a.docker.is_some() {
                "Docker"
            } else {
                runtime.binary()
            },
            a.destination.to
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_line(o: &Outcome, to: &str) {
    match (&o.error, o.downtime_ms, o.total_ms) {
        (None, Some(downtime), Some(total)) => println!(
            "{}: ok, runs on {to}; downtime {downtime:.1} ms, total {total:.0} ms",
            o.id
        ),
        (error, ..) => println!(
            "{}: FAILED, still runs here: {}",
            o.id,
            error.as_deref().unwrap_or("unknown error")
        ),
    }
}
