//! The figures of a migration, as QEMU's `info migrate` and Podman's
//! `--print-stats` give them: per round, the downtime in parts, totals.

use super::policy::SwitchReason;
use serde::{Deserialize, Serialize};

/// One pre-copy round.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct RoundStats {
    /// Round number (0 copies everything with data).
    pub round: u32,
    /// Pages sent with contents.
    pub pages: u64,
    /// Pages sent as all-zero flags.
    pub zero_pages: u64,
    /// Payload bytes sent.
    pub bytes: u64,
    /// Milliseconds, from the round's start to the destination storing it.
    pub duration_ms: f64,
    /// Pages the workload had written since the previous round.
    pub dirty_pages: u64,
}

/// The downtime, from the freeze decision to the workload running on the
/// destination, in its parts.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Downtime {
    /// Freeze to running on the destination, in milliseconds.
    pub total_ms: f64,
    /// Stopping every thread and reading the process state.
    pub freeze_ms: f64,
    /// Sending the last dirty pages until the destination stored them.
    pub final_transfer_ms: f64,
    /// The destination's restore.
    pub restore_ms: f64,
    /// The rest: sending the state, and the answer's way back.
    pub resume_ms: f64,
    /// How long the source copy stayed frozen (until it was killed).
    pub frozen_ms: f64,
}

/// Statistics of one migration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MigrationStats {
    /// Bytes of memory with data at the start.
    pub memory_bytes: u64,
    /// Page payload bytes sent, over every round.
    pub bytes_sent: u64,
    /// All-zero pages found (sent as flags, or not at all when nothing
    /// older had to be replaced).
    pub zero_pages: u64,
    /// Pre-copy rounds.
    pub rounds: Vec<RoundStats>,
    /// The round sent while frozen.
    pub final_round: RoundStats,
    /// Why pre-copy stopped.
    pub switch_reason: Option<SwitchReason>,
    /// Measured page throughput in bytes per second.
    pub throughput_bytes_per_sec: f64,
    /// Milliseconds from the request to the workload running on the
    /// destination and gone here.
    pub total_ms: f64,
    /// The downtime in parts.
    pub downtime: Downtime,
    /// Post-copy figures (post-copy and hybrid migrations only).
    #[serde(default)]
    pub postcopy: Option<Box<PostcopyStats>>,
    /// `--sync-rootfs` figures (container migrations with it only).
    #[serde(default)]
    pub rootfs: Option<RootfsSyncStats>,
}

/// What `--sync-rootfs` carried: the pass while the container ran and the
/// pass while it was frozen (part of the downtime).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct RootfsSyncStats {
    /// Before the freeze: entries changed on the destination, file bytes.
    pub precopy: crate::container::rootfs::PassStats,
    /// While frozen: what changed since the first pass.
    pub frozen: crate::container::rootfs::PassStats,
    /// Milliseconds the frozen pass took.
    pub frozen_ms: f64,
}

/// The figures of the post-copy phase.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct PostcopyStats {
    /// Milliseconds from the freeze to the workload running on the
    /// destination (with its memory still on the source).
    pub freeze_to_running_ms: f64,
    /// Pages left on the source at the switch-over.
    pub remote_pages: u64,
    /// Faults the destination's workload took on missing pages.
    pub faults: u64,
    /// Faults resolved with the zero page, without asking the source.
    pub zero_faults: u64,
    /// Page requests the source answered.
    pub requests_served: u64,
    /// Pages installed from answers to faults.
    pub pages_faulted: u64,
    /// Pages installed from the background push.
    pub pages_pushed: u64,
    /// Median fault latency (fault to page installed), microseconds.
    pub fault_latency_p50_us: f64,
    /// 99th percentile fault latency, microseconds.
    pub fault_latency_p99_us: f64,
    /// Milliseconds from the workload running on the destination to every
    /// page being local there (the source copy is killed then).
    pub all_local_ms: f64,
    /// Times the destination reconnected after the link broke (post-copy
    /// recovery).
    #[serde(default)]
    pub resumes: u32,
}

/// Where a migration is, for progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Copying while the workload runs.
    Precopy,
    /// The workload is frozen; the last pages and the state are on their way.
    Frozen,
    /// The workload runs on the destination.
    Done,
}

/// A progress report, after every round and phase change.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Progress {
    /// Phase.
    pub phase: Phase,
    /// The round just finished.
    pub round: u32,
    /// Page bytes sent so far.
    pub bytes_sent: u64,
    /// Bytes of memory with data.
    pub memory_bytes: u64,
    /// Estimated bytes still dirty.
    pub remaining_bytes: u64,
    /// Bytes the workload writes per second.
    pub dirty_bytes_per_sec: f64,
    /// Page throughput in bytes per second.
    pub throughput_bytes_per_sec: f64,
}

/// A duration in milliseconds, as the statistics give them.
pub(super) fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
