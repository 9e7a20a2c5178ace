//! Pre-copy inside a checkpoint: memory is copied while the process keeps
//! running, with writes tracked, so that the freeze only has to copy the
//! pages written meanwhile. Where the kernel cannot track writes, the whole
//! memory is copied while frozen, as before.

use super::memory::{dump_memory, MemoryDumpStats, PageChoice, PagePolicy};
use super::sink::{CheckpointSink, NextStep, RoundReport};
use super::{CheckpointError, Frozen};
use crate::image::Vma;
use crate::memory::{DirtyTracker, PageRuns, UffdWpTracker};
use nix::unistd::Pid;
use std::time::Instant;

/// Writes tracked and memory copied while the process ran.
pub struct Precopy {
    tracker: UffdWpTracker,
    copied: PageRuns,
    /// What the copies while running wrote, over every round.
    pub stats: MemoryDumpStats,
    /// Rounds copied while running (the first copies everything).
    pub rounds: u32,
}

/// Sets up write tracking in process `pid`: a userfaultfd created inside
/// the process by an injected call (the process is stopped only for that),
/// taken out with pidfd_getfd and closed in the process, so that ferry
/// holds the only reference and closing it removes the tracking.
pub fn start_tracking(pid: i32, vmas: &[Vma]) -> Result<UffdWpTracker, CheckpointError> {
    let (syscall_insn, _) = super::vdso_syscall(pid, vmas)?;
    let mut frozen = Frozen::freeze(pid, super::check_seccomp(pid)? > 0)?;
    let taken = frozen.threads[0]
        .tracee
        .take_userfaultfd(syscall_insn, Pid::from_raw(pid));
    frozen.thaw()?;
    Ok(UffdWpTracker::start(pid, taken?, vmas)?)
}

/// The copy while the process runs: every page with data of the tracked
/// mappings; a page unmapped under our feet is skipped.
struct WhileRunning<'a> {
    tracker: &'a UffdWpTracker,
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
    tracker: UffdWpTracker,
    sink: &mut dyn CheckpointSink,
) -> Result<Precopy, CheckpointError> {
    let started = Instant::now();
    let tracked: Vec<Vma> = vmas
        .iter()
        .filter(|v| tracker.is_tracked(v.start, v.end))
        .cloned()
        .collect();
    let (stats, copied) = dump_memory(pid, &tracked, &WhileRunning { tracker: &tracker }, sink)?;
    let first = RoundReport {
        round: 0,
        dirty_pages: stats.pages_written + stats.zero_pages,
        pages_written: stats.pages_written,
        zero_pages: stats.zero_pages,
        duration_ms: super::ms(started.elapsed()),
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
        loop {
            let started = Instant::now();
            // Only mappings still registered ("uw") can be scanned.
            let Ok(vmas) = crate::proc::read_smaps(pid)
                .map_err(CheckpointError::from)
                .and_then(|maps| super::inspect::classify_mappings(pid, &maps))
            else {
                return Ok(());
            };
            let tracked: Vec<Vma> = vmas
                .into_iter()
                .filter(|v| v.has_vm_flag("uw") && self.tracker.is_tracked(v.start, v.end))
                .collect();
            let mut written = Vec::new();
            let mut scan_failed = false;
            for vma in &tracked {
                // Pages found so far are re-armed already: they must be
                // copied even if a later scan fails.
                if self
                    .tracker
                    .written(vma.start, vma.end, true, &mut written)
                    .is_err()
                {
                    scan_failed = true;
                    break;
                }
            }
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
            let (stats, copied) = dump_memory(pid, &pieces, &policy, sink)?;
            self.stats.pages_scanned += stats.pages_scanned;
            self.stats.pages_written += stats.pages_written;
            self.stats.zero_pages += stats.zero_pages;
            self.copied.extend(copied);
            let report = RoundReport {
                round: self.rounds,
                dirty_pages: pages,
                pages_written: stats.pages_written,
                zero_pages: stats.zero_pages,
                duration_ms: super::ms(started.elapsed()),
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
        let mut written = Vec::new();
        let mut tracked = Vec::new();
        for vma in vmas {
            // "uw": the mapping is registered for write-protect tracking
            // now; a mapping replaced since the copy is not.
            if vma.has_vm_flag("uw") && self.tracker.is_tracked(vma.start, vma.end) {
                self.tracker
                    .written(vma.start, vma.end, false, &mut written)?;
                tracked.push((vma.start, vma.end));
            }
        }
        Ok(AfterPrecopy {
            copied: self.copied,
            written: PageRuns::from_runs(written),
            tracked,
        })
    }
}

impl AfterPrecopy {
    fn is_tracked(&self, vma: &Vma) -> bool {
        let i = self.tracked.partition_point(|r| r.1 <= vma.start);
        self.tracked
            .get(i)
            .is_some_and(|r| r.0 == vma.start && r.1 == vma.end)
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

    fn tolerates_unreadable(&self) -> bool {
        false
    }
}
