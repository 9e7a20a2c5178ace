//! The image directory as the destination of a checkpoint: the figures of
//! a pre-copy round and the step a sink decides on them, and [`ImageSink`],
//! the local checkpoint's writer with its pre-copy policy. Both the dump
//! (through its `CheckpointSink` trait) and a migration's destination,
//! which writes the image it received, use them.

use super::format::{ImageError, ImageSummary, ImageWriter};
use super::model::Checkpoint;
use serde::Serialize;
use std::time::Duration;

/// `d` in milliseconds, the unit of every duration in checkpoint
/// statistics and round reports.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// What one pre-copy round copied while the process ran: the figures a
/// sink's policy decides the next step on.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RoundReport {
    /// The process the round copied (each process of a tree has its own
    /// rounds).
    pub pid: i32,
    /// Round number: 0 copies every page with data, later rounds the pages
    /// written since the previous one.
    pub round: u32,
    /// Pages the process wrote since the previous round (for round 0, every
    /// page found with data).
    pub dirty_pages: u64,
    /// Pages handed to the sink with contents this round.
    pub pages_written: u64,
    /// Pages handed to the sink as all-zero this round.
    pub zero_pages: u64,
    /// Milliseconds the round took, from its scan to the last page handed on.
    pub duration_ms: f64,
}

/// The step after a pre-copy round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Copy the pages written meanwhile while the process keeps running.
    AnotherRound,
    /// Freeze the process and copy what is left.
    Freeze,
}

/// At most this many rounds while running for a local checkpoint.
const LOCAL_MAX_ROUNDS: u32 = 5;
/// A local checkpoint freezes once fewer pages than this were written in a
/// round.
const LOCAL_CONVERGED_PAGES: u64 = 64;

/// The image directory as a sink, with the pre-copy policy of a local
/// checkpoint: rounds until few pages are written per round, the rounds
/// stop shrinking, or five rounds.
pub struct ImageSink {
    writer: ImageWriter,
    /// Pages written in the previous round, per process.
    previous_dirty: std::collections::HashMap<i32, u64>,
}

impl ImageSink {
    /// Wraps a freshly created image writer.
    pub fn new(writer: ImageWriter) -> Self {
        Self {
            writer,
            previous_dirty: std::collections::HashMap::new(),
        }
    }
}

impl ImageSink {
    /// Writes the contents of the pages of process `pid` from `vaddr`.
    pub fn write_pages(&mut self, pid: i32, vaddr: u64, data: &[u8]) -> Result<(), ImageError> {
        self.writer.write_pages(pid, vaddr, data)
    }

    /// Records `npages` all-zero pages of process `pid` from `vaddr`.
    pub fn write_zero_pages(
        &mut self,
        pid: i32,
        vaddr: u64,
        npages: u64,
    ) -> Result<(), ImageError> {
        self.writer.write_zero_pages(pid, vaddr, npages)
    }

    /// The step after a pre-copy round of a local checkpoint: rounds until
    /// few pages are written per round, the rounds stop shrinking, or five
    /// rounds.
    pub fn round_done(&mut self, report: &RoundReport) -> NextStep {
        let previous = self.previous_dirty.get(&report.pid).copied();
        let converged = report.round > 0
            && (report.dirty_pages < LOCAL_CONVERGED_PAGES
                || report.dirty_pages >= previous.unwrap_or(u64::MAX));
        if report.round > 0 {
            self.previous_dirty.insert(report.pid, report.dirty_pages);
        }
        if converged || report.round + 1 >= LOCAL_MAX_ROUNDS {
            NextStep::Freeze
        } else {
            NextStep::AnotherRound
        }
    }

    /// Writes the state and commits the image.
    pub fn commit(&mut self, checkpoint: &Checkpoint) -> Result<ImageSummary, ImageError> {
        self.writer.commit(checkpoint)
    }
}
