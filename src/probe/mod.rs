//! Host feature probes for `migrate-agent check`: each one tries the
//! mechanism rather than reading configuration.
//!
//! Kernel configs, sysctls, seccomp filters, LSMs and container runtimes all
//! decide whether a mechanism works, and none of them can be read reliably
//! (a kernel without CONFIG_MEM_SOFT_DIRTY even accepts clear_refs and then
//! reports nothing). So every probe does the smallest real use of the
//! mechanism: it forks a child and ptraces it, reads its memory, takes an fd
//! out of it, freezes an empty cgroup, and so on. Every probe cleans up after
//! itself (children killed and reaped, cgroups removed, fds closed), on
//! failure too, and takes at most about a second (children that do not stop
//! or exit in time are killed).

mod child;
mod feature;
mod finding;
mod host;
mod memory;
mod process;
mod report;

pub use feature::Feature;
pub use report::{CpuReport, HostReport, ProbeResult, ProbeStatus};

use crate::kernel::cpu;
use finding::result;
use host::{
    kernel_release, probe_cgroup_v1_freezer, probe_cgroup_v2_freeze, probe_tcp_repair,
    probe_time_namespace,
};
use memory::{probe_pagemap_scan, probe_soft_dirty, probe_userfaultfd, userfaultfd_results};
use process::{
    probe_clone3_set_tid, probe_pidfd_getfd, probe_prctl_mm_map, probe_process_vm_readv,
    probe_ptrace_seize, probe_rseq_configuration, probe_xstate_regset,
};

/// Tries every mechanism ferry uses on this host and reports what works.
/// Takes well under two seconds and leaves no process, fd or cgroup behind.
pub fn probe_host() -> HostReport {
    let xcr0 = cpu::xcr0();
    let mut probes = vec![
        result(Feature::PtraceSeize, true, probe_ptrace_seize()),
        result(Feature::ProcessVmReadv, true, probe_process_vm_readv()),
        result(Feature::PidfdGetfd, false, probe_pidfd_getfd()),
        result(Feature::Clone3SetTid, true, probe_clone3_set_tid()),
        result(Feature::PrctlMmMap, true, probe_prctl_mm_map()),
        result(Feature::XstateRegset, true, probe_xstate_regset()),
        result(
            Feature::RseqConfiguration,
            false,
            probe_rseq_configuration(),
        ),
    ];
    probes.extend(dirty_tracking_probes());
    probes.extend([
        result(Feature::TimeNamespace, false, probe_time_namespace()),
        result(Feature::CgroupV1Freezer, false, probe_cgroup_v1_freezer()),
        result(Feature::CgroupV2Freeze, false, probe_cgroup_v2_freeze()),
        result(Feature::TcpRepair, false, probe_tcp_repair()),
    ]);
    HostReport {
        kernel_release: kernel_release(),
        cpu: CpuReport {
            xcr0,
            xsave_size: cpu::xsave_size(),
            xsave_components: cpu::xsave_component_names(xcr0),
        },
        probes,
    }
}

/// Tries only the mechanisms a dirty-page tracker can be built on
/// (userfaultfd and its write-protect features, PAGEMAP_SCAN, soft-dirty):
/// what a checkpoint needs to choose its tracker, without the rest of
/// `probe_host`.
pub fn dirty_tracking_probes() -> Vec<ProbeResult> {
    let mut probes = userfaultfd_results(probe_userfaultfd());
    probes.extend([
        result(Feature::PagemapScan, false, probe_pagemap_scan()),
        result(Feature::SoftDirty, false, probe_soft_dirty()),
    ]);
    probes
}
