//! Which pages of a running process changed: dirty-page tracking behind one
//! trait, so that pre-copy (in checkpoint now, in live migration next) does
//! not care which kernel mechanism finds the written pages.

use crate::image::{Vma, PAGE_SIZE};
use crate::kernel::uffd;
use nix::errno::Errno;
use std::fs::File;
use std::os::fd::OwnedFd;

/// Why dirty tracking could not be set up or read.
#[derive(Debug, thiserror::Error)]
pub enum DirtyTrackingError {
    /// A userfaultfd or PAGEMAP_SCAN ioctl failed.
    #[error("{op} for process {pid} failed: {errno}")]
    Kernel {
        /// The operation, with the range it covered.
        op: String,
        /// The tracked process.
        pid: i32,
        /// The error.
        errno: Errno,
    },
    /// The kernel lacks a feature the backend needs.
    #[error("dirty tracking of process {pid} needs {feature}, which this kernel does not offer")]
    Unsupported {
        /// The tracked process.
        pid: i32,
        /// The missing feature.
        feature: &'static str,
    },
    /// /proc/PID/pagemap could not be opened.
    #[error("cannot open /proc/{pid}/pagemap: {source}")]
    Pagemap {
        /// The tracked process.
        pid: i32,
        /// The error.
        source: std::io::Error,
    },
}

/// Finds the pages a process wrote since tracking started (or since the
/// last re-arming collection).
pub trait DirtyTracker {
    /// Whether writes anywhere in [start, end) are tracked.
    fn is_tracked(&self, start: u64, end: u64) -> bool;
    /// Appends to `out` the runs (start, end) of pages in [start, end) that
    /// were written; with `rearm`, starts tracking them afresh.
    fn written(
        &mut self,
        start: u64,
        end: u64,
        rearm: bool,
        out: &mut Vec<(u64, u64)>,
    ) -> Result<(), DirtyTrackingError>;
}

/// userfaultfd write-protect tracking with UFFD_FEATURE_WP_ASYNC: the kernel
/// resolves write faults itself and PAGEMAP_SCAN reads (and re-arms) the
/// written pages. The userfaultfd must belong to the tracked process
/// (created there, taken with pidfd_getfd); dropping this tracker closes
/// it, which removes the tracking from the process entirely.
#[derive(Debug)]
pub struct UffdWpTracker {
    pid: i32,
    /// Held open for its lifetime: closing it ends the tracking.
    _uffd: OwnedFd,
    pagemap: File,
    /// Registered ranges, in address order.
    ranges: Vec<(u64, u64)>,
}

impl UffdWpTracker {
    /// Enables asynchronous write-protection on `uffd` and registers and
    /// write-protects every trackable mapping of `vmas`. A mapping the
    /// kernel refuses to register is left untracked.
    pub fn start(pid: i32, uffd: OwnedFd, vmas: &[Vma]) -> Result<Self, DirtyTrackingError> {
        let kernel = |op: String| move |errno| DirtyTrackingError::Kernel { op, pid, errno };
        let wanted = uffd::UFFD_FEATURE_WP_ASYNC | uffd::UFFD_FEATURE_WP_UNPOPULATED;
        let got = uffd::uffd_api(&uffd, wanted).map_err(kernel("UFFDIO_API".into()))?;
        if got & uffd::UFFD_FEATURE_WP_ASYNC == 0 {
            return Err(DirtyTrackingError::Unsupported {
                pid,
                feature: "UFFD_FEATURE_WP_ASYNC",
            });
        }
        let pagemap = File::open(format!("/proc/{pid}/pagemap"))
            .map_err(|source| DirtyTrackingError::Pagemap { pid, source })?;
        let mut ranges = Vec::new();
        // A PROT_NONE reservation cannot be written without an mprotect
        // first, which the final (frozen) pass sees: tracking it would only
        // fill page tables with write-protect markers.
        for vma in vmas
            .iter()
            .filter(|v| v.is_private_anonymous() && v.prot != 0)
        {
            let len = vma.end - vma.start;
            if let Err(errno) = uffd::uffd_register_wp(&uffd, vma.start, len) {
                tracing::debug!(pid, start = vma.start, %errno, "mapping not tracked");
                continue;
            }
            uffd::uffd_writeprotect(&uffd, vma.start, len, true).map_err(kernel(format!(
                "UFFDIO_WRITEPROTECT of {:#x}-{:#x}",
                vma.start, vma.end
            )))?;
            ranges.push((vma.start, vma.end));
        }
        Ok(UffdWpTracker {
            pid,
            _uffd: uffd,
            pagemap,
            ranges,
        })
    }
}

impl DirtyTracker for UffdWpTracker {
    fn is_tracked(&self, start: u64, end: u64) -> bool {
        let i = self.ranges.partition_point(|r| r.1 <= start);
        self.ranges
            .get(i)
            .is_some_and(|r| r.0 <= start && end <= r.1)
    }

    fn written(
        &mut self,
        start: u64,
        end: u64,
        rearm: bool,
        out: &mut Vec<(u64, u64)>,
    ) -> Result<(), DirtyTrackingError> {
        let mut flags = uffd::PM_SCAN_CHECK_WPASYNC;
        if rearm {
            flags |= uffd::PM_SCAN_WP_MATCHING;
        }
        uffd::pagemap_scan(&self.pagemap, start, end, flags, uffd::PAGE_IS_WRITTEN, out).map_err(
            |errno| DirtyTrackingError::Kernel {
                op: format!("PAGEMAP_SCAN of {start:#x}-{end:#x}"),
                pid: self.pid,
                errno,
            },
        )
    }
}

/// A sorted set of page runs, for "was this page copied / written" checks.
#[derive(Debug, Default, Clone)]
pub struct PageRuns {
    runs: Vec<(u64, u64)>,
}

impl PageRuns {
    /// Builds the set from runs (start, end) in any order.
    pub fn from_runs(mut runs: Vec<(u64, u64)>) -> Self {
        runs.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(runs.len());
        for (s, e) in runs {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        PageRuns { runs: merged }
    }

    /// Adds runs (start, end) to the set.
    pub fn extend(&mut self, runs: Vec<(u64, u64)>) {
        let mut all = std::mem::take(&mut self.runs);
        all.extend(runs);
        *self = PageRuns::from_runs(all);
    }

    /// Whether the page at `addr` is in the set.
    pub fn contains(&self, addr: u64) -> bool {
        let i = self.runs.partition_point(|r| r.1 <= addr);
        self.runs.get(i).is_some_and(|r| r.0 <= addr)
    }

    /// The runs (start, end), sorted and merged.
    pub fn runs(&self) -> &[(u64, u64)] {
        &self.runs
    }

    /// Number of pages in the set.
    pub fn pages(&self) -> u64 {
        self.runs.iter().map(|r| (r.1 - r.0) / PAGE_SIZE).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_runs_merge_and_find() {
        let set = PageRuns::from_runs(vec![(0x3000, 0x5000), (0x1000, 0x2000), (0x2000, 0x3000)]);
        assert!(set.contains(0x1000) && set.contains(0x4000));
        assert!(!set.contains(0x5000) && !set.contains(0));
        assert_eq!(set.pages(), 4);
    }
}
