//! Reading an image: validated at open, its pages verified as they are
//! streamed.

use super::error::{io_err, ImageError};
use super::header::check_len;
use super::index::{read_index, PageRun};
use super::layout::{IO_CHUNK, PAGES_FILE};
use super::manifest::{read_manifest, Manifest};
use crate::image::model::{Checkpoint, PAGE_SIZE};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::xxh3_64;

/// Contents delivered by [`ImageReader::read_pages`] for a piece of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageData<'a> {
    /// The pages' bytes (a multiple of 4096 long).
    Bytes(&'a [u8]),
    /// `npages` all-zero pages.
    Zero {
        /// How many pages.
        npages: u64,
    },
}

/// A validated image: the manifest has been checked and decoded, the index
/// checked against it; the pages are verified as they are streamed.
#[derive(Debug)]
pub struct ImageReader {
    dir: PathBuf,
    manifest: Manifest,
    runs: Vec<PageRun>,
}

impl ImageReader {
    /// Opens and validates an image: manifest magic, version, body checksum;
    /// index magic, version, checksum against the manifest, every record's
    /// bounds (vaddr page-aligned, no overflow, data runs within pages.img,
    /// which must have exactly pages_len bytes). Never panics on any input;
    /// every length is bounded before allocation.
    pub fn open(dir: &Path) -> Result<Self, ImageError> {
        fs::metadata(dir).map_err(io_err("open image directory", dir))?;
        let manifest = read_manifest(dir)?;

        let pages_path = dir.join(PAGES_FILE);
        let pages_len = fs::metadata(&pages_path)
            .map_err(io_err("stat", &pages_path))?
            .len();
        check_len("pages file", &pages_path, manifest.pages_len, pages_len)?;

        let runs = read_index(dir, &manifest)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            runs,
        })
    }

    /// The checkpointed process and host.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.manifest.checkpoint
    }

    /// The whole manifest, for the header fields `image show` prints.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The index records, in file order (the order [`Self::read_pages`]
    /// delivers them).
    pub fn runs(&self) -> &[PageRun] {
        &self.runs
    }

    /// The image directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Streams every run in index order to `sink(pid, vaddr, data)` in chunks of
    /// at most 8 MiB (a big run is split into several calls with increasing
    /// vaddr), while computing the xxh3 of pages.img; after the last chunk,
    /// fails with a corruption error if the checksum differs from the
    /// manifest. The caller must not treat the pages as valid until this
    /// returns Ok. Returns the number of pages delivered (data + zero).
    pub fn read_pages<E: From<ImageError>>(
        &self,
        mut sink: impl FnMut(i32, u64, PageData<'_>) -> Result<(), E>,
    ) -> Result<u64, E> {
        let (path, mapped) = self.map_pages()?;
        let bytes = mapped.bytes();
        // The whole file is checksummed on another core while the pages are
        // delivered here (data runs come in file order with the superseded
        // bytes between them, so this is the same digest as hashing them in
        // order). The caller must not trust the pages before this returns.
        let (found, delivered) = std::thread::scope(|scope| {
            let hasher = scope.spawn(|| xxh3_64(bytes));
            let delivered = self.deliver(bytes, &mut sink);
            (
                hasher.join().expect("the checksum thread panicked"),
                delivered,
            )
        });
        // A corrupt file explains any failure of the sink: report it first.
        if found != self.manifest.pages_xxh3 {
            return Err(ImageError::ChecksumMismatch {
                what: "pages file",
                path,
                found,
                expected: self.manifest.pages_xxh3,
                reference: "the manifest's",
            }
            .into());
        }
        delivered
    }

    /// Streams every run to `sink` as [`Self::read_pages`] does, without
    /// the checksum of pages.img: for a migration's destination that has
    /// just written the image from the source's authenticated stream and
    /// took most pages another way (a warm restore's staging), so that
    /// the whole file is not read again while the workload is frozen.
    /// The sink touches only the pages it copies.
    pub fn read_pages_unverified<E: From<ImageError>>(
        &self,
        mut sink: impl FnMut(i32, u64, PageData<'_>) -> Result<(), E>,
    ) -> Result<u64, E> {
        let (_, mapped) = self.map_pages()?;
        self.deliver(mapped.bytes(), &mut sink)
    }

    /// Hands every run of the index, from the mapped pages file `bytes`,
    /// to `sink` in chunks of at most [`IO_CHUNK`] bytes; returns the
    /// pages delivered.
    fn deliver<E: From<ImageError>>(
        &self,
        bytes: &[u8],
        sink: &mut impl FnMut(i32, u64, PageData<'_>) -> Result<(), E>,
    ) -> Result<u64, E> {
        let mut delivered = 0;
        for run in &self.runs {
            if run.zero {
                sink(run.pid, run.vaddr, PageData::Zero { npages: run.npages })?;
            } else {
                // Open checked that data runs lie inside the file.
                let start = run.offset as usize;
                let end = start + (run.npages * PAGE_SIZE) as usize;
                for (i, chunk) in bytes[start..end].chunks(IO_CHUNK).enumerate() {
                    let vaddr = run.vaddr + (i * IO_CHUNK) as u64;
                    sink(run.pid, vaddr, PageData::Bytes(chunk))?;
                }
            }
            delivered += run.npages;
        }
        Ok(delivered)
    }

    /// Hands `sink(vaddr, data)` the pages of process `pid` that lie in
    /// `ranges` (start, end), ahead of [`Self::read_pages`]: a mapping a
    /// restored child inherits needs its parent's pages in before the
    /// child is cloned. Nothing is verified here: the caller must still
    /// pass the whole file through `read_pages` before it trusts them.
    pub fn read_pages_in<E: From<ImageError>>(
        &self,
        pid: i32,
        ranges: &[(u64, u64)],
        mut sink: impl FnMut(u64, PageData<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if ranges.is_empty() {
            return Ok(());
        }
        let (_, mapped) = self.map_pages()?;
        let bytes = mapped.bytes();
        for run in self.runs.iter().filter(|r| r.pid == pid) {
            for &(start, end) in ranges {
                let (from, to) = (run.vaddr.max(start), run.end().min(end));
                if from >= to {
                    continue;
                }
                if run.zero {
                    let npages = (to - from) / PAGE_SIZE;
                    sink(from, PageData::Zero { npages })?;
                } else {
                    // Open checked that data runs lie inside the file.
                    let at = (run.offset + (from - run.vaddr)) as usize;
                    sink(from, PageData::Bytes(&bytes[at..at + (to - from) as usize]))?;
                }
            }
        }
        Ok(())
    }

    /// Maps pages.img (pages go to a sink straight from the page cache),
    /// checked to have the manifest's length.
    fn map_pages(&self) -> Result<(PathBuf, crate::kernel::MappedFile), ImageError> {
        let path = self.dir.join(PAGES_FILE);
        let file = File::open(&path).map_err(io_err("open", &path))?;
        let mapped = crate::kernel::MappedFile::map(&file)
            .map_err(|errno| io_err("map", &path)(std::io::Error::from(errno)))?;
        check_len(
            "pages file",
            &path,
            self.manifest.pages_len,
            mapped.bytes().len() as u64,
        )?;
        Ok((path, mapped))
    }
}
