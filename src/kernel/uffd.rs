//! userfaultfd ioctls and the PAGEMAP_SCAN ioctl: the kernel interfaces of
//! write-protect dirty tracking (and, later, of post-copy fault serving).

use nix::errno::Errno;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// UFFD_API: the userfaultfd API version UFFDIO_API must be given.
pub const UFFD_API: u64 = 0xaa;
/// UFFD_FEATURE_WP_UNPOPULATED: write-protect pages not yet populated too.
pub const UFFD_FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
/// UFFD_FEATURE_WP_ASYNC: the kernel resolves write-protect faults itself
/// and only records that the page was written.
pub const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
/// UFFD_USER_MODE_ONLY: the flag that lets any user create a userfaultfd.
pub const UFFD_USER_MODE_ONLY: i32 = 1;
/// PAGEMAP_SCAN category: the page was written since it was protected.
pub const PAGE_IS_WRITTEN: u64 = 1 << 1;
/// PAGEMAP_SCAN category: the page is present.
pub const PAGE_IS_PRESENT: u64 = 1 << 3;
/// PAGEMAP_SCAN flag: write-protect the matching pages again (atomically).
pub const PM_SCAN_WP_MATCHING: u64 = 1 << 0;
/// PAGEMAP_SCAN flag: fail unless every VMA is registered WP_ASYNC.
pub const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;

/// The kernel's struct uffdio_api.
#[repr(C)]
#[derive(Debug, Default)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

/// The kernel's struct uffdio_register.
#[repr(C)]
#[derive(Debug, Default)]
struct UffdioRegister {
    start: u64,
    len: u64,
    mode: u64,
    ioctls: u64,
}

/// The kernel's struct uffdio_writeprotect.
#[repr(C)]
#[derive(Debug, Default)]
struct UffdioWriteprotect {
    start: u64,
    len: u64,
    mode: u64,
}

/// The kernel's struct pm_scan_arg (PAGEMAP_SCAN).
#[repr(C)]
#[derive(Debug, Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// The kernel's struct page_region: a run of pages with the same categories.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

/// Creates a userfaultfd in this process.
pub fn userfaultfd(flags: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: userfaultfd takes flags and returns a new fd or an error.
    let ret = unsafe { libc::syscall(libc::SYS_userfaultfd, flags) };
    let fd = Errno::result(ret)?;
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// UFFDIO_API: enables `features` (0 asks for nothing and learns what is
/// offered); returns the features the kernel reports.
pub fn uffd_api(uffd: &OwnedFd, features: u64) -> Result<u64, Errno> {
    let mut api = UffdioApi {
        api: UFFD_API,
        features,
        ioctls: 0,
    };
    let request = nix::request_code_readwrite!(0xaa, 0x3f, std::mem::size_of::<UffdioApi>());
    // SAFETY: UFFDIO_API reads and writes one struct uffdio_api, which api is.
    let ret = unsafe { libc::ioctl(uffd.as_raw_fd(), request, &mut api as *mut UffdioApi) };
    Errno::result(ret).map(|_| api.features)
}

/// UFFDIO_REGISTER in write-protect mode for `len` bytes at `start` of the
/// process that created the userfaultfd.
pub fn uffd_register_wp(uffd: &OwnedFd, start: u64, len: u64) -> Result<(), Errno> {
    const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
    uffd_register(uffd, start, len, UFFDIO_REGISTER_MODE_WP)
}

/// UFFDIO_REGISTER in missing-page mode: the registered range's missing
/// pages can then be filled with UFFDIO_COPY.
pub fn uffd_register_missing(uffd: &OwnedFd, start: u64, len: u64) -> Result<(), Errno> {
    const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;
    uffd_register(uffd, start, len, UFFDIO_REGISTER_MODE_MISSING)
}

fn uffd_register(uffd: &OwnedFd, start: u64, len: u64, mode: u64) -> Result<(), Errno> {
    let mut reg = UffdioRegister {
        start,
        len,
        mode,
        ioctls: 0,
    };
    let request = nix::request_code_readwrite!(0xaa, 0x00, std::mem::size_of::<UffdioRegister>());
    // SAFETY: UFFDIO_REGISTER reads and writes one struct uffdio_register.
    let ret = unsafe { libc::ioctl(uffd.as_raw_fd(), request, &mut reg as *mut UffdioRegister) };
    Errno::result(ret).map(drop)
}

/// UFFDIO_WRITEPROTECT: write-protects (or unprotects) a registered range.
pub fn uffd_writeprotect(uffd: &OwnedFd, start: u64, len: u64, protect: bool) -> Result<(), Errno> {
    const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1;
    let mut wp = UffdioWriteprotect {
        start,
        len,
        mode: if protect {
            UFFDIO_WRITEPROTECT_MODE_WP
        } else {
            0
        },
    };
    let request =
        nix::request_code_readwrite!(0xaa, 0x06, std::mem::size_of::<UffdioWriteprotect>());
    // SAFETY: UFFDIO_WRITEPROTECT reads and writes one struct uffdio_writeprotect.
    let ret = unsafe {
        libc::ioctl(
            uffd.as_raw_fd(),
            request,
            &mut wp as *mut UffdioWriteprotect,
        )
    };
    Errno::result(ret).map(drop)
}

/// PAGEMAP_SCAN over [start, end) of the process whose pagemap `pagemap`
/// is: appends to `out` the runs (start, end) of pages in any category of
/// `category_mask`, walking the whole range in as many calls as needed.
/// `flags` may re-protect the matching pages (PM_SCAN_WP_MATCHING).
pub fn pagemap_scan(
    pagemap: &impl AsRawFd,
    start: u64,
    end: u64,
    flags: u64,
    category_mask: u64,
    out: &mut Vec<(u64, u64)>,
) -> Result<(), Errno> {
    let mut regions = vec![PageRegion::default(); 512];
    let mut from = start;
    while from < end {
        let mut arg = PmScanArg {
            size: std::mem::size_of::<PmScanArg>() as u64,
            flags,
            start: from,
            end,
            vec: regions.as_mut_ptr() as u64,
            vec_len: regions.len() as u64,
            category_mask,
            return_mask: category_mask,
            ..PmScanArg::default()
        };
        let request = nix::request_code_readwrite!(b'f', 16, std::mem::size_of::<PmScanArg>());
        // SAFETY: PAGEMAP_SCAN reads and writes one struct pm_scan_arg (arg)
        // and writes at most vec_len page_regions into `regions`, which
        // outlives the call.
        let ret = unsafe { libc::ioctl(pagemap.as_raw_fd(), request, &mut arg as *mut PmScanArg) };
        let n = Errno::result(ret)? as usize;
        out.extend(
            regions[..n.min(regions.len())]
                .iter()
                .map(|r| (r.start, r.end)),
        );
        if arg.walk_end <= from {
            return Err(Errno::EIO);
        }
        from = arg.walk_end;
    }
    Ok(())
}

/// The kernel's struct uffdio_copy.
#[repr(C)]
#[derive(Debug, Default)]
struct UffdioCopy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}

/// UFFDIO_UNREGISTER: ends the registration of a range.
pub fn uffd_unregister(uffd: &OwnedFd, start: u64, len: u64) -> Result<(), Errno> {
    let mut range = [start, len];
    let request = nix::request_code_read!(0xaa, 0x01, std::mem::size_of::<[u64; 2]>());
    // SAFETY: UFFDIO_UNREGISTER reads one struct uffdio_range (two u64).
    let ret = unsafe { libc::ioctl(uffd.as_raw_fd(), request, range.as_mut_ptr()) };
    Errno::result(ret).map(drop)
}

/// UFFDIO_COPY: places `src` into the missing pages at `dst` of the
/// userfaultfd's process, allocating them already filled (never zeroed
/// first). `dst` and `src.len()` must be page-aligned. Returns the bytes
/// copied, which may be fewer than asked (the caller continues).
pub fn uffd_copy(uffd: &OwnedFd, dst: u64, src: &[u8]) -> Result<usize, Errno> {
    let mut copy = UffdioCopy {
        dst,
        src: src.as_ptr() as u64,
        len: src.len() as u64,
        mode: 0,
        copy: 0,
    };
    let request = nix::request_code_readwrite!(0xaa, 0x03, std::mem::size_of::<UffdioCopy>());
    // SAFETY: UFFDIO_COPY reads `len` bytes from `src`, a live slice of
    // exactly that length, and writes the result into `copy`.
    let ret = unsafe { libc::ioctl(uffd.as_raw_fd(), request, &mut copy as *mut UffdioCopy) };
    match Errno::result(ret) {
        Ok(_) => Ok(copy.len as usize),
        Err(Errno::EAGAIN) if copy.copy > 0 => Ok(copy.copy as usize),
        Err(e) => Err(e),
    }
}

/// UFFD_FEATURE_EVENT_FORK: a fork of a registered process is reported
/// with a new userfaultfd for the child.
pub const UFFD_FEATURE_EVENT_FORK: u64 = 1 << 1;
/// UFFD_FEATURE_EVENT_REMAP: mremap of a registered range is reported.
pub const UFFD_FEATURE_EVENT_REMAP: u64 = 1 << 2;
/// UFFD_FEATURE_EVENT_REMOVE: madvise(MADV_DONTNEED/REMOVE) is reported.
pub const UFFD_FEATURE_EVENT_REMOVE: u64 = 1 << 3;
/// UFFD_FEATURE_EVENT_UNMAP: munmap of a registered range is reported.
pub const UFFD_FEATURE_EVENT_UNMAP: u64 = 1 << 6;

/// One message read from a userfaultfd (the kernel's struct uffd_msg),
/// decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UffdEvent {
    /// A thread touched a missing page at `address`.
    PageFault {
        /// The faulting address (not page-aligned).
        address: u64,
    },
    /// The process forked; `uffd` is the child's userfaultfd, now open in
    /// this process.
    Fork {
        /// The new fd (owned by the caller from now on).
        uffd: i32,
    },
    /// `len` bytes moved from `from` to `to` (mremap).
    Remap {
        /// Old start.
        from: u64,
        /// New start.
        to: u64,
        /// Length.
        len: u64,
    },
    /// [start, end) was discarded (madvise) or unmapped (munmap).
    Remove {
        /// Start.
        start: u64,
        /// End.
        end: u64,
    },
    /// An event this code does not ask for.
    Other(u8),
}

/// Size of the kernel's struct uffd_msg.
const UFFD_MSG_LEN: usize = 32;

/// Reads the queued messages of a non-blocking userfaultfd into `out`
/// (none when nothing is queued).
pub fn uffd_read_events(
    uffd: &impl std::os::fd::AsFd,
    out: &mut Vec<UffdEvent>,
) -> Result<(), Errno> {
    let mut buf = [0u8; UFFD_MSG_LEN * 64];
    loop {
        let n = match nix::unistd::read(uffd.as_fd(), &mut buf) {
            Ok(n) => n,
            Err(Errno::EAGAIN) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(());
        }
        for msg in buf[..n].chunks_exact(UFFD_MSG_LEN) {
            let u64_at =
                |off: usize| u64::from_le_bytes(msg[off..off + 8].try_into().unwrap_or_default());
            out.push(match msg[0] {
                0x12 => UffdEvent::PageFault {
                    address: u64_at(16),
                },
                0x13 => UffdEvent::Fork {
                    uffd: u32::from_le_bytes(msg[8..12].try_into().unwrap_or_default()) as i32,
                },
                0x14 => UffdEvent::Remap {
                    from: u64_at(8),
                    to: u64_at(16),
                    len: u64_at(24),
                },
                0x15 | 0x16 => UffdEvent::Remove {
                    start: u64_at(8),
                    end: u64_at(16),
                },
                other => UffdEvent::Other(other),
            });
        }
        if n < buf.len() {
            return Ok(());
        }
    }
}

/// Takes ownership of an fd number a userfaultfd fork event installed in
/// this process.
pub fn uffd_from_event(fd: i32) -> Result<OwnedFd, Errno> {
    if fd < 0 {
        return Err(Errno::EBADF);
    }
    // SAFETY: the kernel installed this fd in our table while delivering the
    // fork event; nothing else knows of it, so this is its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// UFFDIO_ZEROPAGE: maps the zero page at the missing pages [dst,
/// dst+len) and wakes the threads waiting there. Returns the bytes done.
pub fn uffd_zeropage(uffd: &impl AsRawFd, dst: u64, len: u64) -> Result<u64, Errno> {
    // struct uffdio_zeropage: range (start, len), mode, zeropage (s64).
    let mut arg: [u64; 4] = [dst, len, 0, 0];
    let request = nix::request_code_readwrite!(0xaa, 0x04, std::mem::size_of::<[u64; 4]>());
    // SAFETY: UFFDIO_ZEROPAGE reads and writes one struct uffdio_zeropage,
    // four u64 fields laid out as `arg`.
    let ret = unsafe { libc::ioctl(uffd.as_raw_fd(), request, arg.as_mut_ptr()) };
    match Errno::result(ret) {
        Ok(_) => Ok(arg[3]),
        Err(Errno::EAGAIN) if (arg[3] as i64) > 0 => Ok(arg[3]),
        Err(e) => Err(e),
    }
}

/// UFFDIO_WAKE: wakes the threads waiting on [start, start+len) (after a
/// fault was found resolved already).
pub fn uffd_wake(uffd: &impl AsRawFd, start: u64, len: u64) -> Result<(), Errno> {
    let mut range = [start, len];
    let request = nix::request_code_read!(0xaa, 0x02, std::mem::size_of::<[u64; 2]>());
    // SAFETY: UFFDIO_WAKE reads one struct uffdio_range (two u64).
    let ret = unsafe { libc::ioctl(uffd.as_raw_fd(), request, range.as_mut_ptr()) };
    Errno::result(ret).map(drop)
}
