//! Pre-copy inside a checkpoint: memory is copied while the process keeps
//! running, with writes tracked, so that the freeze only has to copy the
//! pages written meanwhile. Where the kernel cannot track writes, the whole
//! memory is copied while frozen, as before.

use super::error::CheckpointError;
use super::freeze::Frozen;
use super::memory::{dump_memory, DumpedMemory, MemoryDumpStats, PageChoice, PagePolicy};
use super::sink::CheckpointSink;
use crate::image::{ms, NextStep, RoundReport, Vma};
use crate::inspect::mappings::classify_mappings;
use crate::inspect::seccomp::check_seccomp;
use crate::inspect::InspectError;
use crate::memory::{
    DirtyBackend, DirtyTracker, DirtyTrackingError, PageRuns, SoftDirtyTracker, UffdWpTracker,
};
use nix::unistd::Pid;
use std::time::Instant;

/// Writes tracked and memory copied while the process ran.
pub struct Precopy {
    tracker: Box<dyn DirtyTracker>,
    copied: PageRuns,
    /// What the copies while running wrote, over every round.
    pub stats: MemoryDumpStats,
    /// Rounds copied while running (the first copies everything).
    pub rounds: u32,
}

/// Sets up write tracking in process `pid` with the backend this kernel
/// supports (`DirtyBackend::detect`): uffd-wp async, else soft-dirty, else
/// an error (no pre-copy).
pub fn start_tracking(pid: i32, vmas: &[Vma]) -> Result<Box<dyn DirtyTracker>, CheckpointError> {
    match DirtyBackend::detect() {
        DirtyBackend::UffdWpAsync => Ok(Box::new(start_uffd_tracking(pid, vmas)?)),
        DirtyBackend::SoftDirty => Ok(Box::new(SoftDirtyTracker::start(pid, vmas)?)),
        DirtyBackend::None => Err(DirtyTrackingError::NoBackend { pid }.into()),
    }
}

/// A userfaultfd created inside the process by an injected call (the
/// process is stopped only for that), taken out with pidfd_getfd and
/// closed in the process, so that ferry holds the only reference and
/// closing it removes the tracking.
fn start_uffd_tracking(pid: i32, vmas: &[Vma]) -> Result<UffdWpTracker, CheckpointError> {
    let (syscall_insn, _) = super::mm::vdso_syscall(pid, vmas)?;
    let mut frozen = Frozen::freeze(pid, check_seccomp(pid)?)?;
    let taken = frozen.threads[0]
        .tracee
        .take_userfaultfd(syscall_insn, Pid::from_raw(pid), false);
    frozen.thaw()?;
    Ok(UffdWpTracker::start(pid, taken?, vmas)?)
}

/// The copy while the process runs: every page with data of the tracked
/// mappings; a page unmapped under our feet is skipped.
struct WhileRunning<'a> {
    tracker: &'a dyn DirtyTracker,
}

impl PagePolicy for WhileRunning<'_> {
    fn choose(&self, vma: &Vma, _addr: u64, has_data: bool) -> PageChoice {
        if has_data && self.tracker.is_tracked(vma.start, vma.end) {
            PageChoice::Read
        } else {
            PageChoice::Skip
        }
    }

    fn tolerates_unreadable(&self) -> bool {
        true
    }
}

/// Copies the tracked memory of the running process into `sink`, round
/// after round, as long as the sink asks for another round.
pub fn copy_while_running(
    pid: i32,
    vmas: &[Vma],
    tracker: Box<dyn DirtyTracker>,
    sink: &mut dyn CheckpointSink,
) -> Result<Precopy, CheckpointError> {
    let started = Instant::now();
    let tracked: Vec<Vma> = vmas
        .iter()
        .filter(|v| tracker.is_tracked(v.start, v.end))
        .cloned()
        .collect();
    let DumpedMemory { stats, copied, .. } = dump_memory(
        pid,
        &tracked,
        &WhileRunning {
            tracker: tracker.as_ref(),
        },
        sink,
        None,
    )?;
    let first = RoundReport {
        pid,
        round: 0,
        dirty_pages: stats.pages_written + stats.zero_pages,
        pages_written: stats.pages_written,
        zero_pages: stats.zero_pages,
        duration_ms: ms(started.elapsed()),
    };
    let mut precopy = Precopy {
        tracker,
        copied: PageRuns::from_runs(copied),
        stats,
        rounds: 1,
    };
    if sink.round_done(&first)? == NextStep::AnotherRound {
        precopy.iterate(pid, sink)?;
    }
    Ok(precopy)
}

/// A later round while running: the pages written since the previous
/// round, copied again (or recorded as zero if they were discarded).
struct WrittenSince<'a> {
    written: &'a PageRuns,
    copied: &'a PageRuns,
}

impl PagePolicy for WrittenSince<'_> {
    fn choose(&self, _vma: &Vma, addr: u64, has_data: bool) -> PageChoice {
        match (self.written.contains(addr), has_data) {
            (false, _) => PageChoice::Skip,
            (true, true) => PageChoice::Read,
            (true, false) if self.copied.contains(addr) => PageChoice::Zero,
            (true, false) => PageChoice::Skip,
        }
    }

    fn tolerates_unreadable(&self) -> bool {
        true
    }
}

impl Precopy {
    /// Copies the pages written since the previous round, re-arming their
    /// tracking, until the sink asks to freeze or a scan fails. Mappings
    /// changed since tracking began are left to the frozen copy.
    fn iterate(&mut self, pid: i32, sink: &mut dyn CheckpointSink) -> Result<(), CheckpointError> {
        // Freezing for the collection needs to know whether seccomp must be
        // suspended, which does not change while tracking.
        let suspend_seccomp = self.tracker.rearm_needs_stop() && check_seccomp(pid)?;
        loop {
            let started = Instant::now();
            // Mappings replaced or grown since tracking began are left to
            // the frozen copy.
            let Ok(vmas) = crate::proc::read_smaps(pid)
                .map_err(InspectError::from)
                .and_then(|maps| classify_mappings(pid, &maps))
            else {
                return Ok(());
            };
            let tracked: Vec<Vma> = vmas
                .into_iter()
                .filter(|v| self.tracker.still_tracked(v))
                .collect();
            let ranges: Vec<(u64, u64)> = tracked.iter().map(|v| (v.start, v.end)).collect();
            let mut written = Vec::new();
            // Pages found before a failed scan may be re-armed already:
            // they must be copied anyway.
            let scan_failed = if self.tracker.rearm_needs_stop() {
                let frozen = Frozen::freeze(pid, suspend_seccomp)?;
                let scanned = self.tracker.written(&ranges, true, &mut written);
                frozen.thaw()?;
                scanned.is_err()
            } else {
                self.tracker.written(&ranges, true, &mut written).is_err()
            };
            let written = PageRuns::from_runs(written);
            let pages = written.pages();
            let policy = WrittenSince {
                written: &written,
                copied: &self.copied,
            };
            // Walk only the written ranges, not whole mappings.
            let pieces: Vec<Vma> = written
                .runs()
                .iter()
                .flat_map(|&(s, e)| {
                    tracked
                        .iter()
                        .filter(move |v| v.start < e && s < v.end)
                        .map(move |v| Vma {
                            start: v.start.max(s),
                            end: v.end.min(e),
                            ..v.clone()
                        })
                })
                .collect();
            let DumpedMemory { stats, copied, .. } =
                dump_memory(pid, &pieces, &policy, sink, None)?;
            self.stats.pages_scanned += stats.pages_scanned;
            self.stats.pages_written += stats.pages_written;
            self.stats.zero_pages += stats.zero_pages;
            self.copied.extend(copied);
            let report = RoundReport {
                pid,
                round: self.rounds,
                dirty_pages: pages,
                pages_written: stats.pages_written,
                zero_pages: stats.zero_pages,
                duration_ms: ms(started.elapsed()),
            };
            self.rounds += 1;
            tracing::debug!(pid, round = report.round, written = pages, "pre-copy round");
            if sink.round_done(&report)? == NextStep::Freeze || scan_failed {
                return Ok(());
            }
        }
    }
}

/// The copy while frozen after a pre-copy: in a mapping that is still
/// tracked, only pages written since (or never copied); elsewhere every
/// page with data; and a page copied earlier that has no data any more
/// (unmapped, discarded) is recorded as zero so the old copy is not used.
pub struct AfterPrecopy {
    copied: PageRuns,
    written: PageRuns,
    tracked: Vec<(u64, u64)>,
}

impl Precopy {
    /// Reads the written pages of every mapping still tracked and ends the
    /// tracking (the process is frozen: nothing changes any more).
    pub fn finish(mut self, vmas: &[Vma]) -> Result<AfterPrecopy, CheckpointError> {
        let tracked: Vec<(u64, u64)> = vmas
            .iter()
            .filter(|v| self.tracker.still_tracked(v))
            .map(|v| (v.start, v.end))
            .collect();
        let mut written = Vec::new();
        self.tracker.written(&tracked, false, &mut written)?;
        Ok(AfterPrecopy {
            copied: self.copied,
            written: PageRuns::from_runs(written),
            tracked,
        })
    }
}

impl AfterPrecopy {
    fn is_tracked(&self, vma: &Vma) -> bool {
        crate::memory::ranges_cover(&self.tracked, vma.start, vma.end)
    }

    /// Pages found written since the pre-copy.
    pub fn written_pages(&self) -> u64 {
        self.written.pages()
    }
}

impl PagePolicy for AfterPrecopy {
    fn choose(&self, vma: &Vma, addr: u64, has_data: bool) -> PageChoice {
        let copied = self.copied.contains(addr);
        match (has_data, copied) {
            (false, true) => PageChoice::Zero,
            (false, false) => PageChoice::Skip,
            (true, true) if self.is_tracked(vma) && !self.written.contains(addr) => {
                PageChoice::Skip
            }
            (true, _) => PageChoice::Read,
        }
    }

    fn reads_swapped(&self) -> bool {
        true
    }

    fn tolerates_unreadable(&self) -> bool {
        false
    }
}
