//! When to stop pre-copying: QEMU's switch-over rule as a pure function of
//! the rounds measured so far and the user's limits, so that it can be
//! tested on recorded traces and reused by the dry run's cost model
//! (`costmodel`), which feeds it simulated rounds.

use crate::image::RoundReport;
use crate::image::PAGE_SIZE;
use serde::{Deserialize, Serialize};

/// The user's limits on a pre-copy migration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// The longest the workload may stay frozen, in milliseconds.
    pub max_downtime_ms: f64,
    /// Pre-copy rounds at most (round 0 included) before switching over.
    pub max_rounds: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_downtime_ms: 50.0,
            max_rounds: 30,
        }
    }
}

/// Why pre-copy stopped.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwitchReason {
    /// What is left fits the downtime limit at the measured bandwidth.
    FitsDowntime,
    /// The dirty set stopped shrinking: the workload writes as fast as the
    /// link carries, so more rounds would not lower the downtime.
    NotConverging,
    /// The round limit was reached.
    MaxRounds,
}

/// The policy's answer after a round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Run another pre-copy round.
    AnotherRound,
    /// Freeze and send the rest.
    SwitchOver(SwitchReason),
}

/// Rounds in a row without the dirty set shrinking by a tenth after which
/// pre-copy gives up converging.
const STALLED_ROUNDS: usize = 2;

/// Bytes per second measured over `rounds`: everything sent over the time
/// it took. None before anything was sent.
pub fn bandwidth(rounds: &[RoundReport]) -> Option<f64> {
    let bytes: u64 = rounds.iter().map(|r| r.pages_written * PAGE_SIZE).sum();
    let secs: f64 = rounds.iter().map(|r| r.duration_ms).sum::<f64>() / 1000.0;
    (bytes > 0 && secs > 0.0).then(|| bytes as f64 / secs)
}

/// Estimated bytes written by the workload during round `i` and so still to
/// send: the pages found dirty at its start (written during round i-1) give
/// the write rate, which is applied to round i's own duration. None for
/// round 0, whose rate is unknown.
fn left_after(rounds: &[RoundReport], i: usize) -> Option<f64> {
    let previous = rounds.get(i.checked_sub(1)?)?;
    let round = rounds.get(i)?;
    if previous.duration_ms <= 0.0 {
        return Some(round.dirty_pages as f64 * PAGE_SIZE as f64);
    }
    let rate = round.dirty_pages as f64 * PAGE_SIZE as f64 / previous.duration_ms;
    Some(rate * round.duration_ms)
}

/// Expected downtime in milliseconds if the workload were frozen now: the
/// bytes still dirty sent at the measured bandwidth. None until a round has
/// measured the write rate.
pub fn expected_downtime_ms(rounds: &[RoundReport]) -> Option<f64> {
    let left = left_after(rounds, rounds.len().checked_sub(1)?)?;
    let bandwidth = bandwidth(rounds)?;
    Some(left / bandwidth * 1000.0)
}

/// Decides the step after the last round of `rounds`.
pub fn decide(rounds: &[RoundReport], limits: &Limits) -> Decision {
    if rounds.len() as u32 >= limits.max_rounds {
        return Decision::SwitchOver(SwitchReason::MaxRounds);
    }
    let Some(last) = rounds.last() else {
        return Decision::AnotherRound;
    };
    if rounds.len() > 1 && last.dirty_pages == 0 {
        return Decision::SwitchOver(SwitchReason::FitsDowntime);
    }
    match expected_downtime_ms(rounds) {
        Some(ms) if ms <= limits.max_downtime_ms => {
            return Decision::SwitchOver(SwitchReason::FitsDowntime)
        }
        None => return Decision::AnotherRound,
        Some(_) => {}
    }
    let lefts: Vec<f64> = (1..rounds.len())
        .filter_map(|i| left_after(rounds, i))
        .collect();
    let stalled = lefts
        .windows(2)
        .rev()
        .take_while(|w| w[1] > w[0] * 0.9)
        .count();
    if stalled >= STALLED_ROUNDS {
        Decision::SwitchOver(SwitchReason::NotConverging)
    } else {
        Decision::AnotherRound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(round: u32, dirty_pages: u64, pages_written: u64, duration_ms: f64) -> RoundReport {
        RoundReport {
            pid: 0,
            round,
            dirty_pages,
            pages_written,
            zero_pages: 0,
            duration_ms,
        }
    }

    #[test]
    fn round_zero_always_continues() {
        let rounds = [round(0, 262_144, 262_144, 1000.0)];
        assert_eq!(decide(&rounds, &Limits::default()), Decision::AnotherRound);
    }

    #[test]
    fn idle_workload_switches_after_one_more_round() {
        let rounds = [round(0, 262_144, 262_144, 1000.0), round(1, 0, 0, 1.0)];
        assert_eq!(
            decide(&rounds, &Limits::default()),
            Decision::SwitchOver(SwitchReason::FitsDowntime)
        );
    }

    #[test]
    fn small_dirty_set_fits_the_downtime() {
        // 1 GiB in 1 s: 1 GiB/s. 256 pages were written during round 0;
        // round 1 took 1 ms, so about 1 KiB is left: far under 50 ms.
        let rounds = [round(0, 262_144, 262_144, 1000.0), round(1, 256, 256, 1.0)];
        assert_eq!(
            decide(&rounds, &Limits::default()),
            Decision::SwitchOver(SwitchReason::FitsDowntime)
        );
    }

    #[test]
    fn a_workload_outrunning_the_link_stops_converging() {
        // Every round finds as many dirty pages as the one before.
        let rounds = [
            round(0, 262_144, 262_144, 1000.0),
            round(1, 262_144, 262_144, 1000.0),
            round(2, 262_144, 262_144, 1000.0),
            round(3, 262_144, 262_144, 1000.0),
        ];
        assert_eq!(
            decide(&rounds, &Limits::default()),
            Decision::SwitchOver(SwitchReason::NotConverging)
        );
    }

    #[test]
    fn the_round_limit_wins() {
        let limits = Limits {
            max_rounds: 2,
            ..Limits::default()
        };
        let rounds = [
            round(0, 262_144, 262_144, 1000.0),
            round(1, 100_000, 100_000, 400.0),
        ];
        assert_eq!(
            decide(&rounds, &limits),
            Decision::SwitchOver(SwitchReason::MaxRounds)
        );
    }
}
