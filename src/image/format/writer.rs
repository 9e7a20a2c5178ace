//! Writing an image: pages as the dumper reads them, then the index and,
//! last, the manifest; and making it durable once the process is let go.

use super::error::{io_err, ImageError};
use super::header::push_header;
use super::index::{resolve_runs, run_end, PageRun};
use super::layout::{
    HEADER_LEN, INDEX_FILE, INDEX_MAGIC, MANIFEST_FILE, MANIFEST_TMP_FILE, PAGES_FILE, RECORD_LEN,
    WRITE_BUFFER,
};
use super::manifest::{frame_manifest, Manifest};
use crate::image::model::{Checkpoint, PAGE_SIZE};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

/// What [`ImageWriter::commit`] wrote, for the checkpoint statistics.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ImageSummary {
    /// Pages stored with their contents in pages.img.
    pub pages_written: u64,
    /// All-zero pages recorded in the index without payload.
    pub zero_pages: u64,
    /// Total size of the image files (pages, index and manifest) in bytes.
    pub image_bytes: u64,
}

/// Writes an image directory: pages as the dumper reads them, then the index
/// and, last, the manifest that marks the image complete.
pub struct ImageWriter {
    dir: PathBuf,
    pages_path: PathBuf,
    pages: BufWriter<File>,
    pages_hash: Xxh3,
    pages_len: u64,
    runs: Vec<PageRun>,
    summary: ImageSummary,
}

impl ImageWriter {
    /// Creates `dir` (it may exist but must be empty) and opens pages.img.
    pub fn create(dir: &Path) -> Result<Self, ImageError> {
        fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        let mut entries = fs::read_dir(dir).map_err(io_err("list directory", dir))?;
        if entries.next().is_some() {
            return Err(ImageError::DirNotEmpty {
                dir: dir.to_path_buf(),
            });
        }
        let pages_path = dir.join(PAGES_FILE);
        let file = File::create_new(&pages_path).map_err(io_err("create", &pages_path))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            pages: BufWriter::with_capacity(WRITE_BUFFER, file),
            pages_path,
            pages_hash: Xxh3::default(),
            pages_len: 0,
            runs: Vec::new(),
            summary: ImageSummary::default(),
        })
    }

    /// Appends page contents for the pages of process `pid` starting at
    /// `vaddr` (data.len() a multiple of 4096). Consecutive calls for
    /// adjacent addresses may be merged into one index record.
    pub fn write_pages(&mut self, pid: i32, vaddr: u64, data: &[u8]) -> Result<(), ImageError> {
        if data.len() as u64 % PAGE_SIZE != 0 {
            return Err(self.invalid(
                pid,
                vaddr,
                format!("{} bytes is not a whole number of pages", data.len()),
            ));
        }
        let npages = data.len() as u64 / PAGE_SIZE;
        self.push_run(pid, vaddr, npages, false)?;
        self.pages
            .write_all(data)
            .map_err(io_err("write", &self.pages_path))?;
        self.pages_hash.update(data);
        self.pages_len += data.len() as u64;
        self.summary.pages_written += npages;
        Ok(())
    }

    /// Records `npages` all-zero pages of process `pid` starting at `vaddr`
    /// (no payload).
    pub fn write_zero_pages(
        &mut self,
        pid: i32,
        vaddr: u64,
        npages: u64,
    ) -> Result<(), ImageError> {
        self.push_run(pid, vaddr, npages, true)?;
        self.summary.zero_pages += npages;
        Ok(())
    }

    /// Writes pages.idx, then the manifest last; returns what was written.
    /// Nothing is fsynced here, so that a frozen process does not wait for
    /// the disk: call [`sync_image`] once the process is let go. An image
    /// cut short by a power loss before that is refused by its checksums.
    pub fn commit(&mut self, checkpoint: &Checkpoint) -> Result<ImageSummary, ImageError> {
        self.pages
            .flush()
            .map_err(io_err("write", &self.pages_path))?;

        let runs = resolve_runs(&self.runs, &checkpoint.processes);
        let mut index = Vec::with_capacity(HEADER_LEN + runs.len() * RECORD_LEN);
        push_header(&mut index, INDEX_MAGIC, runs.len() as u64);
        for run in &runs {
            run.encode(&mut index);
        }
        write_file(&self.dir.join(INDEX_FILE), &index)?;

        let manifest = Manifest {
            checkpoint: checkpoint.clone(),
            pages_len: self.pages_len,
            pages_xxh3: self.pages_hash.digest(),
            index_len: index.len() as u64,
            index_xxh3: xxh3_64(&index),
            created_unix_secs: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            ferry_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let body = postcard::to_stdvec(&manifest).map_err(|source| ImageError::Encode {
            dir: self.dir.clone(),
            source,
        })?;
        let bytes = frame_manifest(&body);

        let tmp = self.dir.join(MANIFEST_TMP_FILE);
        let manifest_path = self.dir.join(MANIFEST_FILE);
        write_file(&tmp, &bytes)?;
        fs::rename(&tmp, &manifest_path).map_err(io_err("rename into place", &manifest_path))?;

        self.summary.image_bytes = self.pages_len + index.len() as u64 + bytes.len() as u64;
        Ok(self.summary)
    }

    /// Validates a run and appends it to the index, extending the last
    /// record when the new run continues it.
    fn push_run(
        &mut self,
        pid: i32,
        vaddr: u64,
        npages: u64,
        zero: bool,
    ) -> Result<(), ImageError> {
        if vaddr % PAGE_SIZE != 0 {
            return Err(self.invalid(pid, vaddr, "the address is not page-aligned".to_string()));
        }
        if run_end(vaddr, npages).is_none() {
            return Err(self.invalid(
                pid,
                vaddr,
                format!("{npages} pages run past the end of the address space"),
            ));
        }
        if npages == 0 {
            return Ok(());
        }
        if let Some(last) = self.runs.last_mut() {
            // A data run's bytes follow the previous data run's in pages.img,
            // so extending the last record keeps its offset right.
            if last.pid == pid && last.zero == zero && last.end() == vaddr {
                last.npages += npages;
                return Ok(());
            }
        }
        self.runs.push(PageRun {
            pid,
            vaddr,
            npages,
            offset: if zero { 0 } else { self.pages_len },
            zero,
        });
        Ok(())
    }

    fn invalid(&self, pid: i32, vaddr: u64, detail: String) -> ImageError {
        ImageError::InvalidPages {
            dir: self.dir.clone(),
            pid,
            vaddr,
            detail,
        }
    }
}

/// Creates `path` and writes `bytes`.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let mut file = File::create(path).map_err(io_err("create", path))?;
    file.write_all(bytes).map_err(io_err("write", path))
}

/// Whether the image in `dir` was committed: its manifest, written last,
/// is there. A checkpoint that failed before that left only a partial
/// image; one that failed after it left the workload's copy.
pub fn is_committed(dir: &Path) -> bool {
    dir.join(MANIFEST_FILE).exists()
}

/// Makes a committed image durable: fsyncs its files, then its directory.
pub fn sync_image(dir: &Path) -> Result<(), ImageError> {
    for name in [PAGES_FILE, INDEX_FILE, MANIFEST_FILE] {
        let path = dir.join(name);
        File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(io_err("fsync", &path))?;
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}
