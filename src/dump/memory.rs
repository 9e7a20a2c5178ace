//! Dumps the memory of a stopped process: which pages exist (pagemap), read
//! in large batches, all-zero pages left out.

use super::error::CheckpointError;
use super::sink::CheckpointSink;
use crate::image::{Vma, VmaKind, PAGE_SIZE};
use crate::memory::{push_page, PageRuns};
use crate::proc::pagemap;
use crate::ptrace::read_memory;
use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::Pid;
use std::fs::File;
use std::io::IoSliceMut;
use std::os::unix::fs::FileExt;
use std::sync::mpsc;

/// Bytes read from the process per batch.
const BATCH_BYTES: usize = 4 << 20;
/// Remote iovecs per process_vm_readv call (IOV_MAX).
const BATCH_IOVECS: usize = 1024;

/// Page counts of one memory dump.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryDumpStats {
    /// Pages examined in the dumped mappings.
    pub pages_scanned: u64,
    /// Pages whose contents were written to the image.
    pub pages_written: u64,
    /// Present pages found all-zero (recorded without payload or skipped).
    pub zero_pages: u64,
}

/// What to do with one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageChoice {
    /// Leave it out of the image.
    Skip,
    /// Read it and store it (all-zero anonymous pages are still left out).
    Read,
    /// Record it as an all-zero page, overriding an earlier copy.
    Zero,
}

/// Decides which pages a memory pass reads.
pub trait PagePolicy: Sync {
    /// The choice for the page at `addr` of `vma`; `has_data` says whether
    /// the page holds data of its own (present or swapped, and for a file
    /// mapping, copied on write).
    fn choose(&self, vma: &Vma, addr: u64, has_data: bool) -> PageChoice;
    /// Whether a page that cannot be read is skipped (the process is
    /// running and may unmap it) rather than an error.
    fn tolerates_unreadable(&self) -> bool;
    /// Whether a private page that pagemap shows swapped but not present
    /// is read even where `choose` skips it. A page discarded
    /// (MADV_DONTNEED) while write-protect tracking is armed with
    /// WP_UNPOPULATED leaves a uffd-wp marker that pagemap reports as a
    /// swap entry: the frozen pass reads it (as zero) so that an older copy
    /// of the page does not survive.
    fn reads_swapped(&self) -> bool {
        false
    }
}

/// Every page with data of its own: the dump of a stopped process.
pub struct EveryPage;

impl PagePolicy for EveryPage {
    fn choose(&self, _vma: &Vma, _addr: u64, has_data: bool) -> PageChoice {
        if has_data {
            PageChoice::Read
        } else {
            PageChoice::Skip
        }
    }

    fn tolerates_unreadable(&self) -> bool {
        false
    }
}

/// Post-copy: the pages of private anonymous mappings that `inner` would
/// read are only noted (they stay with the frozen process, fetched
/// later); everything else goes as `inner` says.
pub struct LazyAnonymous<'a> {
    inner: &'a dyn PagePolicy,
    runs: std::sync::Mutex<Vec<(u64, u64)>>,
}

impl<'a> LazyAnonymous<'a> {
    /// Wraps the policy of the copy while frozen.
    pub fn new(inner: &'a dyn PagePolicy) -> Self {
        Self {
            inner,
            runs: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The runs (start, end) of the pages left behind, in address order.
    pub fn into_runs(self) -> Vec<(u64, u64)> {
        self.runs.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

impl PagePolicy for LazyAnonymous<'_> {
    fn choose(&self, vma: &Vma, addr: u64, has_data: bool) -> PageChoice {
        match self.inner.choose(vma, addr, has_data) {
            PageChoice::Read if vma.is_private_anonymous() => {
                let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
                push_page(&mut runs, addr);
                PageChoice::Skip
            }
            other => other,
        }
    }

    fn tolerates_unreadable(&self) -> bool {
        self.inner.tolerates_unreadable()
    }

    fn reads_swapped(&self) -> bool {
        self.inner.reads_swapped()
    }
}

/// The parent of the process being dumped, frozen with it: its pages the
/// process still shares copy-on-write are found by comparing the two
/// pagemaps.
pub struct ForkParent<'a> {
    /// The parent's PID.
    pub pid: i32,
    /// The parent's mappings.
    pub vmas: &'a [Vma],
}

/// What one memory pass found besides the pages it stored.
pub struct DumpedMemory {
    /// The page counts.
    pub stats: MemoryDumpStats,
    /// The runs (start, end) of pages actually read.
    pub copied: Vec<(u64, u64)>,
    /// The runs of pages the process shares with its [`ForkParent`], in
    /// mappings it inherits from it (empty without a parent).
    pub shared_with_parent: Vec<(u64, u64)>,
}

/// Whether a mapping's pages are dumped at all: special mappings are
/// recreated by the kernel, and the object a mapping made from an fd maps
/// travels with the fd (a memfd) or is not carried (packet rings).
fn is_dumped(vma: &Vma) -> bool {
    !vma.is_special() && !vma.is_from_fd() && !matches!(vma.kind, VmaKind::SharedFile { .. })
}

/// The pages of a shared anonymous mapping that hold data: its shmem
/// object may hold pages this process never touched (a child wrote them),
/// which pagemap does not show, so they are found with SEEK_DATA/SEEK_HOLE
/// on the object itself (through /proc/PID/map_files).
fn shmem_data(pid: i32, vma: &Vma) -> Result<PageRuns, CheckpointError> {
    let path = format!("/proc/{pid}/map_files/{:x}-{:x}", vma.start, vma.end);
    let io = |e: std::io::Error| CheckpointError::Io {
        what: format!(
            "find the data of shared memory {:#x}-{:#x} of process {pid}",
            vma.start, vma.end
        ),
        source: e,
    };
    let file = File::open(&path).map_err(io)?;
    // The mapping's offset into the object, as /proc/PID/maps shows it.
    let offset = crate::proc::read_maps(pid)?
        .into_iter()
        .find(|m| m.start == vma.start)
        .map_or(0, |m| m.offset);
    let (start, end) = (offset as i64, (offset + (vma.end - vma.start)) as i64);
    let mut runs = Vec::new();
    let mut at = start;
    while at < end {
        let data = match nix::unistd::lseek(&file, at, nix::unistd::Whence::SeekData) {
            Ok(d) => d,
            Err(nix::errno::Errno::ENXIO) => break,
            Err(e) => return Err(io(e.into())),
        };
        if data >= end {
            break;
        }
        let hole = nix::unistd::lseek(&file, data, nix::unistd::Whence::SeekHole)
            .map_err(|e| io(e.into()))?;
        let (s, e) = (data.max(start), hole.min(end));
        let to_addr = |off: i64| vma.start + (off - start) as u64;
        runs.push((
            to_addr(s) & !(PAGE_SIZE - 1),
            (to_addr(e) + PAGE_SIZE - 1) & !(PAGE_SIZE - 1),
        ));
        at = hole;
    }
    Ok(PageRuns::from_runs(runs))
}

/// Reads every present or swapped private page of `vmas` from the stopped
/// process `pid` into `sink`. Two threads share the work: this one reads
/// the process's memory in large batches while a second one scans the
/// previous batch for zero pages and writes it to the image. With the
/// frozen `parent`, the pagemap read for this also finds the pages the two
/// still share.
pub fn dump_memory(
    pid: i32,
    vmas: &[Vma],
    policy: &dyn PagePolicy,
    sink: &mut dyn CheckpointSink,
    parent: Option<&ForkParent<'_>>,
) -> Result<DumpedMemory, CheckpointError> {
    let (filled_tx, filled_rx) = mpsc::sync_channel::<FilledBatch>(BATCH_BUFFERS);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..BATCH_BUFFERS {
        empty_tx
            .send(vec![0u8; BATCH_BYTES])
            .expect("receiver is alive");
    }
    std::thread::scope(|scope| {
        let store = scope.spawn(move || {
            let mut stats = MemoryDumpStats::default();
            for batch in filled_rx {
                store_pages(
                    pid,
                    sink,
                    &mut stats,
                    &batch.pages,
                    &batch.buf[..batch.len()],
                )?;
                for &addr in &batch.zero_pages {
                    sink.write_zero_pages(pid, addr, 1)?;
                }
                // The reader may already be done and gone.
                let _ = empty_tx.send(batch.buf);
            }
            Ok::<_, CheckpointError>(stats)
        });
        let read = read_pages(pid, vmas, policy, parent, filled_tx, &empty_rx);
        let stored = store.join().expect("the page-writing thread panicked");
        // A sink failure also stops the reader: report the sink's error.
        let mut stats = stored?;
        let (scanned, copied, shared_with_parent) = read?;
        stats.pages_scanned = scanned;
        Ok(DumpedMemory {
            stats,
            copied,
            shared_with_parent,
        })
    })
}

/// Batch buffers in flight between the reading and the writing thread.
const BATCH_BUFFERS: usize = 3;

/// Pages read from the process, on their way to the image.
struct FilledBatch {
    buf: Vec<u8>,
    /// Address of each page, in order.
    pages: Vec<u64>,
    /// Pages to record as all-zero.
    zero_pages: Vec<u64>,
}

impl FilledBatch {
    fn len(&self) -> usize {
        self.pages.len() * PAGE_SIZE as usize
    }
}

/// Pages scanned, runs of pages read, runs of pages shared with the
/// parent.
type ReadPages = (u64, Vec<(u64, u64)>, Vec<(u64, u64)>);

/// Walks pagemap and reads the pages the policy wants, sending filled
/// batches to the writer; in a mapping inherited from `parent`, compares
/// each entry with the parent's.
fn read_pages(
    pid: i32,
    vmas: &[Vma],
    policy: &dyn PagePolicy,
    parent: Option<&ForkParent<'_>>,
    filled: mpsc::SyncSender<FilledBatch>,
    empty: &mpsc::Receiver<Vec<u8>>,
) -> Result<ReadPages, CheckpointError> {
    let io = |what: &str, e: std::io::Error| CheckpointError::Io {
        what: format!("{what} of process {pid}"),
        source: e,
    };
    let writer_gone = || CheckpointError::Io {
        what: format!("hand pages of process {pid} on"),
        source: std::io::Error::other("the thread storing pages stopped"),
    };
    let pagemap_file =
        File::open(format!("/proc/{pid}/pagemap")).map_err(|e| io("open pagemap", e))?;
    let mem_file = File::open(format!("/proc/{pid}/mem")).map_err(|e| io("open mem", e))?;
    let parent_pagemap = parent
        .map(|p| File::open(format!("/proc/{}/pagemap", p.pid)))
        .transpose()
        .map_err(|e| io("open the parent's pagemap", e))?;
    let mut parent_entries = Vec::new();
    let mut shared: Vec<(u64, u64)> = Vec::new();
    let mut scanned = 0;
    let tolerant = policy.tolerates_unreadable();
    let mut copied: Vec<(u64, u64)> = Vec::new();
    let mut batch = Batch::new(Pid::from_raw(pid), empty.recv().map_err(|_| writer_gone())?);
    let mut entries = vec![0u64; pagemap::BATCH_PAGES as usize];
    let mut raw = Vec::with_capacity(pagemap::BATCH_PAGES as usize * 8);
    let mut send = |batch: &mut Batch| -> Result<(), CheckpointError> {
        if batch.pages.is_empty() && batch.zero_pages.is_empty() {
            return Ok(());
        }
        batch.read(&mem_file, tolerant)?;
        for &addr in &batch.pages {
            push_page(&mut copied, addr);
        }
        let next = empty.recv().map_err(|_| writer_gone())?;
        filled.send(batch.take(next)).map_err(|_| writer_gone())
    };
    for vma in vmas.iter().filter(|v| is_dumped(v)) {
        scanned += vma.pages();
        let file_backed = matches!(
            vma.kind,
            VmaKind::File { .. } | VmaKind::PrivateShmem { .. }
        );
        let shared_data = match vma.kind {
            VmaKind::SharedAnonymous { .. } | VmaKind::SysvShm { .. } => {
                Some(shmem_data(pid, vma)?)
            }
            _ => None,
        };
        // Unreadable (PROT_NONE) ranges are read through /proc/PID/mem,
        // which may read them (FOLL_FORCE); process_vm_readv may not.
        let readable = vma.prot & libc::PROT_READ as u32 != 0;
        let fork_parent = parent_pagemap
            .as_ref()
            .zip(parent)
            .filter(|(_, p)| p.vmas.iter().any(|pv| vma.inherits(pv)))
            .map(|(file, _)| file);
        let mut page = vma.start / PAGE_SIZE;
        let end_page = vma.end / PAGE_SIZE;
        while page < end_page {
            let n = (end_page - page).min(pagemap::BATCH_PAGES) as usize;
            pagemap::read_entries(&pagemap_file, page, &mut raw, &mut entries[..n])
                .map_err(|e| io("read pagemap", e))?;
            if let Some(file) = fork_parent {
                parent_entries.resize(n, 0);
                pagemap::read_entries(file, page, &mut raw, &mut parent_entries)
                    .map_err(|e| io("read the parent's pagemap", e))?;
            }
            for (i, &e) in entries[..n].iter().enumerate() {
                let present = e & pagemap::PRESENT != 0;
                let swapped = e & pagemap::SWAPPED != 0;
                // In a private file mapping only the copied-on-write pages
                // (private anonymous copies) differ from the file.
                let addr = (page + i as u64) * PAGE_SIZE;
                if fork_parent.is_some() && pagemap::same_frame(e, parent_entries[i]) {
                    push_page(&mut shared, addr);
                }
                let has_data = if let Some(data) = &shared_data {
                    data.contains(addr)
                } else if file_backed {
                    (present && e & pagemap::FILE_OR_SHARED == 0) || swapped
                } else {
                    present || swapped
                };
                let choice = match policy.choose(vma, addr, has_data) {
                    PageChoice::Skip
                        if swapped
                            && !present
                            && shared_data.is_none()
                            && policy.reads_swapped() =>
                    {
                        PageChoice::Read
                    }
                    choice => choice,
                };
                match choice {
                    PageChoice::Skip => continue,
                    PageChoice::Zero => {
                        batch.zero_pages.push(addr);
                        continue;
                    }
                    PageChoice::Read => {}
                }
                if readable {
                    if batch.is_full() {
                        send(&mut batch)?;
                    }
                    // A private page mapped more than once may be shared
                    // copy-on-write: process_vm_readv pins it, which
                    // gives the process a copy of its own (FAULT_FLAG_UNSHARE);
                    // /proc/PID/mem only reads it.
                    if (present || swapped)
                        && e & (pagemap::EXCLUSIVE | pagemap::FILE_OR_SHARED) == 0
                    {
                        batch.push_unpinned(addr);
                    } else {
                        batch.push(addr);
                    }
                } else {
                    // Flush, then send this page alone, read already (a
                    // batch without remote ranges is not read again).
                    send(&mut batch)?;
                    match mem_file.read_exact_at(&mut batch.buf[..PAGE_SIZE as usize], addr) {
                        Ok(()) => batch.pages.push(addr),
                        Err(_) if tolerant => {}
                        Err(e) => return Err(io("read mem", e)),
                    }
                    send(&mut batch)?;
                }
            }
            page += n as u64;
        }
    }
    send(&mut batch)?;
    Ok((scanned, copied, shared))
}

/// Pages waiting to be read with one process_vm_readv call.
struct Batch {
    pid: Pid,
    buf: Vec<u8>,
    /// Address of each page, in order.
    pages: Vec<u64>,
    /// Remote ranges: runs of adjacent pages.
    iovecs: Vec<RemoteIoVec>,
    /// Runs (first index in `pages`, count) of adjacent pages read through
    /// /proc/PID/mem rather than process_vm_readv.
    unpinned: Vec<(usize, usize)>,
    /// Pages to record as all-zero.
    zero_pages: Vec<u64>,
}

impl Batch {
    fn new(pid: Pid, buf: Vec<u8>) -> Self {
        Batch {
            pid,
            buf,
            pages: Vec::new(),
            iovecs: Vec::new(),
            unpinned: Vec::new(),
            zero_pages: Vec::new(),
        }
    }

    fn is_full(&self) -> bool {
        self.pages.len() * PAGE_SIZE as usize >= BATCH_BYTES || self.iovecs.len() >= BATCH_IOVECS
    }

    fn push(&mut self, addr: u64) {
        match self.iovecs.last_mut() {
            Some(last) if (last.base + last.len) as u64 == addr => last.len += PAGE_SIZE as usize,
            _ => self.iovecs.push(RemoteIoVec {
                base: addr as usize,
                len: PAGE_SIZE as usize,
            }),
        }
        self.pages.push(addr);
    }

    /// Adds a page to read through /proc/PID/mem, which does not pin it.
    fn push_unpinned(&mut self, addr: u64) {
        let i = self.pages.len();
        match self.unpinned.last_mut() {
            Some((first, n)) if *first + *n == i && self.pages[i - 1] + PAGE_SIZE == addr => {
                *n += 1
            }
            _ => self.unpinned.push((i, 1)),
        }
        self.pages.push(addr);
    }

    /// Reads the batch's pages into its buffer (`mem`: the process's
    /// /proc/PID/mem). When `tolerant`, pages that cannot be read are
    /// dropped from the batch instead of failing it.
    fn read(&mut self, mem: &File, tolerant: bool) -> Result<(), CheckpointError> {
        let ps = PAGE_SIZE as usize;
        let mut unread = Vec::new();
        for &(first, n) in &self.unpinned {
            let run = &mut self.buf[first * ps..(first + n) * ps];
            if mem.read_exact_at(run, self.pages[first]).is_ok() {
                continue;
            }
            for i in first..first + n {
                match mem.read_exact_at(&mut self.buf[i * ps..(i + 1) * ps], self.pages[i]) {
                    Ok(()) => {}
                    Err(_) if tolerant => unread.push(i),
                    Err(e) => {
                        return Err(CheckpointError::Io {
                            what: format!("read page {:#x} of process {}", self.pages[i], self.pid),
                            source: e,
                        })
                    }
                }
            }
        }
        if !self.iovecs.is_empty() {
            self.read_pinned(tolerant, &mut unread)?;
        }
        if unread.is_empty() {
            return Ok(());
        }
        unread.sort_unstable();
        let mut kept = 0;
        for i in 0..self.pages.len() {
            if unread.binary_search(&i).is_err() {
                self.buf.copy_within(i * ps..(i + 1) * ps, kept * ps);
                self.pages[kept] = self.pages[i];
                kept += 1;
            }
        }
        self.pages.truncate(kept);
        Ok(())
    }

    /// Reads the pages not read through /proc/PID/mem with one
    /// process_vm_readv into their places of the buffer; when that fails,
    /// page by page, noting in `unread` those that cannot be read.
    fn read_pinned(
        &mut self,
        tolerant: bool,
        unread: &mut Vec<usize>,
    ) -> Result<(), CheckpointError> {
        let ps = PAGE_SIZE as usize;
        let len = self.pages.len() * ps;
        let unpinned_pages: usize = self.unpinned.iter().map(|r| r.1).sum();
        let mut local = Vec::with_capacity(self.unpinned.len() + 1);
        let mut rest = &mut self.buf[..len];
        let mut at = 0;
        for &(first, n) in &self.unpinned {
            let (before, after) = std::mem::take(&mut rest).split_at_mut((first - at) * ps);
            if !before.is_empty() {
                local.push(IoSliceMut::new(before));
            }
            rest = &mut after[n * ps..];
            at = first + n;
        }
        if !rest.is_empty() {
            local.push(IoSliceMut::new(rest));
        }
        let wanted = len - unpinned_pages * ps;
        if process_vm_readv(self.pid, &mut local, &self.iovecs).is_ok_and(|n| n == wanted) {
            return Ok(());
        }
        // Some page could not be read: go page by page to find which.
        let mut unpinned = self
            .unpinned
            .iter()
            .flat_map(|&(first, n)| first..first + n)
            .peekable();
        for i in 0..self.pages.len() {
            if unpinned.next_if_eq(&i).is_some() {
                continue;
            }
            match read_memory(self.pid, self.pages[i], &mut self.buf[i * ps..(i + 1) * ps]) {
                Ok(()) => {}
                Err(_) if tolerant => unread.push(i),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Hands over the filled pages and starts over with buffer `next`.
    fn take(&mut self, next: Vec<u8>) -> FilledBatch {
        self.iovecs.clear();
        self.unpinned.clear();
        FilledBatch {
            buf: std::mem::replace(&mut self.buf, next),
            pages: std::mem::take(&mut self.pages),
            zero_pages: std::mem::take(&mut self.zero_pages),
        }
    }
}

static ZERO_PAGE: [u8; PAGE_SIZE as usize] = [0; PAGE_SIZE as usize];

/// Hands the pages of `data` (one per entry of `pages`) to the sink,
/// coalescing adjacent pages with data, and adjacent all-zero pages, into
/// runs. All-zero pages are recorded as zero pages, never left out: an
/// earlier round may hold an older copy of the page (a page discarded and
/// then read populates the zero page while the process runs), and in a
/// file mapping the file would show through.
fn store_pages(
    pid: i32,
    sink: &mut dyn CheckpointSink,
    stats: &mut MemoryDumpStats,
    pages: &[u64],
    data: &[u8],
) -> Result<(), CheckpointError> {
    let ps = PAGE_SIZE as usize;
    // (vaddr, first index, count, all zero)
    let mut run: Option<(u64, usize, usize, bool)> = None;
    let flush =
        |run: &mut Option<(u64, usize, usize, bool)>, sink: &mut dyn CheckpointSink| match run
            .take()
        {
            Some((vaddr, _, count, true)) => sink.write_zero_pages(pid, vaddr, count as u64),
            Some((vaddr, first, count, false)) => {
                sink.write_pages(pid, vaddr, &data[first * ps..(first + count) * ps])
            }
            None => Ok(()),
        };
    for (i, &addr) in pages.iter().enumerate() {
        let zero = data[i * ps..(i + 1) * ps] == ZERO_PAGE;
        if zero {
            stats.zero_pages += 1;
        } else {
            stats.pages_written += 1;
        }
        match &mut run {
            Some((vaddr, _, count, z)) if *z == zero && *vaddr + (*count * ps) as u64 == addr => {
                *count += 1
            }
            _ => {
                flush(&mut run, sink)?;
                run = Some((addr, i, 1, zero));
            }
        }
    }
    flush(&mut run, sink)
}
