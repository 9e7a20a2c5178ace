//! A whole dry run from one request: resolve the workload (a PID's tree,
//! or a container's), inspect the tree, measure its writes, then (with a
//! destination) probe it, and assess. `migrate-agent dry-run --to`, and
//! any dry run of a container, hands the request to the local agent,
//! which runs it in its own view of the PIDs and with its own runtimes
//! and dockerd, as `migrate` does (a workload inside the agent's PID
//! namespace is named by the PID the agent sees); a PID without a
//! destination the CLI runs itself.

use super::advice::assess;
use super::calibrate::{container_kind, measure_freeze};
use super::costmodel::WorkloadKind;
use super::dryrun::{
    inspect, measure, Blocker, DestinationReport, DryRunError, DryRunReport, MeasureOptions,
    Measurement, Subject,
};
use super::history::PastMigration;
use super::policy::Limits;
use crate::container::docker::Docker;
use crate::container::{Container, Runtime};
use crate::inspect::{StdioPolicy, TreeInspection};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Time between two samples of the dirty rate.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(250);

/// What to dry-run: `migrate-agent dry-run`'s options.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DryRunRequest {
    /// Root PID of the workload, as the process running the dry run sees
    /// it (unused when a container is named).
    pub pid: i32,
    /// A container to dry-run instead of `pid`.
    pub container: Option<ContainerTarget>,
    /// How long to measure the workload's writes, in milliseconds.
    pub duration_ms: f64,
    /// The destination to probe, if any.
    pub destination: Option<ProbeTarget>,
    /// Bandwidth to predict with when no probe measured one, bytes/s.
    pub bandwidth: Option<u64>,
    /// The switch-over the pre-copy prediction assumes.
    pub limits: Limits,
    /// Do not freeze the workload to measure its freeze (`--no-freeze`):
    /// estimate it per process and per thread.
    pub no_freeze: bool,
}

/// A destination agent to probe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeTarget {
    /// HOST:PORT as the user gave it (for the report).
    pub address: String,
    /// Its resolved QUIC address.
    pub to: SocketAddr,
    /// The name its certificate must carry.
    pub server_name: String,
}

/// A container a dry run looks at, named as `migrate` names it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ContainerTarget {
    /// A container of an OCI runtime (`--container`).
    Runtime {
        /// runc or crun.
        runtime: Runtime,
        /// Its state directory (None: the runtime's default).
        root: Option<PathBuf>,
        /// The container's ID.
        id: String,
    },
    /// A Docker container (`--docker`).
    Docker {
        /// Its name or ID.
        name: String,
        /// The socket of its dockerd (None: the default one of whoever
        /// runs the dry run).
        socket: Option<PathBuf>,
    },
}

/// The workload a dry run resolved: its root, what it is, and how a
/// migration would checkpoint it.
struct Resolved {
    subject: Subject,
    /// For a container's init: how its stdio held outside is treated.
    container_stdio: Option<StdioPolicy>,
    /// What the container as a whole cannot carry (a process outside its
    /// init's tree, the agent's missing capabilities).
    blockers: Vec<Blocker>,
}

/// What inspecting and measuring found, before any probe.
pub struct Measured {
    /// What was looked at.
    pub subject: Subject,
    /// The inspected tree (its connections are listed as carried).
    pub inspection: TreeInspection,
    /// What cannot move.
    pub blockers: Vec<Blocker>,
    /// The writes measured.
    pub measurement: Measurement,
}

impl DryRunRequest {
    /// Inspects the tree and measures its writes for `duration_ms` (or
    /// until `stop` is set), then, unless `no_freeze`, its freeze (the
    /// workload is frozen and thawed once). Blocking: run it off the async
    /// workers.
    /// `dockerd` is the dockerd a Docker container without a socket of
    /// its own runs on.
    pub fn inspect_and_measure(
        &self,
        stop: &AtomicBool,
        dockerd: &Docker,
    ) -> Result<Measured, DryRunError> {
        let resolved = self.resolve(dockerd)?;
        let (inspection, mut blockers) = inspect(resolved.subject.pid, resolved.container_stdio)?;
        blockers.splice(0..0, resolved.blockers);
        let mut measurement = measure(
            &inspection,
            &MeasureOptions {
                duration: Duration::from_secs_f64(self.duration_ms / 1000.0),
                interval: SAMPLE_INTERVAL,
                stop,
            },
        );
        let root = inspection
            .members
            .first()
            .copied()
            .unwrap_or(resolved.subject.pid);
        let (freeze, note) = if self.no_freeze {
            (
                None,
                "not frozen (--no-freeze): the freeze is estimated per process and per thread"
                    .to_string(),
            )
        } else if !blockers.is_empty() {
            (
                None,
                "not frozen: the workload has blockers; the freeze is estimated".to_string(),
            )
        } else if measurement.interrupted || stop.load(Ordering::SeqCst) {
            (
                None,
                "not frozen: the dry run was interrupted; the freeze is estimated".to_string(),
            )
        } else {
            match measure_freeze(root, resolved.container_stdio) {
                Ok(f) => (
                    Some(f),
                    format!(
                        "the workload was frozen and thawed once to measure its freeze and state read: {:.1} ms",
                        f.freeze_ms
                    ),
                ),
                Err(e) => (None, format!("{e}; the freeze is estimated")),
            }
        };
        measurement.freeze = freeze;
        measurement.freeze_note = note;
        Ok(Measured {
            subject: resolved.subject,
            inspection,
            blockers,
            measurement,
        })
    }

    /// The report, from what was measured, the probe's answer and the
    /// agent's past migrations (`past`).
    pub fn report(
        &self,
        measured: Measured,
        destination: Option<DestinationReport>,
        past: &[PastMigration],
    ) -> DryRunReport {
        assess(
            measured.subject,
            measured.blockers,
            measured.measurement,
            destination,
            self.bandwidth,
            &self.limits,
            past,
        )
        .carrying(&measured.inspection.connections)
    }

    /// The workload as the user named it, for messages.
    pub fn describe(&self) -> String {
        match &self.container {
            None => format!("process {}", self.pid),
            Some(ContainerTarget::Runtime { id, .. }) => format!("container {id}"),
            Some(ContainerTarget::Docker { name, .. }) => format!("Docker container {name}"),
        }
    }

    /// The workload named: the PID's tree, or the running container's
    /// init with its kind and what the container as a whole cannot carry,
    /// checked as a migration's offer checks it.
    fn resolve(&self, dockerd: &Docker) -> Result<Resolved, DryRunError> {
        let (container, described, docker) = match &self.container {
            None => {
                return Ok(Resolved {
                    subject: Subject::tree(self.pid),
                    container_stdio: None,
                    blockers: Vec::new(),
                })
            }
            Some(ContainerTarget::Runtime { runtime, root, id }) => (
                Container::new(*runtime, root.as_deref(), id),
                self.describe(),
                false,
            ),
            Some(ContainerTarget::Docker { name, socket }) => {
                let dockerd = socket
                    .as_deref()
                    .map_or_else(|| dockerd.clone(), Docker::new);
                let (c, _) = super::docker::resolve(&dockerd, name, false)?;
                (c, self.describe(), true)
            }
        };
        let init = container.running()?.pid;
        let as_blocker = |e: crate::container::ContainerError| Blocker {
            pid: init,
            resource: "container".into(),
            reason: e.to_string(),
        };
        let mut blockers = Vec::new();
        if let Err(e) = crate::container::check_capabilities() {
            blockers.push(as_blocker(e));
        }
        if let Err(e) = crate::container::check_tree(&container.id, init) {
            blockers.push(as_blocker(e));
        }
        let kind = container_kind(&container.id, init, docker).unwrap_or_else(|e| {
            blockers.push(as_blocker(e));
            WorkloadKind::Container
        });
        // ferry-runc gives a Docker container's init CAP_SYS_PTRACE for
        // the restore; a runc container's must have it.
        let lazy_refusal = (!docker)
            .then(|| super::source::check_lazy_container(&container.id, init).err())
            .flatten()
            .map(|e| e.to_string());
        Ok(Resolved {
            subject: Subject {
                pid: init,
                kind,
                container: Some(described),
                lazy_refusal,
            },
            container_stdio: Some(StdioPolicy::migrating(true, docker)),
            blockers,
        })
    }
}
