//! Which kernel mechanism dirty tracking uses on this host, chosen from
//! the host probe's results.

use crate::probe::{self, Feature, ProbeResult, ProbeStatus};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// The kernel mechanism a dirty tracker is built on, chosen by probing
/// (`DirtyBackend::detect`): the mechanisms differ by kernel version and
/// configuration, and a wrong choice is silent (a kernel without
/// CONFIG_MEM_SOFT_DIRTY accepts clear_refs and then reports no page
/// written), so only a mechanism seen working is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
