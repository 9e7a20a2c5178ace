//! A warm restore's root: its pre-copied pages wait in the husk's
//! staging reservation ([`crate::restore::warm`]); each private anonymous
//! mapping whose pages lie there in one piece is moved into place
//! (mremap moves page tables, not bytes), and the page pass leaves it
//! alone. Whatever the staging cannot give is mapped and filled from the
//! image as in a cold restore.

use super::process::{Husk, HELPER_RESERVE};
use crate::image::Vma;
use crate::memory::PageRuns;
use crate::proc;
use crate::restore::error::RestoreError;

/// Where a staging reservation that lies where the image has mappings is
/// moved: the first free slot from here up.
const STAGING_FLOOR: u64 = 0x1000_0000_0000;
/// The top of the user address space the search stays under.
const STAGING_CEILING: u64 = 0x7f00_0000_0000;

impl Husk<'_> {
    /// Moves the staging reservation out of the way of the image's
    /// mappings (the vDSO included, which moves next) when it lies where
    /// one goes. Run once the helper area is mapped: neither may overlap
    /// the other. Without a free spot the staging is given up, and every
    /// page comes from the image.
    pub(super) fn clear_staging(&mut self) -> Result<(), RestoreError> {
        let Some((base, len)) = self.staging.as_ref().map(|s| (s.base, s.len)) else {
            return Ok(());
        };
        let image = self.image;
        let helper = self.helper;
        let busy = |s: u64, e: u64| {
            image.vmas.iter().any(|v| s < v.end && v.start < e)
                || (s < helper + HELPER_RESERVE && helper < e)
        };
        if !busy(base, base + len) {
            return Ok(());
        }
        let husk_maps = proc::read_maps(self.pid.as_raw())?;
        // The reservation's own place counts as taken: mremap cannot
        // move a range onto itself.
        let free =
            |s: u64, e: u64| !busy(s, e) && !husk_maps.iter().any(|m| s < m.end && m.start < e);
        let mut candidate = STAGING_FLOOR;
        while !free(candidate, candidate + len) {
            candidate += len;
            if candidate + len > STAGING_CEILING {
                tracing::warn!(
                    pid = image.pid,
                    "no room to move the staged pages out of the image's way; they are installed from the image"
                );
                self.staging = None;
                return Ok(());
            }
        }
        self.sys(
            0,
            |r| r.move_mapping(base, len, candidate),
            || format!("mremap of the staged pages {base:#x} -> {candidate:#x}"),
        )?;
        if let Some(s) = &mut self.staging {
            s.base = candidate;
        }
        Ok(())
    }

    /// Puts mapping `vma` (private anonymous, receiving pages) in from the
    /// staging when its pages are staged in one piece: moved into place,
    /// made accessible (writable until the protection is put back, as a
    /// filled mapping is) and inherited by a fork again; in a lazy
    /// restore, the pages the source kept (`remote`: their staged copies
    /// are stale) are dropped, to be fetched on fault. A mapping made
    /// with flags mremap cannot give (grows down, no reserve) is mapped as
    /// in a cold restore. Returns whether it was moved in.
    pub(super) fn place_staged(
        &mut self,
        vma: &Vma,
        remote: Option<&PageRuns>,
    ) -> Result<bool, RestoreError> {
        let Some(from) = self
            .staging
            .as_ref()
            .and_then(|s| s.staged_range(vma.start, vma.end))
        else {
            return Ok(false);
        };
        if vma.has_vm_flag("gd") || vma.has_vm_flag("nr") {
            return Ok(false);
        }
        let (start, len) = (vma.start, vma.end - vma.start);
        // The staging's chunks that received pages are writable already
        // (no page changes protection here); this joins them and the
        // chunks between them into one mapping to move.
        let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        self.sys(
            0,
            |r| r.mprotect(from, len, rw),
            || {
                format!(
                    "mprotect of staged pages at {from:#x} for {start:#x}-{:#x}",
                    vma.end
                )
            },
        )?;
        self.sys(
            0,
            |r| r.move_mapping(from, len, start),
            || {
                format!(
                    "mremap of staged pages {from:#x} -> {start:#x}-{:#x}",
                    vma.end
                )
            },
        )?;
        let prot = u64::from(vma.prot) | libc::PROT_WRITE as u64;
        if prot != rw {
            self.sys(
                0,
                |r| r.mprotect(start, len, prot),
                || format!("mprotect of staged pages at {start:#x}-{:#x}", vma.end),
            )?;
        }
        self.sys(
            0,
            |r| r.madvise(start, len, libc::MADV_DOFORK),
            || {
                format!(
                    "madvise(MADV_DOFORK) of staged pages at {start:#x}-{:#x}",
                    vma.end
                )
            },
        )?;
        let stale = remote.map_or_else(Vec::new, |r| r.within(vma.start, vma.end));
        for (from, to) in stale {
            self.sys(
                0,
                |r| r.madvise(from, to - from, libc::MADV_DONTNEED),
                || format!("madvise(MADV_DONTNEED) of stale staged pages at {from:#x}-{to:#x}"),
            )?;
        }
        Ok(true)
    }

    /// Pages of the mappings moved in from the staging.
    pub(super) fn moved_pages(&self) -> u64 {
        self.image
            .vmas
            .iter()
            .zip(&self.warm)
            .filter(|(_, &warm)| warm)
            .map(|(v, _)| v.pages())
            .sum()
    }

    /// Unmaps what is left of the staging reservation (pages of mappings
    /// that are gone, or that could not be moved in) once every mapping
    /// is made.
    pub(super) fn drop_staging(&mut self) -> Result<(), RestoreError> {
        let Some(s) = self.staging.take() else {
            return Ok(());
        };
        self.sys(
            0,
            |r| r.munmap(s.base, s.len),
            || {
                format!(
                    "munmap of the staging reservation {:#x}-{:#x}",
                    s.base,
                    s.base + s.len
                )
            },
        )
    }
}
