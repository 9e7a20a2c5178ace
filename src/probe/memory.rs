//! Probes of the mechanisms pre-copy and post-copy build on: userfaultfd
//! and its write-protect features, PAGEMAP_SCAN and soft-dirty bits.

use super::feature::Feature;
use super::finding::{absent, errno_outcome, failed, io_failed, result, Finding, NotWorking};
use super::report::ProbeResult;
use crate::kernel::scratch::{page_size, ScratchPages};
use crate::kernel::uffd;
use crate::proc::pagemap;
use nix::errno::Errno;
use std::fs::{self, File};
use std::sync::Mutex;

/// Serializes soft-dirty probes: a concurrent clear_refs of this process
/// would clear the bit between another probe's write and read.
static SOFT_DIRTY_LOCK: Mutex<()> = Mutex::new(());

/// userfaultfd feature bits (UFFDIO_API) with their names, for reports.
const UFFD_FEATURES: &[(u32, &str)] = &[
    (0, "wp"),
    (1, "event-fork"),
    (2, "event-remap"),
    (3, "event-remove"),
    (4, "missing-hugetlbfs"),
    (5, "missing-shmem"),
    (6, "event-unmap"),
    (7, "sigbus"),
    (8, "thread-id"),
    (9, "minor-hugetlbfs"),
    (10, "minor-shmem"),
    (11, "exact-address"),
    (12, "wp-hugetlbfs-shmem"),
    (13, "wp-unpopulated"),
    (14, "poison"),
    (15, "wp-async"),
    (16, "move"),
];
/// UFFD_FEATURE_PAGEFAULT_FLAG_WP.
const UFFD_FEATURE_WP: u32 = 0;
/// UFFD_FEATURE_WP_UNPOPULATED.
const UFFD_FEATURE_WP_UNPOPULATED: u32 = 13;
/// UFFD_FEATURE_WP_ASYNC.
const UFFD_FEATURE_WP_ASYNC: u32 = 15;

/// Creates a userfaultfd and runs UFFDIO_API with no features requested,
/// which makes the kernel report every feature it supports: returns them.
pub(super) fn probe_userfaultfd() -> Result<u64, NotWorking> {
    let uffd = uffd::userfaultfd(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .map_err(|e| errno_outcome("userfaultfd(O_CLOEXEC|O_NONBLOCK)", e, &[Errno::ENOSYS]))?;
    uffd::uffd_api(&uffd, 0)
        .map_err(|e| errno_outcome("UFFDIO_API", e, &[Errno::EINVAL, Errno::ENOTTY]))
}

/// Names of the userfaultfd feature bits set in `features`.
fn uffd_feature_names(features: u64) -> String {
    let names: Vec<&str> = UFFD_FEATURES
        .iter()
        .filter(|(bit, _)| features & (1u64 << bit) != 0)
        .map(|(_, name)| *name)
        .collect();
    names.join(" ")
}

/// The userfaultfd results from the features UFFDIO_API offered (or why
/// there is no userfaultfd): the base mechanism (missing-page handling) and
/// the write-protect features.
pub(super) fn userfaultfd_results(api: Result<u64, NotWorking>) -> Vec<ProbeResult> {
    let base = match &api {
        Ok(features) => Ok(format!(
            "missing-page mode; UFFDIO_API features {features:#x}: {}",
            uffd_feature_names(*features)
        )),
        Err(not) => Err(NotWorking {
            status: not.status,
            detail: not.detail.clone(),
        }),
    };
    let feature = |bit: u32, flag: &str| -> Finding {
        match &api {
            Ok(features) if features & (1u64 << bit) != 0 => {
                Ok(format!("{flag} (bit {bit}) is offered"))
            }
            Ok(features) => Err(absent(format!(
                "UFFDIO_API features {features:#x} lack {flag} (bit {bit})"
            ))),
            Err(not) => Err(NotWorking {
                status: not.status,
                detail: format!("no userfaultfd: {}", not.detail),
            }),
        }
    };
    vec![
        result(Feature::Userfaultfd, false, base),
        result(
            Feature::UserfaultfdWp,
            false,
            feature(UFFD_FEATURE_WP, "UFFD_FEATURE_PAGEFAULT_FLAG_WP"),
        ),
        result(
            Feature::UserfaultfdWpUnpopulated,
            false,
            feature(UFFD_FEATURE_WP_UNPOPULATED, "UFFD_FEATURE_WP_UNPOPULATED"),
        ),
        result(
            Feature::UserfaultfdWpAsync,
            false,
            feature(UFFD_FEATURE_WP_ASYNC, "UFFD_FEATURE_WP_ASYNC"),
        ),
    ]
}

/// Maps `pages` private anonymous pages of our own for a probe to write.
fn scratch_pages(pages: usize) -> Result<ScratchPages, NotWorking> {
    if pages == 0 {
        return Err(failed("a probe asked to map zero pages"));
    }
    ScratchPages::map(pages).map_err(|e| {
        let len = pages * page_size();
        failed(format!("mmap of {len} anonymous bytes failed with {e}"))
    })
}

/// Asks PAGEMAP_SCAN for the present pages of a 4-page range of our own of
/// which pages 0 and 2 were written.
pub(super) fn probe_pagemap_scan() -> Finding {
    let pages = scratch_pages(4)?;
    pages.write(0);
    pages.write(2);
    let pagemap =
        File::open("/proc/self/pagemap").map_err(|e| io_failed("opening /proc/self/pagemap", e))?;
    let mut seen = Vec::new();
    uffd::pagemap_scan(
        &pagemap,
        pages.addr(0) as u64,
        pages.addr(4) as u64,
        0,
        uffd::PAGE_IS_PRESENT,
        &mut seen,
    )
    .map_err(|e| {
        errno_outcome(
            "PAGEMAP_SCAN on /proc/self/pagemap",
            e,
            &[Errno::ENOTTY, Errno::EINVAL],
        )
    })?;
    let found = seen.len();
    let expected = [
        (pages.addr(0) as u64, pages.addr(1) as u64),
        (pages.addr(2) as u64, pages.addr(3) as u64),
    ];
    if seen == expected {
        Ok("found exactly the 2 written pages of 4 present".to_string())
    } else {
        Ok(format!(
            "works; reported {found} present region(s) where pages 0 and 2 of 4 were written"
        ))
    }
}

/// Reads the pagemap entry of `addr` in this process.
fn pagemap_entry(pagemap: &File, addr: usize, page: usize) -> Result<u64, NotWorking> {
    let mut entry = [0u64];
    pagemap::read_entries(pagemap, (addr / page) as u64, &mut Vec::new(), &mut entry)
        .map_err(|e| io_failed(format!("reading /proc/self/pagemap at {addr:#x}"), e))?;
    Ok(entry[0])
}

/// Clears the soft-dirty bits of this process, writes a page and checks
/// that its pagemap entry got the soft-dirty bit (55). Kernels without
/// CONFIG_MEM_SOFT_DIRTY accept the clear and leave the bit 0.
pub(super) fn probe_soft_dirty() -> Finding {
    let _serialized = SOFT_DIRTY_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let pages = scratch_pages(1)?;
    pages.write(0);
    let pagemap =
        File::open("/proc/self/pagemap").map_err(|e| io_failed("opening /proc/self/pagemap", e))?;
    fs::write("/proc/self/clear_refs", "4")
        .map_err(|e| io_failed("writing 4 to /proc/self/clear_refs", e))?;
    let cleared = pagemap_entry(&pagemap, pages.addr(0), pages.page())?;
    pages.write(0);
    let written = pagemap_entry(&pagemap, pages.addr(0), pages.page())?;
    if written & pagemap::PRESENT == 0 {
        return Err(failed(format!(
            "the written page's pagemap entry {written:#x} does not say present"
        )));
    }
    match (
        cleared & pagemap::SOFT_DIRTY != 0,
        written & pagemap::SOFT_DIRTY != 0,
    ) {
        (false, true) => Ok("bit 55 cleared by clear_refs and set by a write".to_string()),
        (_, false) => Err(absent(
            "bit 55 stays 0 after a write: the kernel lacks CONFIG_MEM_SOFT_DIRTY",
        )),
        (true, true) => Err(failed("writing 4 to clear_refs did not clear bit 55")),
    }
}
