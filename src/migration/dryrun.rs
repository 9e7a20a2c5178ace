//! The dry run (`migrate-agent dry-run`): before a maintenance window, find
//! out without risk whether a workload can move and what it would cost.
//! Every check checkpoint makes before freezing runs on the whole tree and
//! every refusal is listed; the real dirty tracker measures how fast the
//! workload writes (then is removed: the workload is left as it was); a
//! probe of the destination checks the offer as a migration would and
//! measures the bandwidth; the workload is frozen and thawed once to
//! measure its freeze (unless `--no-freeze`); and the cost model of a
//! migration ([`costmodel`], calibrated by [`calibrate`]) turns the
//! measurements into a prediction per mode, with the switch-over rule of a
//! real migration for the pre-copy rounds (`advice.rs`).
//!
//! The error band: every part of the model at its optimistic or
//! pessimistic end, at the mean dirty rate minus or plus one standard
//! deviation of the sampled rates; its width is reported.

use super::calibrate::{self, FreezeMeasurement};
use super::costmodel::{self, Calibration, Parts, WorkloadKind};
use super::policy::SwitchReason;
pub use super::probe::{probe, ProbeReport, PROBE_TRANSFER_BYTES};
use crate::dump;
use crate::image::{Vma, VmaKind, PAGE_SIZE};
use crate::inspect::{self, InspectError, TreeInspection};
use crate::memory::{DirtyBackend, DirtyTracker, PageRuns};
use crate::proc;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The bandwidth assumed without `--to` or `--bandwidth`: 1 GiB/s, about a
/// 10 Gbit/s link.
pub const DEFAULT_BANDWIDTH: u64 = 1 << 30;

/// How long the workload's CPU use is sampled before tracking starts, to
/// compare with its CPU use while tracked.
const CPU_BASELINE: Duration = Duration::from_millis(500);

/// The top mappings listed.
const TOP_MAPPINGS: usize = 5;

/// How often the stop flag is looked at while waiting.
const POLL: Duration = Duration::from_millis(20);

/// Why the dry run could not measure.
#[derive(Debug, thiserror::Error)]
pub enum DryRunError {
    /// The tree could not be read at all (no such process...).
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// The container named is not there or not running.
    #[error(transparent)]
    Container(#[from] crate::container::ContainerError),
    /// The Docker container named cannot be resolved through its dockerd.
    #[error(transparent)]
    Docker(#[from] crate::container::docker::DockerError),
}

/// One thing of the tree ferry cannot carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blocker {
    /// The process holding it.
    pub pid: i32,
    /// The resource: "fd 10", "mapping 0x...-0x...", "thread 42" or
    /// "process".
    pub resource: String,
    /// Why ferry refuses it, as checkpoint would say it.
    pub reason: String,
}

impl From<&InspectError> for Blocker {
    fn from(e: &InspectError) -> Self {
        use InspectError as E;
        let (pid, resource) = match e {
            E::UnsupportedFd { pid, fd, .. } => (*pid, format!("fd {fd}")),
            E::UnsupportedMapping {
                pid, start, end, ..
            } => (*pid, format!("mapping {start:#x}-{end:#x}")),
            E::Seccomp { pid, tid, .. } => (*pid, format!("thread {tid}")),
            E::NoSuchProcess { pid }
            | E::NotAProcess { pid, .. }
            | E::OwnProcess { pid }
            | E::AlreadyTraced { pid, .. }
            | E::NotAlive { pid, .. }
            | E::OtherNamespace { pid, .. } => (*pid, "process".to_string()),
            _ => (0, "tree".to_string()),
        };
        Blocker {
            pid,
            resource,
            reason: e.to_string(),
        }
    }
}

/// Every blocker of the tree rooted at `pid`, with the inspection (the
/// mappings to track); `container`: `pid` is a container's init, its
/// stdio held outside treated as the policy says.
pub fn inspect(
    pid: i32,
    container: Option<inspect::StdioPolicy>,
) -> Result<(TreeInspection, Vec<Blocker>), DryRunError> {
    let inspection = match container {
        None => inspect::inspect_tree(pid)?,
        Some(stdio) => inspect::inspect_container_tree(pid, stdio)?,
    };
    let blockers = inspection.blockers.iter().map(Blocker::from).collect();
    Ok((inspection, blockers))
}

/// How to measure.
#[derive(Debug, Clone, Copy)]
pub struct MeasureOptions<'a> {
    /// How long to track writes.
    pub duration: Duration,
    /// Time between two samples (reading and re-arming the written pages).
    pub interval: Duration,
    /// Set (by a SIGINT or SIGTERM handler) to stop early; the tracking is
    /// removed all the same.
    pub stop: &'a AtomicBool,
}

/// One sample of the dirty rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Milliseconds since tracking started, at the end of the sample.
    pub t_ms: f64,
    /// Bytes written per second over the sample.
    pub dirty_bytes_per_sec: f64,
}

/// The writes to one mapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MappingRate {
    /// The process.
    pub pid: i32,
    /// Start address.
    pub start: u64,
    /// End address.
    pub end: u64,
    /// "\[heap\]", "\[stack\]" or "anonymous".
    pub name: String,
    /// Bytes written per second, on average.
    pub dirty_bytes_per_sec: f64,
    /// Distinct bytes written over the whole measurement.
    pub working_set_bytes: u64,
}

/// CPU time the workload used per second of wall time, before and while
/// its writes were tracked: what tracking costs it (a workload that is
/// paced, not CPU-bound, shows the cost as more CPU, not as less work).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CpuLoad {
    /// Milliseconds of CPU per second before tracking.
    pub before_ms_per_sec: f64,
    /// Milliseconds of CPU per second while tracked.
    pub during_ms_per_sec: f64,
}

/// What tracking the workload's writes measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// The tracker used.
    pub backend: DirtyBackend,
    /// The processes of the tree: those live at the start and those that
    /// started during the measurement (a shell's commands), in that order.
    pub processes: Vec<i32>,
    /// Of those, the ones that ended during the measurement: their writes
    /// until then are counted.
    pub ended: Vec<i32>,
    /// Bytes of memory with data (resident): what round 0 would send.
    pub memory_bytes: u64,
    /// Of which anonymous: what post-copy could fetch on demand.
    pub anonymous_bytes: u64,
    /// Of those, the root's: what the destination of a plain tree's
    /// pre-copy stages before the freeze and moves into place instead of
    /// installing it (a warm restore).
    #[serde(default)]
    pub root_anonymous_bytes: u64,
    /// Milliseconds writes were tracked.
    pub duration_ms: f64,
    /// Whether a signal stopped the measurement early.
    pub interrupted: bool,
    /// The dirty rate over time.
    pub samples: Vec<Sample>,
    /// Mean bytes written per second.
    pub dirty_bytes_per_sec: f64,
    /// Standard deviation of the sampled rates.
    pub dirty_stddev_bytes_per_sec: f64,
    /// Distinct bytes written over the whole measurement.
    pub working_set_bytes: u64,
    /// The mappings written most.
    pub top_mappings: Vec<MappingRate>,
    /// Processes whose writes could not be tracked, with why: their memory
    /// is counted, their writes are not.
    pub untracked: Vec<String>,
    /// CPU use of the workload before and while tracked.
    pub cpu: Option<CpuLoad>,
    /// Threads of the tree's processes at the start.
    pub threads: u64,
    /// The freeze measured by freezing and thawing the workload once
    /// (None: not measured, see `freeze_note`).
    pub freeze: Option<FreezeMeasurement>,
    /// How the freeze was measured, or why it was not, as a sentence.
    pub freeze_note: String,
}

/// A tracked process: its tracker and its tracked mappings, with what was
/// written to each.
struct Tracked {
    pid: i32,
    tracker: Box<dyn DirtyTracker>,
    mappings: Vec<TrackedMapping>,
}

struct TrackedMapping {
    vma: Vma,
    pages: u64,
    written: PageRuns,
}

/// Tracks the writes of every process of the inspected tree for
/// `opts.duration`, sampling every `opts.interval`, then removes the
/// tracking (also when stopped early). The processes are stopped only for
/// the instant it takes to set the tracking up (one injected system call).
pub fn measure(inspection: &TreeInspection, opts: &MeasureOptions) -> Measurement {
    let members = &inspection.members;
    let memory_bytes = members
        .iter()
        .filter_map(|&p| proc::rss_bytes(p).ok())
        .sum();
    let anonymous_bytes = members
        .iter()
        .filter_map(|&p| proc::anonymous_bytes(p).ok())
        .sum();
    let root_anonymous_bytes = members
        .first()
        .and_then(|&root| proc::anonymous_bytes(root).ok())
        .unwrap_or(0);
    let threads = calibrate::tree_threads(members);
    let ticks = || -> u64 {
        members
            .iter()
            .filter_map(|&p| proc::cpu_ticks(p).ok())
            .sum()
    };
    let baseline_start = (Instant::now(), ticks());
    sleep_unless_stopped(CPU_BASELINE, opts.stop);
    // A process that ends takes its CPU time with it: never below zero.
    let baseline = (
        baseline_start.0.elapsed(),
        ticks().saturating_sub(baseline_start.1),
    );

    let mut untracked = Vec::new();
    let mut tracked = Vec::new();
    for (pid, vmas) in &inspection.layouts {
        if opts.stop.load(Ordering::SeqCst) {
            break;
        }
        if let Some(t) = track(*pid, vmas, &mut untracked) {
            tracked.push(t);
        }
    }
    let mut processes = members.clone();
    let mut ended = Vec::new();

    let started = Instant::now();
    let ticks_at_start = ticks();
    let mut samples = Vec::new();
    let mut last = started;
    let mut next = started;
    while !opts.stop.load(Ordering::SeqCst) && started.elapsed() < opts.duration {
        next += opts.interval;
        let wait = next
            .min(started + opts.duration)
            .saturating_duration_since(Instant::now());
        sleep_unless_stopped(wait, opts.stop);
        let pages: u64 = tracked.iter_mut().map(|t| sample(t, &mut untracked)).sum();
        // Processes come and go (a shell loop's commands): the ended are
        // dropped, the new are tracked from now on.
        tracked.retain(|t| {
            let alive = !inspect::gone(t.pid);
            if !alive {
                ended.push(t.pid);
            }
            alive
        });
        if let Some(&root) = members.first() {
            follow_new_processes(root, &mut processes, &mut tracked, &mut untracked);
        }
        let now = Instant::now();
        let secs = (now - last).as_secs_f64().max(1e-3);
        last = now;
        samples.push(Sample {
            t_ms: (now - started).as_secs_f64() * 1000.0,
            dirty_bytes_per_sec: (pages * PAGE_SIZE) as f64 / secs,
        });
        tracked.retain(|t| !t.mappings.is_empty());
    }
    let duration = started.elapsed();
    let during_ticks = ticks().saturating_sub(ticks_at_start);
    let (pages, working_set, mut top) = summarize(&tracked, duration);
    // Closing the trackers removes the tracking from the processes.
    drop(tracked);

    let secs = duration.as_secs_f64().max(1e-3);
    let mean = (pages * PAGE_SIZE) as f64 / secs;
    let variance = samples
        .iter()
        .map(|s| (s.dirty_bytes_per_sec - mean).powi(2))
        .sum::<f64>()
        / samples.len().max(1) as f64;
    top.truncate(TOP_MAPPINGS);
    let tick_ms = 1000.0 / clock_ticks_per_sec();
    let cpu = (baseline.0 >= CPU_BASELINE).then(|| CpuLoad {
        before_ms_per_sec: baseline.1 as f64 * tick_ms / baseline.0.as_secs_f64(),
        during_ms_per_sec: during_ticks as f64 * tick_ms / secs,
    });
    Measurement {
        backend: DirtyBackend::detect(),
        processes,
        ended,
        memory_bytes,
        anonymous_bytes,
        root_anonymous_bytes,
        duration_ms: secs * 1000.0,
        interrupted: opts.stop.load(Ordering::SeqCst),
        samples,
        dirty_bytes_per_sec: mean,
        dirty_stddev_bytes_per_sec: variance.sqrt(),
        working_set_bytes: working_set * PAGE_SIZE,
        top_mappings: top,
        untracked,
        cpu,
        threads,
        freeze: None,
        freeze_note: "the freeze was not measured".into(),
    }
}

/// Starts tracking the writes of process `pid` in its mappings `vmas`.
/// A process that could not be tracked is noted in `untracked`, unless it
/// ended meanwhile (nothing of it is left to track).
fn track(pid: i32, vmas: &[Vma], untracked: &mut Vec<String>) -> Option<Tracked> {
    match dump::precopy::start_tracking(pid, vmas) {
        Ok(tracker) => {
            let mappings = vmas
                .iter()
                .filter(|v| tracker.is_tracked(v.start, v.end))
                .map(|v| TrackedMapping {
                    vma: v.clone(),
                    pages: 0,
                    written: PageRuns::default(),
                })
                .collect();
            Some(Tracked {
                pid,
                tracker,
                mappings,
            })
        }
        Err(_) if inspect::gone(pid) => None,
        Err(e) => {
            untracked.push(format!("process {pid}: {e}"));
            None
        }
    }
}

/// Tracks the processes of the tree rooted at `root` that started since
/// the last look (not in `processes`), adding them to `processes`.
fn follow_new_processes(
    root: i32,
    processes: &mut Vec<i32>,
    tracked: &mut Vec<Tracked>,
    untracked: &mut Vec<String>,
) {
    let Ok(members) = inspect::collect_tree(root) else {
        return;
    };
    for pid in members {
        if processes.contains(&pid) {
            continue;
        }
        processes.push(pid);
        let Ok(maps) = proc::read_maps(pid) else {
            continue;
        };
        let (vmas, _) = inspect::mappings::classify_each_mapping(pid, &maps);
        if let Some(t) = track(pid, &vmas, untracked) {
            tracked.push(t);
        }
    }
}

/// Reads and re-arms the pages process `t` wrote since the last sample;
/// returns how many. A mapping that cannot be scanned any more (unmapped)
/// is dropped from the tracking, with a note.
fn sample(t: &mut Tracked, untracked: &mut Vec<String>) -> u64 {
    let mut total = 0;
    let mut runs = Vec::new();
    let pid = t.pid;
    t.mappings.retain_mut(|m| {
        runs.clear();
        match t
            .tracker
            .written(&[(m.vma.start, m.vma.end)], true, &mut runs)
        {
            Ok(()) => {
                let pages: u64 = runs.iter().map(|r| (r.1 - r.0) / PAGE_SIZE).sum();
                m.pages += pages;
                m.written.extend(runs.clone());
                total += pages;
                true
            }
            // A process that ended is dropped after this sample.
            Err(_) if inspect::gone(pid) => false,
            Err(e) => {
                untracked.push(format!(
                    "process {pid}: mapping {:#x}-{:#x} no longer tracked: {e}",
                    m.vma.start, m.vma.end
                ));
                false
            }
        }
    });
    total
}

/// Pages written in all, distinct pages written, and the mappings by
/// pages written (most first).
fn summarize(tracked: &[Tracked], duration: Duration) -> (u64, u64, Vec<MappingRate>) {
    let secs = duration.as_secs_f64().max(1e-3);
    let mut pages = 0;
    let mut working_set = 0;
    let mut mappings = Vec::new();
    for t in tracked {
        for m in &t.mappings {
            pages += m.pages;
            working_set += m.written.pages();
            if m.pages > 0 {
                mappings.push(MappingRate {
                    pid: t.pid,
                    start: m.vma.start,
                    end: m.vma.end,
                    name: match m.vma.kind {
                        VmaKind::Heap => "[heap]".into(),
                        VmaKind::Stack => "[stack]".into(),
                        _ => "anonymous".into(),
                    },
                    dirty_bytes_per_sec: (m.pages * PAGE_SIZE) as f64 / secs,
                    working_set_bytes: m.written.pages() * PAGE_SIZE,
                });
            }
        }
    }
    mappings.sort_by(|a, b| b.dirty_bytes_per_sec.total_cmp(&a.dirty_bytes_per_sec));
    (pages, working_set, mappings)
}

fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::SeqCst) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(POLL));
    }
}

fn clock_ticks_per_sec() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

/// Where the bandwidth figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BandwidthSource {
    /// Measured by a probe of the destination.
    Measured,
    /// Given with --bandwidth.
    Given,
    /// [`DEFAULT_BANDWIDTH`].
    Default,
}

/// A figure with its error band.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Band {
    /// Every part of the cost model at its optimistic end, at the mean
    /// dirty rate minus one standard deviation.
    pub low: f64,
    /// Every part at its value, at the mean dirty rate.
    pub expected: f64,
    /// Every part at its pessimistic end, at the mean dirty rate plus one
    /// standard deviation.
    pub high: f64,
    /// The band's width (high - low) in percent of the expected value.
    pub width_pct: f64,
}

impl Band {
    /// The band of `low`, `expected` and `high`, with its width.
    pub fn of(low: f64, expected: f64, high: f64) -> Self {
        Band {
            low,
            expected,
            high,
            width_pct: costmodel::width_pct(low, expected, high),
        }
    }
}

/// A migration mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Copy rounds while running, freeze for the rest.
    Precopy,
    /// Freeze for the state, run on the destination, fetch pages on demand.
    Postcopy,
    /// One pre-copy round, then post-copy.
    Hybrid,
}

impl Mode {
    /// The mode as `migrate --mode` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Precopy => "precopy",
            Mode::Postcopy => "postcopy",
            Mode::Hybrid => "hybrid",
        }
    }
}

/// What a migration in one mode would cost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModePrediction {
    /// The mode.
    pub mode: Mode,
    /// Milliseconds frozen: freeze, final transfer, restore and resume.
    pub downtime_ms: Band,
    /// Milliseconds from start to the workload running on the destination
    /// with all its memory.
    pub total_ms: Band,
    /// Bytes sent, at the mean dirty rate.
    pub bytes_sent: u64,
    /// Pre-copy rounds at the mean dirty rate (pre-copy only).
    pub rounds: Option<u32>,
    /// Why pre-copy would stop, at the mean dirty rate (pre-copy only).
    pub switch_reason: Option<SwitchReason>,
    /// The share of the page throughput the workload's writes take at
    /// the band's pessimistic end (its dirty rate plus a standard
    /// deviation, the throughput at its slow end; pre-copy only): above
    /// a half its convergence is at risk.
    pub dirty_share: Option<f64>,
    /// The expected prediction's parts.
    pub parts: Parts,
}

/// The dry run's advice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// The mode to use (None: the workload cannot move).
    pub mode: Option<Mode>,
    /// The --max-downtime to give, in milliseconds.
    pub max_downtime_ms: Option<f64>,
    /// Why, as a sentence.
    pub why: String,
}

/// The whole dry-run report (what `--json` prints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DryRunReport {
    /// The workload's root PID (a container's init).
    pub pid: i32,
    /// What kind of workload it is.
    pub kind: WorkloadKind,
    /// The container, as the user named it, if one was.
    pub container: Option<String>,
    /// Whether it would move: no blocker, and the destination (if asked)
    /// reachable and willing.
    pub can_move: bool,
    /// Everything of the tree ferry cannot carry.
    pub blockers: Vec<Blocker>,
    /// What tracking measured.
    pub measurement: Measurement,
    /// The destination's answer, if one was asked.
    pub destination: Option<DestinationReport>,
    /// The bandwidth the predictions use, in bytes per second.
    pub bandwidth_bytes_per_sec: f64,
    /// Where it comes from.
    pub bandwidth_source: BandwidthSource,
    /// The downtime limit the pre-copy prediction used, in milliseconds.
    pub max_downtime_ms: f64,
    /// One prediction per mode.
    pub predictions: Vec<ModePrediction>,
    /// The advice.
    pub recommendation: Recommendation,
    /// The TCP connections the tree holds, which move with it, as
    /// "local -> remote".
    pub connections: Vec<String>,
    /// The cost model's figures the predictions used, each with where it
    /// comes from.
    pub calibration: Calibration,
}

impl DryRunReport {
    /// The report, listing `connections` as carried.
    pub fn carrying(mut self, connections: &[crate::image::TcpFlow]) -> Self {
        self.connections = connections
            .iter()
            .map(|f| format!("{} -> {}", f.local, f.remote))
            .collect();
        self
    }
}

/// What a dry run looked at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    /// The workload's root PID (a container's init), as the process
    /// running the dry run sees it.
    pub pid: i32,
    /// What kind of workload it is: the cost model's estimates and the
    /// history it learns from are per kind.
    pub kind: WorkloadKind,
    /// The container, as the user named it ("container ID", "Docker
    /// container NAME"), if one was.
    pub container: Option<String>,
    /// Why the workload cannot move in post-copy or hybrid mode, if it
    /// cannot (a runc container without CAP_SYS_PTRACE).
    pub lazy_refusal: Option<String>,
}

impl Subject {
    /// A plain process tree rooted at `pid`.
    pub fn tree(pid: i32) -> Self {
        Subject {
            pid,
            kind: WorkloadKind::Tree,
            container: None,
            lazy_refusal: None,
        }
    }
}

/// The destination part of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DestinationReport {
    /// The address asked.
    pub address: String,
    /// Whether a session could be opened and the probe answered.
    pub reachable: bool,
    /// Whether it would take the workload.
    pub compatible: bool,
    /// The probe's answer, when reachable.
    pub probe: Option<ProbeReport>,
    /// Why it is unreachable, or why it would refuse.
    pub error: Option<String>,
}

impl DestinationReport {
    /// Builds the report from a probe's outcome.
    pub fn from_probe(address: &str, outcome: Result<ProbeReport, String>) -> Self {
        match outcome {
            Ok(p) => DestinationReport {
                address: address.to_string(),
                reachable: true,
                compatible: p.refusal.is_none(),
                error: p.refusal.clone(),
                probe: Some(p),
            },
            Err(e) => DestinationReport {
                address: address.to_string(),
                reachable: false,
                compatible: false,
                probe: None,
                error: Some(e),
            },
        }
    }
}
