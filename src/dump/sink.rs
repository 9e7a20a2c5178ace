//! Where a checkpoint goes. A local checkpoint writes an image directory; a
//! live migration streams the same pages and state to the destination
//! agent. The dumper talks to both through [`CheckpointSink`], so that the
//! engine does not know which one it feeds.

use super::CheckpointError;
use crate::image::{Checkpoint, ImageSummary, ImageWriter};
use serde::Serialize;

/// What one pre-copy round copied while the process ran: the figures a
/// sink's policy decides the next step on.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RoundReport {
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

/// Receives a checkpoint as the dumper produces it: pages first (possibly
/// the same page again in a later round, which then replaces the earlier
/// copy), then, with the process frozen, the state.
pub trait CheckpointSink: Send {
    /// Takes the contents of the pages starting at `vaddr` (`data.len()` is
    /// a multiple of 4096).
    fn write_pages(&mut self, vaddr: u64, data: &[u8]) -> Result<(), CheckpointError>;

    /// Takes `npages` all-zero pages starting at `vaddr`.
    fn write_zero_pages(&mut self, vaddr: u64, npages: u64) -> Result<(), CheckpointError>;

    /// A pre-copy round is complete: every page of it has been handed on.
    /// Returns whether to run another round or freeze.
    fn round_done(&mut self, report: &RoundReport) -> Result<NextStep, CheckpointError>;

    /// Takes the state of the frozen process, after its last pages. `Ok`
    /// means the checkpoint is safe where the sink put it, so the process
    /// may be killed; on `Err` the dumper resumes it.
    fn commit(&mut self, checkpoint: &Checkpoint) -> Result<ImageSummary, CheckpointError>;
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
    previous_dirty: u64,
}

impl ImageSink {
    /// Wraps a freshly created image writer.
    pub fn new(writer: ImageWriter) -> Self {
        Self {
            writer,
            previous_dirty: u64::MAX,
        }
    }
}

impl CheckpointSink for ImageSink {
    fn write_pages(&mut self, vaddr: u64, data: &[u8]) -> Result<(), CheckpointError> {
        Ok(self.writer.write_pages(vaddr, data)?)
    }

    fn write_zero_pages(&mut self, vaddr: u64, npages: u64) -> Result<(), CheckpointError> {
        Ok(self.writer.write_zero_pages(vaddr, npages)?)
    }

    fn round_done(&mut self, report: &RoundReport) -> Result<NextStep, CheckpointError> {
        let converged = report.round > 0
            && (report.dirty_pages < LOCAL_CONVERGED_PAGES
                || report.dirty_pages >= self.previous_dirty);
        if report.round > 0 {
            self.previous_dirty = report.dirty_pages;
        }
        if converged || report.round + 1 >= LOCAL_MAX_ROUNDS {
            Ok(NextStep::Freeze)
        } else {
            Ok(NextStep::AnotherRound)
        }
    }

    fn commit(&mut self, checkpoint: &Checkpoint) -> Result<ImageSummary, CheckpointError> {
        Ok(self.writer.commit(checkpoint)?)
    }
}
