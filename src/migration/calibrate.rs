//! The measured parts of the dry run's cost model ([`super::costmodel`])
//! and the documented estimates used where a part was not measured.
//!
//! Measured here: the source's freeze and state read, on the workload
//! itself (it is frozen and thawed once, as a migration's switch-over
//! would freeze it, without copying its private memory: a checkpoint into
//! a sink that takes no page and refuses to commit, so the engine resumes
//! the tree). The page throughput comes from the `--to` probe (QUIC page
//! streams with the real framing) scaled by the share of it a real
//! migration reaches; the agent's past migrations ([`super::history`])
//! refine what they measured.
//!
//! The estimates were measured on main on the testbed's machine kind
//! (issue 16's table, quiet machine): the pages of a 1 GiB pre-copy were
//! installed at restore in 600-840 ms (about 1.3 GB/s); freezing one
//! process of 1 GiB took 43-58 ms, 50 processes of 16 MiB 572 ms; a
//! 50-process restore 894 ms, of which about 650 ms of pages; the resume
//! 1-28 ms; a real migration moved 656-894 MB/s of pages where the
//! transport bench gave 1.2 GB/s. On a machine loaded by other builds
//! (this branch's bench run, 256 MiB at 0 and 32 MiB/s, four migrations)
//! the pages went at 138-315 MB/s where the probe gave about 500 MB/s,
//! were installed at 0.64-0.86 GB/s, and the real freeze took 21-38 ms
//! more than the dry run's measured one (the switch-over also stops the
//! tracker and collects the last dirty pages): the estimates below span
//! both.

use super::costmodel::{Calibration, Figure, WorkloadKind};
use crate::dump::sink::{CheckpointSink, MemoryMode};
use crate::dump::{self, CheckpointError, CheckpointOptions};
use crate::image::{Checkpoint, ImageSummary, NextStep, RoundReport};
use crate::inspect::StdioPolicy;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Of the probe's bandwidth, the share a real migration's page rounds
/// reach (reading the workload, storing on the destination): 0.55-0.75
/// quiet, 0.28-0.63 loaded.
const TRANSPORT_SHARE: Figure = Figure::estimate(0.5, 0.35);
/// Of the probe's bandwidth, the share post-copy's background push
/// reaches (reading the workload, installing on the destination, nothing
/// stored or staged): 0.7-0.95 for 1 GiB, 0.7-0.75 for 50 processes in
/// issue 17's bench.
const PUSH_SHARE: Figure = Figure::estimate(0.8, 0.25);
/// Fixed milliseconds per pre-copy round (scan, acknowledgement).
const ROUND_OVERHEAD_MS: Figure = Figure::estimate(10.0, 0.5);
/// The estimated freeze: fixed, per process, per thread beyond the first,
/// per GiB of memory (the state read scans the page tables).
const FREEZE_FIXED_MS: f64 = 5.0;
const FREEZE_PER_PROCESS_MS: f64 = 10.0;
const FREEZE_PER_THREAD_MS: f64 = 0.5;
const FREEZE_PER_GIB_MS: f64 = 35.0;
/// The uncertainty of the estimated freeze.
const FREEZE_SPREAD: f64 = 0.5;
/// The uncertainty of a freeze measured once on a (possibly loaded)
/// machine.
const MEASURED_FREEZE_SPREAD: f64 = 0.35;
/// What a real switch-over adds to the measured freeze: stopping the
/// dirty tracker and collecting the last dirty pages, a scan that grows
/// with the memory (1 GiB: 20-39 ms more than the dry run's freeze; the
/// busybox counter: 1 ms less).
const SWITCHOVER_FIXED_MS: f64 = 2.0;
const SWITCHOVER_PER_GIB_MS: f64 = 25.0;
const SWITCHOVER_SPREAD: f64 = 0.5;
/// What a lazy restore adds to the restore: 1 GiB in post-copy restored
/// in 27-34 ms (medians of three runs, issue 17's bench) where the
/// model's fixed and per-process parts give 10 ms.
const LAZY_RESTORE_MS: Figure = Figure::estimate(20.0, 0.5);
/// What it adds to the resume: 1 GiB resumed in 22-35 ms after a lazy
/// restore, 5 ms after a pre-copy one; the busybox container in 60-75 ms
/// against 43 (the same bench).
const LAZY_RESUME_MS: f64 = 20.0;
/// What a post-copy switch-over (no rounds) adds: the state and the list
/// of pages left behind sent, the source's tree moved into its hold.
/// Issue 17's bench once the transport started with a large congestion
/// window (the list no longer waits for delayed ACKs): the freeze and
/// the final transfer exceeded the measured freeze by 11-32 ms for 1 GiB
/// in one process, 0-5 ms for the busybox and Node.js containers, and
/// 34-194 ms for 50 processes (30 ms and 3 ms per process before).
const POSTCOPY_SWITCHOVER_FIXED_MS: f64 = 10.0;
const POSTCOPY_SWITCHOVER_PER_PROCESS_MS: f64 = 2.0;
/// Pre-copied pages installed per second at restore: 1.3-1.8 GB/s on a
/// quiet machine in issue 16's table, 0.64-0.86 GB/s loaded, and
/// 0.25-0.9 GB/s for 1 GiB in one process (1.0-1.1 GB/s for 50 processes
/// of 16 MiB) in this bench on a machine whose first write to a
/// page it has not touched lately is slow (a virtual machine's memory
/// given back to its host: a plain program writes 1 GiB of fresh memory at
/// 1.4-1.9 GB/s, 4 GiB at 0.4-1.0 GB/s).
const INSTALL_BYTES_PER_SEC: Figure = Figure::estimate(0.7e9, 0.5);
/// A restore's fixed, per-process and per-thread milliseconds.
const RESTORE_FIXED_MS: Figure = Figure::estimate(5.0, 0.5);
const RESTORE_PER_PROCESS_MS: Figure = Figure::estimate(5.0, 0.5);
const RESTORE_PER_THREAD_MS: Figure = Figure::estimate(0.5, 0.5);
/// From the restore's end to the source hearing the copy runs, per kind
/// of workload (medians of three pre-copy runs, issue 16's bench after
/// the container's creation moved to the offer): a plain tree (5-8 ms); a
/// container, created at the offer, whose runtime marks it started (the
/// busybox counter: 5-9 ms); one with addresses of its own, whose network
/// hook activates them beside the restore (the Node.js counter: 5-8 ms,
/// and its restore 8-12 ms longer for the hook it shares the cores
/// with: 28-29 ms when the hook ran before the restore); a Docker
/// container, created before the freeze by the destination's dockerd,
/// whose init is handed over by ferry-runc.
const RESUME_MS: Figure = Figure::estimate(10.0, 0.6);
const CONTAINER_RESUME_MS: Figure = Figure::estimate(10.0, 0.6);
const CONTAINER_WITH_NETWORK_RESUME_MS: Figure = Figure::estimate(20.0, 0.6);
const DOCKER_RESUME_MS: Figure = Figure::estimate(60.0, 0.6);
/// Session, offer and the end of the source's copy; a container's adds
/// its runtime's `create` at the offer (40-60 ms), and one with addresses
/// of its own the network hook's `prepare` (70-80 ms); a Docker
/// container's the destination dockerd's create and start at the offer
/// and the source dockerd's removal at the end.
const SESSION_MS: Figure = Figure::estimate(50.0, 0.6);
const CONTAINER_SESSION_MS: Figure = Figure::estimate(100.0, 0.6);
const CONTAINER_WITH_NETWORK_SESSION_MS: Figure = Figure::estimate(180.0, 0.6);
const DOCKER_SESSION_MS: Figure = Figure::estimate(400.0, 0.6);

/// The freeze and state read measured on the workload.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FreezeMeasurement {
    /// Milliseconds from stopping the first thread to the whole state
    /// read (the tree was thawed right after).
    pub freeze_ms: f64,
    /// Bytes of pages that must be read while frozen in any mode
    /// (shared and file-backed memory), read and dropped.
    pub frozen_page_bytes: u64,
}

/// A checkpoint sink that takes no private page, times the freeze up to
/// the complete state, and refuses to commit: the engine then resumes the
/// tree as it was.
#[derive(Default)]
struct FreezeTimer {
    stopping: Option<Instant>,
    committed: Option<f64>,
    frozen_page_bytes: u64,
}

/// Why [`FreezeTimer`] refuses to commit.
const DRY_RUN_ONLY: &str = "a dry run only measures the freeze";

impl CheckpointSink for FreezeTimer {
    fn write_pages(&mut self, _pid: i32, _vaddr: u64, data: &[u8]) -> Result<(), CheckpointError> {
        self.frozen_page_bytes += data.len() as u64;
        Ok(())
    }

    fn write_zero_pages(&mut self, _: i32, _: u64, _: u64) -> Result<(), CheckpointError> {
        Ok(())
    }

    fn round_done(&mut self, _: &RoundReport) -> Result<NextStep, CheckpointError> {
        Ok(NextStep::Freeze)
    }

    fn stopping(&mut self) {
        self.stopping = Some(Instant::now());
    }

    fn memory_mode(&self) -> MemoryMode {
        MemoryMode::Lazy { precopy: false }
    }

    fn lazy_pages(&mut self, _: i32, _: Vec<(u64, u64)>) -> Result<(), CheckpointError> {
        Ok(())
    }

    fn commit(&mut self, _: &Checkpoint) -> Result<ImageSummary, CheckpointError> {
        self.committed = self.stopping.map(|s| s.elapsed().as_secs_f64() * 1000.0);
        Err(CheckpointError::Sink {
            what: "commit".into(),
            why: DRY_RUN_ONLY.into(),
        })
    }
}

/// Freezes the tree rooted at `pid` once, reads its whole state as a
/// migration's switch-over would (its private memory excepted), and thaws
/// it: the workload stops for about the returned time. `container` says
/// whether `pid` is a container's init and how its stdio is treated, as
/// the migration would. The error is a sentence.
pub fn measure_freeze(
    pid: i32,
    container: Option<StdioPolicy>,
) -> Result<FreezeMeasurement, String> {
    let mut timer = FreezeTimer::default();
    let outcome = dump::checkpoint_into(
        pid,
        &mut timer,
        CheckpointOptions {
            leave_running: true,
            in_container: container.is_some(),
            external_stdio: container.unwrap_or_default(),
            ..CheckpointOptions::default()
        },
    );
    match (timer.committed, outcome) {
        (Some(freeze_ms), _) => Ok(FreezeMeasurement {
            freeze_ms,
            frozen_page_bytes: timer.frozen_page_bytes,
        }),
        (None, Err(e)) => Err(format!(
            "freezing process {pid} to measure the freeze failed: {e}"
        )),
        (None, Ok(_)) => Err(format!(
            "freezing process {pid} to measure the freeze ended without reading its state"
        )),
    }
}

/// The kind of container `id` whose init is `init` (`docker`: run by
/// dockerd), as the destination will rebuild it: with its addresses
/// when it has some of its own (what the migration's offer carries).
pub fn container_kind(
    id: &str,
    init: i32,
    docker: bool,
) -> Result<WorkloadKind, crate::container::ContainerError> {
    if docker {
        return Ok(WorkloadKind::Docker);
    }
    Ok(match crate::container::net::record(id, init)? {
        Some(_) => WorkloadKind::ContainerWithNetwork,
        None => WorkloadKind::Container,
    })
}

/// The threads of the processes `members` (those that ended meanwhile
/// count none).
pub fn tree_threads(members: &[i32]) -> u64 {
    members
        .iter()
        .filter_map(|&p| std::fs::read_dir(format!("/proc/{p}/task")).ok())
        .map(|tasks| tasks.count() as u64)
        .sum()
}

/// What the calibration is built from.
#[derive(Debug, Clone, Copy)]
pub struct Inputs {
    /// Bytes of memory of the workload.
    pub memory_bytes: u64,
    /// Processes of the tree.
    pub processes: u64,
    /// Threads of the tree.
    pub threads: u64,
    /// The freeze measured on the workload, if it was.
    pub freeze: Option<FreezeMeasurement>,
    /// The bandwidth the probe measured (true) or that was given or
    /// assumed (false), in bytes per second.
    pub bandwidth: (f64, bool),
    /// What kind of workload it is.
    pub kind: WorkloadKind,
}

/// The calibration from measurements where there are some and the
/// documented estimates elsewhere.
pub fn calibrate(i: &Inputs) -> Calibration {
    let extra_threads = i.threads.saturating_sub(i.processes) as f64;
    let freeze_ms = match i.freeze {
        Some(f) => Figure::measured(f.freeze_ms, MEASURED_FREEZE_SPREAD),
        None => Figure::estimate(
            FREEZE_FIXED_MS
                + FREEZE_PER_PROCESS_MS * i.processes.max(1) as f64
                + FREEZE_PER_THREAD_MS * extra_threads
                + FREEZE_PER_GIB_MS * i.memory_bytes as f64 / (1u64 << 30) as f64,
            FREEZE_SPREAD,
        ),
    };
    let (bandwidth, measured) = i.bandwidth;
    let share_of_link = |share: Figure| Figure {
        value: bandwidth * share.value,
        spread: share.spread,
        basis: if measured {
            super::costmodel::Basis::Measured
        } else {
            super::costmodel::Basis::Estimate
        },
    };
    let (resume_ms, session_ms) = match i.kind {
        WorkloadKind::Tree => (RESUME_MS, SESSION_MS),
        WorkloadKind::Container => (CONTAINER_RESUME_MS, CONTAINER_SESSION_MS),
        WorkloadKind::ContainerWithNetwork => (
            CONTAINER_WITH_NETWORK_RESUME_MS,
            CONTAINER_WITH_NETWORK_SESSION_MS,
        ),
        WorkloadKind::Docker => (DOCKER_RESUME_MS, DOCKER_SESSION_MS),
    };
    Calibration {
        throughput_bytes_per_sec: share_of_link(TRANSPORT_SHARE),
        push_bytes_per_sec: share_of_link(PUSH_SHARE),
        round_overhead_ms: ROUND_OVERHEAD_MS,
        freeze_ms,
        switchover_ms: Figure::estimate(
            SWITCHOVER_FIXED_MS
                + SWITCHOVER_PER_GIB_MS * i.memory_bytes as f64 / (1u64 << 30) as f64,
            SWITCHOVER_SPREAD,
        ),
        lazy_restore_ms: LAZY_RESTORE_MS,
        postcopy_switchover_ms: Figure::estimate(
            POSTCOPY_SWITCHOVER_FIXED_MS
                + POSTCOPY_SWITCHOVER_PER_PROCESS_MS * i.processes.max(1) as f64,
            SWITCHOVER_SPREAD,
        ),
        install_bytes_per_sec: INSTALL_BYTES_PER_SEC,
        restore_fixed_ms: RESTORE_FIXED_MS,
        restore_per_process_ms: RESTORE_PER_PROCESS_MS,
        restore_per_thread_ms: RESTORE_PER_THREAD_MS,
        resume_ms,
        lazy_resume_ms: Figure::estimate(resume_ms.value + LAZY_RESUME_MS, resume_ms.spread),
        session_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::costmodel::Basis;

    #[test]
    fn a_measured_freeze_replaces_the_estimate() {
        let mut i = Inputs {
            memory_bytes: 1 << 30,
            processes: 1,
            threads: 3,
            freeze: None,
            bandwidth: (1e9, true),
            kind: WorkloadKind::Tree,
        };
        let c = calibrate(&i);
        assert_eq!(c.freeze_ms.basis, Basis::Estimate);
        assert!((c.freeze_ms.value - (5.0 + 10.0 + 1.0 + 35.0)).abs() < 1e-9);
        assert_eq!(c.throughput_bytes_per_sec.basis, Basis::Measured);
        assert!((c.throughput_bytes_per_sec.value - 0.5e9).abs() < 1.0);
        i.freeze = Some(FreezeMeasurement {
            freeze_ms: 12.0,
            frozen_page_bytes: 0,
        });
        let c = calibrate(&i);
        assert_eq!(c.freeze_ms, Figure::measured(12.0, MEASURED_FREEZE_SPREAD));
        assert_eq!(
            c.switchover_ms.value,
            SWITCHOVER_FIXED_MS + SWITCHOVER_PER_GIB_MS
        );
    }
}
