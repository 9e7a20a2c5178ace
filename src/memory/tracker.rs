//! The trait every dirty-page tracker implements, and which mappings any
//! of them can track.

use super::backend::DirtyBackend;
use super::error::DirtyTrackingError;
use super::runs::ranges_cover;
use crate::image::Vma;

/// Whether writes to `vma` can be tracked by any backend: private
/// anonymous memory (what userfaultfd can register; in a private file
/// mapping an unwritten page shows the page cache, which others may change
/// without a write through this process). A PROT_NONE reservation cannot
/// be written without an mprotect first, which the final (frozen) pass
/// sees: tracking it would only cost page-table work.
pub fn is_trackable(vma: &Vma) -> bool {
    vma.is_private_anonymous() && vma.prot != 0
}

/// Finds the pages a process wrote since tracking started (or since the
/// last re-arming collection).
pub trait DirtyTracker: Send + Sync {
    /// The mechanism this tracker uses.
    fn backend(&self) -> DirtyBackend;
    /// The tracked ranges (start, end), sorted and disjoint.
    fn tracked_ranges(&self) -> &[(u64, u64)];
    /// Whether writes anywhere in [start, end) are tracked: it lies inside
    /// one of the tracked ranges.
    fn is_tracked(&self, start: u64, end: u64) -> bool {
        ranges_cover(self.tracked_ranges(), start, end)
    }
    /// Whether `vma`, as /proc/PID/smaps shows it now (mmap, munmap,
    /// mremap and brk may have happened since tracking began), is still
    /// covered, so that a page of it not reported written still holds what
    /// was copied. Mappings that are not are copied whole while frozen.
    fn still_tracked(&self, vma: &Vma) -> bool;
    /// Appends to `out` the runs (start, end) of pages in `ranges` that
    /// were written; with `rearm`, starts tracking them afresh. On error,
    /// the runs appended so far may already be re-armed: copy them anyway.
    fn written(
        &mut self,
        ranges: &[(u64, u64)],
        rearm: bool,
        out: &mut Vec<(u64, u64)>,
    ) -> Result<(), DirtyTrackingError>;
    /// Whether a re-arming `written` loses writes that race with it unless
    /// the process is stopped around the call.
    fn rearm_needs_stop(&self) -> bool;
}
