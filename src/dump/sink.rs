//! Where a checkpoint goes. A local checkpoint writes an image directory; a
//! live migration streams the same pages and state to the destination
//! agent. The dumper talks to both through [`CheckpointSink`], so that the
//! engine does not know which one it feeds.

use super::error::CheckpointError;
use crate::image::{Checkpoint, ImageSummary, ImageWriter};
use serde::Serialize;

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

/// How a sink takes the private anonymous memory of the frozen tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryMode {
    /// Every page is copied before the state (a local image, a pre-copy
    /// migration).
    #[default]
    Eager,
    /// Post-copy: the private anonymous pages that would be copied while
    /// frozen stay with the frozen process and are only named, with
    /// [`CheckpointSink::lazy_pages`]; the sink fetches them itself, from
    /// its `commit`, while the tree stays frozen. `precopy` says whether
    /// pre-copy rounds run first (hybrid) or the tree is frozen at once.
    Lazy {
        /// Run pre-copy rounds before the freeze.
        precopy: bool,
    },
}

/// Receives a checkpoint as the dumper produces it: pages first (possibly
/// the same page again in a later round, which then replaces the earlier
/// copy), then, with the processes frozen, the state. Pages are per
/// process: `pid` says whose address space they belong to.
pub trait CheckpointSink: Send {
    /// Takes the contents of the pages of process `pid` starting at `vaddr`
    /// (`data.len()` is a multiple of 4096).
    fn write_pages(&mut self, pid: i32, vaddr: u64, data: &[u8]) -> Result<(), CheckpointError>;

    /// Takes `npages` all-zero pages of process `pid` starting at `vaddr`.
    fn write_zero_pages(
        &mut self,
        pid: i32,
        vaddr: u64,
        npages: u64,
    ) -> Result<(), CheckpointError>;

    /// A pre-copy round is complete: every page of it has been handed on.
    /// Returns whether to run another round or freeze.
    fn round_done(&mut self, report: &RoundReport) -> Result<NextStep, CheckpointError>;

    /// How this sink takes private anonymous memory (eagerly unless it says
    /// otherwise).
    fn memory_mode(&self) -> MemoryMode {
        MemoryMode::Eager
    }

    /// With [`MemoryMode::Lazy`]: the runs (start, end) of private
    /// anonymous pages of the frozen process `pid` that were not copied and
    /// must be fetched from it, before `commit`.
    fn lazy_pages(&mut self, pid: i32, runs: Vec<(u64, u64)>) -> Result<(), CheckpointError> {
        let _ = runs;
        Err(CheckpointError::Sink {
            what: format!("leave pages of process {pid} on the source"),
            why: "this sink copies every page".into(),
        })
    }

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

impl CheckpointSink for ImageSink {
    fn write_pages(&mut self, pid: i32, vaddr: u64, data: &[u8]) -> Result<(), CheckpointError> {
        Ok(self.writer.write_pages(pid, vaddr, data)?)
    }

    fn write_zero_pages(
        &mut self,
        pid: i32,
        vaddr: u64,
        npages: u64,
    ) -> Result<(), CheckpointError> {
        Ok(self.writer.write_zero_pages(pid, vaddr, npages)?)
    }

    fn round_done(&mut self, report: &RoundReport) -> Result<NextStep, CheckpointError> {
        let previous = self.previous_dirty.get(&report.pid).copied();
        let converged = report.round > 0
            && (report.dirty_pages < LOCAL_CONVERGED_PAGES
                || report.dirty_pages >= previous.unwrap_or(u64::MAX));
        if report.round > 0 {
            self.previous_dirty.insert(report.pid, report.dirty_pages);
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
