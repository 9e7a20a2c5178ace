//! The image directory format: manifest (written last), pages file, index.
//!
//! An image is a directory of three files:
//!
//! - `pages.img`: raw page contents of every process of the tree, 4096-byte
//!   pages concatenated in the order the dumper wrote them.
//! - `pages.idx`: a little-endian header (`FERRYIDX`, u32 version, u32
//!   reserved, u64 record count) and 32-byte records (vaddr, npages, offset
//!   into pages.img, flags; flag bit 0 marks an all-zero run without
//!   payload, bits 32-63 hold the PID of the process the run belongs to).
//! - `manifest`: `FERRYIMG`, u32 version, u32 reserved, u64 body length, a
//!   postcard [`Manifest`] body and the xxh3-64 of that body. It is written
//!   last, through a rename, so its presence means the image is complete.
//!
//! Every integer is little-endian. The manifest records the length and the
//! xxh3-64 of the two other files, so any corruption is detected: the index
//! at [`ImageReader::open`], the pages while [`ImageReader::read_pages`]
//! streams them.

use crate::image::model::{Checkpoint, PAGE_SIZE};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

/// Version of the image directory format that this ferry writes and reads;
/// bumped on any incompatible change so an old ferry refuses a new image.
pub const IMAGE_FORMAT_VERSION: u32 = 3;

const PAGES_FILE: &str = "pages.img";
const INDEX_FILE: &str = "pages.idx";
const MANIFEST_FILE: &str = "manifest";
const MANIFEST_TMP_FILE: &str = "manifest.tmp";

const MANIFEST_MAGIC: &[u8; 8] = b"FERRYIMG";
const INDEX_MAGIC: &[u8; 8] = b"FERRYIDX";
/// Both files start with magic, u32 version, u32 reserved and a u64.
const HEADER_LEN: usize = 24;
const RECORD_LEN: usize = 32;
const CHECKSUM_LEN: usize = 8;
/// Index record flag: the run is all-zero pages with no payload.
const FLAG_ZERO: u64 = 1;
/// The flags word holds the run's PID from this bit on.
const FLAG_PID_SHIFT: u32 = 32;

/// The largest manifest body accepted, so a corrupt length cannot make the
/// reader allocate without bound.
const MAX_MANIFEST_BODY: u64 = 256 << 20;
/// The largest index accepted (32 Mi records), for the same reason.
const MAX_INDEX_LEN: u64 = 1 << 30;
/// Size of the pages.img write buffer and of each read chunk: big enough
/// that system call overhead vanishes, small enough to stay cache-friendly.
const IO_CHUNK: usize = 8 << 20;
/// Buffer for small page writes; larger ones (the dumper's batches) go
/// straight to the file instead of being copied through it.
const WRITE_BUFFER: usize = 256 << 10;

/// Why an image could not be written or read. Messages are sentences that
/// name the file and the values involved; an underlying OS or encoder error
/// is the `source()`, so print the chain (`{:#}` with anyhow).
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A system call on an image file failed.
    #[error("cannot {op} {path}")]
    Io {
        /// What was being done ("create", "read", "fsync" ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// [`ImageWriter::create`] was given a directory that already has files.
    #[error("cannot write an image into {dir}: the directory is not empty")]
    DirNotEmpty {
        /// The directory.
        dir: PathBuf,
    },
    /// The manifest is missing: the checkpoint did not finish.
    #[error("image {dir} is incomplete: it has no manifest (was the checkpoint interrupted?)")]
    NoManifest {
        /// The image directory.
        dir: PathBuf,
    },
    /// A file does not start with the expected magic bytes.
    #[error("{path} is not a ferry {what} (bad magic)")]
    BadMagic {
        /// "image" or "page index".
        what: &'static str,
        /// The directory (for the manifest) or file.
        path: PathBuf,
    },
    /// A file was written by another version of the format.
    #[error(
        "{what} {path} was written by format version {found}; \
         this ferry reads version {IMAGE_FORMAT_VERSION}"
    )]
    UnsupportedVersion {
        /// "image" or "page index".
        what: &'static str,
        /// The directory (for the manifest) or file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
    },
    /// A file is shorter than its header or the manifest says.
    #[error("{what} {path} is truncated: expected {expected} bytes, found {found}")]
    Truncated {
        /// "manifest", "page index" or "pages file".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The length it should have.
        expected: u64,
        /// The length it has.
        found: u64,
    },
    /// A file's contents do not match their recorded checksum.
    #[error("{what} {path} is corrupt: checksum {found:#018x} does not match {reference} {expected:#018x}")]
    ChecksumMismatch {
        /// "manifest", "page index" or "pages file".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The checksum computed from the contents.
        found: u64,
        /// The checksum recorded for them.
        expected: u64,
        /// Where `expected` was recorded ("the manifest's", "the stored").
        reference: &'static str,
    },
    /// A file is structurally invalid (bad length, out-of-bounds record ...).
    #[error("{what} {path} is corrupt: {detail}")]
    Corrupt {
        /// "manifest", "page index" or "pages file".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong, with the values involved.
        detail: String,
    },
    /// The dumper passed pages that cannot be recorded (a bug in the caller).
    #[error("cannot record pages at {vaddr:#x} of process {pid} in image {dir}: {detail}")]
    InvalidPages {
        /// The image directory.
        dir: PathBuf,
        /// The process the pages belong to.
        pid: i32,
        /// The address the caller passed.
        vaddr: u64,
        /// What is wrong with the request.
        detail: String,
    },
    /// The checkpoint could not be encoded (should not happen with the model).
    #[error("cannot encode the manifest of image {dir}")]
    Encode {
        /// The image directory.
        dir: PathBuf,
        /// The encoder's error.
        #[source]
        source: postcard::Error,
    },
}

/// Builds an [`ImageError::Io`] from a path and an operation name.
fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ImageError + 'a {
    move |source| ImageError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The manifest body: the checkpoint plus what is needed to verify the two
/// other files. Public so `image show` can print its header fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The checkpointed process and host.
    pub checkpoint: Checkpoint,
    /// Length of pages.img in bytes.
    pub pages_len: u64,
    /// xxh3-64 of pages.img.
    pub pages_xxh3: u64,
    /// Length of pages.idx in bytes.
    pub index_len: u64,
    /// xxh3-64 of pages.idx.
    pub index_xxh3: u64,
    /// When the image was committed, in seconds since the Unix epoch.
    pub created_unix_secs: u64,
    /// Version of the ferry that wrote the image, for messages.
    pub ferry_version: String,
}

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
    fn end(&self) -> u64 {
        self.vaddr + self.npages * PAGE_SIZE
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let flags = u64::from(self.zero) | (u64::from(self.pid as u32) << FLAG_PID_SHIFT);
        for word in [self.vaddr, self.npages, self.offset, flags] {
            out.extend_from_slice(&word.to_le_bytes());
        }
    }
}

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

/// The index an image commits: a page written more than once (copied
/// while the process ran, then again after it changed) is described by its
/// last copy only, and pages outside the process's final restorable
/// mappings (unmapped since they were copied), or of a process not in the
/// checkpoint, are left out. Data runs come in file order, as the reader
/// wants them.
fn resolve_runs(runs: &[PageRun], processes: &[crate::image::ProcessImage]) -> Vec<PageRun> {
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
fn resolve_process_runs(runs: &[PageRun], vmas: &[crate::image::Vma], out: &mut Vec<PageRun>) {
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

/// Appends the 24-byte header the manifest and the index share: magic,
/// format version, a zero reserved field and `length`.
fn push_header(out: &mut Vec<u8>, magic: &[u8; 8], length: u64) {
    out.extend_from_slice(magic);
    out.extend_from_slice(&IMAGE_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&length.to_le_bytes());
}

/// Wraps an encoded manifest body in its header and checksum.
fn frame_manifest(body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + body.len() + CHECKSUM_LEN);
    push_header(&mut bytes, MANIFEST_MAGIC, body.len() as u64);
    bytes.extend_from_slice(body);
    bytes.extend_from_slice(&xxh3_64(body).to_le_bytes());
    bytes
}

/// One past the last address of `npages` pages at `vaddr`, if it fits.
fn run_end(vaddr: u64, npages: u64) -> Option<u64> {
    npages
        .checked_mul(PAGE_SIZE)
        .and_then(|len| vaddr.checked_add(len))
}

/// Creates `path` and writes `bytes`.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let mut file = File::create(path).map_err(io_err("create", path))?;
    file.write_all(bytes).map_err(io_err("write", path))
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
        let path = self.dir.join(PAGES_FILE);
        let file = File::open(&path).map_err(io_err("open", &path))?;
        // Pages go to the sink straight from the page cache.
        let mapped = crate::kernel::MappedFile::map(&file)
            .map_err(|errno| io_err("map", &path)(std::io::Error::from(errno)))?;
        let bytes = mapped.bytes();
        check_len(
            "pages file",
            &path,
            self.manifest.pages_len,
            bytes.len() as u64,
        )?;
        // The whole file is checksummed on another core while the pages are
        // delivered here (data runs come in file order with the superseded
        // bytes between them, so this is the same digest as hashing them in
        // order). The caller must not trust the pages before this returns.
        let (found, delivered) = std::thread::scope(|scope| {
            let hasher = scope.spawn(|| xxh3_64(bytes));
            let delivered = (|| {
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
                Ok::<u64, E>(delivered)
            })();
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
}

/// Refuses a file whose length differs from the one recorded for it.
fn check_len(what: &'static str, path: &Path, expected: u64, found: u64) -> Result<(), ImageError> {
    if found < expected {
        return Err(ImageError::Truncated {
            what,
            path: path.to_path_buf(),
            expected,
            found,
        });
    }
    if found > expected {
        return Err(ImageError::Corrupt {
            what,
            path: path.to_path_buf(),
            detail: format!(
                "it has {found} bytes, {} more than the expected {expected}",
                found - expected
            ),
        });
    }
    Ok(())
}

/// The little-endian u64 at byte `at` of `bytes`; callers pass fixed-size
/// headers and records, so the range is always inside.
fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// The fields of the 24-byte header shared by the manifest and the index.
struct Header {
    magic: [u8; 8],
    version: u32,
    reserved: u32,
    length: u64,
}

impl Header {
    fn parse(bytes: &[u8; HEADER_LEN]) -> Self {
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&bytes[..8]);
        Self {
            magic,
            version: u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
            reserved: u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]),
            length: u64_at(bytes, 16),
        }
    }

    /// Checks magic, version and reserved field, in that order so that a
    /// file of another kind or version gets the most telling message.
    fn check(
        &self,
        magic: &[u8; 8],
        what: &'static str,
        name_path: &Path,
        file: &'static str,
        path: &Path,
    ) -> Result<(), ImageError> {
        if &self.magic != magic {
            return Err(ImageError::BadMagic {
                what,
                path: name_path.to_path_buf(),
            });
        }
        if self.version != IMAGE_FORMAT_VERSION {
            return Err(ImageError::UnsupportedVersion {
                what,
                path: name_path.to_path_buf(),
                found: self.version,
            });
        }
        if self.reserved != 0 {
            return Err(ImageError::Corrupt {
                what: file,
                path: path.to_path_buf(),
                detail: format!("its reserved header field is {:#x}, not 0", self.reserved),
            });
        }
        Ok(())
    }
}

/// Reads, checks and decodes the manifest of the image in `dir`.
fn read_manifest(dir: &Path) -> Result<Manifest, ImageError> {
    const WHAT: &str = "manifest";
    let path = dir.join(MANIFEST_FILE);
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ImageError::NoManifest {
                dir: dir.to_path_buf(),
            })
        }
        Err(e) => return Err(io_err("open", &path)(e)),
    };
    let file_len = file.metadata().map_err(io_err("stat", &path))?.len();
    let mut header = [0u8; HEADER_LEN];
    if file_len < HEADER_LEN as u64 {
        return Err(ImageError::Truncated {
            what: WHAT,
            path,
            expected: HEADER_LEN as u64,
            found: file_len,
        });
    }
    file.read_exact(&mut header)
        .map_err(io_err("read", &path))?;
    let header = Header::parse(&header);
    header.check(MANIFEST_MAGIC, "image", dir, WHAT, &path)?;
    if header.length > MAX_MANIFEST_BODY {
        return Err(ImageError::Corrupt {
            what: WHAT,
            path,
            detail: format!(
                "it declares a body of {} bytes, more than the {MAX_MANIFEST_BODY} a manifest may hold",
                header.length
            ),
        });
    }
    let expected = (HEADER_LEN + CHECKSUM_LEN) as u64 + header.length;
    check_len(WHAT, &path, expected, file_len)?;

    let mut body = vec![0u8; header.length as usize];
    file.read_exact(&mut body).map_err(io_err("read", &path))?;
    let mut stored = [0u8; CHECKSUM_LEN];
    file.read_exact(&mut stored)
        .map_err(io_err("read", &path))?;
    let stored = u64::from_le_bytes(stored);
    let found = xxh3_64(&body);
    if found != stored {
        return Err(ImageError::ChecksumMismatch {
            what: WHAT,
            path,
            found,
            expected: stored,
            reference: "the stored",
        });
    }
    match postcard::take_from_bytes::<Manifest>(&body) {
        Ok((manifest, [])) if manifest.checkpoint.processes.is_empty() => {
            Err(ImageError::Corrupt {
                what: WHAT,
                path,
                detail: "it holds no process".into(),
            })
        }
        Ok((manifest, [])) => Ok(manifest),
        Ok((_, rest)) => Err(ImageError::Corrupt {
            what: WHAT,
            path,
            detail: format!("{} bytes follow the manifest body", rest.len()),
        }),
        Err(e) => Err(ImageError::Corrupt {
            what: WHAT,
            path,
            detail: format!("its body does not decode: {e}"),
        }),
    }
}

/// Reads pages.idx, checks it against the manifest and decodes its records.
fn read_index(dir: &Path, manifest: &Manifest) -> Result<Vec<PageRun>, ImageError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::testutil::{checkpoint_with_anon, rewrite_manifest, TempDir};

    const PAGE: usize = PAGE_SIZE as usize;
    /// The PID of the sample checkpoint's process.
    const P: i32 = 4242;

    /// `npages` pages whose bytes depend on `seed` and the position.
    fn pattern(seed: u8, npages: usize) -> Vec<u8> {
        (0..npages * PAGE)
            .map(|i| seed.wrapping_add((i % 251) as u8))
            .collect()
    }

    /// What read_pages delivered: (vaddr, bytes) or (vaddr, zero page count).
    #[derive(Debug, PartialEq)]
    enum Got {
        Bytes(u64, Vec<u8>),
        Zero(u64, u64),
    }

    fn read_all(reader: &ImageReader) -> Result<(u64, Vec<Got>), ImageError> {
        let mut got = Vec::new();
        let total = reader.read_pages(|_, vaddr, data| {
            got.push(match data {
                PageData::Bytes(b) => Got::Bytes(vaddr, b.to_vec()),
                PageData::Zero { npages } => Got::Zero(vaddr, npages),
            });
            Ok::<_, ImageError>(())
        })?;
        Ok((total, got))
    }

    /// The sample checkpoint with anonymous mappings over the addresses
    /// the small images below write (0x10000-0x20000 and 0x40000-0x50000).
    fn checkpoint() -> Checkpoint {
        checkpoint_with_anon(&[(0x10000, 0x20000), (0x40000, 0x50000)])
    }

    /// Writes a small image: two adjacent data runs (merged), a zero run,
    /// a separate data run, and returns the directory. Its index holds, in
    /// order: data 0x10000 (3 pages at offset 0), data 0x40000 (1 page at
    /// offset 3 pages), zero 0x13000 (3 pages).
    fn write_sample(tag: &str) -> TempDir {
        let dir = TempDir::new(tag);
        let mut w = ImageWriter::create(dir.path()).unwrap();
        w.write_pages(P, 0x10000, &pattern(1, 2)).unwrap();
        w.write_pages(P, 0x12000, &pattern(2, 1)).unwrap();
        w.write_zero_pages(P, 0x13000, 3).unwrap();
        w.write_pages(P, 0x40000, &pattern(3, 1)).unwrap();
        w.commit(&checkpoint()).unwrap();
        dir
    }

    /// Lets `edit` change the records of pages.idx (after its header), then
    /// re-signs the index in the manifest so that only the record checks can
    /// catch the change; returns what open says.
    fn tamper_index(dir: &Path, edit: impl FnOnce(&mut [u8])) -> String {
        let idx_path = dir.join(INDEX_FILE);
        let mut idx = fs::read(&idx_path).unwrap();
        edit(&mut idx[HEADER_LEN..]);
        fs::write(&idx_path, &idx).unwrap();
        rewrite_manifest(dir, |m| m.index_xxh3 = xxh3_64(&idx));
        ImageReader::open(dir).unwrap_err().to_string()
    }

    /// Sets 64-bit word `word` (4 per record) of the index records.
    fn set_word(records: &mut [u8], word: usize, value: u64) {
        records[word * 8..word * 8 + 8].copy_from_slice(&value.to_le_bytes());
    }

    fn flip_byte(path: &Path, at: u64) {
        let mut bytes = fs::read(path).unwrap();
        bytes[at as usize] ^= 0x40;
        fs::write(path, bytes).unwrap();
    }

    #[test]
    fn round_trip_delivers_exact_pages_and_merges_adjacent_runs() {
        let dir = TempDir::new("roundtrip");
        let mut w = ImageWriter::create(dir.path()).unwrap();
        w.write_pages(P, 0x10000, &pattern(1, 2)).unwrap();
        w.write_pages(P, 0x12000, &pattern(2, 1)).unwrap();
        w.write_zero_pages(P, 0x13000, 3).unwrap();
        w.write_zero_pages(P, 0x16000, 1).unwrap();
        w.write_pages(P, 0x40000, &pattern(3, 1)).unwrap();
        w.write_pages(P, 0x41000, &[]).unwrap();
        let summary = w.commit(&checkpoint()).unwrap();
        assert_eq!(summary.pages_written, 4);
        assert_eq!(summary.zero_pages, 4);
        let on_disk: u64 = [PAGES_FILE, INDEX_FILE, MANIFEST_FILE]
            .iter()
            .map(|f| fs::metadata(dir.path().join(f)).unwrap().len())
            .sum();
        assert_eq!(summary.image_bytes, on_disk);
        assert!(!dir.path().join(MANIFEST_TMP_FILE).exists());

        let r = ImageReader::open(dir.path()).unwrap();
        assert_eq!(r.checkpoint(), &checkpoint());
        assert_eq!(r.dir(), dir.path());
        assert_eq!(r.manifest().ferry_version, env!("CARGO_PKG_VERSION"));
        // Data runs in file order, then the zero runs.
        assert_eq!(
            r.runs(),
            &[
                PageRun {
                    pid: P,
                    vaddr: 0x10000,
                    npages: 3,
                    offset: 0,
                    zero: false
                },
                PageRun {
                    pid: P,
                    vaddr: 0x40000,
                    npages: 1,
                    offset: 3 * PAGE_SIZE,
                    zero: false
                },
                PageRun {
                    pid: P,
                    vaddr: 0x13000,
                    npages: 4,
                    offset: 0,
                    zero: true
                },
            ]
        );
        let mut first = pattern(1, 2);
        first.extend(pattern(2, 1));
        let (total, got) = read_all(&r).unwrap();
        assert_eq!(total, 8);
        assert_eq!(
            got,
            vec![
                Got::Bytes(0x10000, first),
                Got::Bytes(0x40000, pattern(3, 1)),
                Got::Zero(0x13000, 4),
            ]
        );
    }

    #[test]
    fn big_runs_are_split_into_chunks_with_increasing_addresses() {
        let dir = TempDir::new("chunks");
        let npages = IO_CHUNK / PAGE * 2 + 3;
        let data = pattern(7, npages);
        let base = 0x7e00_0000_0000;
        let mut w = ImageWriter::create(dir.path()).unwrap();
        w.write_pages(P, base, &data).unwrap();
        w.commit(&checkpoint_with_anon(&[(base, base + data.len() as u64)]))
            .unwrap();

        let r = ImageReader::open(dir.path()).unwrap();
        let (total, got) = read_all(&r).unwrap();
        assert_eq!(total, npages as u64);
        assert_eq!(got.len(), 3);
        let mut expect_vaddr = base;
        let mut joined = Vec::new();
        for g in got {
            let Got::Bytes(vaddr, bytes) = g else {
                panic!("zero run")
            };
            assert_eq!(vaddr, expect_vaddr);
            assert!(bytes.len() <= IO_CHUNK);
            expect_vaddr += bytes.len() as u64;
            joined.extend(bytes);
        }
        assert!(joined == data);
    }

    #[test]
    fn writer_refuses_bad_input_and_non_empty_dirs() {
        let dir = TempDir::new("writer");
        let mut w = ImageWriter::create(dir.path()).unwrap();
        let err = w.write_pages(P, 0x10001, &pattern(0, 1)).unwrap_err();
        assert!(err.to_string().contains("not page-aligned"), "{err}");
        let err = w.write_pages(P, 0x10000, &[0; 100]).unwrap_err();
        assert!(err.to_string().contains("100 bytes"), "{err}");
        let err = w.write_zero_pages(P, u64::MAX - 0xfff, 2).unwrap_err();
        assert!(
            err.to_string().contains("end of the address space"),
            "{err}"
        );
        drop(w);
        let err = ImageWriter::create(dir.path()).err().unwrap();
        assert!(matches!(err, ImageError::DirNotEmpty { .. }), "{err}");
    }

    #[test]
    fn image_without_manifest_is_refused() {
        let dir = write_sample("nomanifest");
        fs::remove_file(dir.path().join(MANIFEST_FILE)).unwrap();
        let err = ImageReader::open(dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "image {} is incomplete: it has no manifest (was the checkpoint interrupted?)",
                dir.path().display()
            )
        );
    }

    #[test]
    fn truncated_pages_file_is_refused() {
        let dir = write_sample("truncated");
        let pages = dir.path().join(PAGES_FILE);
        let len = fs::metadata(&pages).unwrap().len();
        File::options()
            .write(true)
            .open(&pages)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        let err = ImageReader::open(dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "pages file {} is truncated: expected {len} bytes, found {}",
                pages.display(),
                len - 1
            )
        );
    }

    #[test]
    fn flipped_byte_in_pages_is_refused_by_read_pages() {
        let dir = write_sample("flippages");
        flip_byte(&dir.path().join(PAGES_FILE), 5000);
        let r = ImageReader::open(dir.path()).unwrap();
        let err = read_all(&r).unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::ChecksumMismatch {
                    what: "pages file",
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("does not match the manifest's 0x"),
            "{err}"
        );
    }

    #[test]
    fn flipped_byte_in_index_is_refused_at_open() {
        let dir = write_sample("flipindex");
        flip_byte(&dir.path().join(INDEX_FILE), HEADER_LEN as u64 + 1);
        let err = ImageReader::open(dir.path()).unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::ChecksumMismatch {
                    what: "page index",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn flipped_byte_in_manifest_body_is_refused() {
        let dir = write_sample("flipmanifest");
        flip_byte(&dir.path().join(MANIFEST_FILE), HEADER_LEN as u64 + 3);
        let err = ImageReader::open(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("does not match the stored"),
            "{err}"
        );
    }

    /// Rewrites the manifest header field at `at` with `bytes`.
    fn patch_manifest(dir: &Path, at: usize, bytes: &[u8]) {
        let path = dir.join(MANIFEST_FILE);
        let mut m = fs::read(&path).unwrap();
        m[at..at + bytes.len()].copy_from_slice(bytes);
        fs::write(path, m).unwrap();
    }

    #[test]
    fn manifest_with_bad_magic_is_refused() {
        let dir = write_sample("magic");
        patch_manifest(dir.path(), 0, b"NOTFERRY");
        let err = ImageReader::open(dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{} is not a ferry image (bad magic)", dir.path().display())
        );
    }

    #[test]
    fn manifest_from_future_version_is_refused() {
        let dir = write_sample("version");
        patch_manifest(dir.path(), 8, &7u32.to_le_bytes());
        let err = ImageReader::open(dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "image {} was written by format version 7; this ferry reads version 3",
                dir.path().display()
            )
        );
    }

    #[test]
    fn manifest_with_huge_body_length_is_refused_without_allocating() {
        let dir = write_sample("huge");
        for len in [u64::MAX, MAX_MANIFEST_BODY + 1] {
            patch_manifest(dir.path(), 16, &len.to_le_bytes());
            let err = ImageReader::open(dir.path()).unwrap_err();
            assert!(err.to_string().contains("more than the"), "{err}");
        }
        // A plausible length that does not match the file is a truncation.
        patch_manifest(dir.path(), 16, &(1u64 << 20).to_le_bytes());
        let err = ImageReader::open(dir.path()).unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::Truncated {
                    what: "manifest",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn index_records_out_of_bounds_are_refused() {
        // Record 0 is data at 0x10000, 3 pages at offset 0; record 1 data
        // at 0x40000, 1 page at offset 3 pages (the end of pages.img).
        fn tamper(tag: &str, record_word: usize, value: u64) -> String {
            let dir = write_sample(tag);
            tamper_index(dir.path(), |r| set_word(r, record_word, value))
        }
        assert!(tamper("unaligned", 0, 0x10010).contains("unaligned address 0x10010"));
        assert!(tamper("overflow", 1, u64::MAX / 2).contains("impossible page count"));
        assert!(tamper("zerocount", 1, 0).contains("impossible page count 0"));
        // A gap before record 0 is allowed, but its data then overlaps
        // record 1's in pages.img.
        let err = tamper("offset", 2, 4096);
        assert!(
            err.contains("record 1 at 0x40000 has data at offset 12288, before the end 16384"),
            "{err}"
        );
        assert!(tamper("flags", 3, 6).contains("unknown flags 0x6"));
        assert!(tamper("beyond", 1, 5).contains("beyond the 16384 bytes"));
        // A gap that pushes the last record past the end of pages.img.
        let err = tamper("lastbeyond", 6, 4 * PAGE_SIZE);
        assert!(
            err.contains("record 1 at 0x40000 has 1 pages at offset 16384, beyond the"),
            "{err}"
        );
    }

    #[test]
    fn records_overlapping_in_address_are_refused() {
        // Record 1 (data, 1 page) moved into record 0's 0x10000-0x13000.
        let dir = write_sample("overlapdata");
        let err = tamper_index(dir.path(), |r| set_word(r, 4, 0x12000));
        assert!(
            err.contains("records at 0x10000 and 0x12000 of process 4242 overlap"),
            "{err}"
        );
        // The zero run (record 2, 0x13000) stretched over record 1 at 0x40000,
        // which is not its neighbour in the index.
        let dir = write_sample("overlapzero");
        let err = tamper_index(dir.path(), |r| set_word(r, 9, 0x2e));
        assert!(err.contains("overlap"), "{err}");
        assert!(err.contains("0x13000 and 0x40000"), "{err}");
        // Touching is not overlapping: a zero run right after record 1.
        let dir = write_sample("touching");
        let idx_path = dir.path().join(INDEX_FILE);
        let mut idx = fs::read(&idx_path).unwrap();
        set_word(&mut idx[HEADER_LEN..], 8, 0x41000);
        fs::write(&idx_path, &idx).unwrap();
        rewrite_manifest(dir.path(), |m| m.index_xxh3 = xxh3_64(&idx));
        let r = ImageReader::open(dir.path()).unwrap();
        assert_eq!(read_all(&r).unwrap().0, 7);
    }

    #[test]
    fn data_records_out_of_file_order_are_refused() {
        // Swap records 0 and 1: record 1 then starts before record 0 ends.
        let dir = write_sample("order");
        let err = tamper_index(dir.path(), |r| {
            let (first, rest) = r.split_at_mut(RECORD_LEN);
            first.swap_with_slice(&mut rest[..RECORD_LEN]);
        });
        assert!(
            err.contains("record 1 at 0x10000 has data at offset 0, before the end 16384"),
            "{err}"
        );
        // Two records sharing bytes of pages.img are refused the same way.
        let dir = write_sample("shared");
        let err = tamper_index(dir.path(), |r| set_word(r, 6, 2 * PAGE_SIZE));
        assert!(err.contains("offset 8192, before the end 12288"), "{err}");
    }

    /// Every page that read_pages delivers, by address (a zero page as 4096
    /// zero bytes), checking that no address comes twice.
    fn pages_by_addr(got: &[Got]) -> std::collections::BTreeMap<u64, Vec<u8>> {
        let mut pages = std::collections::BTreeMap::new();
        for g in got {
            let (vaddr, bytes) = match g {
                Got::Bytes(vaddr, bytes) => (*vaddr, bytes.clone()),
                Got::Zero(vaddr, npages) => (*vaddr, vec![0; *npages as usize * PAGE]),
            };
            for (i, page) in bytes.chunks(PAGE).enumerate() {
                let at = vaddr + (i * PAGE) as u64;
                assert!(pages.insert(at, page.to_vec()).is_none(), "{at:#x} twice");
            }
        }
        pages
    }

    #[test]
    fn a_page_written_twice_reads_back_as_its_last_copy() {
        let dir = TempDir::new("twice");
        let first = pattern(1, 3);
        let mut w = ImageWriter::create(dir.path()).unwrap();
        // Data then data: the middle page of a 3-page run is copied again.
        w.write_pages(P, 0x10000, &first).unwrap();
        w.write_pages(P, 0x11000, &pattern(9, 1)).unwrap();
        // Data then zero.
        w.write_pages(P, 0x14000, &pattern(2, 2)).unwrap();
        w.write_zero_pages(P, 0x15000, 1).unwrap();
        // Zero then data.
        w.write_zero_pages(P, 0x18000, 2).unwrap();
        w.write_pages(P, 0x18000, &pattern(3, 1)).unwrap();
        w.commit(&checkpoint()).unwrap();

        let r = ImageReader::open(dir.path()).unwrap();
        assert_eq!(r.manifest().pages_len, 7 * PAGE_SIZE);
        let data = |vaddr, page: u64| PageRun {
            pid: P,
            vaddr,
            npages: 1,
            offset: page * PAGE_SIZE,
            zero: false,
        };
        let zero = |vaddr| PageRun {
            pid: P,
            vaddr,
            npages: 1,
            offset: 0,
            zero: true,
        };
        // pages.img: 0x10000-0x12fff, 0x11000 again, 0x14000-0x15fff,
        // 0x18000; pages 1 and 5 are superseded and read by nobody.
        assert_eq!(
            r.runs(),
            &[
                data(0x10000, 0),
                data(0x12000, 2),
                data(0x11000, 3),
                data(0x14000, 4),
                data(0x18000, 6),
                zero(0x15000),
                zero(0x19000),
            ]
        );
        let (total, got) = read_all(&r).unwrap();
        assert_eq!(total, 7);
        let pages = pages_by_addr(&got);
        let expect: [(u64, Vec<u8>); 7] = [
            (0x10000, first[..PAGE].to_vec()),
            (0x11000, pattern(9, 1)),
            (0x12000, first[2 * PAGE..].to_vec()),
            (0x14000, pattern(2, 2)[..PAGE].to_vec()),
            (0x15000, vec![0; PAGE]),
            (0x18000, pattern(3, 1)),
            (0x19000, vec![0; PAGE]),
        ];
        assert!(pages.into_iter().eq(expect), "{got:?}");

        // The superseded bytes still count in the checksum.
        for page in [1, 5] {
            flip_byte(&dir.path().join(PAGES_FILE), page * PAGE_SIZE + 100);
            let r = ImageReader::open(dir.path()).unwrap();
            let err = read_all(&r).unwrap_err();
            assert!(
                matches!(
                    err,
                    ImageError::ChecksumMismatch {
                        what: "pages file",
                        ..
                    }
                ),
                "{err}"
            );
            flip_byte(&dir.path().join(PAGES_FILE), page * PAGE_SIZE + 100);
            assert!(read_all(&r).is_ok());
        }
    }

    #[test]
    fn superseded_bytes_at_the_end_of_pages_img_are_checksummed() {
        let dir = TempDir::new("tail");
        let mut w = ImageWriter::create(dir.path()).unwrap();
        w.write_pages(P, 0x10000, &pattern(4, 1)).unwrap();
        w.write_pages(P, 0x11000, &pattern(5, 2)).unwrap();
        w.write_zero_pages(P, 0x11000, 2).unwrap();
        w.commit(&checkpoint()).unwrap();
        let r = ImageReader::open(dir.path()).unwrap();
        assert_eq!(r.manifest().pages_len, 3 * PAGE_SIZE);
        let (total, got) = read_all(&r).unwrap();
        assert_eq!(total, 3);
        assert_eq!(
            got,
            vec![Got::Bytes(0x10000, pattern(4, 1)), Got::Zero(0x11000, 2)]
        );
        flip_byte(&dir.path().join(PAGES_FILE), 3 * PAGE_SIZE - 1);
        let err = read_all(&r).unwrap_err();
        assert!(
            err.to_string().contains("does not match the manifest's"),
            "{err}"
        );

        // Nothing but superseded bytes: every data page rewritten as zero.
        let dir = TempDir::new("allzero");
        let mut w = ImageWriter::create(dir.path()).unwrap();
        w.write_pages(P, 0x10000, &pattern(6, 2)).unwrap();
        w.write_zero_pages(P, 0x10000, 2).unwrap();
        w.commit(&checkpoint()).unwrap();
        let r = ImageReader::open(dir.path()).unwrap();
        assert_eq!(read_all(&r).unwrap().1, vec![Got::Zero(0x10000, 2)]);
        flip_byte(&dir.path().join(PAGES_FILE), 10);
        assert!(read_all(&r).is_err());
    }

    #[test]
    fn pages_outside_the_restorable_mappings_are_dropped_at_commit() {
        let dir = TempDir::new("clip");
        // Two touching mappings at 0x20000-0x22000 and 0x22000-0x23000, and
        // the sample's [vdso] at 0x7ffd_1235_0000-0x7ffd_1235_2000.
        let checkpoint = checkpoint_with_anon(&[(0x20000, 0x22000), (0x22000, 0x23000)]);
        let vdso = 0x7ffd_1235_0000;
        let mut w = ImageWriter::create(dir.path()).unwrap();
        // 0x1f000-0x24000: one page before, one after the mappings.
        let across = pattern(1, 5);
        w.write_pages(P, 0x1f000, &across).unwrap();
        // Entirely unmapped, data and zero.
        w.write_pages(P, 0x30000, &pattern(2, 2)).unwrap();
        w.write_zero_pages(P, 0x34000, 4).unwrap();
        // The vdso is not restored from the image: data and zero dropped.
        w.write_pages(P, vdso, &pattern(3, 2)).unwrap();
        w.write_zero_pages(P, vdso + PAGE_SIZE, 1).unwrap();
        // A zero run straddling the end of the sample's stack mapping.
        w.write_zero_pages(P, 0x7ffd_1234_6000, 3).unwrap();
        let summary = w.commit(&checkpoint).unwrap();
        assert_eq!(summary.pages_written, 9);

        let r = ImageReader::open(dir.path()).unwrap();
        assert_eq!(r.manifest().pages_len, 9 * PAGE_SIZE);
        assert_eq!(
            r.runs(),
            &[
                // Clipped to the mappings and merged across their boundary.
                PageRun {
                    pid: P,
                    vaddr: 0x20000,
                    npages: 3,
                    offset: PAGE_SIZE,
                    zero: false
                },
                PageRun {
                    pid: P,
                    vaddr: 0x7ffd_1234_6000,
                    npages: 1,
                    offset: 0,
                    zero: true
                },
            ]
        );
        let (total, got) = read_all(&r).unwrap();
        assert_eq!(total, 4);
        assert_eq!(
            got,
            vec![
                Got::Bytes(0x20000, across[PAGE..4 * PAGE].to_vec()),
                Got::Zero(0x7ffd_1234_6000, 1),
            ]
        );
        // The dropped pages' bytes are still checksummed.
        flip_byte(&dir.path().join(PAGES_FILE), 10);
        assert!(read_all(&r).is_err());
    }

    /// Two processes of a tree map the same address: their pages are
    /// told apart by PID, never superseding each other, and a process the
    /// checkpoint does not describe keeps none.
    #[test]
    fn pages_of_two_processes_at_one_address_stay_apart() {
        let dir = TempDir::new("twopids");
        let mut ck = checkpoint();
        let mut child = ck.processes[0].clone();
        child.pid = P + 1;
        child.ppid = P;
        ck.processes.push(child);
        let mut w = ImageWriter::create(dir.path()).unwrap();
        w.write_pages(P, 0x10000, &pattern(1, 2)).unwrap();
        w.write_pages(P + 1, 0x10000, &pattern(2, 2)).unwrap();
        w.write_zero_pages(P + 1, 0x12000, 1).unwrap();
        w.write_pages(P + 7, 0x10000, &pattern(3, 1)).unwrap();
        w.commit(&ck).unwrap();

        let r = ImageReader::open(dir.path()).unwrap();
        let mut got = Vec::new();
        r.read_pages(|pid, vaddr, data| {
            got.push((
                pid,
                vaddr,
                data == PageData::Zero { npages: 1 },
                match data {
                    PageData::Bytes(b) => b.to_vec(),
                    PageData::Zero { .. } => Vec::new(),
                },
            ));
            Ok::<_, ImageError>(())
        })
        .unwrap();
        assert_eq!(
            got,
            vec![
                (P, 0x10000, false, pattern(1, 2)),
                (P + 1, 0x10000, false, pattern(2, 2)),
                (P + 1, 0x12000, true, Vec::new()),
            ]
        );
    }

    #[test]
    fn garbage_never_panics() {
        let dir = write_sample("garbage");
        let good_manifest = fs::read(dir.path().join(MANIFEST_FILE)).unwrap();
        let good_index = fs::read(dir.path().join(INDEX_FILE)).unwrap();
        // A small deterministic generator: no extra crate needed.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let sizes = [0usize, 1, 7, 8, 23, 24, 31, 32, 33, 100, 4096, 70_000];
        for round in 0..200 {
            let size = sizes[round % sizes.len()];
            let mut junk: Vec<u8> = (0..size).map(|_| next() as u8).collect();
            // Half the time keep a valid-looking header so the deeper checks run.
            let (template, file) = if round % 2 == 0 {
                (&good_manifest, MANIFEST_FILE)
            } else {
                (&good_index, INDEX_FILE)
            };
            if round % 4 < 2 {
                let keep = template.len().min(junk.len()).min(16 + (round % 3) * 4);
                junk[..keep].copy_from_slice(&template[..keep]);
            }
            // Also mutate a copy of the real file in a few places.
            let mut mutated = template.clone();
            for _ in 0..1 + round % 4 {
                let at = next() as usize % mutated.len();
                mutated[at] = next() as u8;
            }
            // A correctly framed but random body reaches the decoder.
            let framed = frame_manifest(&junk);
            fs::write(dir.path().join(INDEX_FILE), &good_index).unwrap();
            fs::write(dir.path().join(MANIFEST_FILE), &framed).unwrap();
            assert!(ImageReader::open(dir.path()).is_err());
            for bytes in [&junk, &mutated] {
                fs::write(dir.path().join(MANIFEST_FILE), &good_manifest).unwrap();
                fs::write(dir.path().join(INDEX_FILE), &good_index).unwrap();
                fs::write(dir.path().join(file), bytes).unwrap();
                if let Ok(r) = ImageReader::open(dir.path()) {
                    let _ = read_all(&r);
                }
            }
        }
    }
}
