//! Warm restore: the husk of a migrated tree's root, spawned on the
//! destination while the pre-copy rounds run, receives every page of the
//! root as it arrives, so that after the freeze the restore moves those
//! pages into place (mremap: page tables, not bytes) instead of
//! installing them while the workload is frozen.
//!
//! The pages wait in the husk's staging reservation (see
//! [`kernel::spawn_staging_husk`]), written through /proc/PID/mem. The
//! root's address space is cut in clusters of [`CLUSTER`] bytes; each
//! cluster that receives a page gets a slot of the reservation, in which
//! its pages keep their offset, so that any mapping inside a cluster lies
//! in one piece of staging and moves with one mremap. The image is still
//! written in full: it stays the authority, and whatever the staging
//! cannot hold is restored from it as before.

use crate::image::PAGE_SIZE;
use crate::kernel;
use crate::kernel::SpawnedHusk;
use nix::errno::Errno;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// The bytes of the root's address space one staging slot mirrors.
pub const CLUSTER: u64 = 64 << 30;
/// The part of the staging made writable at once, as pages first arrive
/// in it ([`kernel::protect_staging`]).
const CHUNK: u64 = 64 << 20;
/// Slots of the reservation: clusters of the root that can be staged.
/// An address space is a few clusters (the executable and heap, the
/// mmap area, the stack); one that touches more is restored as before
/// from the slot on.
const SLOTS: u64 = 16;

/// Where the staged pages of the root wait in its husk, as the restore
/// needs it.
#[derive(Debug, Clone)]
pub struct Staging {
    /// Start of the reservation in the husk.
    pub base: u64,
    /// Its length.
    pub len: u64,
    /// The cluster (address / [`CLUSTER`]) each slot holds, in slot order.
    pub clusters: Vec<u64>,
}

impl Staging {
    /// Where the page at `addr` of the root is staged, if its cluster has
    /// a slot.
    pub fn staged_at(&self, addr: u64) -> Option<u64> {
        let slot = self.clusters.iter().position(|&c| c == addr / CLUSTER)?;
        Some(self.base + slot as u64 * CLUSTER + addr % CLUSTER)
    }

    /// Where the range [start, end) of the root lies in one piece of the
    /// staging: in one cluster, or in clusters that got consecutive slots.
    pub fn staged_range(&self, start: u64, end: u64) -> Option<u64> {
        let at = self.staged_at(start)?;
        let last = end.checked_sub(1)?;
        (self.staged_at(last)? == at + (last - start)).then_some(at)
    }
}

/// The husk holding the root's staged pages, on the destination of a
/// pre-copy migration while the rounds run. Dropped unused, the husk
/// exits (its lifeline closes).
#[derive(Debug)]
pub struct WarmHusk {
    husk: SpawnedHusk,
    /// The root's PID, as the image names it.
    root: i32,
    /// /proc/PID/mem of the husk.
    mem: File,
    staging: Staging,
    /// The root's pages staged with data (start, end), so that a page
    /// the source later sends as zero is zeroed again.
    written: BTreeMap<u64, u64>,
    /// The chunks of the reservation made writable (by index from its
    /// start).
    writable: std::collections::BTreeSet<u64>,
    /// Why staging stopped, if it did: the restore then fills every page
    /// from the image.
    broken: Option<String>,
}

impl WarmHusk {
    /// Spawns the husk that stages the pages of root `root` (any PID:
    /// the root's is taken only at the restore, by the husk cloned from
    /// this one) with its staging reservation.
    pub fn spawn(root: i32) -> Result<Self, Errno> {
        let len = CLUSTER * SLOTS;
        let (husk, base) = kernel::spawn_staging_husk(len)?;
        let mem = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/{}/mem", husk.pid))
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
        Ok(WarmHusk {
            husk,
            root,
            mem,
            staging: Staging {
                base,
                len,
                clusters: Vec::new(),
            },
            written: BTreeMap::new(),
            writable: Default::default(),
            broken: None,
        })
    }

    /// The root's PID.
    pub fn root(&self) -> i32 {
        self.root
    }

    /// Stages a frame of process `pid`: `npages` pages at `vaddr`, with
    /// `data` or all zero. Frames of other processes are not staged. A
    /// failure stops the staging (logged): the restore then takes every
    /// page from the image, as without a warm husk.
    pub fn stage(&mut self, pid: i32, vaddr: u64, npages: u64, data: Option<&[u8]>) {
        if pid != self.root || self.broken.is_some() {
            return;
        }
        if let Err(why) = self.try_stage(vaddr, npages, data) {
            tracing::warn!(root = self.root, %why, "staging of pre-copied pages stopped; the restore installs them from the image");
            self.broken = Some(why);
        }
    }

    fn try_stage(&mut self, vaddr: u64, npages: u64, data: Option<&[u8]>) -> Result<(), String> {
        let end = npages
            .checked_mul(PAGE_SIZE)
            .and_then(|len| vaddr.checked_add(len))
            .ok_or_else(|| format!("{npages} pages at {vaddr:#x} run past the address space"))?;
        if data.is_some_and(|d| d.len() as u64 != end - vaddr) {
            return Err(format!(
                "a frame of {npages} pages at {vaddr:#x} carries another length of data"
            ));
        }
        let mut at = vaddr;
        while at < end {
            let piece_end = end.min((at / CLUSTER + 1) * CLUSTER);
            match data {
                Some(bytes) => {
                    let staged = self.slot_for(at)?;
                    self.make_writable(staged, piece_end - at)?;
                    let from = (at - vaddr) as usize;
                    let piece = &bytes[from..from + (piece_end - at) as usize];
                    self.write(staged, piece)?;
                    insert_range(&mut self.written, at, piece_end);
                }
                // Only pages staged with data need zeroing: the rest of
                // the reservation reads as zero.
                None => {
                    for (s, e) in remove_range(&mut self.written, at, piece_end) {
                        let staged = self.slot_for(s)?;
                        self.zero(staged, e - s)?;
                    }
                }
            }
            at = piece_end;
        }
        Ok(())
    }

    /// The staging address of `addr`, giving its cluster a slot if it has
    /// none yet.
    fn slot_for(&mut self, addr: u64) -> Result<u64, String> {
        if let Some(at) = self.staging.staged_at(addr) {
            return Ok(at);
        }
        if self.staging.clusters.len() as u64 == SLOTS {
            return Err(format!(
                "the root's pages span more than {SLOTS} clusters of {} GiB",
                CLUSTER >> 30
            ));
        }
        self.staging.clusters.push(addr / CLUSTER);
        self.staging
            .staged_at(addr)
            .ok_or_else(|| "a cluster given a slot has none".to_string())
    }

    /// Makes the chunks holding [at, at + len) of the staging writable,
    /// those that are not yet.
    fn make_writable(&mut self, at: u64, len: u64) -> Result<(), String> {
        let base = self.staging.base;
        let (first, last) = ((at - base) / CHUNK, (at + len - 1 - base) / CHUNK);
        for chunk in first..=last {
            if self.writable.contains(&chunk) {
                continue;
            }
            kernel::protect_staging(&self.husk, base + chunk * CHUNK, CHUNK).map_err(|errno| {
                format!(
                    "making {} MiB of staging at {:#x} writable in husk {}: {errno}",
                    CHUNK >> 20,
                    base + chunk * CHUNK,
                    self.husk.pid
                )
            })?;
            self.writable.insert(chunk);
        }
        Ok(())
    }

    fn write(&self, at: u64, bytes: &[u8]) -> Result<(), String> {
        self.mem.write_all_at(bytes, at).map_err(|e| {
            format!(
                "writing {} bytes at {at:#x} of husk {}: {e}",
                bytes.len(),
                self.husk.pid
            )
        })
    }

    fn zero(&self, at: u64, len: u64) -> Result<(), String> {
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(ZEROS.len() as u64);
            self.write(at + done, &ZEROS[..n as usize])?;
            done += n;
        }
        Ok(())
    }

    /// The husk and where its pages wait, for the restore; None with the
    /// husk alone when staging stopped (the restore then fills every page
    /// from the image, in this husk all the same).
    pub fn into_parts(self) -> (SpawnedHusk, Option<Staging>) {
        let staging = self.broken.is_none().then_some(self.staging);
        (self.husk, staging)
    }
}

/// Adds [start, end) to the set of disjoint ranges `set` (start -> end),
/// merging what it touches.
fn insert_range(set: &mut BTreeMap<u64, u64>, mut start: u64, mut end: u64) {
    let touching: Vec<(u64, u64)> = set
        .range(..=end)
        .rev()
        .take_while(|&(_, &e)| e >= start)
        .map(|(&s, &e)| (s, e))
        .collect();
    for (s, e) in touching {
        set.remove(&s);
        start = start.min(s);
        end = end.max(e);
    }
    set.insert(start, end);
}

/// Takes [start, end) out of `set`; returns the pieces of it that were
/// in the set.
fn remove_range(set: &mut BTreeMap<u64, u64>, start: u64, end: u64) -> Vec<(u64, u64)> {
    let overlapping: Vec<(u64, u64)> = set
        .range(..end)
        .rev()
        .take_while(|&(_, &e)| e > start)
        .map(|(&s, &e)| (s, e))
        .collect();
    let mut removed = Vec::new();
    for (s, e) in overlapping.into_iter().rev() {
        set.remove(&s);
        if s < start {
            set.insert(s, start);
        }
        if e > end {
            set.insert(end, e);
        }
        removed.push((s.max(start), e.min(end)));
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real staging husk: the root's frames land at their staged
    /// addresses, another process's do not, a zero frame zeroes what was
    /// written, and a frame whose data is not its length stops the
    /// staging.
    #[test]
    fn frames_are_staged_in_a_real_husk() {
        let page = |b: u8| vec![b; PAGE_SIZE as usize];
        let mut warm = WarmHusk::spawn(42).expect("spawn a staging husk");
        warm.stage(42, 0x10000, 2, Some(&[page(1), page(2)].concat()));
        warm.stage(7, 0x10000, 1, Some(&page(9)));
        warm.stage(42, 0x11000, 1, None);
        warm.stage(42, 0x10000, 1, Some(&page(3)));
        let read = |warm: &WarmHusk, at: u64| {
            let mut buf = vec![0u8; 2 * PAGE_SIZE as usize];
            warm.mem
                .read_exact_at(&mut buf, at)
                .expect("read the staging");
            buf
        };
        let at = warm.staging.staged_at(0x10000).expect("a slot");
        assert_eq!(read(&warm, at), [page(3), page(0)].concat());
        warm.stage(42, 0x10000, 2, Some(&page(4)));
        assert!(warm.broken.is_some());
        assert_eq!(read(&warm, at), [page(3), page(0)].concat());
        assert!(
            warm.into_parts().1.is_none(),
            "a broken staging is given up"
        );
    }

    #[test]
    fn ranges_merge_and_split() {
        let mut set = BTreeMap::new();
        insert_range(&mut set, 0x1000, 0x3000);
        insert_range(&mut set, 0x5000, 0x6000);
        insert_range(&mut set, 0x3000, 0x4000);
        assert_eq!(
            set.iter().map(|(&s, &e)| (s, e)).collect::<Vec<_>>(),
            [(0x1000, 0x4000), (0x5000, 0x6000)]
        );
        let removed = remove_range(&mut set, 0x2000, 0x5800);
        assert_eq!(removed, [(0x2000, 0x4000), (0x5000, 0x5800)]);
        assert_eq!(
            set.iter().map(|(&s, &e)| (s, e)).collect::<Vec<_>>(),
            [(0x1000, 0x2000), (0x5800, 0x6000)]
        );
        assert!(remove_range(&mut set, 0x3000, 0x4000).is_empty());
    }

    #[test]
    fn a_range_is_staged_in_one_piece_only_within_consecutive_slots() {
        let staging = Staging {
            base: 0x1000_0000_0000,
            len: CLUSTER * SLOTS,
            clusters: vec![5, 2, 3],
        };
        let in_5 = 5 * CLUSTER + 0x1000;
        assert_eq!(staging.staged_at(in_5), Some(staging.base + 0x1000));
        assert_eq!(
            staging.staged_range(in_5, in_5 + 0x2000),
            Some(staging.base + 0x1000)
        );
        // Clusters 2 and 3 are in slots 1 and 2: a range across them is
        // one piece; one across 5 and 6 (no slot) is not.
        let across = 3 * CLUSTER - 0x1000;
        assert_eq!(
            staging.staged_range(across, across + 0x2000),
            Some(staging.base + 2 * CLUSTER - 0x1000)
        );
        assert_eq!(
            staging.staged_range(6 * CLUSTER - 0x1000, 6 * CLUSTER + 0x1000),
            None
        );
        assert_eq!(staging.staged_at(7 * CLUSTER), None);
    }
}
