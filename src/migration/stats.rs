//! The figures of a migration, as QEMU's `info migrate` and Podman's
//! `--print-stats` give them: per round, the downtime in parts, totals.

use super::policy::SwitchReason;
use serde::{Deserialize, Serialize};
use std::time::Instant;

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

/// The downtime, from the moment the source starts stopping the tree to
/// the destination's report that its copy runs, as the source measures
/// it, in four consecutive parts that add up to `total_ms`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Downtime {
    /// The tree stopped to running on the destination, in milliseconds:
    /// the sum of the next four.
    pub total_ms: f64,
    /// Stopping every thread and reading the process state, until the
    /// first page copied while frozen left (or, none leaving, until the
    /// final round was closed).
    pub freeze_ms: f64,
    /// From there until the destination stored every page sent while
    /// frozen (in post-copy, only the pages that do not stay behind).
    pub final_transfer_ms: f64,
    /// The destination's restore, as it measured it.
    pub restore_ms: f64,
    /// The rest: the state on its way and stored, what the destination
    /// does around its restore, and the report's way back.
    pub resume_ms: f64,
    /// How long the source copy stayed frozen, from (a moment after) the
    /// same start until it was killed: the downtime, then the confirmation
    /// (and in post-copy the whole phase until every page was local), so
    /// it is not part of the sum and exceeds `total_ms`.
    pub frozen_ms: f64,
}

impl Downtime {
    /// The parts from the instants the source saw, in order: the tree
    /// stopping, the first page sent while frozen (or the final round's
    /// end when none was), the destination holding every page of it, its
    /// report of the copy running; `restore_ms` is the destination's
    /// restore, which happened between the last two (a larger figure is
    /// cut to that interval). Instants out of order count as equal, so the
    /// parts always add up to the total.
    pub fn partition(
        stopped: Instant,
        first_page: Instant,
        stored: Instant,
        running: Instant,
        restore_ms: f64,
    ) -> Self {
        let first_page = first_page.max(stopped);
        let stored = stored.max(first_page);
        let running = running.max(stored);
        let ms = |from: Instant, to: Instant| (to - from).as_secs_f64() * 1000.0;
        let answer_ms = ms(stored, running);
        let restore_ms = restore_ms.clamp(0.0, answer_ms);
        Downtime {
            total_ms: ms(stopped, running),
            freeze_ms: ms(stopped, first_page),
            final_transfer_ms: ms(first_page, stored),
            restore_ms,
            resume_ms: answer_ms - restore_ms,
            frozen_ms: 0.0,
        }
    }

    /// The four parts added (`total_ms` up to rounding).
    pub fn sum_of_parts(&self) -> f64 {
        self.freeze_ms + self.final_transfer_ms + self.restore_ms + self.resume_ms
    }
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
    /// The source recorded Commit and ended its copy, but the destination
    /// did not acknowledge: its copy, held frozen, runs once it asks the
    /// source for the decision (its recovery does).
    pub unacknowledged: bool,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn the_downtime_parts_add_up_to_the_total() {
        let t = Instant::now();
        let d = Downtime::partition(t, at(t, 7), at(t, 45), at(t, 120), 60.0);
        assert!((d.total_ms - 120.0).abs() < 1e-6, "{d:?}");
        assert!((d.freeze_ms - 7.0).abs() < 1e-6, "{d:?}");
        assert!((d.final_transfer_ms - 38.0).abs() < 1e-6, "{d:?}");
        assert!((d.restore_ms - 60.0).abs() < 1e-6, "{d:?}");
        assert!((d.resume_ms - 15.0).abs() < 1e-6, "{d:?}");
        assert!((d.sum_of_parts() - d.total_ms).abs() < 1e-6, "{d:?}");
    }

    #[test]
    fn a_restore_longer_than_its_interval_or_instants_out_of_order_still_partition() {
        let t = Instant::now();
        // The report behind: 111 ms of restore in a 10 ms interval (the
        // measurement the issue found adding up to more than the total).
        let d = Downtime::partition(t, at(t, 1), at(t, 166), at(t, 176), 111.0);
        assert!((d.sum_of_parts() - d.total_ms).abs() < 1e-6, "{d:?}");
        assert!((d.restore_ms - 10.0).abs() < 1e-6, "{d:?}");
        // A first page "before" the stop (a page of another process's
        // pre-copy): counts from the stop.
        let later = at(t, 5);
        let d = Downtime::partition(later, t, at(t, 20), at(t, 30), 4.0);
        assert_eq!(d.freeze_ms, 0.0);
        assert!((d.total_ms - 25.0).abs() < 1e-6, "{d:?}");
        assert!((d.sum_of_parts() - d.total_ms).abs() < 1e-6, "{d:?}");
    }
}
