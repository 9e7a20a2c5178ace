//! Where a checkpoint goes. A local checkpoint writes an image directory; a
//! live migration streams the same pages and state to the destination
//! agent. The dumper talks to both through [`CheckpointSink`], so that the
//! engine does not know which one it feeds.

use super::error::CheckpointError;
use crate::image::{Checkpoint, ImageSink, ImageSummary, NextStep, RoundReport};

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

    /// The tree is being stopped now: from here on it does not run (a
    /// migration's downtime starts). Called once, right before the freeze.
    fn stopping(&mut self) {}

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

impl CheckpointSink for ImageSink {
    fn write_pages(&mut self, pid: i32, vaddr: u64, data: &[u8]) -> Result<(), CheckpointError> {
        Ok(ImageSink::write_pages(self, pid, vaddr, data)?)
    }

    fn write_zero_pages(
        &mut self,
        pid: i32,
        vaddr: u64,
        npages: u64,
    ) -> Result<(), CheckpointError> {
        Ok(ImageSink::write_zero_pages(self, pid, vaddr, npages)?)
    }

    fn round_done(&mut self, report: &RoundReport) -> Result<NextStep, CheckpointError> {
        Ok(ImageSink::round_done(self, report))
    }

    fn commit(&mut self, checkpoint: &Checkpoint) -> Result<ImageSummary, CheckpointError> {
        Ok(ImageSink::commit(self, checkpoint)?)
    }
}
