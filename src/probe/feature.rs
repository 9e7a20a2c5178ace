//! The mechanisms `migrate-agent check` tries, by name.

use serde::{Serialize, Serializer};
use std::fmt;

/// A mechanism of the host that ferry uses and `probe_host` tries. Its
/// report name (`as_str`) is what `migrate-agent check` prints and what its
/// JSON carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feature {
    /// PTRACE_SEIZE and PTRACE_INTERRUPT stop a child, which is then
    /// detached. Required: every checkpoint and restore is done under ptrace.
    PtraceSeize,
    /// process_vm_readv reads a child's memory. Required: the dump copies
    /// pages with it.
    ProcessVmReadv,
    /// pidfd_open and pidfd_getfd take an fd out of a child. Used to pull a
    /// userfaultfd created inside a restored process.
    PidfdGetfd,
    /// clone3 with set_tid creates a process with a chosen PID. Required: a
    /// restore recreates every PID and TID.
    Clone3SetTid,
    /// prctl(PR_SET_MM, PR_SET_MM_MAP) exists. Required: a restore sets the
    /// mm's code, data, brk, stack, argument and environment bounds.
    PrctlMmMap,
    /// PTRACE_GETREGSET reads NT_X86_XSTATE of a stopped child. Required: the
    /// FPU, SSE, AVX... state is part of every thread's image.
    XstateRegset,
    /// PTRACE_GET_RSEQ_CONFIGURATION reads a child's rseq registration, which
    /// a restore must re-register per thread.
    RseqConfiguration,
    /// userfaultfd with UFFDIO_API, which is enough for missing-page
    /// handling: lazy restore (post-copy).
    Userfaultfd,
    /// userfaultfd write-protect mode (UFFD_FEATURE_PAGEFAULT_FLAG_WP).
    UserfaultfdWp,
    /// UFFD_FEATURE_WP_UNPOPULATED, so write-protecting a range also covers
    /// pages not yet faulted in.
    UserfaultfdWpUnpopulated,
    /// UFFD_FEATURE_WP_ASYNC, which lets the kernel resolve write-protect
    /// faults itself: the dirty tracker that replaces soft-dirty.
    UserfaultfdWpAsync,
    /// The PAGEMAP_SCAN ioctl on pagemap, which reads (and re-arms) the pages
    /// written since the last scan in one call.
    PagemapScan,
    /// Soft-dirty bits in pagemap (CONFIG_MEM_SOFT_DIRTY), the classic dirty
    /// tracker for iterative pre-copy.
    SoftDirty,
    /// Time namespaces, to keep CLOCK_MONOTONIC continuous across a
    /// migration.
    TimeNamespace,
    /// The cgroup v1 freezer, to stop a whole container at once.
    CgroupV1Freezer,
    /// cgroup v2 cgroup.freeze, to stop a whole container at once.
    CgroupV2Freeze,
    /// TCP_REPAIR, to checkpoint and restore established TCP connections.
    TcpRepair,
}

impl Feature {
    /// The name reports give the mechanism.
    pub fn as_str(self) -> &'static str {
        match self {
            Feature::PtraceSeize => "ptrace-seize",
            Feature::ProcessVmReadv => "process-vm-readv",
            Feature::PidfdGetfd => "pidfd-getfd",
            Feature::Clone3SetTid => "clone3-set-tid",
            Feature::PrctlMmMap => "prctl-mm-map",
            Feature::XstateRegset => "ptrace-xstate-regset",
            Feature::RseqConfiguration => "ptrace-rseq-configuration",
            Feature::Userfaultfd => "userfaultfd",
            Feature::UserfaultfdWp => "userfaultfd-wp",
            Feature::UserfaultfdWpUnpopulated => "userfaultfd-wp-unpopulated",
            Feature::UserfaultfdWpAsync => "userfaultfd-wp-async",
            Feature::PagemapScan => "pagemap-scan",
            Feature::SoftDirty => "soft-dirty",
            Feature::TimeNamespace => "time-namespace",
            Feature::CgroupV1Freezer => "cgroup-v1-freezer",
            Feature::CgroupV2Freeze => "cgroup-v2-freeze",
            Feature::TcpRepair => "tcp-repair",
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Serialized as its report name, as the JSON of `migrate-agent check`
/// always carried it.
impl Serialize for Feature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}
