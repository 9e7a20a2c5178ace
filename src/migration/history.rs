//! The measured parts of an agent's past migrations, kept to refine the
//! dry run's cost model: a JSON file in the agent's work directory
//! ([`HISTORY_FILE`]) holding the last [`HISTORY_LEN`] migrations this
//! agent sent (in any mode), oldest first, each with its destination,
//! the workload's size and the parts its statistics measured. A dry run to
//! the same destination uses them for the parts it cannot measure itself
//! (the real page throughput, the restore's page install, the resume, the
//! session); a file that cannot be read counts as no history.

use super::costmodel::{Basis, Calibration, Figure, WorkloadKind};
use super::stats::MigrationStats;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The history file's name in the work directory (no migration's
/// directory has a dot in its name).
pub const HISTORY_FILE: &str = "cost-history.json";
/// Migrations kept.
pub const HISTORY_LEN: usize = 16;
/// The least uncertainty given to a figure from history: one migration
/// under another load differs from the next.
const MIN_SPREAD: f64 = 0.2;
/// The most uncertainty given to a figure from history: a wider spread
/// (a rate near zero at the band's end) says the runs differ, not that
/// the next one could take forever.
const MAX_SPREAD: f64 = 0.5;

/// The measured parts of one past migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PastMigration {
    /// The destination agent's address.
    pub destination: String,
    /// Bytes of memory with data at the start.
    pub memory_bytes: u64,
    /// Processes of the tree.
    pub processes: u64,
    /// Threads of the tree.
    pub threads: u64,
    /// Page throughput of its rounds, bytes per second.
    pub throughput_bytes_per_sec: f64,
    /// Milliseconds of its pre-copy rounds.
    pub rounds_ms: f64,
    /// The downtime's parts, in milliseconds.
    pub freeze_ms: f64,
    /// Final transfer.
    pub final_transfer_ms: f64,
    /// The destination's restore.
    pub restore_ms: f64,
    /// Resume.
    pub resume_ms: f64,
    /// Request to done, in milliseconds.
    pub total_ms: f64,
    /// Bytes the destination staged before the freeze instead of
    /// installing them at the restore (a plain tree's root's anonymous
    /// memory, warm restore; a file written before holds none).
    #[serde(default)]
    pub staged_bytes: u64,
    /// What kind of workload moved (a file written before kinds were
    /// kept holds plain trees only).
    #[serde(default)]
    pub kind: WorkloadKind,
    /// It switched over lazily (post-copy or hybrid): its restore and
    /// resume are a lazy one's, its total holds the pages fetched after
    /// (a file written before modes were kept holds pre-copy only).
    #[serde(default)]
    pub lazy: bool,
}

impl PastMigration {
    /// The parts of a migration (`lazy`: post-copy or hybrid) of a
    /// `kind` workload of `processes` processes with `threads` threads,
    /// `staged_bytes` of it staged before the freeze, to `destination`,
    /// from its statistics.
    pub fn from_stats(
        (destination, lazy): (&str, bool),
        (kind, processes, threads, staged_bytes): (WorkloadKind, u64, u64, u64),
        s: &MigrationStats,
    ) -> Self {
        PastMigration {
            kind,
            lazy,
            staged_bytes,
            destination: destination.to_string(),
            memory_bytes: s.memory_bytes,
            processes,
            threads,
            throughput_bytes_per_sec: s.throughput_bytes_per_sec,
            rounds_ms: s.rounds.iter().map(|r| r.duration_ms).sum(),
            freeze_ms: s.downtime.freeze_ms,
            final_transfer_ms: s.downtime.final_transfer_ms,
            restore_ms: s.downtime.restore_ms,
            resume_ms: s.downtime.resume_ms,
            total_ms: s.total_ms,
        }
    }
}

/// The history kept in `work_dir` (empty when there is none or it cannot
/// be read).
pub fn load(work_dir: &Path) -> Vec<PastMigration> {
    std::fs::read(work_dir.join(HISTORY_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Adds `m` to the history in `work_dir`, dropping the oldest beyond
/// [`HISTORY_LEN`]. The file is replaced whole (written aside, renamed).
pub fn record(work_dir: &Path, m: PastMigration) -> std::io::Result<()> {
    let mut past = load(work_dir);
    past.push(m);
    let excess = past.len().saturating_sub(HISTORY_LEN);
    past.drain(..excess);
    let path = work_dir.join(HISTORY_FILE);
    let aside = work_dir.join(format!("{HISTORY_FILE}.new"));
    std::fs::write(&aside, serde_json::to_vec(&past)?)?;
    std::fs::rename(aside, path)
}

/// The median of `values` (None when empty) and its spread: half the
/// range over the median, between [`MIN_SPREAD`] and [`MAX_SPREAD`].
fn median_figure(mut values: Vec<f64>) -> Option<Figure> {
    values.retain(|v| v.is_finite() && *v > 0.0);
    values.sort_by(f64::total_cmp);
    let median = *values.get(values.len() / 2)?;
    let range = values[values.len() - 1] - values[0];
    Some(Figure {
        value: median,
        spread: (range / 2.0 / median).clamp(MIN_SPREAD, MAX_SPREAD),
        basis: Basis::History,
    })
}

/// Bytes a migration's rounds must have moved for their throughput to
/// stand for the link's: smaller rounds measure their fixed costs (the
/// busybox container's 40 KiB rounds: about 1 MB/s, where 1 GiB went at
/// 300-600 MB/s in the same bench).
const THROUGHPUT_SAMPLE_BYTES: f64 = 64.0 * 1024.0 * 1024.0;

/// The workload a dry run predicts for, as the history compares it with
/// past ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// What kind of workload it is.
    pub kind: WorkloadKind,
    /// Bytes of memory with data.
    pub memory_bytes: u64,
    /// Processes of the tree.
    pub processes: u64,
}

/// How far apart, as a ratio, two workloads' memory sizes or process
/// counts may be for one's page install to stand for the other's: the
/// install rate of one large process differs from that of many small
/// ones (0.25-0.9 against 1.0-1.1 GB/s in issue 17's bench).
const SIMILAR_RATIO: f64 = 2.0;

impl Shape {
    /// Whether past migration `m` moved a workload like this one.
    fn resembles(&self, m: &PastMigration) -> bool {
        let near = |a: u64, b: u64| {
            let (a, b) = (a.max(1) as f64, b.max(1) as f64);
            a.max(b) / a.min(b) <= SIMILAR_RATIO
        };
        m.kind == self.kind
            && near(m.memory_bytes, self.memory_bytes)
            && near(m.processes, self.processes)
    }
}

/// `c` with the parts the past migrations to `destination` measured: the
/// page throughput (never above `link`, the bandwidth measured now) from
/// any workload whose rounds moved at least [`THROUGHPUT_SAMPLE_BYTES`];
/// the resume and the session from workloads of the same kind as `shape`
/// (the destination's work around the restore differs between kinds), a
/// lazy restore's resume from lazy migrations and the rest from pre-copy
/// ones; the restore's page install (the
/// bytes it installed, the staged ones left out, over its restore time
/// less the fixed, per-process and per-thread parts of `c`) from pre-copy
/// migrations of workloads that resemble `shape` ([`SIMILAR_RATIO`]).
pub fn refine(
    c: &Calibration,
    past: &[PastMigration],
    destination: &str,
    shape: &Shape,
    link: f64,
) -> Calibration {
    let to_there: Vec<&PastMigration> = past
        .iter()
        .filter(|m| m.destination == destination)
        .collect();
    let of_kind = |lazy: bool| -> Vec<&PastMigration> {
        to_there
            .iter()
            .copied()
            .filter(|m| m.kind == shape.kind && m.lazy == lazy)
            .collect()
    };
    let (same, same_lazy) = (of_kind(false), of_kind(true));
    let figure = |of: &[&PastMigration], f: &dyn Fn(&PastMigration) -> f64| {
        median_figure(of.iter().map(|m| f(m)).collect())
    };
    let mut refined = *c;
    let throughput = median_figure(
        to_there
            .iter()
            .filter(|m| {
                m.throughput_bytes_per_sec * m.rounds_ms / 1000.0 >= THROUGHPUT_SAMPLE_BYTES
            })
            .map(|m| m.throughput_bytes_per_sec)
            .collect(),
    );
    if let Some(mut t) = throughput {
        t.value = t.value.min(link);
        refined.throughput_bytes_per_sec = t;
    }
    let install = |m: &PastMigration| {
        let fixed = c.restore_fixed_ms.value
            + c.restore_per_process_ms.value * m.processes.max(1) as f64
            + c.restore_per_thread_ms.value * m.threads.saturating_sub(m.processes) as f64;
        let install_ms = m.restore_ms - fixed;
        let installed = m.memory_bytes.saturating_sub(m.staged_bytes);
        (install_ms > 1.0 && installed > 0).then(|| installed as f64 / install_ms * 1000.0)
    };
    let alike = same.iter().filter(|m| shape.resembles(m));
    if let Some(i) = median_figure(alike.filter_map(|m| install(m)).collect()) {
        refined.install_bytes_per_sec = i;
    }
    if let Some(r) = figure(&same, &|m| m.resume_ms) {
        refined.resume_ms = r;
    }
    if let Some(r) = figure(&same_lazy, &|m| m.resume_ms) {
        refined.lazy_resume_ms = r;
    }
    let session = |m: &PastMigration| {
        m.total_ms - m.rounds_ms - m.freeze_ms - m.final_transfer_ms - m.restore_ms - m.resume_ms
    };
    if let Some(s) = figure(&same, &session) {
        refined.session_ms = s;
    }
    refined
}

#[cfg(test)]
mod tests {
    use super::*;

    fn past(destination: &str, throughput: f64, restore_ms: f64) -> PastMigration {
        PastMigration {
            destination: destination.into(),
            memory_bytes: 1 << 30,
            processes: 1,
            threads: 1,
            throughput_bytes_per_sec: throughput,
            rounds_ms: 1500.0,
            freeze_ms: 40.0,
            final_transfer_ms: 10.0,
            restore_ms,
            resume_ms: 20.0,
            total_ms: 1500.0 + 40.0 + 10.0 + restore_ms + 20.0 + 100.0,
            kind: WorkloadKind::Tree,
            staged_bytes: 0,
            lazy: false,
        }
    }

    /// A plain process of 1 GiB, like [`past`]'s.
    const TREE_OF_1_GIB: Shape = Shape {
        kind: WorkloadKind::Tree,
        memory_bytes: 1 << 30,
        processes: 1,
    };

    fn base() -> Calibration {
        let e = |v| Figure::estimate(v, 0.5);
        Calibration {
            throughput_bytes_per_sec: e(1e9),
            push_bytes_per_sec: e(1e9),
            round_overhead_ms: e(10.0),
            freeze_ms: e(40.0),
            switchover_ms: e(25.0),
            lazy_restore_ms: e(30.0),
            postcopy_switchover_ms: e(40.0),
            install_bytes_per_sec: e(1e9),
            restore_fixed_ms: e(5.0),
            restore_per_process_ms: e(5.0),
            restore_per_thread_ms: e(0.5),
            resume_ms: e(30.0),
            lazy_resume_ms: e(55.0),
            session_ms: e(50.0),
        }
    }

    #[test]
    fn the_medians_of_the_same_destination_replace_the_estimates() {
        let past = [
            past("b:7420", 600e6, 1034.0),
            past("b:7420", 800e6, 834.0),
            past("b:7420", 700e6, 934.0),
            past("c:7420", 10e6, 10.0),
        ];
        let c = refine(&base(), &past, "b:7420", &TREE_OF_1_GIB, 2e9);
        assert_eq!(c.throughput_bytes_per_sec.basis, Basis::History);
        assert_eq!(c.throughput_bytes_per_sec.value, 700e6);
        // Half the range over the median is a seventh: the floor wins.
        assert_eq!(c.throughput_bytes_per_sec.spread, MIN_SPREAD);
        // 934 ms of restore less 10 ms fixed and per process: 1 GiB in 924 ms.
        let expected = (1u64 << 30) as f64 / 0.924;
        assert!((c.install_bytes_per_sec.value - expected).abs() < 1.0);
        assert_eq!(c.resume_ms.value, 20.0);
        assert!((c.session_ms.value - 100.0).abs() < 1e-6);
        assert_eq!(c.freeze_ms, base().freeze_ms);
    }

    #[test]
    fn no_history_changes_nothing_and_the_link_caps_the_throughput() {
        assert_eq!(refine(&base(), &[], "b:7420", &TREE_OF_1_GIB, 2e9), base());
        let c = refine(
            &base(),
            &[past("b:7420", 900e6, 900.0)],
            "b:7420",
            &TREE_OF_1_GIB,
            500e6,
        );
        assert_eq!(c.throughput_bytes_per_sec.value, 500e6);
        assert_eq!(c.throughput_bytes_per_sec.spread, MIN_SPREAD);
    }

    #[test]
    fn another_kind_lends_its_throughput_only() {
        let mut container = past("b:7420", 600e6, 2000.0);
        container.kind = WorkloadKind::ContainerWithNetwork;
        container.resume_ms = 300.0;
        let c = refine(&base(), &[container], "b:7420", &TREE_OF_1_GIB, 2e9);
        assert_eq!(c.throughput_bytes_per_sec.value, 600e6);
        assert_eq!(c.resume_ms, base().resume_ms);
        assert_eq!(c.install_bytes_per_sec, base().install_bytes_per_sec);
        assert_eq!(c.session_ms, base().session_ms);
    }

    #[test]
    fn a_lazy_migration_lends_its_resume_to_lazy_modes_only() {
        let mut lazy = past("b:7420", 600e6, 40.0);
        lazy.lazy = true;
        lazy.resume_ms = 35.0;
        lazy.rounds_ms = 0.0;
        let c = refine(&base(), &[lazy], "b:7420", &TREE_OF_1_GIB, 2e9);
        assert_eq!(c.lazy_resume_ms.value, 35.0);
        assert_eq!(c.lazy_resume_ms.basis, Basis::History);
        // No rounds: no round throughput; its restore and session are a
        // lazy one's.
        assert_eq!(c.throughput_bytes_per_sec, base().throughput_bytes_per_sec);
        assert_eq!(c.resume_ms, base().resume_ms);
        assert_eq!(c.install_bytes_per_sec, base().install_bytes_per_sec);
        assert_eq!(c.session_ms, base().session_ms);
    }

    #[test]
    fn small_rounds_lend_no_throughput() {
        // 40 KiB in 40 ms of rounds.
        let mut small = past("b:7420", 1e6, 20.0);
        small.rounds_ms = 40.0;
        small.kind = WorkloadKind::Container;
        let c = refine(&base(), &[small], "b:7420", &TREE_OF_1_GIB, 2e9);
        assert_eq!(c.throughput_bytes_per_sec, base().throughput_bytes_per_sec);
    }

    #[test]
    fn staged_pages_are_not_counted_as_installed() {
        let mut warm = past("b:7420", 1e9, 10.0 + 100.0);
        warm.staged_bytes = 3 << 28;
        let c = refine(&base(), &[warm], "b:7420", &TREE_OF_1_GIB, 1e9);
        // A quarter of the GiB installed in the 100 ms beyond the fixed
        // parts.
        let expected = (1u64 << 28) as f64 / 0.1;
        assert!(
            (c.install_bytes_per_sec.value - expected).abs() < 1.0,
            "{c:?}"
        );
    }

    #[test]
    fn only_a_workload_alike_lends_its_page_install() {
        let one_big = past("b:7420", 600e6, 2000.0);
        let many_small = Shape {
            kind: WorkloadKind::Tree,
            memory_bytes: 800 << 20,
            processes: 50,
        };
        let c = refine(
            &base(),
            std::slice::from_ref(&one_big),
            "b:7420",
            &many_small,
            2e9,
        );
        assert_eq!(c.install_bytes_per_sec, base().install_bytes_per_sec);
        assert_eq!(c.resume_ms.value, one_big.resume_ms);
        let half = Shape {
            memory_bytes: 512 << 20,
            processes: 1,
            ..many_small
        };
        let c = refine(&base(), &[one_big], "b:7420", &half, 2e9);
        assert_eq!(c.install_bytes_per_sec.basis, Basis::History);
    }

    #[test]
    fn a_file_without_kinds_holds_trees() {
        let mut json = serde_json::to_value(past("b:7420", 1e6, 900.0)).unwrap();
        json.as_object_mut().unwrap().remove("kind");
        let read: PastMigration = serde_json::from_value(json).unwrap();
        assert_eq!(read.kind, WorkloadKind::Tree);
    }

    #[test]
    fn the_file_keeps_the_last_sixteen() {
        let dir = std::env::temp_dir().join(format!("ferry-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..20 {
            record(&dir, past("b:7420", 1e6 * f64::from(i + 1), 900.0)).unwrap();
        }
        let kept = load(&dir);
        assert_eq!(kept.len(), HISTORY_LEN);
        assert_eq!(kept[0].throughput_bytes_per_sec, 5e6);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
