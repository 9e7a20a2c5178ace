//! The pages: where each page of the image goes in a husk (its
//! userfaultfd for private anonymous memory, process_vm_writev elsewhere),
//! and the mappings a child inherits from its parent's husk with the pages
//! they still share copy-on-write.

use super::process::Husk;
use crate::image::{ImageReader, PageData, ProcessImage, PAGE_SIZE};
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
    /// The anonymous mappings registered for UFFDIO_COPY (true) and the
    /// premapped and warm ones, filled already (false), in address order.
    pub(super) by_copy: Vec<(u64, u64, bool)>,
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
        // Which way a range of a chunk goes: (end of the piece, by copy
        // (Some(true)), filled already (Some(false)) or written (None)).
        let piece = |addr: u64, end: u64| {
            let i = self
                .by_copy
                .partition_point(|r: &(u64, u64, bool)| r.1 <= addr);
            match self.by_copy.get(i) {
                Some(&(s, e, copy)) if s <= addr => (end.min(e), Some(copy)),
                Some(&(s, _, _)) => (end.min(s), None),
                None => (end, None),
            }
        };
        match data {
            PageData::Bytes(bytes) => {
                let mut addr = vaddr;
                let end = vaddr + bytes.len() as u64;
                while addr < end {
                    let (piece_end, copy) = piece(addr, end);
                    let src = &bytes[(addr - vaddr) as usize..(piece_end - vaddr) as usize];
                    match copy {
                        Some(true) => self.copy_local(addr, src)?,
                        Some(false) => {}
                        None => write_memory(pid, addr, src)?,
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
                    while copy.is_none() && at < piece_end {
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
        for (at, run_end) in self.remote.unwrap_or(&NOTHING_REMOTE).gaps(addr, end) {
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
    /// mapping (a warm one too: its pages the source kept were dropped
    /// when it was moved in), catches faults in system calls too, asks
    /// for the events a fault server must see (fork, mremap, madvise,
    /// munmap) and keeps the userfaultfd.
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
        for (i, vma) in image.vmas.iter().enumerate() {
            let warm = self.warm.get(i) == Some(&true);
            if self.premapped.get(i) == Some(&true) || (warm && !lazy) {
                by_copy.push((vma.start, vma.end, false));
                continue;
            }
            if !((filled[i] || lazy) && vma.is_private_anonymous() && !vma.is_special()) {
                continue;
            }
            kernel::uffd::uffd_register_missing(&uffd, vma.start, vma.end - vma.start).map_err(
                injected(format!(
                    "UFFDIO_REGISTER of {:#x}-{:#x}",
                    vma.start, vma.end
                )),
            )?;
            // A warm mapping of a lazy restore is registered for the
            // pages the source kept, which fault in; the rest is in.
            by_copy.push((vma.start, vma.end, !warm));
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

/// Which mappings of `child` it inherits from `parent`: those the parent
/// has too ([`Vma::inherits`](crate::image::Vma::inherits)) that hold pages
/// the two shared at checkpoint.
fn inherited_from(child: &ProcessImage, parent: &ProcessImage) -> Vec<bool> {
    let shared = PageRuns::from_runs(child.shared_with_parent.clone());
    child
        .vmas
        .iter()
        .map(|v| shared.intersects(v.start, v.end) && parent.vmas.iter().any(|p| v.inherits(p)))
        .collect()
}

impl Husk<'_> {
    /// Decides which mappings the husk gets from its parent's with the
    /// clone ([`Husk::inherited`]) and which it fills before its children
    /// are cloned ([`Husk::premapped`]), as CRIU restores copy-on-write
    /// memory: the parent's pages go in first, the child is forked with
    /// them and writes only the pages it did not share. Not for a lazy
    /// restore, whose pages come after the tree is built: every process
    /// then gets its own copy.
    pub(super) fn plan_inheritance(&mut self) {
        let (image, tree) = (self.image, self.tree);
        let parent = tree
            .processes
            .iter()
            .find(|p| p.pid == image.ppid && p.pid != image.pid);
        self.inherited = parent.map_or_else(
            || vec![false; image.vmas.len()],
            |p| inherited_from(image, p),
        );
        self.premapped = self.inherited.clone();
        for child in tree
            .processes
            .iter()
            .filter(|c| c.ppid == image.pid && c.pid != image.pid)
        {
            for (vma, _) in child
                .vmas
                .iter()
                .zip(inherited_from(child, image))
                .filter(|(_, inherited)| *inherited)
            {
                if let Some(i) = image.vmas.iter().position(|v| vma.inherits(v)) {
                    self.premapped[i] = true;
                }
            }
        }
    }

    /// The ranges of the mappings inherited from the parent's husk: what
    /// the husk keeps of what it got with the clone.
    pub(super) fn inherited_ranges(&self) -> Vec<(u64, u64)> {
        self.image
            .vmas
            .iter()
            .zip(&self.inherited)
            .filter(|(_, &i)| i)
            .map(|(v, _)| (v.start, v.end))
            .collect()
    }

    /// Puts the premapped mappings in, with this process's pages, before
    /// its children are cloned with them: an inherited one drops the pages
    /// it did not share with the parent (MADV_DONTNEED: they read as zero,
    /// or as the file) and gets its own there; any other is mapped and
    /// filled. The page pass leaves them
    /// alone afterwards ([`Husk::prepare_fill`]).
    pub(super) fn premap(&mut self, reader: &ImageReader) -> Result<(), RestoreError> {
        let image = self.image;
        let shared = PageRuns::from_runs(image.shared_with_parent.clone());
        let mut ranges = Vec::new();
        for (i, vma) in image.vmas.iter().enumerate() {
            if self.premapped.get(i) != Some(&true) {
                continue;
            }
            if self.inherited[i] {
                for (start, end) in shared.gaps(vma.start, vma.end) {
                    self.sys(
                        0,
                        |r| r.madvise(start, end - start, libc::MADV_DONTNEED),
                        || format!("madvise(MADV_DONTNEED) of {start:#x}-{end:#x}"),
                    )?;
                }
            } else {
                self.map_vma(vma, true)?;
            }
            ranges.push((vma.start, vma.end));
        }
        let pid = self.pid;
        reader.read_pages_in(image.pid, &ranges, |vaddr, data| {
            // A missing page reads as zero: only data is written, and
            // never over a page still shared.
            let PageData::Bytes(bytes) = data else {
                return Ok::<(), RestoreError>(());
            };
            for (start, end) in shared.gaps(vaddr, vaddr + bytes.len() as u64) {
                let at = (start - vaddr) as usize;
                write_memory(pid, start, &bytes[at..at + (end - start) as usize])?;
            }
            Ok(())
        })
    }
}
