//! The page index (pages.idx): one record per run of pages, which the
//! writer resolves against the final mappings and the reader validates.

use super::error::{io_err, ImageError};
use super::header::{check_len, u64_at, Header};
use super::layout::{
    FLAG_PID_SHIFT, FLAG_ZERO, HEADER_LEN, INDEX_FILE, INDEX_MAGIC, MANIFEST_FILE, MAX_INDEX_LEN,
    RECORD_LEN,
};
use super::manifest::Manifest;
use crate::image::model::{ProcessImage, Vma, PAGE_SIZE};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use xxhash_rust::xxh3::xxh3_64;

/// One index record: a run of consecutive pages, either stored in pages.img
/// at `offset` or all-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRun {
    /// The process whose address space the run belongs to.
    pub pid: i32,
    /// Address of the first page.
    pub vaddr: u64,
    /// Number of pages (never 0).
    pub npages: u64,
    /// Byte offset of the run's contents in pages.img (0 for zero runs).
    pub offset: u64,
    /// Whether the pages are all-zero and have no payload.
    pub zero: bool,
}

impl PageRun {
    /// One past the run's last address (callers have checked for overflow).
    pub(super) fn end(&self) -> u64 {
        self.vaddr + self.npages * PAGE_SIZE
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        let flags = u64::from(self.zero) | (u64::from(self.pid as u32) << FLAG_PID_SHIFT);
        for word in [self.vaddr, self.npages, self.offset, flags] {
            out.extend_from_slice(&word.to_le_bytes());
        }
    }
}

/// The index an image commits: a page written more than once (copied
/// while the process ran, then again after it changed) is described by its
/// last copy only, and pages outside the process's final restorable
/// mappings (unmapped since they were copied), or of a process not in the
/// checkpoint, are left out. Data runs come in file order, as the reader
/// wants them.
pub(super) fn resolve_runs(runs: &[PageRun], processes: &[ProcessImage]) -> Vec<PageRun> {
    let mut out = Vec::with_capacity(runs.len());
    for p in processes {
        let mine: Vec<PageRun> = runs.iter().filter(|r| r.pid == p.pid).copied().collect();
        resolve_process_runs(&mine, &p.vmas, &mut out);
    }
    out.sort_unstable_by_key(|r| {
        (
            r.zero,
            if r.zero { r.pid as u64 } else { r.offset },
            r.vaddr,
        )
    });
    let mut merged: Vec<PageRun> = Vec::with_capacity(out.len());
    for run in out {
        match merged.last_mut() {
            Some(last)
                if last.zero == run.zero
                    && last.pid == run.pid
                    && last.end() == run.vaddr
                    && (run.zero || last.offset + last.npages * PAGE_SIZE == run.offset) =>
            {
                last.npages += run.npages
            }
            _ => merged.push(run),
        }
    }
    merged
}

/// [`resolve_runs`] for the runs of one process, with its mappings `vmas`:
/// appends the surviving pieces to `out`.
fn resolve_process_runs(runs: &[PageRun], vmas: &[Vma], out: &mut Vec<PageRun>) {
    use std::collections::BTreeMap;
    let mut mappings: Vec<(u64, u64)> = vmas
        .iter()
        .filter(|v| !v.is_special())
        .map(|v| (v.start, v.end))
        .collect();
    mappings.sort_unstable();
    // Disjoint ranges already described by a later run: start -> end.
    let mut covered: BTreeMap<u64, u64> = BTreeMap::new();
    for run in runs.iter().rev() {
        let (start, end) = (run.vaddr, run.end());
        let mut cursor = start;
        let first = covered
            .range(..=start)
            .next_back()
            .map_or(start, |(&s, _)| s);
        let overlapping: Vec<(u64, u64)> = covered
            .range(first..end)
            .map(|(&s, &e)| (s, e))
            .filter(|&(_, e)| e > start)
            .collect();
        let mut free = Vec::new();
        for &(s, e) in &overlapping {
            if s > cursor {
                free.push((cursor, s));
            }
            cursor = cursor.max(e);
        }
        if cursor < end {
            free.push((cursor, end));
        }
        // Merge [start, end) into the covered set.
        let (mut new_start, mut new_end) = (start, end);
        for (s, e) in overlapping {
            covered.remove(&s);
            new_start = new_start.min(s);
            new_end = new_end.max(e);
        }
        covered.insert(new_start, new_end);
        for (fs, fe) in free {
            let i = mappings.partition_point(|m| m.1 <= fs);
            for &(ms, me) in mappings[i..].iter().take_while(|m| m.0 < fe) {
                let (s, e) = (fs.max(ms), fe.min(me));
                out.push(PageRun {
                    pid: run.pid,
                    vaddr: s,
                    npages: (e - s) / PAGE_SIZE,
                    offset: if run.zero {
                        0
                    } else {
                        run.offset + (s - run.vaddr)
                    },
                    zero: run.zero,
                });
            }
        }
    }
}

/// One past the last address of `npages` pages at `vaddr`, if it fits.
pub(super) fn run_end(vaddr: u64, npages: u64) -> Option<u64> {
    npages
        .checked_mul(PAGE_SIZE)
        .and_then(|len| vaddr.checked_add(len))
}

/// Reads pages.idx, checks it against the manifest and decodes its records.
pub(super) fn read_index(dir: &Path, manifest: &Manifest) -> Result<Vec<PageRun>, ImageError> {
    const WHAT: &str = "page index";
    let path = dir.join(INDEX_FILE);
    let mut file = File::open(&path).map_err(io_err("open", &path))?;
    let file_len = file.metadata().map_err(io_err("stat", &path))?.len();
    if manifest.index_len > MAX_INDEX_LEN {
        return Err(ImageError::Corrupt {
            what: "manifest",
            path: dir.join(MANIFEST_FILE),
            detail: format!(
                "it records an index of {} bytes, more than the {MAX_INDEX_LEN} an index may hold",
                manifest.index_len
            ),
        });
    }
    check_len(WHAT, &path, manifest.index_len, file_len)?;
    let mut bytes = vec![0u8; manifest.index_len as usize];
    file.read_exact(&mut bytes).map_err(io_err("read", &path))?;
    let found = xxh3_64(&bytes);
    if found != manifest.index_xxh3 {
        return Err(ImageError::ChecksumMismatch {
            what: WHAT,
            path,
            found,
            expected: manifest.index_xxh3,
            reference: "the manifest's",
        });
    }

    let corrupt = |detail: String| ImageError::Corrupt {
        what: WHAT,
        path: path.clone(),
        detail,
    };
    let Some((header, records)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(ImageError::Truncated {
            what: WHAT,
            path,
            expected: HEADER_LEN as u64,
            found: file_len,
        });
    };
    let header = Header::parse(header);
    header.check(INDEX_MAGIC, WHAT, &path, WHAT, &path)?;
    if header.length.checked_mul(RECORD_LEN as u64) != Some(records.len() as u64) {
        return Err(corrupt(format!(
            "its header counts {} records but {} bytes of records follow",
            header.length,
            records.len()
        )));
    }

    let mut runs = Vec::with_capacity(records.len() / RECORD_LEN);
    let mut next_offset = 0u64;
    for (i, record) in records.chunks_exact(RECORD_LEN).enumerate() {
        let (vaddr, npages) = (u64_at(record, 0), u64_at(record, 8));
        let (offset, flags) = (u64_at(record, 16), u64_at(record, 24));
        let pid = (flags >> FLAG_PID_SHIFT) as u32 as i32;
        let flags = flags & ((1 << FLAG_PID_SHIFT) - 1);
        if flags & !FLAG_ZERO != 0 {
            return Err(corrupt(format!("record {i} has unknown flags {flags:#x}")));
        }
        if vaddr % PAGE_SIZE != 0 {
            return Err(corrupt(format!(
                "record {i} starts at unaligned address {vaddr:#x}"
            )));
        }
        if npages == 0 || run_end(vaddr, npages).is_none() {
            return Err(corrupt(format!(
                "record {i} at {vaddr:#x} has an impossible page count {npages}"
            )));
        }
        let zero = flags & FLAG_ZERO != 0;
        if !zero {
            // Data runs come in file order without overlapping (bytes of
            // pages that a later copy superseded lie between them); the
            // sequential read in read_pages relies on it.
            if offset < next_offset {
                return Err(corrupt(format!(
                    "record {i} at {vaddr:#x} has data at offset {offset}, before the end \
                     {next_offset} of the previous record's"
                )));
            }
            next_offset = npages
                .checked_mul(PAGE_SIZE)
                .and_then(|len| offset.checked_add(len))
                .filter(|&end| end <= manifest.pages_len)
                .ok_or_else(|| {
                    corrupt(format!(
                        "record {i} at {vaddr:#x} has {npages} pages at offset {offset}, \
                         beyond the {} bytes of pages.img",
                        manifest.pages_len
                    ))
                })?;
        }
        runs.push(PageRun {
            pid,
            vaddr,
            npages,
            offset: if zero { 0 } else { offset },
            zero,
        });
    }
    // Every page of every process is described once.
    let mut by_addr: Vec<(i32, u64, u64)> =
        runs.iter().map(|r| (r.pid, r.vaddr, r.end())).collect();
    by_addr.sort_unstable();
    if let Some(w) = by_addr
        .windows(2)
        .find(|w| w[1].0 == w[0].0 && w[1].1 < w[0].2)
    {
        return Err(corrupt(format!(
            "records at {:#x} and {:#x} of process {} overlap",
            w[0].1, w[1].1, w[0].0
        )));
    }
    Ok(runs)
}
