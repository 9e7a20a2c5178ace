//! Private anonymous pages of this process that code outside `kernel` can
//! map, write and unmap without `unsafe`: the memory the dirty-tracking
//! probes write to and then look up in pagemap.

use nix::errno::Errno;
use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};
use std::ffi::c_void;
use std::num::NonZeroUsize;
use std::ptr::NonNull;

/// The size of a page.
pub fn page_size() -> usize {
    // SAFETY: sysconf only reads a system value.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// Private anonymous read-write pages of our own; unmapped on drop.
#[derive(Debug)]
pub struct ScratchPages {
    /// Start of the mapping.
    base: NonNull<c_void>,
    /// Length of the mapping in bytes.
    len: usize,
    /// The page size.
    page: usize,
}

impl ScratchPages {
    /// Maps `pages` pages (EINVAL for none).
    pub fn map(pages: usize) -> Result<ScratchPages, Errno> {
        let page = page_size();
        let length = NonZeroUsize::new(pages * page).ok_or(Errno::EINVAL)?;
        // SAFETY: a new private anonymous mapping at an address of the
        // kernel's choice cannot alias any existing memory.
        let base = unsafe {
            mmap_anonymous(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        }?;
        Ok(ScratchPages {
            base,
            len: length.get(),
            page,
        })
    }

    /// The page size the mapping is counted in.
    pub fn page(&self) -> usize {
        self.page
    }

    /// Address of page `index`.
    pub fn addr(&self, index: usize) -> usize {
        self.base.as_ptr() as usize + index * self.page
    }

    /// Writes to page `index`, which faults it in (or marks it dirty).
    pub fn write(&self, index: usize) {
        assert!(
            index * self.page < self.len,
            "page {index} is outside the probe mapping"
        );
        // SAFETY: the address is inside this live read-write mapping, which
        // nothing else references.
        unsafe { std::ptr::write_volatile(self.addr(index) as *mut u8, 1) };
    }
}

impl Drop for ScratchPages {
    fn drop(&mut self) {
        // SAFETY: this mapping is ours and no reference into it outlives self.
        let _ = unsafe { munmap(self.base, self.len) };
    }
}
