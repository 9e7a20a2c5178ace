//! The pages: where each page of the image goes in a husk (its
//! userfaultfd for private anonymous memory, process_vm_writev elsewhere).

use super::process::Husk;
use crate::image::{PageData, PAGE_SIZE};
use crate::kernel;
use crate::memory::PageRuns;
use crate::ptrace::write_memory;
use crate::restore::error::RestoreError;
use nix::unistd::Pid;
use std::os::fd::OwnedFd;

/// Where a husk's pages go: its userfaultfd for private anonymous memory,
/// process_vm_writev elsewhere.
pub(super) struct Filler<'a> {
    /// The process as the image names it.
    pub(super) image_pid: i32,
    pub(super) pid: Pid,
    pub(super) uffd: OwnedFd,
    /// The anonymous mappings registered for UFFDIO_COPY, in address order.
    pub(super) by_copy: Vec<(u64, u64)>,
    /// Lazy restore: pages the source still holds (the image's copy of
    /// them is stale and is not installed).
    pub(super) remote: Option<&'a PageRuns>,
}

/// The remote set of a process the source named no pages for.
pub(super) static NOTHING_REMOTE: PageRuns = PageRuns::empty();

impl Filler<'_> {
    /// Writes pages delivered by the image reader into place.
    pub(super) fn put(&self, vaddr: u64, data: PageData<'_>) -> Result<(), RestoreError> {
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        let pid = self.pid;
        // Which way a range of a chunk goes: (end of the piece, by copy).
        let piece = |addr: u64, end: u64| {
            let i = self.by_copy.partition_point(|r: &(u64, u64)| r.1 <= addr);
            match self.by_copy.get(i) {
                Some(&(s, e)) if s <= addr => (end.min(e), true),
                Some(&(s, _)) => (end.min(s), false),
                None => (end, false),
            }
        };
        match data {
            PageData::Bytes(bytes) => {
                let mut addr = vaddr;
                let end = vaddr + bytes.len() as u64;
                while addr < end {
                    let (piece_end, copy) = piece(addr, end);
                    let src = &bytes[(addr - vaddr) as usize..(piece_end - vaddr) as usize];
                    if copy {
                        self.copy_local(addr, src)?;
                    } else {
                        write_memory(pid, addr, src)?;
                    }
                    addr = piece_end;
                }
            }
            PageData::Zero { npages } => {
                let mut addr = vaddr;
                let end = vaddr + npages * PAGE_SIZE;
                while addr < end {
                    let (piece_end, copy) = piece(addr, end);
                    // A missing anonymous page reads as zero already.
                    let mut at = addr;
                    while !copy && at < piece_end {
                        let n = (piece_end - at).min(ZEROS.len() as u64);
                        write_memory(pid, at, &ZEROS[..n as usize])?;
                        at += n;
                    }
                    addr = piece_end;
                }
            }
        }
        Ok(())
    }

    /// UFFDIO_COPY of `src` to `addr`, leaving out the pages the source
    /// still holds in a lazy restore.
    fn copy_local(&self, addr: u64, src: &[u8]) -> Result<(), RestoreError> {
        let end = addr + src.len() as u64;
        let mut at = addr;
        while at < end {
            if self.remote.is_some_and(|r| r.contains(at)) {
                at += PAGE_SIZE;
                continue;
            }
            let mut run_end = at + PAGE_SIZE;
            while run_end < end && !self.remote.is_some_and(|r| r.contains(run_end)) {
                run_end += PAGE_SIZE;
            }
            let piece = &src[(at - addr) as usize..(run_end - addr) as usize];
            let mut done = 0;
            while done < piece.len() {
                done += kernel::uffd::uffd_copy(&self.uffd, at + done as u64, &piece[done..])
                    .map_err(|errno| RestoreError::Injected {
                        pid: self.image_pid,
                        call: format!("UFFDIO_COPY of {} bytes at {at:#x}", piece.len()),
                        errno,
                    })?;
            }
            at = run_end;
        }
        Ok(())
    }
}

impl<'a> Husk<'a> {
    /// Prepares the page fill of this husk: anonymous memory is filled
    /// through a userfaultfd taken from the husk (UFFDIO_COPY allocates
    /// each page already filled instead of zeroing it first, and a page the
    /// image says is zero is simply left missing); file mappings get their
    /// copied-on-write pages by process_vm_writev.
    ///
    /// A lazy restore (`remote` given) registers every private anonymous
    /// mapping, catches faults in system calls too, asks for the events a
    /// fault server must see (fork, mremap, madvise, munmap) and keeps the
    /// userfaultfd.
    pub(super) fn prepare_fill<'r>(
        &mut self,
        filled: &[bool],
        remote: Option<&'r PageRuns>,
    ) -> Result<Filler<'r>, RestoreError> {
        use kernel::uffd::{
            UFFD_FEATURE_EVENT_FORK, UFFD_FEATURE_EVENT_REMAP, UFFD_FEATURE_EVENT_REMOVE,
            UFFD_FEATURE_EVENT_UNMAP,
        };
        let image = self.image;
        let lazy = remote.is_some();
        let uffd = self.threads[0].take_userfaultfd(self.syscall_insn, self.pid, lazy)?;
        let features = if lazy {
            UFFD_FEATURE_EVENT_FORK
                | UFFD_FEATURE_EVENT_REMAP
                | UFFD_FEATURE_EVENT_REMOVE
                | UFFD_FEATURE_EVENT_UNMAP
        } else {
            0
        };
        let injected = |call: String| {
            move |errno| RestoreError::Injected {
                pid: image.pid,
                call,
                errno,
            }
        };
        kernel::uffd::uffd_api(&uffd, features)
            .map_err(injected("UFFDIO_API on the husk's userfaultfd".into()))?;
        // Anonymous mappings that receive pages, registered for UFFDIO_COPY.
        let mut by_copy = Vec::new();
        for (vma, _) in image
            .vmas
            .iter()
            .zip(filled)
            .filter(|(v, &f)| (f || lazy) && v.is_private_anonymous() && !v.is_special())
        {
            kernel::uffd::uffd_register_missing(&uffd, vma.start, vma.end - vma.start).map_err(
                injected(format!(
                    "UFFDIO_REGISTER of {:#x}-{:#x}",
                    vma.start, vma.end
                )),
            )?;
            by_copy.push((vma.start, vma.end));
        }
        Ok(Filler {
            image_pid: image.pid,
            pid: self.pid,
            uffd,
            by_copy,
            remote,
        })
    }
}
