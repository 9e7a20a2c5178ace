//! A whole dry run from one request: inspect the tree, measure its writes,
//! then (with a destination) probe it, and assess. `migrate-agent dry-run
//! --to` hands the request to the local agent, which runs it in its own
//! view of the PIDs, as `migrate` does (a workload inside the agent's PID
//! namespace is named by the PID the agent sees); without a destination
//! the CLI runs it itself.

use super::advice::assess;
use super::calibrate::measure_freeze;
use super::dryrun::{
    inspect, measure, Blocker, DestinationReport, DryRunError, DryRunReport, MeasureOptions,
    Measurement,
};
use super::history::PastMigration;
use super::policy::Limits;
use crate::inspect::TreeInspection;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Time between two samples of the dirty rate.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(250);

/// What to dry-run: `migrate-agent dry-run`'s options.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DryRunRequest {
    /// Root PID of the workload, as the process running the dry run sees it.
    pub pid: i32,
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

/// What inspecting and measuring found, before any probe.
pub struct Measured {
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
    pub fn inspect_and_measure(&self, stop: &AtomicBool) -> Result<Measured, DryRunError> {
        let (inspection, blockers) = inspect(self.pid)?;
        let mut measurement = measure(
            &inspection,
            &MeasureOptions {
                duration: Duration::from_secs_f64(self.duration_ms / 1000.0),
                interval: SAMPLE_INTERVAL,
                stop,
            },
        );
        let root = inspection.members.first().copied().unwrap_or(self.pid);
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
            match measure_freeze(root) {
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
            self.pid,
            measured.blockers,
            measured.measurement,
            destination,
            self.bandwidth,
            &self.limits,
            past,
        )
        .carrying(&measured.inspection.connections)
    }
}
