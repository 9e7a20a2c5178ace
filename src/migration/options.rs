//! What the user asks of a migration from here: how memory moves and
//! the limits, for the source's state machine and its network sink.

use super::policy::Limits;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How memory moves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationMode {
    /// Copy memory in rounds while the workload runs, then freeze and send
    /// the rest: the downtime grows with the dirty rate.
    #[default]
    Precopy,
    /// Freeze at once and run on the destination within milliseconds;
    /// pages follow on demand and in the background. Until every page is
    /// there, the source holds the only copy of the rest.
    Postcopy,
    /// Pre-copy rounds first, then post-copy instead of the last round.
    Hybrid,
}

impl std::str::FromStr for MigrationMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "precopy" => Ok(Self::Precopy),
            "postcopy" => Ok(Self::Postcopy),
            "hybrid" => Ok(Self::Hybrid),
            other => Err(format!(
                "unknown migration mode {other:?}: expected precopy, postcopy or hybrid"
            )),
        }
    }
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// How memory moves.
    pub mode: MigrationMode,
    /// Switch-over limits.
    pub limits: Limits,
    /// Bytes per second the page streams may use at most (None: no limit).
    pub bandwidth_limit: Option<u64>,
    /// Page streams to spread pages over (each on a bulk connection, round
    /// robin).
    pub page_streams: u32,
    /// The workload is this container (its init's tree); `pid` is then
    /// ignored.
    pub container: Option<crate::container::Container>,
    /// Post-copy: how long the destination tries to reconnect after the
    /// link broke; the source, frozen, waits that long plus
    /// [`super::postcopy::RESUME_MARGIN`] before resuming its copy.
    pub postcopy_recovery: Duration,
    /// Copy the differences of the container's rootfs to the
    /// destination's bundle: before the freeze, then what changed since
    /// while frozen (containers only).
    pub sync_rootfs: bool,
    /// The owner of the network lock that silences the workload's TCP
    /// connections from the freeze on (this agent: its next start sweeps
    /// what a killed run left).
    pub lock_owner: crate::netlock::Owner,
    /// The container is a Docker container of the dockerd here: it is
    /// created and started on the destination's dockerd, and removed
    /// (or left stopped) here once it runs there.
    pub docker: Option<DockerSource>,
    /// This agent's two-phase commit records: the source's decision is
    /// written there before the switch-over ends either way.
    pub journal: super::journal::Journal,
}

/// A Docker container leaving this host.
#[derive(Debug, Clone)]
pub struct DockerSource {
    /// The dockerd it runs on.
    pub docker: crate::container::docker::Docker,
    /// Its ID there.
    pub id: String,
    /// What creates it again on the destination.
    pub spec: crate::container::docker::DockerSpec,
    /// Leave it stopped here once it runs there, instead of removing it.
    pub keep_stopped: bool,
}
