//! The dry run's assessment: the measurement, the destination's answer
//! and the cost model ([`costmodel`], calibrated by [`calibrate`] and the
//! agent's past migrations) turned into a prediction per mode and advice.

use super::calibrate;
use super::costmodel::{self, Calibration, Corner, Parts, Workload, WorkloadKind, AT_RISK_SHARE};
use super::dryrun::{
    Band, BandwidthSource, Blocker, DestinationReport, DryRunReport, Measurement, Mode,
    ModePrediction, Recommendation, Subject, DEFAULT_BANDWIDTH,
};
use super::history::{self, PastMigration};
use super::policy::{Limits, SwitchReason};

/// Turns blockers, measurement and destination into predictions and
/// advice. The bandwidth is the probe's, else `bandwidth` (--bandwidth),
/// else [`DEFAULT_BANDWIDTH`]; `past` (the agent's past migrations)
/// refines the cost model for the probed destination and the workload
/// (its kind and shape).
pub fn assess(
    subject: Subject,
    blockers: Vec<Blocker>,
    measurement: Measurement,
    destination: Option<DestinationReport>,
    bandwidth: Option<u64>,
    limits: &Limits,
    past: &[PastMigration],
) -> DryRunReport {
    let measured = destination
        .as_ref()
        .and_then(|d| d.probe.as_ref())
        .map(|p| p.bandwidth_bytes_per_sec)
        .filter(|&b| b > 0.0);
    let (bw, source) = match (measured, bandwidth) {
        (Some(b), _) => (b, BandwidthSource::Measured),
        (None, Some(b)) => (b as f64, BandwidthSource::Given),
        (None, None) => (DEFAULT_BANDWIDTH as f64, BandwidthSource::Default),
    };
    let calibration = calibrate::calibrate(&calibrate::Inputs {
        memory_bytes: measurement.memory_bytes,
        processes: measurement.processes.len() as u64,
        threads: measurement.threads,
        freeze: measurement.freeze,
        bandwidth: (bw, source == BandwidthSource::Measured),
        kind: subject.kind,
    });
    let calibration = match destination.as_ref().and_then(|d| d.probe.as_ref()) {
        Some(p) => {
            let shape = history::Shape {
                kind: subject.kind,
                memory_bytes: measurement.memory_bytes,
                processes: measurement.processes.len() as u64,
            };
            history::refine(&calibration, past, &p.address, &shape, bw)
        }
        None => calibration,
    };
    // A warm restore stages a plain tree's root on the destination; a
    // container's init is its runtime's.
    let staged = match subject.kind {
        WorkloadKind::Tree => measurement.root_anonymous_bytes,
        _ => 0,
    };
    let predictions = predict_modes(&measurement, &calibration, limits, staged);
    let can_move = blockers.is_empty() && destination.as_ref().map_or(true, |d| d.compatible);
    let recommendation = recommend(
        &blockers,
        destination.as_ref(),
        &predictions,
        limits,
        subject.lazy_refusal.as_deref(),
    );
    DryRunReport {
        pid: subject.pid,
        kind: subject.kind,
        container: subject.container,
        can_move,
        blockers,
        measurement,
        destination,
        bandwidth_bytes_per_sec: bw,
        bandwidth_source: source,
        max_downtime_ms: limits.max_downtime_ms,
        predictions,
        recommendation,
        connections: Vec::new(),
        calibration,
    }
}

/// The three modes' predictions for a measured workload, from the cost
/// model ([`costmodel`]) calibrated with `calibration`; a pre-copy's
/// destination stages `staged_bytes` of it before the freeze.
pub fn predict_modes(
    m: &Measurement,
    calibration: &Calibration,
    limits: &Limits,
    staged_bytes: u64,
) -> Vec<ModePrediction> {
    let workload = |corner: Corner| Workload {
        memory_bytes: m.memory_bytes,
        dirty_bytes_per_sec: match corner {
            Corner::Low => (m.dirty_bytes_per_sec - m.dirty_stddev_bytes_per_sec).max(0.0),
            Corner::Expected => m.dirty_bytes_per_sec,
            Corner::High => m.dirty_bytes_per_sec + m.dirty_stddev_bytes_per_sec,
        },
        working_set_bytes: m.working_set_bytes,
        processes: (m.processes.len() as u64).max(1),
        threads: m.threads.max(m.processes.len() as u64),
        staged_bytes,
    };
    let band = |parts: [Parts; 3]| {
        let [low, exp, high] = parts;
        (
            Band::of(low.downtime_ms(), exp.downtime_ms(), high.downtime_ms()),
            Band::of(low.total_ms(), exp.total_ms(), high.total_ms()),
            exp,
        )
    };
    let pre = Corner::ALL.map(|k| costmodel::precopy(&workload(k), calibration, limits, k));
    let (downtime_ms, total_ms, parts) = band(pre.map(|p| p.parts));
    let expected = pre[1];
    let precopy = ModePrediction {
        mode: Mode::Precopy,
        downtime_ms,
        total_ms,
        bytes_sent: expected.bytes_sent,
        rounds: Some(expected.rounds),
        switch_reason: Some(expected.reason),
        dirty_share: Some(costmodel::dirty_share(&workload(Corner::High), calibration)),
        parts,
    };
    // Memory ferry cannot fetch lazily (file-backed, shared) goes while
    // frozen in post-copy. The measured freeze read exactly those pages;
    // without it, every
    // page that is not anonymous counts (clean file pages, which the
    // restore maps again, too: an upper bound).
    let frozen = m
        .freeze
        .map_or(m.memory_bytes.saturating_sub(m.anonymous_bytes), |f| {
            f.frozen_page_bytes
        }) as f64;
    let lazy = |precopied: bool| {
        let (downtime_ms, total_ms, parts) = band(Corner::ALL.map(|k| {
            costmodel::postcopy(
                &workload(k),
                calibration,
                frozen,
                precopied.then_some(limits),
                k,
            )
        }));
        // Hybrid sends its rounds at the page throughput (their fixed
        // costs counted in, a slight excess) and then what they left at
        // the push's.
        let sent = |ms: f64, rate: &costmodel::Figure| (ms / 1000.0 * rate.value.max(1.0)) as u64;
        ModePrediction {
            mode: if precopied {
                Mode::Hybrid
            } else {
                Mode::Postcopy
            },
            downtime_ms,
            total_ms,
            bytes_sent: if precopied {
                sent(parts.rounds_ms, &calibration.throughput_bytes_per_sec)
                    + sent(parts.after_ms, &calibration.push_bytes_per_sec)
            } else {
                m.memory_bytes
            },
            rounds: None,
            switch_reason: None,
            dirty_share: None,
            parts,
        }
    };
    vec![precopy, lazy(false), lazy(true)]
}

/// Picks the mode that freezes the workload least. Pre-copy never leaves
/// the workload depending on the link after the switch-over, so it is
/// kept unless a lazy mode (post-copy or hybrid; not when `lazy_refusal`
/// says the workload cannot move lazily) is expected to freeze it at
/// least [`LAZY_GAIN`] and [`LAZY_GAIN_MS`] less: a pre-copy restore
/// installs the pages it did not stage before the freeze (a container's,
/// the other processes of a tree) while frozen, so for such a workload of some size post-copy
/// freezes several times less. Where pre-copy's convergence is at risk
/// (the writes take more than [`AT_RISK_SHARE`] of the throughput at its
/// slow end), a lazy mode expected to freeze less at all is advised: its
/// downtime does not hang on the rounds shrinking. Pre-copy that does not
/// converge gets the limit its final transfer needs.
fn recommend(
    blockers: &[Blocker],
    destination: Option<&DestinationReport>,
    predictions: &[ModePrediction],
    limits: &Limits,
    lazy_refusal: Option<&str>,
) -> Recommendation {
    let cannot = |why: String| Recommendation {
        mode: None,
        max_downtime_ms: None,
        why,
    };
    if !blockers.is_empty() {
        return cannot(format!(
            "{} blocker(s) must go first: ferry refuses the workload as it is",
            blockers.len()
        ));
    }
    if let Some(d) = destination.filter(|d| !d.compatible) {
        return cannot(format!(
            "the destination {} {}",
            d.address,
            if d.reachable {
                "would refuse the workload"
            } else {
                "cannot be reached"
            }
        ));
    }
    let Some(pre) = predictions.iter().find(|p| p.mode == Mode::Precopy) else {
        return cannot("no prediction".into());
    };
    let lazy = predictions
        .iter()
        .filter(|p| p.mode != Mode::Precopy && lazy_refusal.is_none())
        .min_by(|a, b| a.downtime_ms.expected.total_cmp(&b.downtime_ms.expected));
    // --max-downtime bounds the final transfer (the policy's rule); the
    // freeze, the restore and the resume come on top whatever it says.
    let limit = limits.max_downtime_ms;
    let fixed = |p: &ModePrediction| p.parts.freeze_ms + p.parts.restore_ms + p.parts.resume_ms;
    let gain = if pre.dirty_share.is_some_and(|s| s > AT_RISK_SHARE) {
        0.0
    } else {
        (pre.downtime_ms.expected * LAZY_GAIN).max(LAZY_GAIN_MS)
    };
    if let Some(l) = lazy.filter(|l| l.downtime_ms.expected <= pre.downtime_ms.expected - gain) {
        return Recommendation {
            mode: Some(l.mode),
            max_downtime_ms: Some(limit),
            why: format!(
                "pre-copy would freeze {:.0}-{:.0} ms; {} freezes {:.0}-{:.0} ms, then the workload depends on the link for about {:.0} ms more, until its last page arrives (a source agent or link back within postcopy_recovery_secs serves it again)",
                pre.downtime_ms.low,
                pre.downtime_ms.high,
                l.mode.as_str(),
                l.downtime_ms.low,
                l.downtime_ms.high,
                l.parts.after_ms
            ),
        };
    }
    if pre.switch_reason == Some(SwitchReason::FitsDowntime) {
        return Recommendation {
            mode: Some(Mode::Precopy),
            max_downtime_ms: Some(limit),
            why: format!(
                "pre-copy converges in {} rounds with a final transfer within {limit} ms; it freezes {:.0}-{:.0} ms in all, {:.0} ms of which freeze, restore and resume, which --max-downtime does not bound{}",
                pre.rounds.unwrap_or(0),
                pre.downtime_ms.low,
                pre.downtime_ms.high,
                fixed(pre),
                lazy_refusal.map(|why| format!(" (no post-copy: {why})")).unwrap_or_default()
            ),
        };
    }
    let needed = nice_ceil(pre.parts.final_transfer_ms.max(limit));
    Recommendation {
        mode: Some(Mode::Precopy),
        max_downtime_ms: Some(needed),
        why: format!(
            "pre-copy does not converge to a final transfer within {limit} ms at this dirty rate; it switches over anyway and freezes {:.0}-{:.0} ms ({:.0} ms of final transfer)",
            pre.downtime_ms.low, pre.downtime_ms.high, pre.parts.final_transfer_ms
        ),
    }
}

/// What a lazy mode must save of pre-copy's expected downtime to be
/// advised over a pre-copy that converges safely: a tenth of it and at
/// least [`LAZY_GAIN_MS`]; less is within the runs' spread. Issue 17's
/// benches: 1 GiB rewritten at 64 MiB/s froze 141-199 ms in pre-copy,
/// 137-182 in post-copy (medians of three, four benches), predicted
/// 137-162 and 124-137; 50 processes of 16 MiB froze 1.3-1.5 s in
/// post-copy against 1.6-2.4 s in pre-copy, predicted 1.2-1.5 s against
/// 1.5-2.5 s.
const LAZY_GAIN: f64 = 0.1;
/// The least a lazy mode must save, in milliseconds: runs of the same
/// migration on this machine kind differ by as much (1 GiB pre-copy:
/// 113-321 ms over five runs of one bench).
const LAZY_GAIN_MS: f64 = 50.0;

/// Rounds up to 1, 2 or 5 times a power of ten.
fn nice_ceil(x: f64) -> f64 {
    let p = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|&v| v >= x)
        .unwrap_or(10.0 * p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::DirtyBackend;

    const MIB: u64 = 1 << 20;

    fn measured(memory: u64, rate: f64, stddev: f64, ws: u64) -> Measurement {
        Measurement {
            backend: DirtyBackend::UffdWpAsync,
            processes: vec![1],
            ended: Vec::new(),
            memory_bytes: memory,
            anonymous_bytes: memory,
            root_anonymous_bytes: 0,
            duration_ms: 3000.0,
            interrupted: false,
            samples: Vec::new(),
            dirty_bytes_per_sec: rate,
            dirty_stddev_bytes_per_sec: stddev,
            working_set_bytes: ws,
            top_mappings: Vec::new(),
            untracked: Vec::new(),
            cpu: None,
            threads: 1,
            freeze: None,
            freeze_note: String::new(),
        }
    }

    /// The report on a plain process measured as `m`, with no destination
    /// and the default limits.
    fn assessed(subject: Subject, m: Measurement) -> DryRunReport {
        assess(subject, Vec::new(), m, None, None, &Limits::default(), &[])
    }

    #[test]
    fn a_small_slow_writer_is_advised_precopy() {
        let m = measured(4 * MIB, 64.0 * 1024.0, 4.0 * 1024.0, MIB);
        let r = assessed(Subject::tree(1), m);
        assert_eq!(r.bandwidth_source, BandwidthSource::Default);
        assert_eq!(r.recommendation.mode, Some(Mode::Precopy), "{r:?}");
        let pre = &r.predictions[0];
        assert!(pre.downtime_ms.low <= pre.downtime_ms.expected);
        assert!(pre.downtime_ms.expected <= pre.downtime_ms.high);
        assert!(r.can_move);
    }

    #[test]
    fn a_large_workload_is_advised_postcopy_unless_it_cannot_move_lazily() {
        // Pre-copy's restore installs 1 GiB while frozen: post-copy
        // freezes far less.
        let m = measured(1024 * MIB, 64.0 * MIB as f64, 4.0 * MIB as f64, 192 * MIB);
        let r = assessed(Subject::tree(1), m.clone());
        let rec = &r.recommendation;
        assert_eq!(rec.mode, Some(Mode::Postcopy), "{r:?}");
        assert!(rec.why.contains("depends on the link"), "{rec:?}");
        let subject = Subject {
            lazy_refusal: Some("no CAP_SYS_PTRACE".into()),
            ..Subject::tree(1)
        };
        let r = assessed(subject, m);
        let rec = &r.recommendation;
        assert_eq!(rec.mode, Some(Mode::Precopy), "{r:?}");
        assert!(
            rec.why.contains("no post-copy: no CAP_SYS_PTRACE"),
            "{rec:?}"
        );
    }

    #[test]
    fn a_writer_near_the_throughput_is_advised_a_lazy_mode_that_freezes_less() {
        // The root's memory is staged: a pre-copy that converges freezes
        // least; one whose writes take most of the throughput may not.
        let mut m = measured(1024 * MIB, 400.0 * MIB as f64, 8.0 * MIB as f64, 1024 * MIB);
        m.root_anonymous_bytes = m.anonymous_bytes;
        let r = assessed(Subject::tree(1), m.clone());
        let pre = &r.predictions[0];
        assert!(pre.dirty_share.unwrap() > AT_RISK_SHARE, "{pre:?}");
        assert_ne!(r.recommendation.mode, Some(Mode::Precopy), "{r:?}");
        m.dirty_bytes_per_sec = 16.0 * MIB as f64;
        let r = assessed(Subject::tree(1), m);
        assert!(
            r.predictions[0].dirty_share.unwrap() < AT_RISK_SHARE,
            "{r:?}"
        );
        assert_eq!(r.recommendation.mode, Some(Mode::Precopy), "{r:?}");
    }

    #[test]
    fn a_writer_faster_than_the_link_is_not_advised_a_tiny_limit() {
        let m = measured(1024 * MIB, 2048.0 * MIB as f64, 0.0, 512 * MIB);
        let subject = Subject {
            lazy_refusal: Some("no CAP_SYS_PTRACE".into()),
            ..Subject::tree(1)
        };
        let r = assessed(subject, m);
        let rec = r.recommendation;
        assert!(rec.max_downtime_ms.unwrap() > 50.0, "{rec:?}");
    }

    #[test]
    fn blockers_and_unreachable_destinations_say_no() {
        let m = measured(MIB, 0.0, 0.0, 0);
        let blocker = Blocker {
            pid: 7,
            resource: "fd 10".into(),
            reason: "socket".into(),
        };
        let r = assess(
            Subject::tree(7),
            vec![blocker],
            m.clone(),
            None,
            None,
            &Limits::default(),
            &[],
        );
        assert!(!r.can_move && r.recommendation.mode.is_none());
        let d = DestinationReport::from_probe("10.0.0.2:7420", Err("timed out".into()));
        let r = assess(
            Subject::tree(7),
            Vec::new(),
            m,
            Some(d),
            Some(MIB),
            &Limits::default(),
            &[],
        );
        assert!(!r.can_move && r.recommendation.mode.is_none());
        assert_eq!(r.bandwidth_source, BandwidthSource::Given);
    }

    #[test]
    fn limits_round_up_nicely() {
        assert_eq!(nice_ceil(37.0), 50.0);
        assert_eq!(nice_ceil(120.0), 200.0);
        assert_eq!(nice_ceil(1.0), 1.0);
    }
}
