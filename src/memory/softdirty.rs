//! Dirty tracking with the soft-dirty bits of /proc/PID/pagemap
//! (CONFIG_MEM_SOFT_DIRTY): the tracker for kernels older than 6.7, which
//! lack UFFD_FEATURE_WP_ASYNC and PAGEMAP_SCAN.

use super::backend::DirtyBackend;
use super::error::DirtyTrackingError;
use super::runs::push_page;
use super::tracker::{is_trackable, DirtyTracker};
use crate::image::{Vma, PAGE_SIZE};
use crate::proc::pagemap;
use std::fs::{File, OpenOptions};
use std::io::Write;

/// Soft-dirty tracking: writing "4" to /proc/PID/clear_refs clears the
/// soft-dirty bit of every page (and the VM_SOFTDIRTY flag of every
/// mapping) and write-protects the pages; the next write to a page faults
/// and sets its bit again, which pagemap shows as bit 55.
///
/// It follows mmap, munmap, mremap and brk by itself: a mapping created or
/// grown since the last clear carries VM_SOFTDIRTY, which makes pagemap
/// report every page of it soft-dirty (present or not), and pages moved by
/// mremap are marked soft-dirty. So a page reported clean in a mapping that
/// exists now still holds what was copied, and a page reported dirty that
/// has no data any more (unmapped and mapped again, discarded) is one whose
/// old copy must be replaced.
///
/// # Re-arming and its race
///
/// clear_refs works on the whole process, not on a range, and reading the
/// bits and clearing them are two separate system calls. A round is "read
/// the bits of every tracked range, then clear once". A page that was clean
/// at the read and is written between the read and the clear is lost: its
/// bit is set by the write and cleared by the clear, so it is neither in
/// this round's set nor in any later one, unless written again; its copy in
/// the image stays the old one. Clearing first and reading after does not
/// help (the clear destroys exactly the bits to be read), and the final
/// pass while frozen does not catch it either, because the bit is gone by
/// then. (CRIU's pre-dump avoids it the same way as here: it reads pagemap
/// and clears soft-dirty while the tasks are frozen.)
///
/// So a re-arming `written` must run while the process is stopped
/// (`rearm_needs_stop` is true): the caller freezes it for the read and the
/// clear only (one batched pread per 256 MiB of tracked address space plus
/// one write), then copies the reported pages while it runs again. A page
/// written after the clear has its bit set again and is reported by the
/// next round or by the final read, which happens while frozen and is
/// therefore exact. A page that was dirty at the read is copied after the
/// clear, so a write racing with its copy is reported next round too.
///
/// The first clear (in `start`) needs no stop: it reads nothing, and every
/// page of the tracked mappings is copied after it.
#[derive(Debug)]
pub struct SoftDirtyTracker {
    pid: i32,
    pagemap: File,
    /// /proc/PID/clear_refs, opened for writing once.
    clear_refs: File,
    /// Tracked ranges, in address order.
    ranges: Vec<(u64, u64)>,
    /// Scratch space for pagemap reads.
    raw: Vec<u8>,
    entries: Vec<u64>,
}

impl SoftDirtyTracker {
    /// Starts tracking the trackable mappings of `vmas` (private anonymous,
    /// not PROT_NONE) in process `pid`: clears its soft-dirty bits. Only
    /// use it where soft-dirty was probed working (`DirtyBackend::detect`):
    /// without CONFIG_MEM_SOFT_DIRTY this succeeds and then reports nothing.
    pub fn start(pid: i32, vmas: &[Vma]) -> Result<Self, DirtyTrackingError> {
        let pagemap = File::open(format!("/proc/{pid}/pagemap"))
            .map_err(|source| DirtyTrackingError::Pagemap { pid, source })?;
        let clear_refs = OpenOptions::new()
            .write(true)
            .open(format!("/proc/{pid}/clear_refs"))
            .map_err(|source| DirtyTrackingError::ClearRefs { pid, source })?;
        let mut ranges: Vec<(u64, u64)> = vmas
            .iter()
            .filter(|v| is_trackable(v))
            .map(|v| (v.start, v.end))
            .collect();
        ranges.sort_unstable();
        let mut tracker = SoftDirtyTracker {
            pid,
            pagemap,
            clear_refs,
            ranges,
            raw: Vec::new(),
            entries: Vec::new(),
        };
        tracker.clear()?;
        Ok(tracker)
    }

    /// Clears every soft-dirty bit of the process.
    fn clear(&mut self) -> Result<(), DirtyTrackingError> {
        self.clear_refs
            .write_all(b"4")
            .map_err(|source| DirtyTrackingError::ClearRefs {
                pid: self.pid,
                source,
            })
    }

    /// Appends the soft-dirty runs of [start, end), read in batches.
    fn read_range(
        &mut self,
        start: u64,
        end: u64,
        out: &mut Vec<(u64, u64)>,
    ) -> Result<(), DirtyTrackingError> {
        let mut page = start / PAGE_SIZE;
        let end_page = end.div_ceil(PAGE_SIZE);
        while page < end_page {
            let n = (end_page - page).min(pagemap::BATCH_PAGES) as usize;
            self.entries.resize(n, 0);
            pagemap::read_entries(&self.pagemap, page, &mut self.raw, &mut self.entries).map_err(
                |source| DirtyTrackingError::PagemapRead {
                    pid: self.pid,
                    start,
                    end,
                    source,
                },
            )?;
            soft_dirty_runs(page * PAGE_SIZE, &self.entries, out);
            page += n as u64;
        }
        Ok(())
    }
}

/// Appends to `out` the runs (start, end) of the pages whose pagemap
/// entries (`entries`, consecutive pages from `first_addr`) have the
/// soft-dirty bit, merging with a run that `out` ends with. The bit counts
/// whether the page is present, swapped out (the swap entry keeps it) or
/// neither: a hole in a mapping created since the clear reports it too,
/// which says "this page is not what was copied".
fn soft_dirty_runs(first_addr: u64, entries: &[u64], out: &mut Vec<(u64, u64)>) {
    for (i, &entry) in entries.iter().enumerate() {
        if entry & pagemap::SOFT_DIRTY == 0 {
            continue;
        }
        let addr = first_addr + i as u64 * PAGE_SIZE;
        push_page(out, addr);
    }
}

impl DirtyTracker for SoftDirtyTracker {
    fn backend(&self) -> DirtyBackend {
        DirtyBackend::SoftDirty
    }

    fn tracked_ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// Soft-dirty covers the whole address space (see the type's doc), so
    /// any trackable mapping inside the ranges tracked from the start is
    /// still covered, even one mapped anew there. A mapping that grew past
    /// them is not, and is copied whole while frozen.
    fn still_tracked(&self, vma: &Vma) -> bool {
        is_trackable(vma) && self.is_tracked(vma.start, vma.end)
    }

    fn written(
        &mut self,
        ranges: &[(u64, u64)],
        rearm: bool,
        out: &mut Vec<(u64, u64)>,
    ) -> Result<(), DirtyTrackingError> {
        for &(start, end) in ranges {
            self.read_range(start, end, out)?;
        }
        if rearm {
            self.clear()?;
        }
        Ok(())
    }

    /// Reading and clearing are two calls: see the type's doc.
    fn rearm_needs_stop(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use crate::image::PAGE_SIZE;
    use crate::memory::softdirty::soft_dirty_runs;
    use crate::proc::pagemap;

    const PRESENT: u64 = pagemap::PRESENT;
    const SWAPPED: u64 = pagemap::SWAPPED;
    const SD: u64 = pagemap::SOFT_DIRTY;
    /// A page frame number in the low bits, as a present entry carries.
    const PFN: u64 = 0x12345;

    #[test]
    fn soft_dirty_bit_alone_decides_written() {
        let base = 0x7f00_0000_0000;
        let entries = [
            PRESENT | SD | PFN,                     // written, in RAM
            SWAPPED | SD | 0x42,                    // written, then swapped out
            SD,                                     // hole of a mapping new since the clear
            PRESENT | PFN,                          // present, not written
            SWAPPED | 0x42,                         // swapped, not written
            0,                                      // never touched
            PRESENT | pagemap::EXCLUSIVE | PFN,     // exclusive but clean
            PRESENT | pagemap::FILE_OR_SHARED | SD, // written file page
        ];
        let mut out = Vec::new();
        soft_dirty_runs(base, &entries, &mut out);
        assert_eq!(
            out,
            vec![
                (base, base + 3 * PAGE_SIZE),
                (base + 7 * PAGE_SIZE, base + 8 * PAGE_SIZE)
            ]
        );
    }

    #[test]
    fn runs_continue_across_batches_and_not_across_gaps() {
        let mut out = vec![(0x1000, 0x3000)];
        soft_dirty_runs(0x3000, &[SD, SD], &mut out);
        soft_dirty_runs(0x6000, &[SD], &mut out);
        assert_eq!(out, vec![(0x1000, 0x5000), (0x6000, 0x7000)]);
    }

    #[test]
    fn no_entry_no_run() {
        let mut out = Vec::new();
        soft_dirty_runs(0x1000, &[], &mut out);
        soft_dirty_runs(0x1000, &[PRESENT | PFN, 0], &mut out);
        assert!(out.is_empty());
    }
}
