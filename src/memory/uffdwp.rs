//! Dirty tracking with userfaultfd write-protect in asynchronous mode and
//! PAGEMAP_SCAN (Linux 6.7+): the tracker of current kernels.

use super::backend::DirtyBackend;
use super::error::DirtyTrackingError;
use super::tracker::{is_trackable, DirtyTracker};
use crate::image::Vma;
use crate::kernel::uffd;
use std::fs::File;
use std::os::fd::OwnedFd;

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

    fn tracked_ranges(&self) -> &[(u64, u64)] {
        &self.ranges
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
