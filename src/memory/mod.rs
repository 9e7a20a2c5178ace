//! Which pages of a running process changed: dirty-page tracking behind one
//! trait, so that pre-copy (in checkpoint now, in live migration next) does
//! not care which kernel mechanism finds the written pages.

mod softdirty;

pub use softdirty::SoftDirtyTracker;

use crate::image::{Vma, PAGE_SIZE};
use crate::kernel::uffd;
use crate::probe::{self, Feature, ProbeResult, ProbeStatus};
use nix::errno::Errno;
use serde::Serialize;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::OnceLock;

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
    /// /proc/PID/pagemap could not be read over a tracked range.
    #[error("cannot read /proc/{pid}/pagemap over {start:#x}-{end:#x}: {source}")]
    PagemapRead {
        /// The tracked process.
        pid: i32,
        /// Start of the range.
        start: u64,
        /// End of the range.
        end: u64,
        /// The error.
        source: std::io::Error,
    },
    /// Writing "4" to /proc/PID/clear_refs (clear the soft-dirty bits) failed.
    #[error(
        "cannot clear the soft-dirty bits of process {pid} (/proc/{pid}/clear_refs): {source}"
    )]
    ClearRefs {
        /// The tracked process.
        pid: i32,
        /// The error.
        source: std::io::Error,
    },
    /// No dirty-page tracker works on this kernel.
    #[error("no dirty-page tracker works on this kernel (neither userfaultfd write-protect with WP_ASYNC and PAGEMAP_SCAN nor soft-dirty): process {pid} is copied while frozen")]
    NoBackend {
        /// The process that was to be tracked.
        pid: i32,
    },
}

/// The kernel mechanism a dirty tracker is built on, chosen by probing
/// (`DirtyBackend::detect`): the mechanisms differ by kernel version and
/// configuration, and a wrong choice is silent (a kernel without
/// CONFIG_MEM_SOFT_DIRTY accepts clear_refs and then reports no page
/// written), so only a mechanism seen working is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirtyBackend {
    /// userfaultfd write-protect with UFFD_FEATURE_WP_ASYNC, read and
    /// re-armed atomically by PAGEMAP_SCAN (Linux 6.7+): `UffdWpTracker`.
    UffdWpAsync,
    /// The soft-dirty bits of pagemap, cleared through clear_refs
    /// (CONFIG_MEM_SOFT_DIRTY): `SoftDirtyTracker`.
    SoftDirty,
    /// Nothing works: no pre-copy, all memory is copied while frozen.
    None,
}

impl DirtyBackend {
    /// Picks the backend from probe results (those of
    /// `probe::dirty_tracking_probes` or `probe::probe_host`): uffd-wp async
    /// when WP_ASYNC, WP_UNPOPULATED (which the tracker also asks for) and
    /// PAGEMAP_SCAN all work, else soft-dirty when the probe saw a write set
    /// bit 55 after a clear, else none.
    pub fn choose(probes: &[ProbeResult]) -> DirtyBackend {
        let works = |feature: Feature| {
            probes
                .iter()
                .any(|p| p.feature == feature && p.status == ProbeStatus::Present)
        };
        if works(Feature::UserfaultfdWpAsync)
            && works(Feature::UserfaultfdWpUnpopulated)
            && works(Feature::PagemapScan)
        {
            DirtyBackend::UffdWpAsync
        } else if works(Feature::SoftDirty) {
            DirtyBackend::SoftDirty
        } else {
            DirtyBackend::None
        }
    }

    /// The backend for this kernel, probed once per process (the kernel
    /// does not change under a running agent).
    pub fn detect() -> DirtyBackend {
        static CHOSEN: OnceLock<DirtyBackend> = OnceLock::new();
        *CHOSEN.get_or_init(|| DirtyBackend::choose(&probe::dirty_tracking_probes()))
    }

    /// The name printed in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            DirtyBackend::UffdWpAsync => "uffd-wp-async",
            DirtyBackend::SoftDirty => "soft-dirty",
            DirtyBackend::None => "none",
        }
    }
}

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
    /// Whether writes anywhere in [start, end) are tracked.
    fn is_tracked(&self, start: u64, end: u64) -> bool;
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

/// Whether [start, end) lies inside one of `ranges` (sorted, disjoint).
fn ranges_cover(ranges: &[(u64, u64)], start: u64, end: u64) -> bool {
    let i = ranges.partition_point(|r| r.1 <= start);
    ranges.get(i).is_some_and(|r| r.0 <= start && end <= r.1)
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
        for vma in vmas.iter().filter(|v| is_trackable(v)) {
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
    fn backend(&self) -> DirtyBackend {
        DirtyBackend::UffdWpAsync
    }

    fn is_tracked(&self, start: u64, end: u64) -> bool {
        ranges_cover(&self.ranges, start, end)
    }

    /// "uw": the mapping is registered for write-protect tracking now; a
    /// mapping created since (even over a tracked range) is not.
    fn still_tracked(&self, vma: &Vma) -> bool {
        vma.has_vm_flag("uw") && self.is_tracked(vma.start, vma.end)
    }

    fn written(
        &mut self,
        ranges: &[(u64, u64)],
        rearm: bool,
        out: &mut Vec<(u64, u64)>,
    ) -> Result<(), DirtyTrackingError> {
        let mut flags = uffd::PM_SCAN_CHECK_WPASYNC;
        if rearm {
            flags |= uffd::PM_SCAN_WP_MATCHING;
        }
        for &(start, end) in ranges {
            uffd::pagemap_scan(&self.pagemap, start, end, flags, uffd::PAGE_IS_WRITTEN, out)
                .map_err(|errno| DirtyTrackingError::Kernel {
                    op: format!("PAGEMAP_SCAN of {start:#x}-{end:#x}"),
                    pid: self.pid,
                    errno,
                })?;
        }
        Ok(())
    }

    /// PAGEMAP_SCAN with PM_SCAN_WP_MATCHING reads and write-protects each
    /// page under its page-table lock: no write is lost.
    fn rearm_needs_stop(&self) -> bool {
        false
    }
}

/// A sorted set of page runs, for "was this page copied / written" checks.
#[derive(Debug, Default, Clone)]
pub struct PageRuns {
    runs: Vec<(u64, u64)>,
}

impl PageRuns {
    /// The empty set.
    pub const fn empty() -> Self {
        PageRuns { runs: Vec::new() }
    }

    /// Whether any page of [start, end) is in the set.
    pub fn intersects(&self, start: u64, end: u64) -> bool {
        let i = self.runs.partition_point(|r| r.1 <= start);
        self.runs.get(i).is_some_and(|r| r.0 < end)
    }

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

    /// Whether every page of [start, end) is in the set.
    pub fn covers(&self, start: u64, end: u64) -> bool {
        let i = self.runs.partition_point(|r| r.1 <= start);
        self.runs.get(i).is_some_and(|r| r.0 <= start && end <= r.1)
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
        assert!(set.covers(0x1000, 0x5000) && set.covers(0x2000, 0x3000));
        assert!(!set.covers(0x1000, 0x6000) && !set.covers(0, 0x2000));
    }
}
