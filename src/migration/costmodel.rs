//! The dry run's cost model of a migration: what a migration spends, part
//! by part, each part a figure calibrated on the host pair where it can be
//! and a documented estimate where it cannot, so that a prediction says
//! what it rests on.
//!
//! The parts, as a real migration's statistics split them
//! ([`super::stats::Downtime`]):
//! - the pre-copy rounds: each round sends what the workload wrote during
//!   the previous one at the page throughput of a real migration, plus a
//!   fixed cost per round (the dirty scan, the round's acknowledgement);
//!   the rounds stop by the policy's own rule ([`policy::decide`]) fed
//!   with the simulated rounds;
//! - the freeze: stopping every thread and reading the state (measured
//!   on the workload itself by freezing and thawing it once, or estimated
//!   per process and per thread);
//! - the final transfer: what was written during the last round, at the
//!   page throughput;
//! - the restore: fixed, per-process and per-thread costs, plus the
//!   install of every page the destination holds but those a warm
//!   restore staged before the freeze (a plain tree's root's), which it
//!   moves into place;
//! - the resume: the state's way to the destination and the report's way
//!   back, plus the workload's start there;
//! - the session: opening it, the offer, and ending the source's copy.
//!
//! Downtime is freeze, final transfer, restore and resume added; the
//! total adds the session and the rounds to it. Each part carries a
//! relative uncertainty; the band is every part at its optimistic end
//! (low) and at its pessimistic end (high), with the dirty rate one
//! standard deviation below or above.
//! Pure functions: the measuring is elsewhere ([`super::calibrate`]).

use super::policy::{self, Decision, Limits, SwitchReason};
use crate::image::{RoundReport, PAGE_SIZE};
use serde::{Deserialize, Serialize};

/// Where a figure of the calibration comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Measured by this dry run on this workload or host pair.
    Measured,
    /// From the measured parts of this agent's past migrations.
    History,
    /// A documented constant (see the figure's default).
    Estimate,
}

/// One figure of the calibration: a value, its relative uncertainty (0.2:
/// plus or minus a fifth) and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// The expected value.
    pub value: f64,
    /// The relative uncertainty, both ways.
    pub spread: f64,
    /// Where it comes from.
    pub basis: Basis,
}

impl Figure {
    /// A documented estimate.
    pub const fn estimate(value: f64, spread: f64) -> Self {
        Figure {
            value,
            spread,
            basis: Basis::Estimate,
        }
    }

    /// A measured figure.
    pub const fn measured(value: f64, spread: f64) -> Self {
        Figure {
            value,
            spread,
            basis: Basis::Measured,
        }
    }

    /// This figure as a cost (more is worse) at `corner`.
    fn cost(&self, corner: Corner) -> f64 {
        self.value * (1.0 + corner.sign() * self.spread)
    }

    /// This figure as a rate (more is better) at `corner`.
    fn rate(&self, corner: Corner) -> f64 {
        (self.value * (1.0 - corner.sign() * self.spread)).max(1.0)
    }
}

/// One end of the band, or its middle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corner {
    /// Every part at its optimistic end.
    Low,
    /// Every part at its value.
    Expected,
    /// Every part at its pessimistic end.
    High,
}

impl Corner {
    /// The three, in band order.
    pub const ALL: [Corner; 3] = [Corner::Low, Corner::Expected, Corner::High];

    fn sign(self) -> f64 {
        match self {
            Corner::Low => -1.0,
            Corner::Expected => 0.0,
            Corner::High => 1.0,
        }
    }
}

/// What kind of workload a migration moves: the destination's work
/// around the restore differs (a runtime's `create`, a network hook), so
/// the cost model estimates it, and the agent's history keeps it, per
/// kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    /// A plain process tree.
    #[default]
    Tree,
    /// A container of an OCI runtime sharing the host's network, or with
    /// a network namespace holding only loopback: the destination's
    /// runtime creates it around the restore.
    Container,
    /// A container with addresses of its own: the destination's network
    /// hook gives them back too.
    ContainerWithNetwork,
    /// A Docker container: the destination's dockerd creates and starts
    /// it when the offer arrives, before the freeze.
    Docker,
}

/// What a migration between this host pair costs, part by part.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Bytes of pages per second a real migration moves (its page streams,
    /// reading the workload and storing on the destination).
    pub throughput_bytes_per_sec: Figure,
    /// Bytes of pages per second post-copy's background push moves once
    /// the workload runs on the destination (nothing stored or staged
    /// there: faster than the rounds).
    pub push_bytes_per_sec: Figure,
    /// Fixed milliseconds per pre-copy round.
    pub round_overhead_ms: Figure,
    /// Milliseconds to stop the whole tree and read its state.
    pub freeze_ms: Figure,
    /// Milliseconds a switch-over after pre-copy rounds adds to the
    /// freeze: stopping the dirty tracker and collecting the last dirty
    /// pages (post-copy without rounds has neither).
    pub switchover_ms: Figure,
    /// Milliseconds a lazy restore (post-copy, hybrid) adds: registering
    /// the memory with a userfaultfd and starting the fault server.
    pub lazy_restore_ms: Figure,
    /// Milliseconds a post-copy switch-over without rounds adds to the
    /// downtime: the state and the list of pages left behind sent, the
    /// source's tree moved into its hold, per process.
    pub postcopy_switchover_ms: Figure,
    /// Bytes per second the destination's restore installs pre-copied
    /// pages at.
    pub install_bytes_per_sec: Figure,
    /// Fixed milliseconds of a restore.
    pub restore_fixed_ms: Figure,
    /// Milliseconds of a restore per process.
    pub restore_per_process_ms: Figure,
    /// Milliseconds of a restore per thread beyond each process's first.
    pub restore_per_thread_ms: Figure,
    /// Milliseconds from the restore's end to the source hearing that the
    /// copy runs (the state's way there included).
    pub resume_ms: Figure,
    /// The same after a lazy restore (post-copy, hybrid): its report and
    /// the fault server's start take their own time, and no two-phase
    /// commit holds the copy.
    pub lazy_resume_ms: Figure,
    /// Milliseconds of a migration outside its rounds and downtime: the
    /// session, the offer, ending the source's copy.
    pub session_ms: Figure,
}

/// The workload as the dry run measured it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Workload {
    /// Bytes of memory with data (what round 0 sends).
    pub memory_bytes: u64,
    /// Bytes written per second.
    pub dirty_bytes_per_sec: f64,
    /// Distinct bytes written over the measurement: a round never has more
    /// to send than this.
    pub working_set_bytes: u64,
    /// Processes of the tree.
    pub processes: u64,
    /// Threads of the tree (each process's first included).
    pub threads: u64,
    /// Bytes a pre-copy's destination stages before the freeze and moves
    /// into place instead of installing them (a plain tree's root's
    /// anonymous memory; none for a container, restored in the init its
    /// runtime made).
    pub staged_bytes: u64,
}

/// The parts of a modelled migration, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Parts {
    /// The pre-copy rounds (hybrid's too).
    pub rounds_ms: f64,
    /// Stopping the tree and reading its state.
    pub freeze_ms: f64,
    /// The pages sent while frozen.
    pub final_transfer_ms: f64,
    /// The destination's restore, page install included.
    pub restore_ms: f64,
    /// The rest until the source hears the copy runs.
    pub resume_ms: f64,
    /// Outside rounds and downtime (session, offer, end).
    pub session_ms: f64,
    /// After the downtime: post-copy's pages still to fetch.
    pub after_ms: f64,
}

impl Parts {
    /// Frozen to running on the destination.
    pub fn downtime_ms(&self) -> f64 {
        self.freeze_ms + self.final_transfer_ms + self.restore_ms + self.resume_ms
    }

    /// From the request to the workload running with all its memory.
    pub fn total_ms(&self) -> f64 {
        self.session_ms + self.rounds_ms + self.downtime_ms() + self.after_ms
    }
}

/// A pre-copy migration as modelled at one corner.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrecopyCost {
    /// Its parts.
    pub parts: Parts,
    /// Rounds, round 0 included.
    pub rounds: u32,
    /// Page bytes sent in all, the frozen part included.
    pub bytes_sent: u64,
    /// Why the rounds stopped.
    pub reason: SwitchReason,
}

/// The rounds of a pre-copy migration of `w` at `throughput` bytes/s with
/// `overhead_ms` per round, stopped by the policy's rule: (rounds, bytes
/// sent while running, their milliseconds, bytes left for the freeze,
/// why they stopped).
fn simulate_rounds(
    w: &Workload,
    throughput: f64,
    overhead_ms: f64,
    limits: &Limits,
) -> (u32, f64, f64, f64, SwitchReason) {
    let page = PAGE_SIZE as f64;
    let written = |ms: f64| (w.dirty_bytes_per_sec * ms / 1000.0).min(w.working_set_bytes as f64);
    let mut rounds = Vec::new();
    let mut to_send = w.memory_bytes as f64;
    let mut dirty_at_start = to_send;
    let (mut sent, mut elapsed) = (0.0, 0.0);
    loop {
        let duration_ms = overhead_ms + to_send / throughput * 1000.0;
        rounds.push(RoundReport {
            pid: 0,
            round: rounds.len() as u32,
            dirty_pages: (dirty_at_start / page) as u64,
            pages_written: (to_send / page).ceil() as u64,
            zero_pages: 0,
            duration_ms,
        });
        sent += to_send;
        elapsed += duration_ms;
        let left = written(duration_ms);
        if let Decision::SwitchOver(reason) = policy::decide(&rounds, limits) {
            return (rounds.len() as u32, sent, elapsed, left, reason);
        }
        to_send = left;
        dirty_at_start = left;
    }
}

/// The restore of `w` when the destination installs `install_bytes` of
/// pages, at `corner`.
fn restore_ms(w: &Workload, c: &Calibration, install_bytes: f64, corner: Corner) -> f64 {
    let extra_threads = w.threads.saturating_sub(w.processes) as f64;
    c.restore_fixed_ms.cost(corner)
        + c.restore_per_process_ms.cost(corner) * w.processes.max(1) as f64
        + c.restore_per_thread_ms.cost(corner) * extra_threads
        + install_bytes / c.install_bytes_per_sec.rate(corner) * 1000.0
}

/// Milliseconds a warm restore takes to move a GiB of staged pages into
/// place (mremap moves page tables, not bytes; 2-4 ms measured).
const STAGED_MOVE_MS_PER_GIB: f64 = 4.0;

/// Milliseconds to move `staged` bytes into place.
fn staged_move_ms(staged: f64) -> f64 {
    staged / (1u64 << 30) as f64 * STAGED_MOVE_MS_PER_GIB
}

/// The share of the page throughput at its slow end that `w`'s writes
/// take: pre-copy's rounds shrink by that factor each, so that near one
/// they hardly shrink, and a slower stretch of the link or of the
/// machine stops them converging.
pub fn dirty_share(w: &Workload, c: &Calibration) -> f64 {
    w.dirty_bytes_per_sec / c.throughput_bytes_per_sec.rate(Corner::High)
}

/// The share of the page throughput (at its slow end) above which the
/// workload's writes put pre-copy's convergence at risk. Issue 17's
/// bench, 1 GiB rewritten at 256 MiB/s (0.86 of it): pre-copy converged
/// in three runs of three in one bench, froze 150-190 ms; in one run of
/// three in the next, which froze 200 ms, and the two others 856 and
/// 1735 ms (the rounds slowed, pre-copy gave up converging and sent the
/// rest frozen); post-copy froze 141-167 ms in both. At 64 MiB/s (0.21)
/// every run converged. Issue 17's next bench: 0 of 3 converged, froze
/// 699, 946 and 4662 ms (the last sent the whole working set frozen).
pub const AT_RISK_SHARE: f64 = 0.5;

/// A pre-copy migration of `w` at `corner`. Where the writes put its
/// convergence at risk ([`AT_RISK_SHARE`]), the high corner is the
/// outcome the benches saw then: the rounds stall and the whole working
/// set goes frozen (a later round of a stalling run re-sends most of it).
pub fn precopy(w: &Workload, c: &Calibration, limits: &Limits, corner: Corner) -> PrecopyCost {
    let throughput = c.throughput_bytes_per_sec.rate(corner);
    let (rounds, sent, rounds_ms, left, reason) =
        simulate_rounds(w, throughput, c.round_overhead_ms.cost(corner), limits);
    let at_risk = corner == Corner::High && dirty_share(w, c) > AT_RISK_SHARE;
    let (left, reason) = if at_risk {
        (
            left.max(w.working_set_bytes as f64),
            SwitchReason::NotConverging,
        )
    } else {
        (left, reason)
    };
    // The restore installs every page the destination holds after the
    // freeze but the staged ones, which it moves into place.
    let staged = w.staged_bytes.min(w.memory_bytes) as f64;
    let installed = w.memory_bytes as f64 - staged;
    let parts = Parts {
        rounds_ms,
        freeze_ms: c.freeze_ms.cost(corner) + c.switchover_ms.cost(corner),
        final_transfer_ms: left / throughput * 1000.0,
        restore_ms: restore_ms(w, c, installed, corner) + staged_move_ms(staged),
        resume_ms: c.resume_ms.cost(corner),
        session_ms: c.session_ms.cost(corner),
        after_ms: 0.0,
    };
    PrecopyCost {
        parts,
        rounds,
        bytes_sent: (sent + left) as u64,
        reason,
    }
}

/// A post-copy migration of `w` at `corner`: frozen for the state and the
/// memory that cannot be fetched lazily (`frozen_bytes`), restored with no
/// page to install beyond those, then every other page fetched. With
/// `rounds` (hybrid: the policy's limits), pre-copy rounds run first, as
/// many as pre-copy's would, and only what the last of them left follows
/// lazily; the other pages are installed at restore, and of the memory
/// that cannot be fetched lazily only its share of what was left goes
/// frozen.
pub fn postcopy(
    w: &Workload,
    c: &Calibration,
    frozen_bytes: f64,
    rounds: Option<&Limits>,
    corner: Corner,
) -> Parts {
    let throughput = c.throughput_bytes_per_sec.rate(corner);
    let ms = |bytes: f64| bytes / throughput * 1000.0;
    let memory = w.memory_bytes as f64;
    let precopied = rounds.is_some();
    let (rounds_ms, lazy, frozen_bytes) = match rounds {
        Some(limits) => {
            let (_, _, rounds_ms, left, _) =
                simulate_rounds(w, throughput, c.round_overhead_ms.cost(corner), limits);
            let share = if memory > 0.0 { left / memory } else { 0.0 };
            (rounds_ms, left, frozen_bytes * share)
        }
        None => (0.0, (memory - frozen_bytes).max(0.0), frozen_bytes),
    };
    let switchover = if precopied {
        c.switchover_ms.cost(corner)
    } else {
        c.postcopy_switchover_ms.cost(corner)
    };
    let (round_installed, round_moved_ms) = if precopied {
        let staged = w.staged_bytes.min(w.memory_bytes) as f64;
        (memory - staged, staged_move_ms(staged))
    } else {
        (0.0, 0.0)
    };
    Parts {
        rounds_ms,
        freeze_ms: c.freeze_ms.cost(corner) + switchover,
        final_transfer_ms: ms(frozen_bytes),
        // A lazy restore installs every page the destination holds: in
        // hybrid, round 0's pages too, but those it staged, which it
        // moves.
        restore_ms: restore_ms(w, c, frozen_bytes + round_installed, corner)
            + round_moved_ms
            + c.lazy_restore_ms.cost(corner),
        resume_ms: c.lazy_resume_ms.cost(corner),
        session_ms: c.session_ms.cost(corner),
        after_ms: lazy / c.push_bytes_per_sec.rate(corner) * 1000.0,
    }
}

/// A figure's band, with its width relative to the expected value.
pub fn width_pct(low: f64, expected: f64, high: f64) -> f64 {
    if expected > 0.0 {
        (high - low) / expected * 100.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const MIB_F: f64 = MIB as f64;

    /// Exact figures: no spread, so the corners agree.
    fn calibration() -> Calibration {
        let exact = |v| Figure::measured(v, 0.0);
        Calibration {
            throughput_bytes_per_sec: exact(1024.0 * MIB_F),
            push_bytes_per_sec: exact(1024.0 * MIB_F),
            round_overhead_ms: exact(0.0),
            freeze_ms: exact(40.0),
            switchover_ms: exact(0.0),
            lazy_restore_ms: exact(0.0),
            postcopy_switchover_ms: exact(0.0),
            install_bytes_per_sec: exact(1024.0 * MIB_F),
            restore_fixed_ms: exact(10.0),
            restore_per_process_ms: exact(5.0),
            restore_per_thread_ms: exact(1.0),
            resume_ms: exact(20.0),
            lazy_resume_ms: exact(20.0),
            session_ms: exact(30.0),
        }
    }

    fn workload(memory_mib: u64, rate_mib: f64, ws_mib: u64) -> Workload {
        Workload {
            memory_bytes: memory_mib * MIB,
            dirty_bytes_per_sec: rate_mib * MIB_F,
            working_set_bytes: ws_mib * MIB,
            processes: 1,
            threads: 1,
            staged_bytes: 0,
        }
    }

    fn near(a: f64, b: f64) -> bool {
        (a - b).abs() < 0.5
    }

    #[test]
    fn an_idle_workload_is_one_full_copy_then_freeze_restore_resume() {
        let w = workload(1024, 0.0, 0);
        let p = precopy(&w, &calibration(), &Limits::default(), Corner::Expected);
        assert_eq!(p.rounds, 2);
        assert_eq!(p.reason, SwitchReason::FitsDowntime);
        assert!(near(p.parts.rounds_ms, 1000.0), "{p:?}");
        assert!(near(p.parts.final_transfer_ms, 0.0), "{p:?}");
        // 10 fixed + 5 for the process + 1 GiB at 1 GiB/s.
        assert!(near(p.parts.restore_ms, 1015.0), "{p:?}");
        assert!(near(p.parts.downtime_ms(), 40.0 + 1015.0 + 20.0), "{p:?}");
        assert!(near(p.parts.total_ms(), 30.0 + 1000.0 + 1075.0), "{p:?}");
    }

    #[test]
    fn staged_pages_are_moved_not_installed() {
        let mut w = workload(1024, 0.0, 0);
        w.staged_bytes = 768 * MIB;
        let p = precopy(&w, &calibration(), &Limits::default(), Corner::Expected);
        // 10 fixed + 5 for the process + 256 MiB at 1 GiB/s + 768 MiB
        // moved at 4 ms per GiB.
        assert!(near(p.parts.restore_ms, 15.0 + 250.0 + 3.0), "{p:?}");
        // Hybrid moves its round's staged pages too; post-copy has no
        // round to stage.
        let c = calibration();
        let hybrid = postcopy(&w, &c, 0.0, Some(&Limits::default()), Corner::Expected);
        let lazy_ms = c.lazy_restore_ms.value;
        assert!(near(hybrid.restore_ms, 268.0 + lazy_ms), "{hybrid:?}");
        let post = postcopy(&w, &c, 0.0, None, Corner::Expected);
        assert!(near(post.restore_ms, 15.0 + lazy_ms), "{post:?}");
    }

    #[test]
    fn a_moderate_writer_converges_within_the_limit() {
        let w = workload(1024, 64.0, 1024);
        let p = precopy(&w, &calibration(), &Limits::default(), Corner::Expected);
        assert_eq!(p.reason, SwitchReason::FitsDowntime);
        assert!(p.parts.final_transfer_ms <= 50.0, "{p:?}");
        assert!(p.rounds >= 2, "{p:?}");
    }

    #[test]
    fn a_writer_faster_than_the_link_gives_up_and_sends_its_working_set_frozen() {
        let w = workload(1024, 2048.0, 512);
        let p = precopy(&w, &calibration(), &Limits::default(), Corner::Expected);
        assert_eq!(p.reason, SwitchReason::NotConverging);
        assert!(near(p.parts.final_transfer_ms, 500.0), "{p:?}");
    }

    #[test]
    fn round_overheads_add_up_and_threads_cost_beyond_the_first() {
        let mut c = calibration();
        c.round_overhead_ms = Figure::measured(10.0, 0.0);
        let mut w = workload(1024, 0.0, 0);
        w.processes = 2;
        w.threads = 5;
        let p = precopy(&w, &c, &Limits::default(), Corner::Expected);
        // Two rounds, 10 ms each on top of the copy.
        assert!(near(p.parts.rounds_ms, 1020.0), "{p:?}");
        assert!(
            near(p.parts.restore_ms, 10.0 + 10.0 + 3.0 + 1000.0),
            "{p:?}"
        );
    }

    #[test]
    fn the_band_orders_and_its_width_is_reported() {
        let mut c = calibration();
        c.freeze_ms = Figure::estimate(40.0, 0.5);
        c.throughput_bytes_per_sec = Figure::measured(1024.0 * MIB_F, 0.2);
        let w = workload(256, 0.0, 0);
        let [low, exp, high] = Corner::ALL.map(|k| precopy(&w, &c, &Limits::default(), k));
        assert!(low.parts.downtime_ms() < exp.parts.downtime_ms());
        assert!(exp.parts.downtime_ms() < high.parts.downtime_ms());
        assert!(near(high.parts.freeze_ms - low.parts.freeze_ms, 40.0));
        assert!(near(width_pct(50.0, 100.0, 150.0), 100.0));
        assert_eq!(width_pct(0.0, 0.0, 0.0), 0.0);
    }

    #[test]
    fn postcopy_freezes_for_the_state_and_fetches_the_rest_after() {
        let w = workload(1024, 0.0, 0);
        let p = postcopy(&w, &calibration(), 0.0, None, Corner::Expected);
        assert!(near(p.downtime_ms(), 40.0 + 15.0 + 20.0), "{p:?}");
        assert!(near(p.after_ms, 1000.0), "{p:?}");
        let w = workload(1024, 64.0, 1024);
        // Hybrid runs pre-copy's rounds: 1 GiB in 1 s, then the 64 MiB
        // written meanwhile in 62.5 ms, which leaves 4 MiB (4 ms to send:
        // within the limit), fetched lazily.
        let h = postcopy(
            &w,
            &calibration(),
            0.0,
            Some(&Limits::default()),
            Corner::Expected,
        );
        assert!(near(h.rounds_ms, 1062.5), "{h:?}");
        assert!(near(h.restore_ms, 15.0 + 1000.0), "{h:?}");
        assert!(near(h.after_ms, 3.9), "{h:?}");
    }

    #[test]
    fn a_writer_near_the_throughput_puts_the_whole_working_set_at_the_high_end() {
        let mut c = calibration();
        c.throughput_bytes_per_sec = Figure::measured(1024.0 * MIB_F, 0.2);
        // 600 MiB/s against 819 at the slow end: converging is a coin toss.
        let w = workload(1024, 600.0, 1024);
        assert!(dirty_share(&w, &c) > AT_RISK_SHARE);
        let high = precopy(&w, &c, &Limits::default(), Corner::High);
        assert_eq!(high.reason, SwitchReason::NotConverging);
        assert!(near(high.parts.final_transfer_ms, 1250.0), "{high:?}");
        // At 64 MiB/s the high end is the simulated rounds'.
        let w = workload(1024, 64.0, 1024);
        let high = precopy(&w, &c, &Limits::default(), Corner::High);
        assert!(high.parts.final_transfer_ms < 50.0, "{high:?}");
    }
}
